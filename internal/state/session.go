package state

import (
	"encoding/binary"
	"strings"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// Session is one session's state as the enricher holds it in memory: what a
// schemas.SessionState says, without the session id (the Store's key), in a fraction of the
// memory. A SessionState keeps each enriched event id as a string of its own behind a slice (a
// 48-byte allocation and a 16-byte header per id of 40 bytes); a Session packs all of them into
// one string (idPacker), keeps the statuses and outcomes every session repeats as one-byte codes
// and the time as milliseconds: 40 bytes and the packed ids. A Session owns all its memory:
// nothing in it refers to the strings it was built from, so holding it never pins a decoder's
// buffers. The zero value is a session with nothing enriched. Sessions are values and never
// change; Apply returns a new one.
type Session struct {
	ids         string // the enriched event ids, oldest first, packed by idPacker
	updated     int64  // UpdatedAt in Unix milliseconds (the record's precision)
	custom      *texts // the status and outcome texts coded codeCustom; nil for almost every session
	statusCode  uint8  // LatestStatus: codeAbsent, codeCustom or 1 + its index in shared
	outcomeCode uint8  // Outcome, coded the same way
}

// texts are a session's status and outcome where they are not among the shared constants.
type texts struct{ status, outcome string }

// Codes of a status or outcome besides 1 + an index in shared.
const (
	codeAbsent = 0
	codeCustom = 0xff
)

// FromState returns the Session holding what st says (nil: nothing enriched). It keeps every id
// of st, also beyond MaxEventIDs (Apply bounds them), so a restored record is written back
// unchanged.
func FromState(st *schemas.SessionState) Session {
	if st == nil {
		return Session{}
	}
	s := Session{updated: st.UpdatedAt.UnixMilli()}
	s.setTexts(deref(st.LatestStatus), st.LatestStatus != nil, deref(st.Outcome), st.Outcome != nil)
	// Sized exactly: a restored store holds a Session per session for as long as the partition
	// is owned, and one allocation per record keeps the restore fast.
	size, prev := 0, ""
	for _, id := range st.EnrichedEventIDs {
		size += entrySize(prev, id)
		prev = id
	}
	var b strings.Builder
	b.Grow(size)
	prev = ""
	for _, id := range st.EnrichedEventIDs {
		writeEntry(&b, prev, id)
		prev = id
	}
	s.ids = b.String()
	return s
}

// State returns the SessionState record of session sessionID. Its event ids are substrings of
// one allocation, so writing a record per event does not allocate a string per id.
func (s Session) State(sessionID string) *schemas.SessionState {
	n, size := s.count()
	st := &schemas.SessionState{SessionID: sessionID, EnrichedEventIDs: make([]string, 0, n), UpdatedAt: time.UnixMilli(s.updated).UTC()}
	if v, ok := s.status(); ok {
		st.LatestStatus = &v
	}
	if v, ok := s.outcome(); ok {
		st.Outcome = &v
	}
	var all strings.Builder
	all.Grow(size)
	for r := newIDReader(s.ids); r.next(); {
		all.Write(r.id)
	}
	text, at := all.String(), 0
	for r := newIDReader(s.ids); r.next(); {
		st.EnrichedEventIDs = append(st.EnrichedEventIDs, text[at:at+len(r.id)])
		at += len(r.id)
	}
	return st
}

// count returns the number of ids and their length together.
func (s Session) count() (n, size int) {
	for r := newIDReader(s.ids); r.next(); {
		n++
		size += len(r.id)
	}
	return n, size
}

// Decide judges an event of the session before it is enriched (see Decide).
func (s Session) Decide(eventID, status string) Decision {
	if s.contains(eventID) {
		return Decision{Skip: SkipAlreadyEnriched}
	}
	latest, _ := s.status()
	r, lr := Rank(status), Rank(latest)
	if r == 3 && strings.EqualFold(status, latest) {
		return Decision{Skip: SkipStatusEnriched}
	}
	return Decision{OutOfOrder: r > 0 && lr > 0 && r < lr}
}

// Apply returns the session after enriching event eventID announcing status, with the outcome
// the API reported (see Apply). The result copies what it keeps of eventID and outcome.
func (s Session) Apply(eventID, status, outcome string, now time.Time) Session {
	next := s
	if latest, _ := s.status(); Rank(status) > 0 && Rank(status) > Rank(latest) {
		next.setTexts(strings.ToUpper(status), true, outcome, outcome != "")
	}
	found, last, n := s.scan(eventID)
	if !found {
		n++
	}
	switch drop := n - MaxEventIDs; {
	case drop > 0:
		next.ids = s.repack(drop, eventID, !found)
	case !found:
		// The common case: one id more, front-coded against the last one.
		var b strings.Builder
		b.Grow(len(s.ids) + entrySize(last, eventID))
		b.WriteString(s.ids)
		writeEntry(&b, last, eventID)
		next.ids = b.String()
	}
	next.updated = now.UnixMilli()
	return next
}

// repack packs the ids of s without the first drop, followed by id when add is set.
func (s Session) repack(drop int, id string, add bool) string {
	p := idPacker{prev: make([]byte, 0, idBufSize)}
	p.Grow(len(s.ids) + len(id) + 2*binary.MaxVarintLen64)
	i := 0
	for r := newIDReader(s.ids); r.next(); i++ {
		if i >= drop {
			p.addBytes(r.id)
		}
	}
	if add {
		p.add(id)
	}
	return p.String()
}

// contains reports whether eventID is among the session's enriched event ids.
func (s Session) contains(eventID string) bool {
	for r := newIDReader(s.ids); r.next(); {
		if string(r.id) == eventID {
			return true
		}
	}
	return false
}

// scan reports whether eventID is among the session's enriched event ids and returns the number
// of ids; when eventID is not among them, also the last id (for front-coding the next one).
func (s Session) scan(eventID string) (found bool, last []byte, n int) {
	r := newIDReader(s.ids)
	for r.next() {
		n++
		if string(r.id) == eventID {
			found = true
		}
	}
	if found {
		return true, nil, n
	}
	return false, r.id, n
}

// status returns LatestStatus; false when it is absent (null).
func (s Session) status() (string, bool) {
	if s.statusCode == codeCustom {
		return s.custom.status, true
	}
	return decodeText(s.statusCode)
}

// outcome returns Outcome; false when it is absent (null).
func (s Session) outcome() (string, bool) {
	if s.outcomeCode == codeCustom {
		return s.custom.outcome, true
	}
	return decodeText(s.outcomeCode)
}

// setTexts sets the status and outcome (has*: present, not null). Texts that are not shared
// constants are copied: they may point into a decoder's buffer.
func (s *Session) setTexts(status string, hasStatus bool, outcome string, hasOutcome bool) {
	s.statusCode, s.outcomeCode, s.custom = encodeText(status, hasStatus), encodeText(outcome, hasOutcome), nil
	if s.statusCode == codeCustom || s.outcomeCode == codeCustom {
		s.custom = &texts{}
		if s.statusCode == codeCustom {
			s.custom.status = strings.Clone(status)
		}
		if s.outcomeCode == codeCustom {
			s.custom.outcome = strings.Clone(outcome)
		}
	}
}

func encodeText(v string, present bool) uint8 {
	if !present {
		return codeAbsent
	}
	for i, c := range shared {
		if v == c {
			return uint8(i + 1)
		}
	}
	return codeCustom
}

func decodeText(code uint8) (string, bool) {
	if code == codeAbsent {
		return "", false
	}
	return shared[code-1], true
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// shared are the statuses Rank knows (as Apply stores them, upper-case) and the normalised
// outcomes of internal/idnow (accepted, rejected, no_outcome).
var shared = [...]string{"CREATED", "RUNNING", "COMPLETED", "ABORTED", "EXPIRED", "ERROR", "accepted", "rejected", "no_outcome"}
