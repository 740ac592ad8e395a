package idnowsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxPageSize is IDnow's documented upper bound for size.
const maxPageSize = 100

// routes builds the simulator's HTTP surface with the paths of IDnow's own hosts.
func (s *Simulator) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /oidc/.well-known/openid-configuration", s.handleDiscovery)
	mux.HandleFunc("GET /oidc/.well-known/jwks.json", s.handleJWKS)
	mux.HandleFunc("/oidc/token", s.handleToken)
	mux.HandleFunc("POST /_sim/webhooks/pause", s.handlePauseWebhooks)
	mux.HandleFunc("POST /_sim/webhooks/resume", s.handleResumeWebhooks)
	mux.HandleFunc("GET /_sim/sessions", s.handleSimSessions)

	mux.Handle("GET /api/v1/flows", s.api("list_flows", s.handleListFlows))
	mux.Handle("GET /api/v1/flows/{env}", s.api("list_flows", s.handleListFlows))
	mux.Handle("POST /api/v1/flows/{flowId}/{env}/sessions", s.api("create_session", s.handleCreateSession))
	mux.Handle("GET /api/v1/flows/{flowId}/{env}/sessions", s.api("list_sessions", s.handleListSessions))
	mux.Handle("GET /api/v1/{env}/sessions/{sessionId}", s.api("get_session", s.handleGetSession))
	// Both documented data-block paths, /{env}/sessions/{id}/datablocks and
	// /sessions/{id}/{env}/datablocks, overlap as ServeMux patterns; one route tells them apart.
	mux.Handle("GET /api/v1/{a}/{b}/{c}/datablocks", s.api("get_datablocks", s.handleDataBlocks))
	mux.Handle("GET /api/v1/{env}/files/{vaultId}", s.api("get_file", s.handleFile))
	mux.Handle("/api/v1/", s.api("unknown", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such API endpoint: "+r.Method+" "+r.URL.Path)
	}))

	mux.HandleFunc("GET /presigned/{vaultId}", s.handlePresigned)
	mux.HandleFunc("GET /player/", s.handlePlayer)
	for pattern, h := range s.extra {
		mux.Handle(pattern, h)
	}
	return mux
}

// statusRecorder remembers the status code written, for metrics.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// faultKind is the failure injected into one API request.
type faultKind int

const (
	faultNone faultKind = iota
	fault429
	fault500
	fault503
)

// drawFault decides one request's injected error and whether it is slow.
func (s *Simulator) drawFault(f Faults) (faultKind, bool) {
	kind := faultNone
	if f.Rate429+f.Rate500+f.Rate503 > 0 {
		switch x := s.rng.Float64(); {
		case x < f.Rate429:
			kind = fault429
		case x < f.Rate429+f.Rate500:
			kind = fault500
		case x < f.Rate429+f.Rate500+f.Rate503:
			kind = fault503
		}
	}
	return kind, s.rng.Chance(f.RateSlow)
}

// api wraps an API handler with metrics, injected latency and injected faults.
func (s *Simulator) api(endpoint string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			s.counters.apiRequests.Add(1)
			s.m.apiRequests.WithLabelValues(endpoint, statusClass(rec.code)).Inc()
			s.m.apiDuration.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
		}()

		f := s.currentFaults()
		delay := s.rng.Duration(f.Latency, f.LatencyJitter)
		kind, slow := s.drawFault(f)
		if slow {
			s.counters.slow.Add(1)
			s.m.faults.WithLabelValues("slow").Inc()
			delay += f.SlowDelay
		}
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-r.Context().Done():
				t.Stop()
				rec.code = 499 // client gave up; nothing can be written any more
				return
			case <-t.C:
			}
		}
		retryAfter := strconv.Itoa(int(math.Max(1, math.Ceil(f.RetryAfter.Seconds()))))
		switch kind {
		case fault429:
			s.counters.faults429.Add(1)
			s.m.faults.WithLabelValues("429").Inc()
			rec.Header().Set("Retry-After", retryAfter)
			writeError(rec, http.StatusTooManyRequests, "rate_limited", "too many requests (injected fault)")
			return
		case fault500:
			s.counters.faults500.Add(1)
			s.m.faults.WithLabelValues("500").Inc()
			writeError(rec, http.StatusInternalServerError, "internal_error", "internal server error (injected fault)")
			return
		case fault503:
			s.counters.faults503.Add(1)
			s.m.faults.WithLabelValues("503").Inc()
			rec.Header().Set("Retry-After", retryAfter)
			writeError(rec, http.StatusServiceUnavailable, "unavailable", "service unavailable (injected fault)")
			return
		}
		h(rec, r)
	})
}

