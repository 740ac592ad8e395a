package idnowsim

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Simulator is a local stand-in for the IDnow Trust Platform: OIDC discovery, JWKS, token
// endpoint, API, presigned files, a session lifecycle engine and a signed-webhook sender.
// Create it with New, then Start it; Close stops everything it started.
type Simulator struct {
	cfg        Config
	log        *slog.Logger
	m          *metrics
	rng        *rng
	keys       *keyRing
	presignKey []byte
	httpClient *http.Client
	outbox     *outbox
	hookURL    atomic.Pointer[string]
	extra      map[string]http.Handler
	counters   counters
	// pausedUntil is the Unix nanosecond time until which new webhook events are dropped
	// (PauseWebhooks); 0 = not paused.
	pausedUntil atomic.Int64
	conns       newConns // connections without a request yet, closed first by Close

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	sessions map[string]*session
	order    []string
	files    map[string]*vaultFile
	tokens   map[string]tokenInfo
	faults   Faults
	started  bool
	closed   bool
	baseURL  string
	srv      *http.Server
	stopCtx  func() bool
	genLeft  int
	// completing counts the sessions that reached document verification on their way to
	// COMPLETED (simulator.files.large_video_every); guarded by mu.
	completing int
	serveErr   chan error
	served     chan struct{} // closed when the HTTP server stops serving, for whatever reason
}

// counters back Stats; atomics so hot paths need no lock.
type counters struct {
	apiRequests, faults429, faults500, faults503, slow                    atomic.Int64
	tokensIssued, tokenBasic, tokenPost, tokenRejected                    atomic.Int64
	sessionsCreated, createTimeouts                                       atomic.Int64
	webhookAttempts, webhookFailed, webhookInjected, delivered, givenUp   atomic.Int64
	dropped                                                               atomic.Int64
	fileRedirects, presignedServed, presignedRejected, presignedWithAuthz atomic.Int64
	filesMissing, expiredURLs, truncatedBodies, slowBodies                atomic.Int64
}

// Stats is a point-in-time summary of what the simulator did, for tests and tooling.
type Stats struct {
	APIRequests   int64
	Faults429     int64
	Faults500     int64
	Faults503     int64
	SlowResponses int64

	TokensIssued int64
	// TokenRequestsBasic and TokenRequestsPost count successful token requests by client
	// authentication method (client_secret_basic, client_secret_post).
	TokenRequestsBasic int64
	TokenRequestsPost  int64
	TokensRejected     int64

	SessionsCreated  int64
	SessionsByStatus map[string]int
	// CreateTimeouts counts create-session calls that created a session but withheld the answer
	// (faults.create_timeout_rate).
	CreateTimeouts int64

	// WebhookAttempts counts delivery attempts; WebhookAttemptsFailed the failed ones (including
	// injected failures, also counted in WebhookInjectedFailures).
	WebhookAttempts         int64
	WebhookAttemptsFailed   int64
	WebhookInjectedFailures int64
	// WebhooksDelivered counts events acknowledged with 2xx; WebhooksGivenUp events whose
	// retries ran out; WebhooksPending events still queued or awaiting a retry.
	WebhooksDelivered int64
	WebhooksGivenUp   int64
	WebhooksPending   int
	// WebhooksDropped counts events never attempted (faults.webhook_drop_rate, PauseWebhooks).
	WebhooksDropped int64

	FileRedirects     int64
	PresignedServed   int64
	PresignedRejected int64
	// PresignedWithAuthorization counts presigned requests that carried an Authorization header,
	// i.e. a client leaked its Bearer token to the file host. They are rejected with 400.
	PresignedWithAuthorization int64
	// FilesMissing counts files endpoint requests answered 404 for a missing file;
	// ExpiredURLsIssued redirects to an already expired URL; TruncatedBodies and SlowBodies
	// presigned downloads cut short or paused (simulator.faults.file_*).
	FilesMissing      int64
	ExpiredURLsIssued int64
	TruncatedBodies   int64
	SlowBodies        int64
}

