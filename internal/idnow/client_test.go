package idnow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestListFlowsPaged(t *testing.T) {
	f := newFake(t)
	const total = 230
	var pagesSeen []string
	var mu sync.Mutex
	f.handle("GET /flows/live", func(w http.ResponseWriter, r *http.Request) {
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		size, _ := strconv.Atoi(r.URL.Query().Get("size"))
		mu.Lock()
		pagesSeen = append(pagesSeen, r.URL.Query().Get("page"))
		mu.Unlock()
		if size < 1 || size > 100 || page < 1 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"code": "bad_paging"})
			return
		}
		var content []map[string]any
		for i := (page - 1) * size; i < min(page*size, total); i++ {
			content = append(content, map[string]any{"id": fmt.Sprintf("flow-%03d", i), "name": "n", "environment": "live", "version": i})
		}
		pages := (total + size - 1) / size
		writeJSON(w, http.StatusOK, map[string]any{"content": content, "page": map[string]any{"size": size, "number": page, "totalElements": total, "totalPages": pages}})
	})
	c, _ := newTestClient(t, f, nil)
	flows, err := c.ListFlows(t.Context())
	if err != nil {
		t.Fatalf("ListFlows: %v", err)
	}
	if len(flows) != total {
		t.Fatalf("got %d flows, want %d", len(flows), total)
	}
	if flows[0].ID != "flow-000" || flows[total-1].ID != fmt.Sprintf("flow-%03d", total-1) || flows[5].Version != "5" {
		t.Fatalf("unexpected flows: first %+v last %+v", flows[0], flows[total-1])
	}
	if fmt.Sprint(pagesSeen) != "[1 2 3]" {
		t.Fatalf("pages requested %v, want [1 2 3]", pagesSeen)
	}
}