// pathEnv validates an environment path segment; unknown ones are 404 like any unknown path.
func pathEnv(w http.ResponseWriter, env string) bool {
	if env != EnvLive && env != EnvStaging {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("unknown environment %q; use live or staging", env))
		return false
	}
	return true
}

// pageParams parses page (1-based) and size (1..100).
func pageParams(q url.Values) (page, size int, err error) {
	page, size = 1, 20
	if v := q.Get("page"); v != "" {
		if page, err = strconv.Atoi(v); err != nil || page < 1 {
			return 0, 0, errors.New("page must be an integer >= 1")
		}
	}
	if v := q.Get("size"); v != "" {
		if size, err = strconv.Atoi(v); err != nil || size < 1 || size > maxPageSize {
			return 0, 0, fmt.Errorf("size must be an integer within 1..%d", maxPageSize)
		}
	}
	return page, size, nil
}

// pageOf slices n items for page/size and builds the page object.
func pageOf(n, page, size int) (from, to int, meta map[string]any) {
	from = min((page-1)*size, n)
	to = min(from+size, n)
	return from, to, map[string]any{
		"size": size, "number": page, "totalElements": n, "totalPages": (n + size - 1) / size,
	}
}

func (s *Simulator) handleListFlows(w http.ResponseWriter, r *http.Request) {
	env := r.PathValue("env")
	if env != "" && !pathEnv(w, env) {
		return
	}
	if !s.authorize(w, r, env) {
		return
	}
	if env == "" {
		// The quickstart's GET /flows has no environment: it is the client's own.
		env = s.tokenEnv(r)
	}
	flows := flowCatalogue(env)
	render := func(fs []flow) []any {
		out := make([]any, 0, len(fs))
		for _, f := range fs {
			m := map[string]any{"id": f.ID, "name": f.Name, "description": f.Description, "environment": f.Environment}
			if f.Version > 0 {
				m["version"] = f.Version
			}
			out = append(out, m)
		}
		return out
	}
	if s.cfg.FlowsPaging == PagingUnpaged {
		writeJSON(w, http.StatusOK, map[string]any{"content": render(flows)})
		return
	}
	page, size, err := pageParams(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	from, to, meta := pageOf(len(flows), page, size)
	writeJSON(w, http.StatusOK, map[string]any{"content": render(flows[from:to]), "page": meta})
}

func (s *Simulator) handleCreateSession(w http.ResponseWriter, r *http.Request) {
	env := r.PathValue("env")
	if !pathEnv(w, env) || !s.authorize(w, r, env) {
		return
	}
	f, ok := findFlow(env, r.PathValue("flowId"))
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "unknown flow in environment "+env)
		return
	}
	var req createRequest
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	dec := json.NewDecoder(r.Body)
	// An empty body is fine: every create-session field is optional.
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "bad_request", "request body is not a valid session request: "+err.Error())
		return
	}
	if len(req.State) > 2048 {
		writeError(w, http.StatusBadRequest, "bad_request", "state must be at most 2048 characters")
		return
	}
	if req.RedirectURL != "" {
		if u, err := url.Parse(req.RedirectURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			writeError(w, http.StatusBadRequest, "bad_request", "redirectUrl must be an absolute http(s) URL on the allowlist")
			return
		}
	}
	sess, err := s.createSession(f, OriginAPI, req)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "simulator is shutting down")
		return
	}
	s.mu.Lock()
	body := map[string]any{
		"flowId":      sess.flowID,
		"flowVersion": sess.flowVersion,
		"environment": sess.env,
		"sessionContext": map[string]any{
			"sessionId":     sess.id,
			"sessionStatus": StatusCreated,
			"createdAt":     isoTime(sess.createdAt),
			"expiresAt":     isoTime(sess.expiresAt),
		},
		"playerUrl": s.baseURL + "/player/?token=" + s.rng.Token(24),
		"sdkToken":  s.rng.Token(24),
	}
	s.mu.Unlock()
	if f := s.currentFaults(); f.CreateTimeoutRate > 0 && s.rng.Chance(f.CreateTimeoutRate) {
		// Performed, but the caller never learns it: as when IDnow's gateway times out after
		// the session was stored.
		s.counters.createTimeouts.Add(1)
		s.m.faults.WithLabelValues("create_timeout").Inc()
		t := time.NewTimer(f.CreateTimeoutHang)
		defer t.Stop()
		select {
		case <-r.Context().Done():
			return
		case <-s.ctx.Done():
		case <-t.C:
		}
		writeError(w, http.StatusGatewayTimeout, "gateway_timeout", "upstream timed out (injected fault; the session may exist)")
		return
	}
	w.Header().Set("Location", s.APIURL()+"/"+sess.env+"/sessions/"+sess.id)
	writeJSON(w, http.StatusCreated, body)
}

