// Package enrich is the second half of the pipeline: a consumer group on topics.sessions that
// reads each SessionEvent, asks the IDnow API for the session's current details (and, by policy,
// its data blocks) and writes one EnrichedSession to topics.enriched, or the original record to
// topics.dlq when the event can never be enriched.
//
// # Shape
//
// Enrichment is a ctx-first HandlerFunc wrapped in middleware (Watermill style): Metrics around
// DLQ around Retry around the enrich handler. Each piece lives in its own file with its own
// table tests. The Enricher owns the Kafka side: polling, running the chain with bounded
// parallelism, producing and committing.
//
// # Continuous flow
//
// One loop owns the Kafka client; enrich.concurrency workers enrich. The loop polls ahead while
// earlier events are still being enriched, up to enrich.max_in_flight events polled and not yet
// committed (then it stops polling, and franz-go stops fetching once its buffer is full). Each
// session (partition and key) has a queue: its events are enriched one after the other in log
// order, different sessions in parallel. An event becomes ready for a commit when it and every
// earlier event of its partition are finished; the loop commits the ready events when the oldest
// has waited enrich.commit_interval or enrich.max_batch_records are ready, and the workers keep
// enriching meanwhile. A commit's offsets are exactly one past its last event per partition, so
// it covers exactly the events whose output it writes.
//
// # Delivery
//
// With enrich.delivery exactly_once (the default) every commit is one Kafka transaction through a
// franz-go GroupTransactSession: the EnrichedSession records, the DLQ records and the consumed
// offsets of the ready events commit atomically, or not at all. A GroupTransactSession's End
// would commit every polled offset, including those of events still being enriched; the enricher
// rewrites its TxnOffsetCommit (kgo.PreTxnCommitFnContext) to the ready events' offsets, and the
// session records what was sent as committed. (franz-go's AutoCommitMarks does not change what
// End commits in v1.22.3: End takes the polled offsets.) Events are enriched before their
// transaction begins, so the broker-side transaction spans only produce and commit: API time,
// including retries while IDnow is down, never runs into enrich.transaction_timeout. If the group
// rebalances before the commit, the session aborts the transaction and rewinds every partition to
// the committed offsets; the enricher then drops all its work in flight (its results stay in the
// result cache) and consumes again from there, and the aborted output is invisible to
// read_committed readers, so nothing is written twice.
//
// Consumers of topics.enriched and topics.dlq must read with isolation level read_committed
// (franz-go: kgo.FetchIsolationLevel(kgo.ReadCommitted()); Java: isolation.level=read_committed).
// A read_uncommitted reader also sees the records of aborted transactions, i.e. duplicates.
//
// With enrich.delivery at_least_once the ready events' output is produced, every acknowledgement
// awaited, and only then are their offsets committed: nothing is lost, but a crash or rebalance
// between produce and commit writes the same enrichment again. Consumers key on event.eventId.
// A rebalance drops only the work of the partitions taken away; the others go on.
//
// # Why franz-go v1.21.4 or later
//
// The module pins github.com/twmb/franz-go v1.22.3. v1.21.4 and the releases after it fixed
// GroupTransactSession defects that break exactly-once here (see franz-go's CHANGELOG): a
// SetOffsets seek made by End after an aborted transaction could be undone by a concurrent offset
// load, so records were skipped; End reported a commit when EndTxn answered UNKNOWN_SERVER_ERROR,
// advancing offsets past output that may have been aborted (silent loss); InitProducerID did not
// retry CONCURRENT_TRANSACTIONS when taking over a crashed producer's transaction, which is exactly
// what a restarted enricher does; and a transaction whose every produce failed hung until the
// transaction timeout. v1.21.6 also made an unconfirmed EndTxn fence the producer id so the next
// transaction cannot commit the failed one's records. Do not downgrade below v1.21.4.
//
// # Transactional id and fencing
//
// A transactional producer needs an id that is stable across restarts of the same member, so
// that a restarted process fences its previous incarnation: its InitProducerID bumps the epoch
// and aborts whatever transaction the dead process left open, instead of read_committed readers
// waiting up to enrich.transaction_timeout for it to expire. The id is therefore
// enrich.transactional_id + "-" + enrich.instance_id, and instance_id defaults to the host name
// (the pod name in Kubernetes, stable for a StatefulSet). Since Kafka 2.5 (KIP-447) zombie
// fencing of consumed offsets is done by the consumer group generation, so the id does not need
// to map to partitions; it only has to be unique per live member: two live processes with the
// same id fence each other, and the fenced one stops with an error naming enrich.instance_id.
//
// # Failures
//
// Retryable failures (IDnow 429, 5xx, timeouts, network errors, a rejected token, an unreachable
// schema registry) are retried with capped exponential backoff for as long as they last: the
// event and its partition's commits stop, lag grows and idnow_connector_enrich_blocked is 1.
// Permanent failures (session 404 or 403, other 4xx, an undecodable event or API response, an
// output that does not fit the schema) send the original record to topics.dlq with headers naming
// the error class, the message, the source topic, partition, offset and the attempts made.
// Nothing is dropped silently. Kafka failures restart the client with backoff; the uncommitted
// events are consumed again.
//
// # One event never blocks the others
//
// At each client start the enricher reads the output topics' max.message.bytes (DescribeConfigs;
// else the broker's message.max.bytes; else Kafka's default), bounded by enrich.max_record_bytes,
// and hands it to franz-go as the per-topic batch limit. An EnrichedSession over the limit is
// shortened in a fixed order and marked in enrichment.truncation: first every data block's
// content JSON is dropped (content_dropped; typed fields, block metadata and file references
// stay), then the data blocks and file references (metadata_only; the session details stay).
// When even that does not fit, the original event goes to topics.dlq with class
// record_too_large. idnow_connector_enrich_records_truncated_total{level} counts the shortened
// records.
//
// A produce error that is permanent for one record (MESSAGE_TOO_LARGE, INVALID_RECORD,
// CORRUPT_MESSAGE, POLICY_VIOLATION) dead-letters that record (record_too_large or
// output_rejected); under exactly_once the transaction is aborted and the batch comes again with
// the DLQ record in place. The broker answers these for a whole partition batch, so records
// refused together with the same class are produced alone on the next attempt and only a record
// refused on its own is dead-lettered: the healthy records that shared its batch, or a batch too
// large for a limit lowered since start-up, are not. Results are cached per record position until their batch commits, also across
// rebalances and client restarts: a batch consumed again never asks the IDnow API again. Only
// transient or whole-client errors are retried as before.
//
// # Progress, lag and hanging transactions
//
// Every enrich.lag_interval the enricher reads, with kadm on its own client, the end offsets,
// last stable offsets and the group's committed offsets. Consumer lag is end offset minus
// committed offset on this member's partitions, as kafka-consumer-groups.sh reports it (a
// partition whose last offset is a transaction marker shows 1, there as here). The watchdog sets
// idnow_connector_enrich_stalled and fails readiness when input is waiting (polled records not
// committed, or lag) and neither a commit nor a handled event happened for enrich.stall_after.
// A batch slowed by idnow.rate_limit still progresses event by event. A partition whose group
// offsets keep answering UNSTABLE_OFFSET_COMMIT, or whose last stable offset stays behind its end
// offset (an open transaction read_committed readers cannot pass), for longer than
// enrich.transaction_timeout is a hanging transaction: logged at ERROR ("hanging transaction"
// with the topic/partition list), counted in idnow_connector_enrich_hanging_transactions, and it
// sets idnow_connector_enrich_blocked and fails readiness until it is resolved (idnow-connector
// doctor tells a transaction its coordinator forgot, which --abort ends, from one still held).
//
// # Pipeline state
//
// With Deps.State the enricher keeps what it enriched per session in the compacted topic
// topics.state (internal/state), co-partitioned with topics.sessions. Before the first events of
// a newly assigned partition it restores that partition of the state into memory (read
// committed, to the end); it forgets it on revoke and again when the partition is newly
// assigned, and the store does not install a partition revoked while it was read (it is read
// again with its next records), so a partition handed back never keeps the state from before
// its other owner's writes. Each event is checked against its session's
// state before the API is called: an event id already enriched, or a terminal status already
// enriched under another id, is skipped (counted in idnow_connector_enrich_events_skipped_total
// when the event commits, its offset committed like any other); an event whose status ranks
// below the latest enriched one is enriched with outOfOrder set and leaves the latest status
// alone. The session's new state is produced with the EnrichedSession, pinned to the input's
// partition, in the event's transaction, so output and state commit or abort together; the
// in-memory state advances only when the event committed (until then the session's queue in
// the flow carries it to the session's next events).
package enrich
