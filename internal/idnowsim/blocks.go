package idnowsim

import (
	"fmt"
	"strconv"
	"time"
)

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
		front := s.addFileLocked(sess, contentJPEG, "document-front.jpg", s.imageSize(sess.rng))
		report := s.addFileLocked(sess, contentPDF, "verification-report.pdf", s.imageSize(sess.rng))
		images := map[string]any{"front": vaultRef(front)}
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
			"images":  images,
		}
		s.addEvidenceLocked(sess, b.content, images)
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
func (s *Simulator) addFileLocked(sess *session, contentType, filename string, size int64) string {
	f := &vaultFile{
		id:          sess.rng.UUID(),
		env:         sess.env,
		sessionID:   sess.id,
		contentType: contentType,
		filename:    filename,
		size:        size,
		seed:        uint64(sess.rng.IntN(1 << 62)),
	}
	s.files[f.id] = f
	sess.files = append(sess.files, f.id)
	return f.id
}

// imageSize is the size of one image or report: simulator.files.image_size, or 2-8 KiB drawn
// from g when that is 0.
func (s *Simulator) imageSize(g *rng) int64 {
	n := int64(2048 + g.IntN(6144))
	if s.cfg.Files.ImageSize > 0 {
		return s.cfg.Files.ImageSize
	}
	return n
}

// addEvidenceLocked adds the evidence files simulator.files asks for beyond the document front
// and the report: the document's back side (half the sessions), a selfie, and a video (a share
// of the sessions, or the large video of every large_video_every-th session that will
// complete). They are drawn
// from the session's file source (fileRNG) so the session's other choices do not change.
// s.mu must be held.
func (s *Simulator) addEvidenceLocked(sess *session, content, images map[string]any) {
	fc := s.cfg.Files
	g := fileRNG(sess.id)
	add := func(contentType, filename string, size int64) string {
		f := &vaultFile{
			id: g.UUID(), env: sess.env, sessionID: sess.id, contentType: contentType,
			filename: filename, size: size, seed: uint64(g.Int64()),
		}
		s.files[f.id] = f
		sess.files = append(sess.files, f.id)
		return f.id
	}
	if fc.ExtraImages {
		if g.Chance(0.5) {
			images["back"] = vaultRef(add(contentJPEG, "document-back.jpg", s.imageSize(g)))
		}
		content["selfie"] = vaultRef(add(contentJPEG, "selfie.jpg", s.imageSize(g)))
	}
	large := false
	if fc.LargeVideoEvery > 0 && fc.LargeVideoSize > 0 && sess.plan.final == StatusCompleted {
		// Counted over the sessions that will complete, so a test creating sessions until N
		// completed knows exactly how many large videos to expect.
		s.completing++
		large = s.completing%fc.LargeVideoEvery == 0
	}
	switch {
	case large:
		content["video"] = vaultRef(add(contentMP4, "identification.mp4", fc.LargeVideoSize))
	case fc.VideoSize > 0 && g.Chance(fc.VideoRate):
		content["video"] = vaultRef(add(contentMP4, "identification.mp4", fc.VideoSize))
	}
	if rate := s.faults.FileMissingRate; rate > 0 { // s.mu is held
		for _, id := range sess.files {
			if g.Chance(rate) {
				s.files[id].missing = true
				sess.missing = append(sess.missing, id)
			}
		}
	}
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
