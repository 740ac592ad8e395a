package schemas

import (
	_ "embed"
	"time"
)

//go:embed session_state.avsc
var sessionStateAVSC string

// SessionStateName is the full name of the SessionState schema.
const SessionStateName = "io.idnow.connector.v1.SessionState"

var sessionState = mustSchema(sessionStateAVSC, SessionStateName)

// SessionStateSchema returns the current SessionState schema (the records of topics.state).
func SessionStateSchema() Schema { return sessionState }

// Values of SessionEvent.Origin and TriggeringEvent.Origin.
const (
	// OriginWebhook marks an event the ingress received from IDnow.
	OriginWebhook = "webhook"
	// OriginReconciliation marks an event the reconciler or backfill wrote for a session status
	// that no enriched event brought.
	OriginReconciliation = "reconciliation"
)

// DeliveryReconciliation is SessionEvent.DeliveryVariant of reconciliation events: nothing was
// delivered, the status was read from IDnow's list-sessions endpoint.
const DeliveryReconciliation = "reconciliation"

// SessionState is what the pipeline has enriched for one session (schemas/session_state.avsc),
// the value of the compacted topics.state keyed by session id.
type SessionState struct {
	SessionID        string    `avro:"sessionId" json:"sessionId"`
	LatestStatus     *string   `avro:"latestStatus" json:"latestStatus,omitempty"`
	Outcome          *string   `avro:"outcome" json:"outcome,omitempty"`
	EnrichedEventIDs []string  `avro:"enrichedEventIds" json:"enrichedEventIds"`
	UpdatedAt        time.Time `avro:"updatedAt" json:"updatedAt"`
}
