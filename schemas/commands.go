package schemas

import (
	_ "embed"
	"time"
)

//go:embed create_session_command.avsc
var createSessionCommandAVSC string

//go:embed command_reply.avsc
var commandReplyAVSC string

//go:embed command_state.avsc
var commandStateAVSC string

// Full names of the command schemas.
const (
	CreateSessionCommandName = "io.idnow.connector.v1.CreateSessionCommand"
	CommandReplyName         = "io.idnow.connector.v1.CommandReply"
	CommandStateName         = "io.idnow.connector.v1.CommandState"
)

var (
	createSessionCommand = mustSchema(createSessionCommandAVSC, CreateSessionCommandName)
	commandReply         = mustSchema(commandReplyAVSC, CommandReplyName)
	commandState         = mustSchema(commandStateAVSC, CommandStateName)
)

// CreateSessionCommandSchema returns the current CreateSessionCommand schema (topics.commands).
func CreateSessionCommandSchema() Schema { return createSessionCommand }

// CommandReplySchema returns the current CommandReply schema (topics.replies).
func CommandReplySchema() Schema { return commandReply }

// CommandStateSchema returns the current CommandState schema (topics.commands_state).
func CommandStateSchema() Schema { return commandState }

// Values of CommandReply.Outcome.
const (
	OutcomeCreated = "created"
	OutcomeFailed  = "failed"
)

// Reason classes of CommandFailed.Reason. The set is bounded (they are also metric labels).
const (
	ReasonMalformed           = "malformed"
	ReasonUnknownFlow         = "unknown_flow"
	ReasonAmbiguousFlowName   = "ambiguous_flow_name"
	ReasonEnvironmentMismatch = "environment_mismatch"
	ReasonRedirectNotAllowed  = "redirect_not_allowed"
	ReasonDeadlinePassed      = "deadline_passed"
	ReasonRejected            = "rejected"
	ReasonUnavailable         = "unavailable"
)

// MetadataCommandID is the session metadata key the connector sets to the command id, so that a
// session created by a call whose answer was lost can be found again. Callers may not set it.
const MetadataCommandID = "connectorCommandId"

// CreateSessionCommand asks the commands role to create one IDnow session
// (schemas/create_session_command.avsc).
type CreateSessionCommand struct {
	CommandID   string            `avro:"commandId" json:"commandId"`
	FlowID      *string           `avro:"flowId" json:"flowId,omitempty"`
	FlowName    *string           `avro:"flowName" json:"flowName,omitempty"`
	Environment *string           `avro:"environment" json:"environment,omitempty"`
	Input       map[string]string `avro:"input" json:"input"`
	Metadata    map[string]string `avro:"metadata" json:"metadata"`
	RedirectURL *string           `avro:"redirectUrl" json:"redirectUrl,omitempty"`
	State       *string           `avro:"state" json:"state,omitempty"`
	Deadline    *time.Time        `avro:"deadline" json:"deadline,omitempty"`
}

// CommandReply is the one answer to a command (schemas/command_reply.avsc).
type CommandReply struct {
	CommandID string          `avro:"commandId" json:"commandId"`
	Outcome   string          `avro:"outcome" json:"outcome"`
	Created   *SessionCreated `avro:"created" json:"created,omitempty"`
	Failed    *CommandFailed  `avro:"failed" json:"failed,omitempty"`
	RepliedAt time.Time       `avro:"repliedAt" json:"repliedAt"`
	Replayed  bool            `avro:"replayed" json:"replayed"`
}

// SessionCreated is the session created for a command.
type SessionCreated struct {
	SessionID   string     `avro:"sessionId" json:"sessionId"`
	FlowID      string     `avro:"flowId" json:"flowId"`
	FlowVersion *string    `avro:"flowVersion" json:"flowVersion,omitempty"`
	Environment string     `avro:"environment" json:"environment"`
	Status      string     `avro:"status" json:"status"`
	PlayerURL   *string    `avro:"playerUrl" json:"playerUrl,omitempty"`
	SDKToken    *string    `avro:"sdkToken" json:"sdkToken,omitempty"`
	CreatedAt   *time.Time `avro:"createdAt" json:"createdAt,omitempty"`
	ExpiresAt   *time.Time `avro:"expiresAt" json:"expiresAt,omitempty"`
	Recovered   bool       `avro:"recovered" json:"recovered"`
}

// CommandFailed says why no session was created.
type CommandFailed struct {
	Reason  string `avro:"reason" json:"reason"`
	Message string `avro:"message" json:"message"`
}

// CommandState is the commands role's record of one command id (schemas/command_state.avsc).
type CommandState struct {
	CommandID   string        `avro:"commandId" json:"commandId"`
	FlowID      *string       `avro:"flowId" json:"flowId,omitempty"`
	AttemptedAt *time.Time    `avro:"attemptedAt" json:"attemptedAt,omitempty"`
	Reply       *CommandReply `avro:"reply" json:"reply,omitempty"`
	UpdatedAt   time.Time     `avro:"updatedAt" json:"updatedAt"`
}