// Deps are the simulator's collaborators (the project's constructor convention: Config holds the
// user's settings, Deps what the application wires in).
type Deps struct {
	// Registry receives the simulator's metrics, prefixed idnow_sim_; required.
	Registry prometheus.Registerer
	// Log receives the simulator's log lines; nil discards them.
	Log *slog.Logger
}

// New builds a simulator from cfg. Metrics are registered on deps.Registry with the prefix idnow_sim_.
func New(cfg Config, deps Deps) (*Simulator, error) {
	reg, log := deps.Registry, deps.Log
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("idnowsim: invalid config: %w", err)
	}
	if reg == nil {
		return nil, errors.New("idnowsim: a prometheus.Registerer is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Seed == 0 {
		cfg.Seed = time.Now().UnixNano()
		log.Info("simulator seed chosen from the clock; pass it as --seed to reproduce", "seed", cfg.Seed)
	}
	keys, err := newKeyRing(cfg.KeyGrace)
	if err != nil {
		return nil, fmt.Errorf("idnowsim: %w", err)
	}
	presignKey := make([]byte, 32)
	if _, err := rand.Read(presignKey); err != nil {
		return nil, fmt.Errorf("idnowsim: generate presign key: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Simulator{
		cfg:        cfg,
		log:        log,
		rng:        newRNG(cfg.Seed),
		keys:       keys,
		presignKey: presignKey,
		httpClient: &http.Client{
			// An own transport, so Close releases exactly the connections the simulator opened.
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
			Timeout:   cfg.WebhookTimeout,
			// A webhook receiver that redirects is misconfigured; report the 3xx instead of following it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		extra:    map[string]http.Handler{},
		ctx:      ctx,
		cancel:   cancel,
		sessions: map[string]*session{},
		files:    map[string]*vaultFile{},
		tokens:   map[string]tokenInfo{},
		faults:   cfg.Faults,
	}
	s.outbox = newOutbox()
	s.hookURL.Store(&cfg.WebhookURL)
	m, err := newMetrics(reg, func() float64 { return float64(s.outbox.queued()) })
	if err != nil {
		cancel()
		return nil, fmt.Errorf("idnowsim: %w", err)
	}
	s.m = m
	return s, nil
}

// handle mounts an extra handler on the simulator's server (e.g. /metrics for the CLI). It must
// be called before Start.
func (s *Simulator) handle(pattern string, h http.Handler) { s.extra[pattern] = h }

// Start binds cfg.Listen, serves, and starts the webhook sender and the session generator. It
// returns once the listener is bound. Cancelling ctx stops background work (session progress,
// generation, webhooks); Close also stops the server and waits for everything.
func (s *Simulator) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started || s.closed {
		s.mu.Unlock()
		return errors.New("idnowsim: Start called twice or after Close")
	}
	s.started = true
	s.mu.Unlock()

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("idnowsim: listen on %s (simulator.listen): %w", s.cfg.Listen, err)
	}
	base := strings.TrimRight(s.cfg.PublicURL, "/")
	if base == "" {
		base = "http://" + ln.Addr().String()
	}
	srv := &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
		ConnState:         s.conns.track,
	}
	s.mu.Lock()
	s.baseURL = base
	s.srv = srv
	s.stopCtx = context.AfterFunc(ctx, s.cancel)
	s.genLeft = s.cfg.Sessions
	s.serveErr = make(chan error, 1)
	s.served = make(chan struct{})
	s.mu.Unlock()

	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.serveErr <- err
		close(s.served)
	}()
	for range s.cfg.WebhookConcurrency {
		s.wg.Go(s.deliveryWorker)
	}
	s.wg.Go(s.dispatch)
	if s.cfg.Sessions > 0 {
		s.wg.Go(s.generate)
	}
	s.log.Info("IDnow simulator listening", "url", base, "environment", s.cfg.Environment,
		"webhook_url", s.WebhookURL(), "sessions", s.cfg.Sessions)
	return nil
}

