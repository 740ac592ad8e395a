package state

import (
	"strings"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// Session is one session's state as the enricher holds it in memory: what a
// schemas.SessionState says, without the session id (the Store's key), in a fraction of the
// memory. A SessionState keeps each enriched event id as a string of its own behind a slice (a
// 48-byte allocation and a 16-byte header per id of 40 bytes); a Session packs all of them into
// one string (packedIDs), keeps known statuses and outcomes as shared constants and the time as
// milliseconds. A Session owns all its memory: nothing in it refers to the strings it was built
// from, so holding it never pins a decoder's buffers. The zero value is a session with nothing
// enriched. Sessions are values and never change; Apply returns a new one.
type Session struct {
	ids        string // the enriched event ids, oldest first, packed by idPacker
	status     string // LatestStatus when hasStatus, else ""
	outcome    string // Outcome when hasOutcome, else ""
	updated    int64  // UpdatedAt in Unix milliseconds (the record's precision)
	n          int    // number of ids in ids
	hasStatus  bool
	hasOutcome bool
}

// FromState returns the Session holding what st says (nil: nothing enriched). It keeps every id
// of st, also beyond MaxEventIDs (Apply bounds them), so a restored record is written back
// unchanged.
func FromState(st *schemas.SessionState) Session {
	if st == nil {
		return Session{}
	}
	s := Session{updated: st.UpdatedAt.UnixMilli(), n: len(st.EnrichedEventIDs)}
	if st.LatestStatus != nil {
		s.status, s.hasStatus = own(*st.LatestStatus), true
	}
	if st.Outcome != nil {
		s.outcome, s.hasOutcome = own(*st.Outcome), true
	}
	var p idPacker
	for _, id := range st.EnrichedEventIDs {
		p.add(id)
	}
	s.ids = p.String()
	return s
}

// State returns the SessionState record of session sessionID. Its event ids are substrings of
// one allocation, so writing a record per event does not allocate a string per id.
func (s Session) State(sessionID string) *schemas.SessionState {
	st := &schemas.SessionState{SessionID: sessionID, EnrichedEventIDs: make([]string, 0, s.n), UpdatedAt: time.UnixMilli(s.updated).UTC()}
	if s.hasStatus {
		v := s.status
		st.LatestStatus = &v
	}
	if s.hasOutcome {
		v := s.outcome
		st.Outcome = &v
	}
	var all strings.Builder
	all.Grow(s.textLen())
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

// textLen is the length of all ids together.
func (s Session) textLen() int {
	n := 0
	for r := newIDReader(s.ids); r.next(); {
		n += len(r.id)
	}
	return n
}

// Decide judges an event of the session before it is enriched (see Decide).
func (s Session) Decide(eventID, status string) Decision {
	if s.contains(eventID) {
		return Decision{Skip: SkipAlreadyEnriched}
	}
	r, lr := Rank(status), Rank(s.status)
	if r == 3 && strings.EqualFold(status, s.status) {
		return Decision{Skip: SkipStatusEnriched}
	}
	return Decision{OutOfOrder: r > 0 && lr > 0 && r < lr}
}

// Apply returns the session after enriching event eventID announcing status, with the outcome
// the API reported (see Apply). The result copies what it keeps of eventID and outcome.
func (s Session) Apply(eventID, status, outcome string, now time.Time) Session {
	next := s
	if r := Rank(status); r > 0 && r > Rank(s.status) {
		next.status, next.hasStatus = own(strings.ToUpper(status)), true
		next.outcome, next.hasOutcome = "", false
		if outcome != "" {
			next.outcome, next.hasOutcome = own(outcome), true
		}
	}
	found, last := s.scan(eventID)
	if !found {
		next.n++
	}
	switch drop := next.n - MaxEventIDs; {
	case drop > 0:
		next.ids, next.n = s.repack(drop, eventID, !found), MaxEventIDs
	case !found:
		// The common case: one id more, front-coded against the last one.
		p := idPacker{prev: last}
		p.Grow(len(s.ids) + len(eventID) + 2*binaryMaxVarint)
		p.WriteString(s.ids)
		p.add(eventID)
		next.ids = p.String()
	}
	next.updated = now.UnixMilli()
	return next
}

// repack packs the ids of s without the first drop, followed by id when add is set.
func (s Session) repack(drop int, id string, add bool) string {
	p := idPacker{prev: make([]byte, 0, idBufSize)}
	p.Grow(len(s.ids) + len(id) + 2*binaryMaxVarint)
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
	found, _ := s.scan(eventID)
	return found
}

// scan reports whether eventID is among the session's enriched event ids and, when it is not,
// returns the last id (for front-coding the next one).
func (s Session) scan(eventID string) (found bool, last []byte) {
	r := newIDReader(s.ids)
	for r.next() {
		if string(r.id) == eventID {
			return true, nil
		}
	}
	return false, r.id
}

// own returns v as a string the caller may keep: a shared constant for the statuses and
// normalised outcomes every session repeats, a copy otherwise (v may point into a decoder's
// buffer).
func own(v string) string {
	for _, c := range shared {
		if v == c {
			return c
		}
	}
	return strings.Clone(v)
}

// shared are the statuses Rank knows (as Apply stores them, upper-case) and the normalised
// outcomes of internal/idnow (accepted, rejected, no_outcome).
var shared = [...]string{"CREATED", "RUNNING", "COMPLETED", "ABORTED", "EXPIRED", "ERROR", "accepted", "rejected", "no_outcome"}
