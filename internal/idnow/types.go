package idnow

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// SessionStatus is a session's lifecycle state. Unknown values are passed through unchanged.
type SessionStatus string

// Documented session statuses.
const (
	StatusCreated   SessionStatus = "CREATED"
	StatusRunning   SessionStatus = "RUNNING"
	StatusCompleted SessionStatus = "COMPLETED"
	StatusAborted   SessionStatus = "ABORTED"
	StatusExpired   SessionStatus = "EXPIRED"
	StatusError     SessionStatus = "ERROR"
)

// IsTerminal reports whether the status is final (COMPLETED, ABORTED, EXPIRED, ERROR).
// Unknown statuses are non-terminal, as the reference requires, so nothing is finalised early.
func (s SessionStatus) IsTerminal() bool {
	switch SessionStatus(strings.ToUpper(string(s))) {
	case StatusCompleted, StatusAborted, StatusExpired, StatusError:
		return true
	}
	return false
}

// Normalised outcomes returned by Session.NormalizedOutcome.
const (
	OutcomeAccepted  = "accepted"
	OutcomeRejected  = "rejected"
	OutcomeNoOutcome = "no_outcome"
)

// NormalizeOutcome lower-cases an outcome and writes separators as underscores, so
// "ACCEPTED", "accepted" and "No-Outcome" compare equal. Unknown values pass through normalised.
func NormalizeOutcome(raw string) string {
	return outcomeSeparators.Replace(strings.ToLower(strings.TrimSpace(raw)))
}

// outcomeSeparators is built once: a Replacer is safe for concurrent use, and building one
// per call showed in the enricher's profile.
var outcomeSeparators = strings.NewReplacer("-", "_", " ", "_")

// Flow is one published flow of the client's environment.
type Flow struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Version is text because builds disagree on number versus string; empty when absent.
	Version     string `json:"version,omitempty"`
	Environment string `json:"environment,omitempty"`
}

