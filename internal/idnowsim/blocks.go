package idnowsim

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// vaultFile is a file in the simulated vault. Its bytes are generated on demand from seed so
// thousands of sessions cost no memory.
type vaultFile struct {
	id          string
	env         string
	sessionID   string
	contentType string
	filename    string
	size        int
	seed        uint64
}

// addBlockLocked appends the data block produced by step; s.mu must be held.
func (s *Simulator) addBlockLocked(sess *session, step stepDef, now time.Time) {
	sess.clock++
	b := &dataBlock{
		id:        sess.rng.UUID(),
		typ:       step.block,
		stepID:    step.id,
		clock:     sess.clock,
		createdAt: now,
	}
	switch step.block {
	case "basicIdentity":
		b.content = map[string]any{
			"givenName":  sess.ident.givenName,
			"familyName": sess.ident.familyName,
			"birthDate":  sess.ident.birthDate,
		}
	case "documentData":
		issued := now.AddDate(-sess.rng.IntN(9), -sess.rng.IntN(12), 0)
		country := pick(sess.rng, countries)
		b.content = map[string]any{
			"documentType":     pick(sess.rng, docTypes),
			"documentNumber":   fmt.Sprintf("SIM%06d", sess.rng.IntN(1000000)),
			"expiryDate":       issued.AddDate(10, 0, 0).Format(time.DateOnly),
			"issuanceDate":     issued.Format(time.DateOnly),
			"issuingCountry":   country,
			"issuingAuthority": "Simulated authority " + country,
		}
	case "documentVerification":
		front := s.addFileLocked(sess, "image/jpeg", "document-front.jpg")
		report := s.addFileLocked(sess, "application/pdf", "verification-report.pdf")
		verdict := map[string]any{"status": "PASSED", "reason": nil}
		found := []any{}
		if sess.plan.outcome == OutcomeRejected {
			issue := pick(sess.rng, issues)
			verdict = map[string]any{"status": "FAILED", "reason": issue}
			found = append(found, map[string]any{"code": issue, "severity": "HIGH"})
		}
		b.content = map[string]any{
			"verdict": verdict,
			"issues":  found,
			"report":  vaultRef(report),
			"images":  map[string]any{"front": vaultRef(front)},
		}
	case "outcomeStatus":
		reasons := []any{}
		if sess.outcome == OutcomeRejected {
			reasons = append(reasons, map[string]any{"code": "DOCUMENT_CHECK_FAILED", "details": "document verification failed"})
		}
		b.content = map[string]any{"outcome": sess.renderedOutcome(), "reasons": reasons}
	}
	// Retention can purge a block after the fact; IDnow then shows it DELETED with null content.
	if step.block != "outcomeStatus" && sess.rng.Chance(s.cfg.DeletedBlockRate) {
		b.deleted = true
		b.content = nil
	}
	sess.blocks = append(sess.blocks, b)
}

// addFileLocked registers a vault file for sess and returns its vault entry id; s.mu must be held.
func (s *Simulator) addFileLocked(sess *session, contentType, filename string) string {
	f := &vaultFile{
		id:          sess.rng.UUID(),
		env:         sess.env,
		sessionID:   sess.id,
		contentType: contentType,
		filename:    filename,
		size:        2048 + sess.rng.IntN(6144),
		seed:        uint64(sess.rng.IntN(1 << 62)),
	}
	s.files[f.id] = f
	sess.files = append(sess.files, f.id)
	return f.id
}

// bytes renders the file: a JPEG or PDF envelope around deterministic filler, so content
// sniffers and viewers see the declared type.
func (f *vaultFile) bytes() []byte {
	r := rand.New(rand.NewPCG(f.seed, f.seed^0x5851f42d4c957f2d))
	var head, tail []byte
	switch f.contentType {
	case "image/jpeg":
		head = []byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00}
		tail = []byte{0xFF, 0xD9}
	default:
		head = []byte("%PDF-1.4\n% IDnow simulator verification report (synthetic)\n")
		tail = []byte("\n%%EOF\n")
	}
	out := make([]byte, 0, f.size)
	out = append(out, head...)
	for len(out) < f.size-len(tail) {
		out = append(out, byte(r.UintN(256)))
	}
	return append(out, tail...)
}

// renderBlocksLocked renders a session's data blocks in its shape; s.mu must be held.
func renderBlocksLocked(sess *session, shape string) map[string]any {
	if shape == ShapeOld {
		list := make([]any, 0, len(sess.blocks))
		for _, b := range sess.blocks {
			item := map[string]any{
				"type":          oldBlockTypes[b.typ],
				"createdByStep": b.stepID,
				"createdAt":     isoTime(b.createdAt),
			}
			if b.deleted {
				item["status"] = "DELETED"
			} else {
				for k, v := range b.content {
					item[k] = v
				}
				if b.typ == "basicIdentity" {
					item["name"] = fmt.Sprintf("%s %s", b.content["givenName"], b.content["familyName"])
				}
			}
			list = append(list, item)
		}
		for i := range sess.padding {
			list = append(list, map[string]any{"type": "padding", "createdByStep": "padding", "n": i})
		}
		return map[string]any{"datablocks": list}
	}
	list := make([]any, 0, len(sess.blocks))
	for _, b := range sess.blocks {
		status := "STORED"
		var content any = b.content
		if b.deleted {
			status, content = "DELETED", nil
		}
		list = append(list, map[string]any{
			"datablockId": b.id,
			"type":        b.typ,
			"createdBy":   map[string]any{"stepId": b.stepID, "clock": b.clock},
			"createdAt":   isoTime(b.createdAt),
			"status":      status,
			"content":     content,
		})
	}
	for i := range sess.padding {
		list = append(list, map[string]any{"datablockId": "pad-" + strconv.Itoa(i), "type": "padding", "status": "STORED", "content": map[string]any{"n": i}})
	}
	return map[string]any{"dataBlocks": list}
}