// Run blocks until ctx ends or the simulator's server stops on its own, then closes the
// simulator. It is the simulator's long-lived part for a process lifecycle; Start must have
// succeeded first.
func (s *Simulator) Run(ctx context.Context) error {
	s.mu.Lock()
	served := s.served
	s.mu.Unlock()
	if served == nil {
		return errors.New("idnowsim: Run before Start")
	}
	select {
	case <-ctx.Done():
		return s.Close()
	case <-served:
		if err := s.Close(); err != nil {
			return err
		}
		return errors.New("idnowsim: the HTTP server stopped")
	}
}

// Close stops the generator, session progress, webhook delivery and the HTTP server, and waits
// for all of them. Webhooks not yet delivered are abandoned. It is safe to call more than once.
func (s *Simulator) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	srv, stop, serveErr := s.srv, s.stopCtx, s.serveErr
	s.mu.Unlock()

	if stop != nil {
		stop()
	}
	s.cancel()
	var errs []error
	if srv != nil {
		s.conns.closeAll()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := srv.Shutdown(shutdownCtx); err != nil {
			errs = append(errs, fmt.Errorf("idnowsim: shut down server: %w", err))
			_ = srv.Close()
		}
		cancel()
		if err := <-serveErr; err != nil {
			errs = append(errs, fmt.Errorf("idnowsim: serve: %w", err))
		}
	}
	s.wg.Wait()
	s.httpClient.CloseIdleConnections()
	return errors.Join(errs...)
}

// URL is the simulator's base URL, e.g. http://127.0.0.1:8091. Empty before Start.
func (s *Simulator) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baseURL
}

// AuthURL is the OIDC base, URL()+"/oidc"; it is also the issuer of tokens and webhooks.
func (s *Simulator) AuthURL() string { return s.URL() + "/oidc" }

// Issuer is the iss claim of signed webhooks and the discovery document's issuer.
func (s *Simulator) Issuer() string { return s.AuthURL() }

// DiscoveryURL is the OIDC discovery document's URL.
func (s *Simulator) DiscoveryURL() string { return s.AuthURL() + "/.well-known/openid-configuration" }

// TokenURL is the client-credentials token endpoint.
func (s *Simulator) TokenURL() string { return s.AuthURL() + "/token" }

// JWKSURL is where the webhook signing keys are published.
func (s *Simulator) JWKSURL() string { return s.AuthURL() + "/.well-known/jwks.json" }

// APIURL is the API base, URL()+"/api/v1".
func (s *Simulator) APIURL() string { return s.URL() + "/api/v1" }

// Config returns the effective configuration (with the seed filled in when it was 0).
func (s *Simulator) Config() Config { return s.cfg }

// KeyIDs returns the kids currently published in the JWKS, the active signing key first.
func (s *Simulator) KeyIDs() []string { return s.keys.kids() }

// RotateKeys makes a new signing key active. The previous key stays in the JWKS for
// simulator.key_grace so webhooks already signed with it still verify.
func (s *Simulator) RotateKeys() error {
	if err := s.keys.rotate(time.Now()); err != nil {
		return fmt.Errorf("idnowsim: rotate keys: %w", err)
	}
	s.log.Info("simulator signing key rotated", "kid", s.keys.kids()[0])
	return nil
}

// SetFaults replaces the injected faults at runtime.
func (s *Simulator) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("idnowsim: set faults: %w", err)
	}
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
	return nil
}

func (s *Simulator) currentFaults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// RevokeTokens invalidates every issued access token, so the next API call answers 401 and a
// client has to fetch a new token before expiry (how IDnow behaves after a credential reset).
func (s *Simulator) RevokeTokens() {
	s.mu.Lock()
	clear(s.tokens)
	s.mu.Unlock()
}

// Sessions returns snapshots of every session in creation order.
func (s *Simulator) Sessions() []SessionSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SessionSnapshot, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.sessions[id].snapshot())
	}
	return out
}