// UnmarshalJSON tolerates a numeric or missing version and the alternative key flowId.
func (f *Flow) UnmarshalJSON(b []byte) error {
	var w struct {
		ID          string     `json:"id"`
		FlowID      string     `json:"flowId"`
		Name        flexString `json:"name"`
		Description flexString `json:"description"`
		Version     flexString `json:"version"`
		Environment string     `json:"environment"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*f = Flow{ID: firstNonEmpty(w.ID, w.FlowID), Name: string(w.Name), Description: string(w.Description), Version: string(w.Version), Environment: w.Environment}
	return nil
}

// LastStep is the last step a session went through. Builds send either
// {stepId, stepDescription, verdict} or {stepName, stepType, verdict}; both land here.
type LastStep struct {
	StepID          string `json:"stepId,omitempty"`
	StepDescription string `json:"stepDescription,omitempty"`
	StepName        string `json:"stepName,omitempty"`
	StepType        string `json:"stepType,omitempty"`
	// Verdict is the verdict text; an object verdict contributes its "status" field.
	Verdict string `json:"verdict,omitempty"`
}

// UnmarshalJSON accepts both documented variants and a verdict given as text or object.
func (l *LastStep) UnmarshalJSON(b []byte) error {
	var w lastStepWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*l = w.lastStep()
	return nil
}

// lastStepWire is both documented lastStep variants as sent.
type lastStepWire struct {
	StepID          flexString      `json:"stepId"`
	StepDescription flexString      `json:"stepDescription"`
	StepName        flexString      `json:"stepName"`
	StepType        flexString      `json:"stepType"`
	Verdict         json.RawMessage `json:"verdict"`
}

func (w *lastStepWire) lastStep() LastStep {
	return LastStep{StepID: string(w.StepID), StepDescription: string(w.StepDescription), StepName: string(w.StepName), StepType: string(w.StepType), Verdict: verdictText(w.Verdict)}
}

func verdictText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	if raw[0] != '{' {
		var s flexString
		if json.Unmarshal(raw, &s) == nil {
			return string(s)
		}
		return ""
	}
	var obj struct {
		Status flexString `json:"status"`
		Result flexString `json:"result"`
	}
	if json.Unmarshal(raw, &obj) == nil && firstNonEmpty(string(obj.Status), string(obj.Result)) != "" {
		return firstNonEmpty(string(obj.Status), string(obj.Result))
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) == nil {
		return buf.String()
	}
	return ""
}

// Session is a session's details as returned by GET /{env}/sessions/{id}.
type Session struct {
	SessionID   string        `json:"sessionId"`
	FlowID      string        `json:"flowId,omitempty"`
	FlowVersion string        `json:"flowVersion,omitempty"`
	Environment string        `json:"environment,omitempty"`
	Status      SessionStatus `json:"sessionStatus"`
	// SubjectID comes from the top-level subjectId, else from metadata.subjectId.
	SubjectID string `json:"subjectId,omitempty"`
	// Outcome is the raw outcome as sent; use NormalizedOutcome to compare.
	Outcome     string     `json:"outcome,omitempty"`
	CreatedAt   time.Time  `json:"createdAt,omitzero"`
	StartedAt   *time.Time `json:"startedAt,omitempty"`
	UpdatedAt   time.Time  `json:"updatedAt,omitzero"`
	CompletedAt *time.Time `json:"completedAt,omitempty"`
	ExpiresAt   time.Time  `json:"expiresAt,omitzero"`
	RedirectURL string     `json:"redirectUrl,omitempty"`
	State       string     `json:"state,omitempty"`
	LastStep    *LastStep  `json:"lastStep,omitempty"`
	// Metadata holds the session metadata; non-string values are kept as compact JSON text.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Results is the undocumented results object of terminal sessions, nil when absent.
	Results json.RawMessage `json:"results,omitempty"`
}

// NormalizedOutcome returns "accepted", "rejected", "no_outcome", "" or the unknown outcome
// normalised by NormalizeOutcome.
func (s *Session) NormalizedOutcome() string { return NormalizeOutcome(s.Outcome) }

// sessionWire is every known variant of a session answer: times as RFC 3339 or epoch numbers,
// numeric versions, both lastStep forms, a nested sessionContext, and unknown fields.
type sessionWire struct {
	SessionID      string                     `json:"sessionId"`
	ID             string                     `json:"id"`
	FlowID         string                     `json:"flowId"`
	FlowVersion    flexString                 `json:"flowVersion"`
	Environment    string                     `json:"environment"`
	SessionStatus  flexString                 `json:"sessionStatus"`
	Status         flexString                 `json:"status"`
	SubjectID      flexString                 `json:"subjectId"`
	Outcome        flexString                 `json:"outcome"`
	CreatedAt      flexTime                   `json:"createdAt"`
	StartedAt      flexTime                   `json:"startedAt"`
	UpdatedAt      flexTime                   `json:"updatedAt"`
	CompletedAt    flexTime                   `json:"completedAt"`
	ExpiresAt      flexTime                   `json:"expiresAt"`
	RedirectURL    flexString                 `json:"redirectUrl"`
	State          flexString                 `json:"state"`
	LastStep       *LastStep                  `json:"lastStep"`
	Metadata       map[string]json.RawMessage `json:"metadata"`
	Results        json.RawMessage            `json:"results"`
	SessionContext *sessionContext            `json:"sessionContext"`
}

// sessionContext is the nested envelope some builds wrap a session's identity in.
type sessionContext struct {
	SessionID     string     `json:"sessionId"`
	SessionStatus flexString `json:"sessionStatus"`
	CreatedAt     flexTime   `json:"createdAt"`
	ExpiresAt     flexTime   `json:"expiresAt"`
}

// UnmarshalJSON tolerates every known variant (sessionWire).
func (s *Session) UnmarshalJSON(b []byte) error {
	var w sessionWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*s = w.session()
	return nil
}

// session normalises the decoded answer.
func (w *sessionWire) session() Session {
	out := Session{
		SessionID:   firstNonEmpty(w.SessionID, w.ID),
		FlowID:      w.FlowID,
		FlowVersion: string(w.FlowVersion),
		Environment: w.Environment,
		Status:      SessionStatus(firstNonEmpty(string(w.SessionStatus), string(w.Status))),
		SubjectID:   string(w.SubjectID),
		Outcome:     string(w.Outcome),
		CreatedAt:   w.CreatedAt.t,
		StartedAt:   w.StartedAt.ptr(),
		UpdatedAt:   w.UpdatedAt.t,
		CompletedAt: w.CompletedAt.ptr(),
		ExpiresAt:   w.ExpiresAt.t,
		RedirectURL: string(w.RedirectURL),
		State:       string(w.State),
		LastStep:    w.LastStep,
		Metadata:    flattenMetadata(w.Metadata),
	}
	if c := w.SessionContext; c != nil {
		out.SessionID = firstNonEmpty(out.SessionID, c.SessionID)
		out.Status = SessionStatus(firstNonEmpty(string(out.Status), string(c.SessionStatus)))
		if out.CreatedAt.IsZero() {
			out.CreatedAt = c.CreatedAt.t
		}
		if out.ExpiresAt.IsZero() {
			out.ExpiresAt = c.ExpiresAt.t
		}
	}
	if out.SubjectID == "" {
		out.SubjectID = out.Metadata["subjectId"]
	}
	if r := bytes.TrimSpace(w.Results); len(r) > 0 && string(r) != "null" {
		out.Results = append(json.RawMessage(nil), r...)
	}
	return out
}

func flattenMetadata(m map[string]json.RawMessage) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, raw := range m {
		var s flexString
		if json.Unmarshal(raw, &s) == nil {
			out[k] = string(s)
			continue
		}
		var buf bytes.Buffer
		if json.Compact(&buf, raw) == nil {
			out[k] = buf.String()
		}
	}
	return out
}

// CreateSessionRequest is the body of POST /flows/{flowId}/{env}/sessions; every field is optional.
type CreateSessionRequest struct {
	// Input holds data blocks by camelCase name, e.g. "basicIdentity".
	Input map[string]any `json:"input,omitempty"`
	// Metadata is a string map; "subjectId" goes here.
	Metadata map[string]string `json:"metadata,omitempty"`
	// RedirectURL must be allowlisted for the flow.
	RedirectURL string `json:"redirectUrl,omitempty"`
	// State is opaque caller state, up to 2048 characters.
	State string `json:"state,omitempty"`
}

// CreatedSession is the answer to CreateSession.
type CreatedSession struct {
	FlowID      string        `json:"flowId"`
	FlowVersion string        `json:"flowVersion,omitempty"`
	Environment string        `json:"environment,omitempty"`
	SessionID   string        `json:"sessionId"`
	Status      SessionStatus `json:"sessionStatus"`
	CreatedAt   time.Time     `json:"createdAt,omitzero"`
	ExpiresAt   time.Time     `json:"expiresAt,omitzero"`
	// PlayerURL embeds a session token: treat it as a secret (do not log it).
	PlayerURL string `json:"playerUrl,omitempty"`
	// SDKToken is documented by the quickstart only; empty when not sent. Treat it as a secret.
	SDKToken string `json:"sdkToken,omitempty"`
}

// UnmarshalJSON reads the documented sessionContext envelope and tolerates flat variants.
func (c *CreatedSession) UnmarshalJSON(b []byte) error {
	var w struct {
		FlowID         string     `json:"flowId"`
		FlowVersion    flexString `json:"flowVersion"`
		Environment    string     `json:"environment"`
		PlayerURL      string     `json:"playerUrl"`
		SDKToken       string     `json:"sdkToken"`
		SessionID      string     `json:"sessionId"`
		SessionStatus  flexString `json:"sessionStatus"`
		CreatedAt      flexTime   `json:"createdAt"`
		ExpiresAt      flexTime   `json:"expiresAt"`
		SessionContext *struct {
			SessionID     string     `json:"sessionId"`
			SessionStatus flexString `json:"sessionStatus"`
			CreatedAt     flexTime   `json:"createdAt"`
			ExpiresAt     flexTime   `json:"expiresAt"`
		} `json:"sessionContext"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	out := CreatedSession{FlowID: w.FlowID, FlowVersion: string(w.FlowVersion), Environment: w.Environment, PlayerURL: w.PlayerURL, SDKToken: w.SDKToken,
		SessionID: w.SessionID, Status: SessionStatus(w.SessionStatus), CreatedAt: w.CreatedAt.t, ExpiresAt: w.ExpiresAt.t}
	if sc := w.SessionContext; sc != nil {
		out.SessionID = firstNonEmpty(sc.SessionID, out.SessionID)
		out.Status = SessionStatus(firstNonEmpty(string(sc.SessionStatus), string(out.Status)))
		if !sc.CreatedAt.t.IsZero() {
			out.CreatedAt = sc.CreatedAt.t
		}
		if !sc.ExpiresAt.t.IsZero() {
			out.ExpiresAt = sc.ExpiresAt.t
		}
	}
	*c = out
	return nil
}

// ListPage selects one page of a flow's sessions. Zero values mean "server default".
type ListPage struct {
	// Page is 1-based.
	Page int
	// Size is the page size (the API caps it at 100).
	Size int
	// SortBy is "createdAt" or "status"; empty leaves the server default.
	SortBy string
	// SortDesc sorts descending when true.
	SortDesc bool
}

// PageInfo is the paging envelope of newer builds; all zero when the server did not page.
type PageInfo struct {
	Size          int   `json:"size"`
	Number        int   `json:"number"`
	TotalElements int64 `json:"totalElements"`
	TotalPages    int   `json:"totalPages"`
}

// SessionPage is one page of a flow's sessions.
type SessionPage struct {
	Sessions []Session `json:"content"`
	// Page is nil when the server returned everything at once.
	Page *PageInfo `json:"page,omitempty"`
}

// FileRef is a vault file reference ({"$ref":"vault","$id":...}) found inside a data block.
type FileRef struct {
	// VaultEntryID is the id to pass to GetFile.
	VaultEntryID string `json:"vaultEntryId"`
	// JSONPath locates the reference inside the block content, e.g. "$.front" or "$.images[0]".
	JSONPath string `json:"jsonPath"`
}

// DataBlock is one data block, normalised from either response shape.
type DataBlock struct {
	// ID is the data block id; empty when the older shape carried none.
	ID string `json:"datablockId,omitempty"`
	// Type is camelCase ("BasicIdentity" from older builds becomes "basicIdentity").
	Type string `json:"type"`
	// StepID is the step that produced the block.
	StepID string `json:"stepId,omitempty"`
	// Clock is the producing step's logical clock, 0 when absent.
	Clock     int64     `json:"clock,omitempty"`
	CreatedAt time.Time `json:"createdAt,omitzero"`
	// Status is "STORED" or "DELETED" (older builds: always "STORED"); unknown values pass through.
	Status string `json:"status"`
	// Content is the block's JSON object; nil when deleted. It holds personal data: never log it.
	Content json.RawMessage `json:"content,omitempty"`
	// FileRefs lists the vault references inside Content, in document order of sorted keys.
	FileRefs []FileRef `json:"fileRefs,omitempty"`
}

// Data-block statuses.
const (
	DataBlockStored  = "STORED"
	DataBlockDeleted = "DELETED"
)

// File is a streamed file from the vault. The caller must close Body.
type File struct {
	// ContentType is the presigned host's Content-Type.
	ContentType string
	// Size is Content-Length, -1 when unknown.
	Size int64
	// Name is the filename from Content-Disposition, empty when none.
	Name string
	// SHA256 is the whole file's digest as the storage declared it (S3's
	// x-amz-checksum-sha256), nil when it declared none. The client does not check it: a
	// caller that hashes the stream anyway compares it at the end, which catches a body that
	// ended early without Content-Length.
	SHA256 []byte
	// Body streams the bytes; reading more than idnow.max_file_size fails with ErrFileTooLarge.
	Body io.ReadCloser
}

// flexString decodes a JSON string, number or boolean as text, null as "" and an
// object or array as its compact JSON text.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*f = ""
	case b[0] == '"':
		// The decoder already validated b; a string without escapes needs no second decode.
		if len(b) >= 2 && b[len(b)-1] == '"' && bytes.IndexByte(b, '\\') < 0 && utf8.Valid(b) {
			*f = flexString(b[1 : len(b)-1])
			return nil
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
	case b[0] == '{' || b[0] == '[':
		// An object where text was expected: keep it as compact JSON rather than fail the document.
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			return err
		}
		*f = flexString(buf.String())
	default:
		*f = flexString(b)
	}
	return nil
}

