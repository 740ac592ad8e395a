// Package commands is the commands role (`idnow-connector commands`, also part of `run`): a
// consumer group on topics.commands that turns each CreateSessionCommand into one IDnow session
// (POST /flows/{flowId}/{environment}/sessions) and answers with one CommandReply on
// topics.replies, in the same Kafka transaction as the command's offset.
//
// Creating a session is not idempotent at IDnow, so the role never makes two sessions for one
// command id:
//
//   - Before the first create call of a batch, an intent (CommandState with attemptedAt and no
//     reply) is committed to the compacted topics.commands_state. The reply transaction writes
//     the command's final CommandState (with its reply) next to the reply and the offsets.
//   - Every create call carries the command id in the session's metadata (connectorCommandId).
//   - When a call's outcome is unknown (timeout, connection reset, 5xx, an undecodable 2xx), or
//     a command arrives whose intent has no reply (the previous owner died mid-call), the role
//     lists the flow's newest sessions back to the intent's time and uses the session carrying
//     the command id; only when none is found is the session created (again).
//   - A command whose id already has a reply in topics.commands_state (within
//     commands.dedupe_window) is answered again from that reply, without a call.
//
// topics.commands_state is read completely by every member (like a Kafka Streams global
// table) at start and after every partition assignment, before the next batch.
//
// Invalid commands (undecodable bytes, no or two flows, unknown flow, wrong environment, a
// redirectUrl outside commands.redirect_allowlist, a past deadline) are answered CommandFailed
// at once and never retried; nothing halts the group. IDnow calls share the process's one
// IDnow client (one token, idnow.rate_limit) under the role's own cap, commands.rate_limit, so
// a burst of commands can take at most that share and never starve the enricher.
package commands