// Session returns the snapshot of one session.
func (s *Simulator) Session(id string) (SessionSnapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[id]
	if !ok {
		return SessionSnapshot{}, false
	}
	return sess.snapshot(), true
}

// Stats returns counters of what the simulator did so far.
func (s *Simulator) Stats() Stats {
	c := &s.counters
	st := Stats{
		APIRequests: c.apiRequests.Load(), Faults429: c.faults429.Load(), Faults500: c.faults500.Load(),
		Faults503: c.faults503.Load(), SlowResponses: c.slow.Load(),
		TokensIssued: c.tokensIssued.Load(), TokenRequestsBasic: c.tokenBasic.Load(),
		TokenRequestsPost: c.tokenPost.Load(), TokensRejected: c.tokenRejected.Load(),
		SessionsCreated: c.sessionsCreated.Load(), SessionsByStatus: map[string]int{}, CreateTimeouts: c.createTimeouts.Load(),
		WebhookAttempts: c.webhookAttempts.Load(), WebhookAttemptsFailed: c.webhookFailed.Load(),
		WebhookInjectedFailures: c.webhookInjected.Load(), WebhooksDelivered: c.delivered.Load(),
		WebhooksGivenUp: c.givenUp.Load(), WebhooksPending: s.outbox.pendingEvents(),
		WebhooksDropped: c.dropped.Load(),
		FileRedirects:   c.fileRedirects.Load(), PresignedServed: c.presignedServed.Load(),
		PresignedRejected: c.presignedRejected.Load(), PresignedWithAuthorization: c.presignedWithAuthz.Load(),
		FilesMissing: c.filesMissing.Load(), ExpiredURLsIssued: c.expiredURLs.Load(),
		TruncatedBodies: c.truncatedBodies.Load(), SlowBodies: c.slowBodies.Load(),
	}
	s.mu.Lock()
	for _, sess := range s.sessions {
		st.SessionsByStatus[sess.status]++
	}
	s.mu.Unlock()
	return st
}

// idle reports whether generation finished, every session is terminal and every webhook was
// delivered or given up.
func (s *Simulator) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.genLeft > 0 {
		return false
	}
	for _, sess := range s.sessions {
		if !IsTerminal(sess.status) {
			return false
		}
	}
	return s.outbox.pendingEvents() == 0
}

// WaitIdle blocks until generated and created sessions are all terminal and every webhook was
// delivered or given up, or until ctx ends.
func (s *Simulator) WaitIdle(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if s.idle() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("idnowsim: wait for idle: %w", context.Cause(ctx))
		case <-s.ctx.Done():
			return errors.New("idnowsim: wait for idle: simulator stopped")
		case <-t.C:
		}
	}
}

// CreateSessions creates n sessions at once, as if n users were sent to random flows of the
// client's environment, and returns their ids. They progress like generated sessions.
func (s *Simulator) CreateSessions(n int) []string {
	ids := make([]string, 0, n)
	flows := flowCatalogue(s.cfg.Environment)
	for range n {
		f := pick(s.rng, flows)
		sess, err := s.createSession(f, OriginGenerator, createRequest{})
		if err != nil {
			break
		}
		ids = append(ids, sess.id)
	}
	return ids
}