// flexTime decodes RFC 3339 (with or without zone), epoch seconds or epoch milliseconds
// (numbers or numeric strings). Unparseable values decode as the zero time rather than
// failing the whole document: the reference documents no format with certainty.
type flexTime struct{ t time.Time }

func (f flexTime) ptr() *time.Time {
	if f.t.IsZero() {
		return nil
	}
	t := f.t
	return &t
}

func (f *flexTime) UnmarshalJSON(b []byte) error {
	f.t = parseFlexTime(b)
	return nil
}

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02",
}

func parseFlexTime(b []byte) time.Time {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return time.Time{}
	}
	s := string(b)
	if b[0] == '"' {
		// A quoted time without escapes is its own text: no second decode (see flexString).
		if len(b) >= 2 && b[len(b)-1] == '"' && bytes.IndexByte(b, '\\') < 0 && utf8.Valid(b) {
			s = s[1 : len(s)-1]
		} else if err := json.Unmarshal(b, &s); err != nil {
			return time.Time{}
		}
		s = strings.TrimSpace(s)
		if s == "" {
			return time.Time{}
		}
		for _, layout := range timeLayouts {
			if t, err := time.Parse(layout, s); err == nil {
				return t.UTC()
			}
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(n) || math.IsInf(n, 0) || n <= 0 {
		return time.Time{}
	}
	// Below 1e11 a number is epoch seconds (1e11 s is the year 5138); above, milliseconds.
	if n < 1e11 {
		sec, frac := math.Modf(n)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC()
	}
	return time.UnixMilli(int64(n)).UTC()
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// camelType lower-cases the first letter so "BasicIdentity" and "basicIdentity" agree.
func camelType(t string) string {
	t = strings.TrimSpace(t)
	r, size := utf8.DecodeRuneInString(t)
	if r == utf8.RuneError {
		return t
	}
	return string(unicode.ToLower(r)) + t[size:]
}
