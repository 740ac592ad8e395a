// Package reconcile repairs what webhooks missed. A pass lists the sessions of every flow from
// the IDnow API, newest first, back to a point in time, compares each session's status with the
// pipeline state (topics.state, read in full, read_committed) and, for every session whose
// current status no enriched event brought, writes a synthetic SessionEvent (origin
// reconciliation, a deterministic event id from session id and status) to topics.sessions. The
// enricher then enriches it like any event, and skips it when it was enriched already, so two
// passes, two reconcilers or a pass and a late webhook never double a status.
//
// Reconciler runs a pass every reconcile.interval while it is the leader: the member of the
// consumer group reconcile.group that owns partition 0 of topics.state. Kafka's group protocol
// elects it, and hands the role to another replica when the leader dies. Pass is also what the
// backfill command runs once over an explicit window.
package reconcile
