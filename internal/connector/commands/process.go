package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/retry"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// HeaderCommandID carries the command id on command and reply records, so a command whose
// value cannot be decoded can still be answered by id, and tools can filter without decoding.
const HeaderCommandID = "idnow.command.id"

// maxState is IDnow's documented bound on a session's state.
const maxState = 2048

// work is one command record of a batch on its way to a reply.
type work struct {
	rec *kgo.Record
	cmd *schemas.CreateSessionCommand // nil when malformed
	id  string                        // command id; "" only for an undecodable record without the header
	// flowID is the resolved flow; req the create-session body.
	flowID string
	req    idnow.CreateSessionRequest
	// dupOf is an earlier record of the same batch with the same command id.
	dupOf *work
	// needCall: the command needs IDnow (a create, or first a lookup when lookupFirst).
	needCall    bool
	lookupFirst bool
	// firstAttempt is the time of the first create attempt ever made for the command (from an
	// intent of an earlier owner, or now); lastAttempt the time of the latest one.
	firstAttempt time.Time
	lastAttempt  time.Time
	// reply is the answer; state what is written to topics.commands_state with it (nil: nothing).
	reply *schemas.CommandReply
	state *schemas.CommandState
	// replay marks a reply taken from an earlier answer: no state is written for it.
	replay bool
}

func (c *Commander) failed(w *work, reason, msg string) {
	now := c.now().UTC()
	w.reply = &schemas.CommandReply{CommandID: w.id, Outcome: schemas.OutcomeFailed, RepliedAt: now,
		Failed: &schemas.CommandFailed{Reason: reason, Message: msg}}
	w.needCall = false
	if w.id != "" {
		w.state = &schemas.CommandState{CommandID: w.id, Reply: w.reply, UpdatedAt: now}
		if w.flowID != "" {
			w.state.FlowID = &w.flowID
		}
		if !w.firstAttempt.IsZero() {
			w.state.AttemptedAt = &w.firstAttempt
		}
	}
}

func (c *Commander) succeeded(w *work, s *schemas.SessionCreated) {
	now := c.now().UTC()
	w.reply = &schemas.CommandReply{CommandID: w.id, Outcome: schemas.OutcomeCreated, RepliedAt: now, Created: s}
	w.needCall = false
	first := w.firstAttempt
	w.state = &schemas.CommandState{CommandID: w.id, FlowID: &w.flowID, AttemptedAt: &first, Reply: w.reply, UpdatedAt: now}
}

// prepare decodes and validates one record and decides what it needs. It returns an error
// only when the flow list cannot be read (retryable; the batch is tried again).
func (c *Commander) prepare(ctx context.Context, r *kgo.Record, seen map[string]*work) (*work, error) {
	w := &work{rec: r, id: kafka.Header(r, HeaderCommandID)}
	var cmd schemas.CreateSessionCommand
	if err := c.deps.Commands.Decode(ctx, r.Value, &cmd); err != nil {
		c.failed(w, schemas.ReasonMalformed, fmt.Sprintf("the record at %s/%d@%d is not a CreateSessionCommand (%v); write Avro CreateSessionCommand records (docs/commands.md)", r.Topic, r.Partition, r.Offset, decodeErrClass(err)))
		return w, nil
	}
	w.cmd, w.id = &cmd, cmd.CommandID
	if w.id == "" {
		c.failed(w, schemas.ReasonMalformed, "commandId is empty; give every command a unique id (a UUID)")
		return w, nil
	}
	if prev, ok := seen[w.id]; ok {
		w.dupOf = prev
		return w, nil
	}
	seen[w.id] = w
	if cached, ok := c.uncommitted(w.id); ok {
		// This member answered the command in a batch whose transaction did not commit.
		w.reply, w.state, w.flowID = cached.reply, cached.state, cached.flowID
		return w, nil
	}
	if st := c.table.get(w.id); st != nil {
		if st.Reply != nil {
			rep := *st.Reply
			rep.Replayed = true
			w.reply, w.replay = &rep, true
			return w, nil
		}
		if st.AttemptedAt != nil {
			// An intent without a reply: a create call may have been made by an owner that
			// stopped before answering. Look for its session before anything else, once a
			// call that owner still had in flight (it ended or was revoked before now) has
			// had commands.lookup_delay to finish at IDnow.
			w.lookupFirst, w.firstAttempt, w.lastAttempt = true, *st.AttemptedAt, c.now()
			c.m.ambiguous.Inc()
			if st.FlowID != nil {
				w.flowID = *st.FlowID
			}
		}
	}
	if reason, msg := c.validate(w); reason != "" {
		c.failed(w, reason, msg)
		return w, nil
	}
	if w.flowID == "" {
		if cmd.FlowID != nil {
			w.flowID = *cmd.FlowID
		} else {
			id, reason, msg, err := c.flows.resolve(ctx, *cmd.FlowName)
			if err != nil {
				return nil, err
			}
			if reason != "" {
				c.failed(w, reason, msg)
				return w, nil
			}
			w.flowID = id
		}
	}
	w.needCall = true
	if w.firstAttempt.IsZero() {
		w.firstAttempt = c.now().UTC()
	}
	return w, nil
}

