package state

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// ReconcileEventID is the event id of the synthetic SessionEvent the reconciler writes for a
// session's status: "rec-" and the first 32 hex digits of SHA-256(sessionId "|" STATUS). It is
// deterministic, so two reconcilers, two passes or a pass and a backfill write the same id and
// the enricher enriches it once. The status is upper-cased: IDnow's case is not reliable.
func ReconcileEventID(sessionID, status string) string {
	sum := sha256.Sum256([]byte(sessionID + "|" + strings.ToUpper(status)))
	return "rec-" + hex.EncodeToString(sum[:])[:32]
}
