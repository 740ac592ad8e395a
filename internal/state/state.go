// Package state is the pipeline state held in Kafka, as Kafka Streams keeps it: a compacted
// topic (topics.state) keyed by session id, co-partitioned with topics.sessions, whose records
// (schemas.SessionState) say what the enricher has enriched per session. The enricher writes a
// record in the same transaction as each EnrichedSession and restores the partitions it owns
// into memory before processing them; the reconciler reads the whole topic to find sessions
// whose current status no enriched event brought.
package state

import (
	"slices"
	"strings"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// MaxEventIDs bounds SessionState.EnrichedEventIDs. IDnow sends a handful of events per session
// (created, started, a few steps, one terminal), so 64 covers every redelivery of a session's
// events while keeping a state record below a kilobyte.
const MaxEventIDs = 64

// Reasons an event is skipped, the reason label of idnow_connector_enrich_events_skipped_total.
const (
	// SkipAlreadyEnriched: the event id is among the session's enriched event ids (a redelivery,
	// a second ingress replica, a replay, or a reconciliation event written twice).
	SkipAlreadyEnriched = "already_enriched"
	// SkipStatusEnriched: the event announces the terminal status the session already has
	// enriched under another event id (a real webhook arriving after the reconciler repaired
	// the session, or the other way round). Terminal statuses are final, so a second record
	// would say nothing new.
	SkipStatusEnriched = "status_already_enriched"
)

// Rank orders session statuses for the out-of-order check: CREATED (1) < RUNNING (2) < the
// terminal statuses COMPLETED, ABORTED, EXPIRED, ERROR (3). Unknown or empty statuses rank 0 and
// are never compared: IDnow may add statuses, and an unknown one must pass through unchanged.
func Rank(status string) int {
	switch strings.ToUpper(status) {
	case "CREATED":
		return 1
	case "RUNNING":
		return 2
	case "COMPLETED", "ABORTED", "EXPIRED", "ERROR":
		return 3
	}
	return 0
}

// Decision is what the state says about one event before it is enriched.
type Decision struct {
	// Skip is a Skip* reason when the event must not be enriched, empty otherwise.
	Skip string
	// OutOfOrder is true when the event's status ranks below the session's latest enriched
	// status: it is enriched and flagged, and does not change the latest status.
	OutOfOrder bool
}

// Decide judges an event of a session whose state is prev (nil: nothing enriched yet): an event
// id among the enriched ones is skipped, so is a terminal status equal to the latest one under
// another event id; a known status ranking below the latest one is out of order.
func Decide(prev *schemas.SessionState, eventID, status string) Decision {
	return FromState(prev).Decide(eventID, status)
}

// Apply returns the state after enriching event eventID announcing status, with the outcome the
// API reported; prev is not modified. An out-of-order event only adds its id. A status of equal
// rank does not replace the latest one either: the first terminal status is final. The ids are
// bounded to the last MaxEventIDs; UpdatedAt is now at millisecond precision, in UTC.
func Apply(prev *schemas.SessionState, sessionID, eventID, status, outcome string, now time.Time) *schemas.SessionState {
	return FromState(prev).Apply(eventID, status, outcome, now).State(sessionID)
}

// Complete reports whether a session listed by the API with status has that status enriched
// already: the latest enriched status ranks at least as high (a terminal status is final, so
// any enriched terminal status covers the listed one), or the reconciliation event for exactly
// this status was enriched. Unknown statuses are complete when the reconciliation event for them
// was enriched or the session is already terminal.
func Complete(st *schemas.SessionState, status string) bool {
	if st == nil {
		return false
	}
	if slices.Contains(st.EnrichedEventIDs, ReconcileEventID(st.SessionID, status)) {
		return true
	}
	latest := ""
	if st.LatestStatus != nil {
		latest = *st.LatestStatus
	}
	r, lr := Rank(status), Rank(latest)
	if r == 0 {
		return lr == 3
	}
	return lr >= r
}