// decodeErrClass says what kind of decoding failure it was without echoing record content.
func decodeErrClass(err error) string {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return msg
}

// validate checks the command and builds the create-session body. Messages name fields, never
// their values (they may be personal data), except the redirect host.
func (c *Commander) validate(w *work) (reason, msg string) {
	cmd := w.cmd
	hasID, hasName := cmd.FlowID != nil && *cmd.FlowID != "", cmd.FlowName != nil && *cmd.FlowName != ""
	switch {
	case hasID == hasName && w.flowID == "":
		return schemas.ReasonMalformed, "set exactly one of flowId and flowName"
	case hasID && (*cmd.FlowID == "." || *cmd.FlowID == ".."):
		return schemas.ReasonMalformed, "flowId is not an IDnow flow id"
	}
	if cmd.Environment != nil && *cmd.Environment != "" && *cmd.Environment != c.deps.Environment {
		return schemas.ReasonEnvironmentMismatch, fmt.Sprintf("environment %q is not this connector's (%s): the IDnow API client belongs to one environment; send the command to the connector of that environment or leave environment null",
			*cmd.Environment, c.deps.Environment)
	}
	// A command taken over with an intent is looked up first (call): a session its previous
	// owner created is the answer even after the deadline.
	if cmd.Deadline != nil && !w.lookupFirst && !c.now().Before(*cmd.Deadline) {
		return schemas.ReasonDeadlinePassed, fmt.Sprintf("the command's deadline %s passed before it was processed (at %s); no session was created",
			cmd.Deadline.UTC().Format(time.RFC3339Nano), c.now().UTC().Format(time.RFC3339Nano))
	}
	if _, ok := cmd.Metadata[schemas.MetadataCommandID]; ok {
		return schemas.ReasonMalformed, "metadata key " + schemas.MetadataCommandID + " is reserved for the connector; remove it"
	}
	if cmd.State != nil && len(*cmd.State) > maxState {
		return schemas.ReasonMalformed, fmt.Sprintf("state has %d characters; IDnow keeps at most %d", len(*cmd.State), maxState)
	}
	req := idnow.CreateSessionRequest{Metadata: map[string]string{}}
	for k, v := range cmd.Metadata {
		req.Metadata[k] = v
	}
	req.Metadata[schemas.MetadataCommandID] = w.id
	if len(cmd.Input) > 0 {
		req.Input = map[string]any{}
		for name, text := range cmd.Input {
			var block map[string]any
			if err := json.Unmarshal([]byte(text), &block); err != nil || block == nil {
				return schemas.ReasonMalformed, fmt.Sprintf("input.%s is not a JSON object; each input value is one data block's JSON object as text", name)
			}
			req.Input[name] = block
		}
	}
	if cmd.RedirectURL != nil && *cmd.RedirectURL != "" {
		if !redirectAllowed(c.allow, *cmd.RedirectURL) {
			return schemas.ReasonRedirectNotAllowed, "redirectUrl is not under an entry of commands.redirect_allowlist" + redirectHint(*cmd.RedirectURL)
		}
		req.RedirectURL = *cmd.RedirectURL
	}
	if cmd.State != nil {
		req.State = *cmd.State
	}
	w.req = req
	return "", ""
}