// generate creates cfg.Sessions sessions at cfg.Rate per second.
func (s *Simulator) generate() {
	interval := time.Duration(float64(time.Second) / s.cfg.Rate)
	t := time.NewTicker(max(interval, time.Microsecond))
	defer t.Stop()
	defer func() {
		s.mu.Lock()
		s.genLeft = 0
		s.mu.Unlock()
	}()
	for {
		s.mu.Lock()
		left := s.genLeft
		s.mu.Unlock()
		if left <= 0 {
			return
		}
		s.CreateSessions(1)
		s.mu.Lock()
		s.genLeft--
		s.mu.Unlock()
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

type createRequest struct {
	Input       map[string]any    `json:"input"`
	Metadata    map[string]string `json:"metadata"`
	RedirectURL string            `json:"redirectUrl"`
	State       string            `json:"state"`
}

var errClosed = errors.New("simulator closed")

// createSession registers a new CREATED session, emits session.created and starts its lifecycle.
func (s *Simulator) createSession(f flow, origin string, req createRequest) (*session, error) {
	now := time.Now()
	g := newRNG(s.rng.Int64())
	p := drawPlan(g)
	ident := drawIdentity(g)
	if bi, ok := req.Input["basicIdentity"].(map[string]any); ok {
		if v, ok := bi["givenName"].(string); ok && v != "" {
			ident.givenName = v
		}
		if v, ok := bi["familyName"].(string); ok && v != "" {
			ident.familyName = v
		}
		if v, ok := bi["birthDate"].(string); ok && v != "" {
			ident.birthDate = v
		}
	}
	sess := &session{
		id:              g.UUID(),
		rng:             g,
		flowID:          f.ID,
		flowVersion:     f.Version,
		env:             f.Environment,
		origin:          origin,
		metadata:        req.Metadata,
		redirectURL:     req.RedirectURL,
		state:           req.State,
		createdAt:       now,
		updatedAt:       now,
		expiresAt:       now.Add(24 * time.Hour),
		ident:           ident,
		plan:            p,
		shape:           variant(g, s.cfg.DataBlocksShape, ShapeNew, ShapeOld),
		lastStepVariant: variant(g, s.cfg.LastStepVariant, LastStepID, LastStepName),
		outcomeCase:     variant(g, s.cfg.OutcomeCase, OutcomeLower, OutcomeUpper),
	}
	// Drawn only when asked for, so that other settings keep their sessions' random choices.
	hugeDraw := s.cfg.HugeDataBlocks.Rate > 0 && g.Chance(s.cfg.HugeDataBlocks.Rate)
	if sub := req.Metadata["subjectId"]; sub != "" {
		sess.subjectID = sub
	} else if origin == OriginGenerator {
		sess.subjectID = "subj-" + g.Token(6)
		sess.metadata = map[string]string{"subjectId": sess.subjectID}
	}

	s.mu.Lock()
	if s.closed || s.ctx.Err() != nil {
		s.mu.Unlock()
		return nil, errClosed
	}
	s.sessions[sess.id] = sess
	s.order = append(s.order, sess.id)
	if h := s.cfg.HugeDataBlocks; (h.Every > 0 && len(s.order)%h.Every == 0) || hugeDraw {
		sess.padding = h.Blocks
	}
	sess.status = StatusCreated
	sess.transitions = append(sess.transitions, StatusCreated)
	ev := s.newEventLocked(sess, eventNames[StatusCreated], now)
	s.wg.Add(1)
	s.mu.Unlock()

	s.counters.sessionsCreated.Add(1)
	s.m.sessionsCreated.WithLabelValues(origin).Inc()
	s.m.transitions.WithLabelValues(StatusCreated).Inc()
	s.enqueue(ev)
	go s.runSession(sess.id, g, p)
	return sess, nil
}

// variant resolves a configured variant; "mixed" picks one of the options per call.
func variant(g *rng, configured string, options ...string) string {
	if configured == VariantMixed {
		return pick(g, options)
	}
	return configured
}

// sleep waits d unless the simulator stops first.
func (s *Simulator) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (s *Simulator) stepDelay(g *rng) time.Duration {
	return g.Duration(s.cfg.StepDelay, s.cfg.StepJitter)
}

// runSession plays a session's plan: the user starts the flow, finishes steps one by one (each
// producing a data block), and the session ends in its planned terminal status.
func (s *Simulator) runSession(id string, g *rng, p plan) {
	defer s.wg.Done()
	if !s.sleep(s.stepDelay(g)) {
		return
	}
	if p.expireBeforeStart {
		s.transition(id, StatusExpired, nil)
		return
	}
	s.transition(id, StatusRunning, nil)
	for i := range p.steps {
		if !s.sleep(s.stepDelay(g)) {
			return
		}
		s.finishStep(id, i)
	}
	if !s.sleep(s.stepDelay(g)) {
		return
	}
	s.transition(id, p.final, func(sess *session, now time.Time) {
		switch p.final {
		case StatusCompleted:
			sess.outcome = p.outcome
			s.addBlockLocked(sess, flowSteps[3], now)
			verdict := "ACCEPTED"
			if p.outcome == OutcomeRejected {
				verdict = "REJECTED"
			}
			sess.last = &lastStep{step: flowSteps[3], verdict: verdict}
		case StatusError:
			if p.steps < len(flowSteps) {
				sess.last = &lastStep{step: flowSteps[p.steps], verdict: "ERROR"}
			}
		}
	})
}

// finishStep records step i as finished with its data block.
func (s *Simulator) finishStep(id string, i int) {
	step := flowSteps[i]
	now := time.Now()
	s.mu.Lock()
	sess := s.sessions[id]
	if sess.status != StatusRunning {
		s.mu.Unlock()
		return
	}
	s.addBlockLocked(sess, step, now)
	verdict := "PASSED"
	if step.block == "documentVerification" && sess.plan.outcome == OutcomeRejected {
		verdict = "FAILED"
	}
	sess.last = &lastStep{step: step, verdict: verdict}
	sess.updatedAt = now
	var ev *event
	if s.cfg.StepEvents {
		ev = s.newEventLocked(sess, eventStepCompleted, now)
	}
	s.mu.Unlock()
	if ev != nil {
		s.enqueue(ev)
	}
}

// transition moves a session to status "to", applying mutate under the lock, and emits the event.
func (s *Simulator) transition(id, to string, mutate func(*session, time.Time)) {
	now := time.Now()
	s.mu.Lock()
	sess := s.sessions[id]
	from := sess.status
	if !LegalTransition(from, to) {
		s.mu.Unlock()
		s.log.Error("simulator refused an illegal session transition", "from", from, "to", to)
		return
	}
	sess.status = to
	sess.updatedAt = now
	sess.transitions = append(sess.transitions, to)
	if to == StatusRunning {
		sess.startedAt = now
	}
	if IsTerminal(to) {
		sess.completedAt = now
	}
	if mutate != nil {
		mutate(sess, now)
	}
	ev := s.newEventLocked(sess, eventNames[to], now)
	s.mu.Unlock()

	s.m.transitions.WithLabelValues(to).Inc()
	s.enqueue(ev)
}

// newEventLocked creates the next event of a session; s.mu must be held.
func (s *Simulator) newEventLocked(sess *session, name string, now time.Time) *event {
	sess.seq++
	ev := &event{
		id:        sess.rng.UUID(),
		name:      name,
		seq:       sess.seq,
		createdAt: now,
		env:       sess.env,
		flowID:    sess.flowID,
		sessionID: sess.id,
		status:    sess.status,
		variant:   variant(sess.rng, s.cfg.WebhookVariant, WebhookVariantJWT, WebhookVariantHeader),
	}
	if sess.last != nil {
		l := *sess.last
		ev.last = &l
	}
	sess.events = append(sess.events, ev)
	return ev
}

// flowSessionsLocked returns a flow's sessions in one environment, ordered as the list endpoint
// asks; s.mu must be held.
func (s *Simulator) flowSessionsLocked(env, flowID, sortBy string, desc bool) []*session {
	var out []*session
	for _, id := range s.order {
		if sess := s.sessions[id]; sess.env == env && sess.flowID == flowID {
			out = append(out, sess)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if sortBy == "status" && a.status != b.status {
			return (a.status < b.status) != desc
		}
		if a.createdAt.Equal(b.createdAt) {
			return false
		}
		return a.createdAt.Before(b.createdAt) != desc
	})
	return out
}