func TestListFlowsUnpagedAndPathForms(t *testing.T) {
	tests := []struct {
		name      string
		flowsPath string
		pattern   string
		body      string
	}{
		{"environment path, no page object", FlowsPathEnvironment, "GET /flows/live", `{"content":[{"id":"a","name":"A"},{"id":"b","name":"B","version":"2"}]}`},
		{"plain path, no page object", FlowsPathPlain, "GET /flows", `{"content":[{"id":"a","name":"A"},{"id":"b","name":"B","version":"2"}]}`},
		{"plain path, bare array", FlowsPathPlain, "GET /flows", `[{"id":"a","name":"A"},{"id":"b","name":"B","version":2}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.handle(tt.pattern, func(w http.ResponseWriter, r *http.Request) { writeRaw(w, http.StatusOK, tt.body) })
			c, _ := newTestClient(t, f, func(c *Config) { c.FlowsPath = tt.flowsPath })
			flows, err := c.ListFlows(t.Context())
			if err != nil {
				t.Fatalf("ListFlows: %v", err)
			}
			if len(flows) != 2 || flows[1].ID != "b" || flows[1].Version != "2" {
				t.Fatalf("flows = %+v", flows)
			}
			if n := f.hitCount(tt.pattern); n != 1 {
				t.Fatalf("%s hit %d times, want 1 (unpaged answer ends the walk)", tt.pattern, n)
			}
		})
	}
}

func TestCreateSession(t *testing.T) {
	f := newFake(t)
	var got map[string]any
	f.handle("POST /flows/{flow}/staging/sessions", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("flow") != "flow 1" || r.Header.Get("Content-Type") != "application/json" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"code": "bad_request"})
			return
		}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"code": "bad_json"})
			return
		}
		writeRaw(w, http.StatusCreated, `{"flowId":"flow 1","flowVersion":1,"environment":"staging","playerUrl":"https://player/?token=jwe",
			"sessionContext":{"sessionId":"sess-1","sessionStatus":"CREATED","createdAt":"2026-01-02T03:04:05Z","expiresAt":"2026-01-03T03:04:05Z"}}`)
	})
	c, _ := newTestClient(t, f, func(c *Config) { c.Environment = EnvironmentStaging })
	created, err := c.CreateSession(t.Context(), "flow 1", CreateSessionRequest{
		Input:    map[string]any{"basicIdentity": map[string]string{"givenName": "Erika"}},
		Metadata: map[string]string{"subjectId": "subj-1"},
		State:    "st",
	})
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	if created.SessionID != "sess-1" || created.Status != StatusCreated || created.FlowVersion != "1" || created.PlayerURL == "" || created.ExpiresAt.IsZero() {
		t.Fatalf("created = %+v", created)
	}
	if got["state"] != "st" || got["metadata"].(map[string]any)["subjectId"] != "subj-1" || got["input"] == nil {
		t.Fatalf("request body = %v", got)
	}
	if _, present := got["redirectUrl"]; present {
		t.Fatalf("empty redirectUrl was sent: %v", got)
	}
}

func TestGetSession(t *testing.T) {
	f := newFake(t)
	f.handle("GET /live/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "sess-1" {
			writeJSON(w, http.StatusNotFound, map[string]string{"code": "not_found"})
			return
		}
		writeRaw(w, http.StatusOK, `{"sessionId":"sess-1","flowId":"f","sessionStatus":"COMPLETED","outcome":"ACCEPTED","completedAt":"2026-01-02T03:04:05Z",
			"lastStep":{"stepId":"s9","stepDescription":"Final","verdict":"PASSED"},"futureField":1}`)
	})
	c, reg := newTestClient(t, f, nil)
	s, err := c.GetSession(t.Context(), "sess-1")
	if err != nil {
		t.Fatalf("GetSession: %v", err)
	}
	if !s.Status.IsTerminal() || s.NormalizedOutcome() != OutcomeAccepted || s.LastStep == nil || s.LastStep.StepID != "s9" || s.CompletedAt == nil {
		t.Fatalf("session = %+v", s)
	}
	if got := metricValue(t, c.m.requests.WithLabelValues(EndpointGetSession, "2xx")); got != 1 {
		t.Fatalf("requests_total{get_session,2xx} = %v, want 1", got)
	}
	if n := seriesCount(t, reg, "idnow_connector_idnow_request_duration_seconds"); n != 2 {
		t.Fatalf("duration series = %d, want 2 (get_session, token)", n)
	}
	if got := metricValue(t, c.m.requests.WithLabelValues(EndpointToken, "2xx")); got != 1 {
		t.Fatalf("requests_total{token,2xx} = %v, want 1", got)
	}
	if got := metricValue(t, c.m.tokenRefreshes.WithLabelValues("success")); got != 1 {
		t.Fatalf("token_refreshes_total{success} = %v, want 1", got)
	}
}

func TestGetDataBlocksShapesAndPaths(t *testing.T) {
	tests := []struct {
		name     string
		pathForm string
		pattern  string
		body     string
	}{
		{"newer shape, environment first", DataBlocksEnvironmentFirst, "GET /live/sessions/{id}/datablocks", newerDataBlocks},
		{"older shape, environment first", DataBlocksEnvironmentFirst, "GET /live/sessions/{id}/datablocks", olderDataBlocks},
		{"newer shape, session first", DataBlocksSessionFirst, "GET /sessions/{id}/live/datablocks", newerDataBlocks},
		{"older shape, session first", DataBlocksSessionFirst, "GET /sessions/{id}/live/datablocks", olderDataBlocks},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.handle(tt.pattern, func(w http.ResponseWriter, r *http.Request) {
				if r.PathValue("id") != "sess/1" {
					writeJSON(w, http.StatusNotFound, map[string]string{"code": "not_found"})
					return
				}
				writeRaw(w, http.StatusOK, tt.body)
			})
			c, _ := newTestClient(t, f, func(c *Config) { c.DataBlocksPath = tt.pathForm })
			blocks, err := c.GetDataBlocks(t.Context(), "sess/1")
			if err != nil {
				t.Fatalf("GetDataBlocks: %v", err)
			}
			want, err := parseDataBlocks([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if len(blocks) != len(want) || blocks[0].Type != "basicIdentity" || blocks[0].StepID != "step-1" || blocks[0].Status != DataBlockStored {
				t.Fatalf("blocks = %+v", blocks)
			}
			var identity struct{ GivenName string }
			if err := json.Unmarshal(blocks[0].Content, &identity); err != nil || identity.GivenName != "Erika" {
				t.Fatalf("basicIdentity content = %s (%v)", blocks[0].Content, err)
			}
			if len(blocks[1].FileRefs) == 0 || blocks[1].FileRefs[0].VaultEntryID != "v-front" {
				t.Fatalf("file refs = %+v", blocks[1].FileRefs)
			}
		})
	}
}

func TestListFlowSessions(t *testing.T) {
	f := newFake(t)
	var query string
	f.handle("GET /flows/{flow}/live/sessions", func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.RawQuery
		writeRaw(w, http.StatusOK, `{"content":[{"sessionId":"s1","sessionStatus":"RUNNING"},{"sessionId":"s2","sessionStatus":"EXPIRED"}],
			"page":{"size":2,"number":1,"totalElements":5,"totalPages":3}}`)
	})
	c, _ := newTestClient(t, f, nil)
	page, err := c.ListFlowSessions(t.Context(), "flow-1", ListPage{Page: 1, Size: 2, SortBy: "createdAt", SortDesc: true})
	if err != nil {
		t.Fatalf("ListFlowSessions: %v", err)
	}
	if query != "page=1&size=2&sortBy=createdAt&sortDesc=true" {
		t.Fatalf("query = %q", query)
	}
	if len(page.Sessions) != 2 || page.Sessions[1].Status != StatusExpired || page.Page == nil || page.Page.TotalPages != 3 || page.Page.TotalElements != 5 {
		t.Fatalf("page = %+v", page)
	}
}

func TestEmptyIDsRejectedWithoutRequest(t *testing.T) {
	f := newFake(t)
	c, _ := newTestClient(t, f, nil)
	ctx := t.Context()
	checks := map[string]error{}
	_, checks["GetSession"] = c.GetSession(ctx, "")
	_, checks["GetDataBlocks"] = c.GetDataBlocks(ctx, "")
	_, checks["CreateSession"] = c.CreateSession(ctx, "", CreateSessionRequest{})
	_, checks["ListFlowSessions"] = c.ListFlowSessions(ctx, "", ListPage{})
	_, checks["GetFile"] = c.GetFile(ctx, "")
	for name, err := range checks {
		if err == nil || !IsPermanent(err) {
			t.Errorf("%s(\"\") = %v, want a permanent error", name, err)
		}
	}
	if n := f.tokenHits.Load(); n != 0 {
		t.Errorf("token endpoint hit %d times for invalid input", n)
	}
}

func TestUndecodableResponseIsPermanent(t *testing.T) {
	f := newFake(t)
	f.handle("GET /live/sessions/{id}", func(w http.ResponseWriter, r *http.Request) { writeRaw(w, http.StatusOK, `<html>oops</html>`) })
	c, _ := newTestClient(t, f, nil)
	_, err := c.GetSession(t.Context(), "s1")
	if !errors.Is(err, ErrDecode) || !IsPermanent(err) {
		t.Fatalf("err = %v, want permanent ErrDecode", err)
	}
	if n := f.hitCount("GET /live/sessions/{id}"); n != 1 {
		t.Fatalf("hits = %d, want 1", n)
	}
}

func TestResponseSizeLimit(t *testing.T) {
	f := newFake(t)
	f.handle("GET /live/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeRaw(w, http.StatusOK, `{"sessionId":"s1","state":"`+string(make([]byte, 2048))+`"}`)
	})
	c, _ := newTestClient(t, f, func(c *Config) { c.MaxResponseSize = 1024 })
	if _, err := c.GetSession(t.Context(), "s1"); !errors.Is(err, ErrResponseTooLarge) || !IsPermanent(err) {
		t.Fatalf("err = %v, want permanent ErrResponseTooLarge", err)
	}
}

func TestMaxInFlight(t *testing.T) {
	f := newFake(t)
	var cur, peak atomic.Int64
	f.handle("GET /live/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		defer cur.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		writeRaw(w, http.StatusOK, `{"sessionId":"`+r.PathValue("id")+`","sessionStatus":"RUNNING"}`)
	})
	c, _ := newTestClient(t, f, func(c *Config) { c.MaxInFlight = 3 })
	var wg sync.WaitGroup
	errs := make(chan error, 30)
	for i := range 30 {
		wg.Go(func() {
			if _, err := c.GetSession(t.Context(), fmt.Sprint("s", i)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("GetSession: %v", err)
	}
	if p := peak.Load(); p > 3 || p < 1 {
		t.Fatalf("peak concurrent requests = %d, want 1..3", p)
	}
	if got := metricValue(t, c.m.inFlight); got != 0 {
		t.Fatalf("in_flight gauge = %v after all calls, want 0", got)
	}
}

func TestRateLimit(t *testing.T) {
	f := newFake(t)
	f.handle("GET /live/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeRaw(w, http.StatusOK, `{"sessionId":"s"}`)
	})
	// 20 requests/s with a burst of 1: 6 calls need at least 5 intervals of 50ms.
	c, _ := newTestClient(t, f, func(c *Config) { c.RateLimit = 20; c.RateBurst = 1 })
	start := time.Now()
	for range 6 {
		if _, err := c.GetSession(t.Context(), "s"); err != nil {
			t.Fatal(err)
		}
	}
	if el := time.Since(start); el < 240*time.Millisecond {
		t.Fatalf("6 calls at 20/s took %v, want >= 250ms", el)
	}
}

func TestRequestsCarryHeaders(t *testing.T) {
	f := newFake(t)
	var accept, ua string
	f.handle("GET /live/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		accept, ua = r.Header.Get("Accept"), r.Header.Get("User-Agent")
		writeRaw(w, http.StatusOK, `{"sessionId":"s"}`)
	})
	c, _ := newTestClient(t, f, nil)
	if _, err := c.GetSession(t.Context(), "s"); err != nil {
		t.Fatal(err)
	}
	if accept != "application/json" || ua != userAgent {
		t.Fatalf("Accept %q, User-Agent %q", accept, ua)
	}
}

func TestRateLimitWaitBeyondDeadlineIsContextError(t *testing.T) {
	f := newFake(t)
	f.handle("GET /live/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeRaw(w, http.StatusOK, `{"sessionId":"s"}`)
	})
	c, _ := newTestClient(t, f, func(c *Config) { c.RateLimit = 0.1; c.RateBurst = 1 })
	if _, err := c.GetSession(t.Context(), "s"); err != nil {
		t.Fatal(err)
	}
	// The next slot is 10s away; a 1s deadline cannot fit it.
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_, err := c.GetSession(ctx, "s")
	if !errors.Is(err, context.DeadlineExceeded) || IsPermanent(err) || IsRetryable(err) {
		t.Fatalf("err = %v, want a context deadline error", err)
	}
}