// call answers one command that needs IDnow: looks for its session first when a create may
// have happened, creates it otherwise, and repeats both on retryable failures until a session
// is known, IDnow refuses, the command's deadline passes or commands.give_up_after is spent.
// It returns an error only when ctx ends.
func (c *Commander) call(ctx context.Context, w *work) error {
	giveUp := c.now().Add(c.cfg.GiveUpAfter)
	b := c.cfg.Retry.NewBackOff()
	attempts := 0
	var lastErr error
	for {
		if !c.now().Before(giveUp) {
			c.failed(w, schemas.ReasonUnavailable, fmt.Sprintf("IDnow did not create the session within commands.give_up_after (%s; %d create attempts; last: %v); send a new command once IDnow answers again",
				c.cfg.GiveUpAfter, attempts, errText(lastErr)))
			return nil
		}
		if w.lookupFirst {
			if err := retry.Wait(ctx, w.lastAttempt.Add(c.cfg.LookupDelay).Sub(c.now())); err != nil {
				return err
			}
			s, covered, err := c.lookup(ctx, w)
			switch {
			case ctx.Err() != nil:
				return context.Cause(ctx)
			case err != nil:
				c.m.lookups.WithLabelValues("error").Inc()
				lastErr = err
				if waitErr := retry.Wait(ctx, b.NextAfter(0, 0)); waitErr != nil {
					return waitErr
				}
				continue
			case s != nil:
				c.m.lookups.WithLabelValues("found").Inc()
				c.log.Info("found the session of an ambiguous create", slog.String("command_id", w.id), slog.String("session_id", s.SessionID))
				c.succeeded(w, recovered(s, w.flowID, c.deps.Environment))
				return nil
			case !covered:
				c.m.lookups.WithLabelValues("not_found").Inc()
				c.failed(w, schemas.ReasonUnavailable, fmt.Sprintf("a create call for this command had an unknown outcome and its session was not among the flow's %d newest sessions, which do not reach back to the first attempt; rather than risk a second session, none is created: send a new command",
					c.cfg.LookupPages*100))
				return nil
			}
			c.m.lookups.WithLabelValues("not_found").Inc()
			w.lookupFirst = false
		}
		if w.cmd.Deadline != nil && !c.now().Before(*w.cmd.Deadline) {
			c.failed(w, schemas.ReasonDeadlinePassed, fmt.Sprintf("the command's deadline passed before a session could be created (%d create attempts here; last error: %v); no session exists for this command id",
				attempts, errText(lastErr)))
			return nil
		}
		w.lastAttempt = c.now().UTC()
		attempts++
		if err := c.wait(ctx); err != nil {
			return err
		}
		created, err := c.track(func() (*idnow.CreatedSession, error) { return c.deps.API.CreateSession(ctx, w.flowID, w.req) })
		if err == nil {
			c.m.created.Inc()
			c.succeeded(w, fromCreated(created, w.flowID, c.deps.Environment))
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		lastErr = err
		switch cls := classifyCreate(err); cls {
		case createRejected:
			reason := schemas.ReasonRejected
			if errors.Is(err, idnow.ErrNotFound) {
				reason = schemas.ReasonUnknownFlow
			}
			c.failed(w, reason, fmt.Sprintf("IDnow refused to create the session: %v", err))
			return nil
		case createAmbiguous:
			c.m.ambiguous.Inc()
			c.log.Warn("create-session outcome unknown; looking for the session before trying again", slog.String("command_id", w.id), slog.Any("err", err))
			w.lookupFirst = true
		default:
			c.log.Warn("create-session failed before IDnow acted; trying again", slog.String("command_id", w.id), slog.Any("err", err))
			if waitErr := retry.Wait(ctx, b.NextAfter(retryAfter(err), time.Minute)); waitErr != nil {
				return waitErr
			}
		}
	}
}

func errText(err error) string {
	if err == nil {
		return "none"
	}
	return err.Error()
}

func retryAfter(err error) time.Duration {
	var apiErr *idnow.APIError
	if errors.As(err, &apiErr) {
		return apiErr.RetryAfter
	}
	return 0
}

// lookup pages through the flow's sessions, newest first, for one carrying the command id in
// its metadata. covered reports whether the pages reached back past the first attempt (or
// listed every session): only then does "not found" mean no session was created.
func (c *Commander) lookup(ctx context.Context, w *work) (*idnow.Session, bool, error) {
	since := w.firstAttempt.Add(-c.cfg.LookupClockSkew)
	for page := 1; page <= c.cfg.LookupPages; page++ {
		if err := c.wait(ctx); err != nil {
			return nil, false, err
		}
		p, err := c.track2(func() (*idnow.SessionPage, error) {
			return c.deps.API.ListFlowSessions(ctx, w.flowID, idnow.ListPage{Page: page, Size: 100, SortBy: "createdAt", SortDesc: true})
		})
		if err != nil {
			return nil, false, fmt.Errorf("list sessions of flow %s: %w", w.flowID, err)
		}
		oldest := time.Time{}
		for i := range p.Sessions {
			s := &p.Sessions[i]
			if s.Metadata[schemas.MetadataCommandID] == w.id {
				return s, true, nil
			}
			if !s.CreatedAt.IsZero() && (oldest.IsZero() || s.CreatedAt.Before(oldest)) {
				oldest = s.CreatedAt
			}
		}
		last := len(p.Sessions) < 100 || (p.Page != nil && page >= p.Page.TotalPages) || p.Page == nil && len(p.Sessions) > 100
		if last || (!oldest.IsZero() && oldest.Before(since)) {
			return nil, true, nil
		}
	}
	return nil, false, nil
}

func fromCreated(s *idnow.CreatedSession, flowID, env string) *schemas.SessionCreated {
	out := &schemas.SessionCreated{SessionID: s.SessionID, FlowID: firstOf(s.FlowID, flowID), Environment: firstOf(s.Environment, env),
		Status: firstOf(string(s.Status), "CREATED")}
	if s.FlowVersion != "" {
		out.FlowVersion = &s.FlowVersion
	}
	if s.PlayerURL != "" {
		out.PlayerURL = &s.PlayerURL
	}
	if s.SDKToken != "" {
		out.SDKToken = &s.SDKToken
	}
	if !s.CreatedAt.IsZero() {
		t := s.CreatedAt.UTC()
		out.CreatedAt = &t
	}
	if !s.ExpiresAt.IsZero() {
		t := s.ExpiresAt.UTC()
		out.ExpiresAt = &t
	}
	return out
}

func recovered(s *idnow.Session, flowID, env string) *schemas.SessionCreated {
	out := &schemas.SessionCreated{SessionID: s.SessionID, FlowID: firstOf(s.FlowID, flowID), Environment: firstOf(s.Environment, env),
		Status: firstOf(string(s.Status), "CREATED"), Recovered: true}
	if s.FlowVersion != "" {
		out.FlowVersion = &s.FlowVersion
	}
	if !s.CreatedAt.IsZero() {
		t := s.CreatedAt.UTC()
		out.CreatedAt = &t
	}
	if !s.ExpiresAt.IsZero() {
		t := s.ExpiresAt.UTC()
		out.ExpiresAt = &t
	}
	return out
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

type createClass int

const (
	// createNotPerformed: IDnow provably did not act (429, 503, 401, no connection): try again.
	createNotPerformed createClass = iota
	// createAmbiguous: IDnow may have created the session: look before trying again.
	createAmbiguous
	// createRejected: IDnow refused the request for good (4xx): answer failed.
	createRejected
)

// classifyCreate sorts a failed create-session call by what IDnow may have done.
func classifyCreate(err error) createClass {
	var apiErr *idnow.APIError
	if errors.As(err, &apiErr) && apiErr.StatusCode != 0 {
		switch code := apiErr.StatusCode; {
		case code == http.StatusTooManyRequests, code == http.StatusServiceUnavailable, code == http.StatusUnauthorized:
			return createNotPerformed
		case code == http.StatusRequestTimeout:
			return createAmbiguous
		case code >= 400 && code < 500:
			return createRejected
		default:
			// 5xx after the request was sent (500, 502, 504) and anything unexpected.
			return createAmbiguous
		}
	}
	switch {
	case errors.Is(err, idnow.ErrInvalidID), errors.Is(err, idnow.ErrInsecureURL):
		return createRejected
	case errors.Is(err, idnow.ErrUnauthorized), errors.Is(err, syscall.ECONNREFUSED):
		// The token could not be fetched, or nothing listened: the request was never sent.
		return createNotPerformed
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return createNotPerformed
	}
	// Timeouts, resets, EOF, an undecodable 2xx: the request may have been acted on.
	return createAmbiguous
}

// redirectHint names the redirect's origin (not its path or query, which may carry data) so an
// operator can see which entry is missing.
func redirectHint(raw string) string {
	if u, err := parseURLOrigin(raw); err == nil {
		return " (origin " + u + "); add an entry for it or use an allowed URL"
	}
	return "; it must be an absolute http(s) URL"
}

func parseURLOrigin(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", errors.New("not an absolute http(s) URL")
	}
	return u.Scheme + "://" + u.Host, nil
}