// handleSimSessions lists the simulator's sessions with their metadata, for tests and tooling:
// GET /_sim/sessions?metadata.<key>=<value> keeps those whose metadata has key = value. It is
// not an IDnow endpoint and needs no token.
func (s *Simulator) handleSimSessions(w http.ResponseWriter, r *http.Request) {
	filters := map[string]string{}
	for k, v := range r.URL.Query() {
		if name, ok := strings.CutPrefix(k, "metadata."); ok && len(v) > 0 {
			filters[name] = v[0]
		}
	}
	out := []any{}
	for _, snap := range s.Sessions() {
		match := true
		for k, v := range filters {
			if snap.Metadata[k] != v {
				match = false
				break
			}
		}
		if match {
			out = append(out, map[string]any{"sessionId": snap.SessionID, "flowId": snap.FlowID, "environment": snap.Environment,
				"origin": snap.Origin, "status": snap.Status, "metadata": snap.Metadata, "createdAt": isoTime(snap.CreatedAt)})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

// renderSessionLocked renders session details; s.mu must be held.
func renderSessionLocked(sess *session) map[string]any {
	nullable := func(t time.Time) any {
		if t.IsZero() {
			return nil
		}
		return isoTime(t)
	}
	m := map[string]any{
		"sessionId":     sess.id,
		"flowId":        sess.flowID,
		"flowVersion":   sess.flowVersion,
		"environment":   sess.env,
		"sessionStatus": sess.status,
		"subjectId":     nil,
		"outcome":       sess.renderedOutcome(),
		"createdAt":     isoTime(sess.createdAt),
		"startedAt":     nullable(sess.startedAt),
		"updatedAt":     isoTime(sess.updatedAt),
		"completedAt":   nullable(sess.completedAt),
		"expiresAt":     isoTime(sess.expiresAt),
		"redirectUrl":   nil,
		"state":         nil,
		"lastStep":      nil,
	}
	if sess.subjectID != "" {
		m["subjectId"] = sess.subjectID
	}
	if sess.redirectURL != "" {
		m["redirectUrl"] = sess.redirectURL
	}
	if sess.state != "" {
		m["state"] = sess.state
	}
	if len(sess.metadata) > 0 {
		m["metadata"] = sess.metadata
	}
	if l := sess.last; l != nil {
		if sess.lastStepVariant == LastStepName {
			m["lastStep"] = map[string]any{"stepName": l.step.name, "stepType": l.step.typ, "verdict": l.verdict}
		} else {
			m["lastStep"] = map[string]any{"stepId": l.step.id, "stepDescription": l.step.name, "verdict": l.verdict}
		}
	}
	if IsTerminal(sess.status) {
		// The real shape of results is undocumented; a per-step summary is a plausible stand-in.
		steps := []any{}
		for _, b := range sess.blocks {
			steps = append(steps, map[string]any{"stepId": b.stepID, "dataBlockType": b.typ})
		}
		m["results"] = map[string]any{"outcome": sess.renderedOutcome(), "steps": steps}
	}
	return m
}

// lookupSession finds a session visible in env; it writes 404 and returns nil otherwise.
func (s *Simulator) lookupSessionLocked(w http.ResponseWriter, env, id string) *session {
	sess, ok := s.sessions[id]
	if !ok || sess.env != env {
		writeError(w, http.StatusNotFound, "not_found", "unknown session in environment "+env)
		return nil
	}
	return sess
}

func (s *Simulator) handleGetSession(w http.ResponseWriter, r *http.Request) {
	env := r.PathValue("env")
	if !pathEnv(w, env) || !s.authorize(w, r, env) {
		return
	}
	s.mu.Lock()
	sess := s.lookupSessionLocked(w, env, r.PathValue("sessionId"))
	if sess == nil {
		s.mu.Unlock()
		return
	}
	body := renderSessionLocked(sess)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Simulator) handleDataBlocks(w http.ResponseWriter, r *http.Request) {
	a, b, c := r.PathValue("a"), r.PathValue("b"), r.PathValue("c")
	var env, id string
	switch {
	case b == "sessions": // /{env}/sessions/{id}/datablocks
		env, id = a, c
	case a == "sessions": // /sessions/{id}/{env}/datablocks (quickstart form)
		env, id = c, b
	default:
		writeError(w, http.StatusNotFound, "not_found", "no such API endpoint: "+r.URL.Path)
		return
	}
	if !pathEnv(w, env) || !s.authorize(w, r, env) {
		return
	}
	s.mu.Lock()
	sess := s.lookupSessionLocked(w, env, id)
	if sess == nil {
		s.mu.Unlock()
		return
	}
	body := renderBlocksLocked(sess, sess.shape)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Simulator) handleListSessions(w http.ResponseWriter, r *http.Request) {
	env := r.PathValue("env")
	if !pathEnv(w, env) || !s.authorize(w, r, env) {
		return
	}
	flowID := r.PathValue("flowId")
	if _, ok := findFlow(env, flowID); !ok {
		writeError(w, http.StatusNotFound, "not_found", "unknown flow in environment "+env)
		return
	}
	q := r.URL.Query()
	page, size, err := pageParams(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	sortBy := q.Get("sortBy")
	if sortBy == "" {
		sortBy = "createdAt"
	}
	if sortBy != "createdAt" && sortBy != "status" {
		writeError(w, http.StatusBadRequest, "bad_request", "sortBy must be createdAt or status")
		return
	}
	desc := false
	if v := q.Get("sortDesc"); v != "" {
		if desc, err = strconv.ParseBool(v); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "sortDesc must be true or false")
			return
		}
	}
	s.mu.Lock()
	all := s.flowSessionsLocked(env, flowID, sortBy, desc)
	from, to, meta := pageOf(len(all), page, size)
	content := make([]any, 0, to-from)
	for _, sess := range all[from:to] {
		content = append(content, renderSessionLocked(sess))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"content": content, "page": meta})
}

func (s *Simulator) handlePlayer(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = fmt.Fprintf(w, "<!doctype html><title>IDnow simulator player</title>"+
		"<p>This is the IDnow simulator. Sessions progress on their own; nothing to do here.</p>"+
		"<p>Token: <code>%s</code></p>", html.EscapeString(r.URL.Query().Get("token")))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b = []byte(`{"error":"internal_error","message":"cannot encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// writeError writes the simulator's error body. IDnow's error format is undocumented, so the
// body is a small, stable JSON object clients should not depend on.
func writeError(w http.ResponseWriter, code int, errCode, msg string) {
	writeJSON(w, code, map[string]any{"error": errCode, "message": msg, "status": code})
}
