package idnowsim

import (
	"fmt"
	"maps"
	"strings"
	"time"
)

// Session statuses, as IDnow names them. The last four are terminal and final.
const (
	StatusCreated   = "CREATED"
	StatusRunning   = "RUNNING"
	StatusCompleted = "COMPLETED"
	StatusAborted   = "ABORTED"
	StatusExpired   = "EXPIRED"
	StatusError     = "ERROR"
)

// Outcomes, normalised to IDnow's lower-case spelling; the API may render them upper-case.
const (
	OutcomeAccepted  = "accepted"
	OutcomeRejected  = "rejected"
	OutcomeNoOutcome = "NO_OUTCOME"
)

// Origins of a session.
const (
	OriginAPI       = "api"
	OriginGenerator = "generator"
)

// legalTransitions is the lifecycle the simulator follows; tests assert every session obeys it.
var legalTransitions = map[string][]string{
	"":            {StatusCreated},
	StatusCreated: {StatusRunning, StatusExpired},
	StatusRunning: {StatusCompleted, StatusAborted, StatusExpired, StatusError},
}

// LegalTransition reports whether a session may move from one status to another ("" is the
// state before creation).
func LegalTransition(from, to string) bool {
	for _, s := range legalTransitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// IsTerminal reports whether status is one of the four final statuses.
func IsTerminal(status string) bool {
	switch status {
	case StatusCompleted, StatusAborted, StatusExpired, StatusError:
		return true
	}
	return false
}

// eventNames maps each status reached to the webhook event announcing it.
var eventNames = map[string]string{
	StatusCreated:   "session.created",
	StatusRunning:   "session.started",
	StatusCompleted: "session.completed",
	StatusAborted:   "session.aborted",
	StatusExpired:   "session.expired",
	StatusError:     "session.error",
}

// eventStepCompleted is emitted per finished step when Config.StepEvents is set; it is not in
// IDnow's documented list on purpose, so receivers' pass-through of unknown names gets exercised.
const eventStepCompleted = "session.step.completed"

// stepDef is one step of the simulated flows; every flow runs the same four.
type stepDef struct {
	id, typ, name, block string
}

var flowSteps = []stepDef{
	{id: "basic-identity", typ: "BASIC_IDENTITY", name: "Basic identity", block: "basicIdentity"},
	{id: "document-capture", typ: "DOCUMENT_CAPTURE", name: "Document capture", block: "documentData"},
	{id: "document-verification", typ: "DOCUMENT_VERIFICATION", name: "Document verification", block: "documentVerification"},
	{id: "decision", typ: "DECISION", name: "Decision", block: "outcomeStatus"},
}

// oldBlockTypes is the PascalCase type older builds use in the {"datablocks":[...]} shape.
var oldBlockTypes = map[string]string{
	"basicIdentity":        "BasicIdentity",
	"documentData":         "DocumentData",
	"documentVerification": "DocumentVerification",
	"outcomeStatus":        "OutcomeStatus",
}

// flow is one entry of the flow catalogue.
type flow struct {
	ID          string
	Name        string
	Description string
	Version     int // 0 = absent, as some builds omit it
	Environment string
}

// flowCatalogue is the fixed set of flows each environment offers; staging runs newer versions.
func flowCatalogue(env string) []flow {
	base := []flow{
		{ID: "flw-basic-identity", Name: "Basic identity verification", Description: "Document and identity data check", Version: 3},
		{ID: "flw-auto-ident", Name: "AutoIdent", Description: "Automated document and selfie verification", Version: 7},
		{ID: "flw-instant-signature", Name: "Instant signature issuance", Description: "QES signing after identification", Version: 2},
		{ID: "flw-video-ident", Name: "VideoIdent", Description: "Agent-assisted video identification"},
		{ID: "flw-bank-account", Name: "Bank account check", Description: "Account ownership verification", Version: 1},
		{ID: "flw-age-verification", Name: "Age verification", Description: "Minimum age check", Version: 4},
		{ID: "flw-reusable-id", Name: "Reusable identity", Description: "Reuse of a previously verified identity"},
	}
	for i := range base {
		base[i].Environment = env
		if env == EnvStaging && base[i].Version > 0 {
			base[i].Version++
		}
	}
	return base
}

func findFlow(env, id string) (flow, bool) {
	for _, f := range flowCatalogue(env) {
		if f.ID == id {
			return f, true
		}
	}
	return flow{}, false
}

// plan is the fate of a session, drawn once when it is created.
type plan struct {
	final             string
	outcome           string
	steps             int  // steps finished while RUNNING before the final transition
	expireBeforeStart bool // EXPIRED straight from CREATED
}

// drawPlan picks a realistic fate: most sessions complete and are accepted.
func drawPlan(g *rng) plan {
	x := g.Float64()
	switch {
	case x < 0.70:
		return plan{final: StatusCompleted, outcome: OutcomeAccepted, steps: 3}
	case x < 0.82:
		return plan{final: StatusCompleted, outcome: OutcomeRejected, steps: 3}
	case x < 0.89:
		return plan{final: StatusAborted, steps: g.IntN(3)}
	case x < 0.95:
		if g.Chance(0.5) {
			return plan{final: StatusExpired, expireBeforeStart: true}
		}
		return plan{final: StatusExpired, steps: g.IntN(3)}
	default:
		return plan{final: StatusError, steps: 1 + g.IntN(3)}
	}
}

type identity struct {
	givenName, familyName, birthDate string
}

type dataBlock struct {
	id        string
	typ       string // camelCase
	stepID    string
	clock     int
	createdAt time.Time
	deleted   bool
	content   map[string]any
}

type lastStep struct {
	step    stepDef
	verdict string
}

// event is one webhook event; its deliveries are attempts with their own eventDeliverId.
type event struct {
	id, name  string
	seq       int
	createdAt time.Time
	env       string
	flowID    string
	sessionID string
	status    string
	last      *lastStep
	variant   string

	deliverIDs []string
	delivered  bool
	givenUp    bool
	dropped    bool // never attempted (webhook_drop_rate or a delivery pause)
}

// session is the simulator's internal state of one IDnow session; guarded by Simulator.mu.
type session struct {
	rng         *rng // the session's own source: its fate does not depend on other sessions
	id          string
	flowID      string
	flowVersion int
	env         string
	origin      string
	status      string
	outcome     string
	subjectID   string
	metadata    map[string]string
	redirectURL string
	state       string
	createdAt   time.Time
	startedAt   time.Time
	updatedAt   time.Time
	completedAt time.Time
	expiresAt   time.Time
	last        *lastStep
	blocks      []*dataBlock
	files       []string
	// missing are the ids among files that answer 404.
	missing     []string
	clock       int
	seq         int
	transitions []string
	events      []*event
	ident       identity
	plan        plan

	shape, lastStepVariant, outcomeCase string
	// padding is how many small padding blocks the data-block answer appends
	// (simulator.huge_datablocks); 0 for ordinary sessions.
	padding int
}

// SessionSnapshot is a copy of a session's state for tests and tooling to assert against.
type SessionSnapshot struct {
	SessionID   string
	FlowID      string
	FlowVersion int
	Environment string
	Origin      string
	Status      string
	// Outcome is normalised: accepted, rejected or NO_OUTCOME.
	Outcome   string
	SubjectID string
	// Metadata is the session metadata as created (a copy); the connector's commands role puts
	// its command id under connectorCommandId.
	Metadata    map[string]string
	CreatedAt   time.Time
	StartedAt   time.Time
	UpdatedAt   time.Time
	CompletedAt time.Time
	// Transitions lists every status reached, in order, starting with CREATED.
	Transitions []string
	// DataBlockTypes lists the camelCase types of the data blocks present, in creation order.
	DataBlockTypes []string
	// Files lists the vault entry ids referenced by the session's data blocks.
	Files []string
	// MissingFiles lists the vault entry ids among Files whose files endpoint answers 404
	// (simulator.faults.file_missing_rate).
	MissingFiles []string
	// Events lists the webhook events emitted for the session, in emission order.
	Events []EventSnapshot
	// DataBlocksShape, LastStepVariant and OutcomeCase are the variants this session is served in.
	DataBlocksShape string
	LastStepVariant string
	OutcomeCase     string
	// PaddingBlocks is how many padding blocks its data-block answer appends
	// (simulator.huge_datablocks); they are not listed in DataBlockTypes.
	PaddingBlocks int
}

// EventSnapshot is a copy of one webhook event's state.
type EventSnapshot struct {
	EventID       string
	EventName     string
	EventSequence int
	SessionStatus string
	// Variant is the delivery variant (jwt or header).
	Variant string
	// DeliverIDs lists the eventDeliverId of every attempt made so far.
	DeliverIDs []string
	Delivered  bool
	GivenUp    bool
	// Dropped is true when the webhook was never attempted (faults.webhook_drop_rate or
	// PauseWebhooks).
	Dropped bool
}

func (s *session) snapshot() SessionSnapshot {
	out := SessionSnapshot{
		SessionID: s.id, FlowID: s.flowID, FlowVersion: s.flowVersion, Environment: s.env,
		Origin: s.origin, Status: s.status, Outcome: s.normalisedOutcome(), SubjectID: s.subjectID,
		CreatedAt: s.createdAt, StartedAt: s.startedAt, UpdatedAt: s.updatedAt, CompletedAt: s.completedAt,
		Metadata:        maps.Clone(s.metadata),
		Transitions:     append([]string(nil), s.transitions...),
		Files:           append([]string(nil), s.files...),
		MissingFiles:    append([]string(nil), s.missing...),
		DataBlocksShape: s.shape, LastStepVariant: s.lastStepVariant, OutcomeCase: s.outcomeCase,
		PaddingBlocks: s.padding,
	}
	for _, b := range s.blocks {
		out.DataBlockTypes = append(out.DataBlockTypes, b.typ)
	}
	for _, e := range s.events {
		out.Events = append(out.Events, EventSnapshot{
			EventID: e.id, EventName: e.name, EventSequence: e.seq, SessionStatus: e.status,
			Variant: e.variant, DeliverIDs: append([]string(nil), e.deliverIDs...),
			Delivered: e.delivered, GivenUp: e.givenUp, Dropped: e.dropped,
		})
	}
	return out
}

func (s *session) normalisedOutcome() string {
	if s.status == StatusCompleted && s.outcome != "" {
		return s.outcome
	}
	return OutcomeNoOutcome
}

// renderedOutcome applies the session's outcome-case variant.
func (s *session) renderedOutcome() string {
	o := s.normalisedOutcome()
	if o != OutcomeNoOutcome && s.outcomeCase == OutcomeUpper {
		return strings.ToUpper(o)
	}
	return o
}

// Fake personal data: obviously synthetic, drawn from the seeded source.
var (
	givenNames  = []string{"Anna", "Lukas", "Marie", "Jonas", "Sofia", "Elias", "Clara", "Noah", "Lea", "Felix"}
	familyNames = []string{"Muster", "Beispiel", "Testfrau", "Probe", "Schmidt", "Dupont", "Rossi", "Novak"}
	countries   = []string{"DEU", "FRA", "AUT", "ITA", "ESP", "NLD"}
	docTypes    = []string{"ID_CARD", "PASSPORT", "DRIVING_LICENSE"}
	issues      = []string{"GLARE_DETECTED", "DOCUMENT_EXPIRED", "MRZ_MISMATCH", "PHOTO_TAMPERING_SUSPECTED"}
)

func drawIdentity(g *rng) identity {
	return identity{
		givenName:  pick(g, givenNames),
		familyName: pick(g, familyNames),
		birthDate:  fmt.Sprintf("%04d-%02d-%02d", 1950+g.IntN(55), 1+g.IntN(12), 1+g.IntN(28)),
	}
}

func vaultRef(id string) map[string]any { return map[string]any{"$ref": "vault", "$id": id} }

const isoMillis = "2006-01-02T15:04:05.000Z07:00"

func isoTime(t time.Time) string { return t.UTC().Format(isoMillis) }
