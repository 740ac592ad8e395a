package idnow_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim/simtest"
	"github.com/prometheus/client_golang/prometheus"
)

// Contract tests: the client against the simulator, which was written from the same
// reference independently of the client, so a shared misreading is unlikely to hide.

// simClient builds a client for sim; mutate adjusts the config first.
func simClient(t *testing.T, sim *idnowsim.Simulator, mutate func(*idnow.Config)) *idnow.Client {
	t.Helper()
	scfg := sim.Config()
	cfg := idnow.DefaultConfig()
	cfg.APIURL = sim.APIURL()
	cfg.AuthURL = sim.AuthURL()
	cfg.ClientID = scfg.ClientID
	cfg.ClientSecret = scfg.ClientSecret
	cfg.Environment = scfg.Environment
	cfg.Timeout = 5 * time.Second
	cfg.RateLimit = 0
	cfg.Retry.InitialBackoff = 5 * time.Millisecond
	cfg.Retry.MaxBackoff = 50 * time.Millisecond
	cfg.AllowInsecureHTTP = true // the simulator serves plain http on loopback
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := idnow.New(t.Context(), cfg, idnow.Deps{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("idnow.New against the simulator: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// waitTerminal polls GetSession until the session is terminal.
func waitTerminal(t *testing.T, c *idnow.Client, id string) *idnow.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		s, err := c.GetSession(ctx, id)
		if err != nil {
			t.Fatalf("GetSession(%s): %v", id, err)
		}
		if s.Status.IsTerminal() {
			return s
		}
		select {
		case <-ctx.Done():
			t.Fatalf("session %s still %s", id, s.Status)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestContractDiscoveryTokenAndFlows(t *testing.T) {
	for _, paging := range []string{idnowsim.PagingPaged, idnowsim.PagingUnpaged} {
		for _, style := range []string{idnow.AuthStyleBasic, idnow.AuthStylePost} {
			for _, flowsPath := range []string{idnow.FlowsPathEnvironment, idnow.FlowsPathPlain} {
				t.Run(fmt.Sprintf("%s/%s/%s", paging, style, flowsPath), func(t *testing.T) {
					sim := simtest.Start(t, func(c *idnowsim.Config) { c.FlowsPaging = paging })
					c := simClient(t, sim, func(c *idnow.Config) { c.AuthStyle = style; c.FlowsPath = flowsPath })
					if c.TokenURL() != sim.TokenURL() {
						t.Fatalf("discovered token URL %q, want %q", c.TokenURL(), sim.TokenURL())
					}
					if err := c.Token(t.Context()); err != nil {
						t.Fatalf("Token: %v", err)
					}
					flows, err := c.ListFlows(t.Context())
					if err != nil {
						t.Fatalf("ListFlows: %v", err)
					}
					if len(flows) == 0 || flows[0].ID == "" || flows[0].Environment != idnow.EnvironmentLive {
						t.Fatalf("flows = %+v", flows)
					}
					st := sim.Stats()
					if style == idnow.AuthStyleBasic && st.TokenRequestsBasic != 1 || style == idnow.AuthStylePost && st.TokenRequestsPost != 1 {
						t.Fatalf("token requests basic=%d post=%d, want one %s", st.TokenRequestsBasic, st.TokenRequestsPost, style)
					}
				})
			}
		}
	}
}

func TestContractSessionLifecycleAndDataBlocks(t *testing.T) {
	tests := []struct {
		shape    string
		pathForm string
		lastStep string
	}{
		{idnowsim.ShapeNew, idnow.DataBlocksEnvironmentFirst, idnowsim.LastStepID},
		{idnowsim.ShapeOld, idnow.DataBlocksEnvironmentFirst, idnowsim.LastStepName},
		{idnowsim.ShapeNew, idnow.DataBlocksSessionFirst, idnowsim.LastStepName},
		{idnowsim.ShapeOld, idnow.DataBlocksSessionFirst, idnowsim.LastStepID},
	}
	for _, tt := range tests {
		t.Run(tt.shape+"/"+tt.pathForm+"/"+tt.lastStep, func(t *testing.T) {
			sim := simtest.Start(t, func(c *idnowsim.Config) {
				c.DataBlocksShape = tt.shape
				c.LastStepVariant = tt.lastStep
				c.OutcomeCase = idnowsim.VariantMixed
				c.DeletedBlockRate = 0
			})
			c := simClient(t, sim, func(c *idnow.Config) { c.DataBlocksPath = tt.pathForm })
			ctx := t.Context()
			flows, err := c.ListFlows(ctx)
			if err != nil {
				t.Fatalf("ListFlows: %v", err)
			}
			created, err := c.CreateSession(ctx, flows[0].ID, idnow.CreateSessionRequest{
				Metadata: map[string]string{"subjectId": "subject-1"},
				State:    "opaque",
			})
			if err != nil {
				t.Fatalf("CreateSession: %v", err)
			}
			if created.SessionID == "" || created.Status != idnow.StatusCreated || created.FlowID != flows[0].ID || created.PlayerURL == "" {
				t.Fatalf("created = %+v", created)
			}
			s := waitTerminal(t, c, created.SessionID)
			snap, ok := sim.Session(created.SessionID)
			if !ok {
				t.Fatalf("simulator does not know session %s", created.SessionID)
			}
			if string(s.Status) != snap.Status || s.FlowID != snap.FlowID || s.SubjectID != "subject-1" || s.State != "opaque" {
				t.Fatalf("session = %+v, simulator = %+v", s, snap)
			}
			if s.CompletedAt == nil || s.CreatedAt.IsZero() {
				t.Fatalf("terminal session lacks timestamps: %+v", s)
			}
			if s.Status == idnow.StatusCompleted {
				if got, want := s.NormalizedOutcome(), idnow.NormalizeOutcome(snap.Outcome); got != want || (got != idnow.OutcomeAccepted && got != idnow.OutcomeRejected) {
					t.Fatalf("outcome %q normalised to %q, simulator says %q", s.Outcome, got, snap.Outcome)
				}
			}
			if s.LastStep != nil {
				if tt.lastStep == idnowsim.LastStepID && s.LastStep.StepID == "" || tt.lastStep == idnowsim.LastStepName && s.LastStep.StepName == "" {
					t.Fatalf("lastStep %+v does not carry the %s variant", s.LastStep, tt.lastStep)
				}
			}

			blocks, err := c.GetDataBlocks(ctx, created.SessionID)
			if err != nil {
				t.Fatalf("GetDataBlocks: %v", err)
			}
			var types []string
			for _, b := range blocks {
				types = append(types, b.Type)
				if b.Status != idnow.DataBlockStored || len(b.Content) == 0 || b.Content[0] != '{' {
					t.Fatalf("block %s: status %q content %d bytes", b.Type, b.Status, len(b.Content))
				}
			}
			if !slices.Equal(types, snap.DataBlockTypes) {
				t.Fatalf("data block types %v, simulator has %v", types, snap.DataBlockTypes)
			}

			page, err := c.ListFlowSessions(ctx, flows[0].ID, idnow.ListPage{Page: 1, Size: 10, SortBy: "createdAt", SortDesc: true})
			if err != nil {
				t.Fatalf("ListFlowSessions: %v", err)
			}
			if len(page.Sessions) != 1 || page.Sessions[0].SessionID != created.SessionID || page.Page == nil || page.Page.TotalElements != 1 {
				t.Fatalf("flow sessions = %+v", page)
			}
		})
	}
}

func TestContractFilesNeverSeeAuthorization(t *testing.T) {
	for _, shape := range []string{idnowsim.ShapeNew, idnowsim.ShapeOld} {
		t.Run(shape, func(t *testing.T) {
			sim := simtest.Start(t, func(c *idnowsim.Config) { c.DataBlocksShape = shape; c.DeletedBlockRate = 0 })
			c := simClient(t, sim, nil)
			ids := sim.CreateSessions(8)
			simtest.WaitIdle(t, sim, 10*time.Second)
			ctx := t.Context()
			fetched := 0
			for _, id := range ids {
				blocks, err := c.GetDataBlocks(ctx, id)
				if err != nil {
					t.Fatalf("GetDataBlocks(%s): %v", id, err)
				}
				snap, _ := sim.Session(id)
				var refs []string
				for _, b := range blocks {
					for _, ref := range b.FileRefs {
						refs = append(refs, ref.VaultEntryID)
						f, err := c.GetFile(ctx, ref.VaultEntryID)
						if err != nil {
							t.Fatalf("GetFile(%s): %v", ref.VaultEntryID, err)
						}
						body, err := io.ReadAll(f.Body)
						_ = f.Body.Close()
						if err != nil || len(body) == 0 || (f.Size >= 0 && int64(len(body)) != f.Size) || f.ContentType == "" {
							t.Fatalf("file %s: %d bytes (size %d, type %q), err %v", ref.VaultEntryID, len(body), f.Size, f.ContentType, err)
						}
						fetched++
					}
				}
				slices.Sort(refs)
				want := slices.Clone(snap.Files)
				slices.Sort(want)
				if !slices.Equal(refs, want) {
					t.Fatalf("session %s: file refs %v, simulator has %v", id, refs, want)
				}
			}
			if fetched == 0 {
				t.Fatal("no session produced a file; the contract was not exercised")
			}
			st := sim.Stats()
			if st.PresignedWithAuthorization != 0 {
				t.Fatalf("the presigned host saw Authorization %d times", st.PresignedWithAuthorization)
			}
			if st.PresignedServed != int64(fetched) || st.FileRedirects != int64(fetched) {
				t.Fatalf("presigned served %d, redirects %d, want %d each", st.PresignedServed, st.FileRedirects, fetched)
			}
		})
	}
}

func TestContractFileSizeLimit(t *testing.T) {
	sim := simtest.Start(t, func(c *idnowsim.Config) { c.DeletedBlockRate = 0 })
	c := simClient(t, sim, func(c *idnow.Config) { c.MaxFileSize = 16 })
	ids := sim.CreateSessions(8)
	simtest.WaitIdle(t, sim, 10*time.Second)
	for _, id := range ids {
		snap, _ := sim.Session(id)
		if len(snap.Files) == 0 {
			continue
		}
		_, err := c.GetFile(t.Context(), snap.Files[0])
		if !errors.Is(err, idnow.ErrFileTooLarge) || !idnow.IsPermanent(err) {
			t.Fatalf("GetFile with a 16-byte limit = %v, want permanent ErrFileTooLarge", err)
		}
		return
	}
	t.Fatal("no session produced a file")
}

func TestContractTokenRefreshAfterExpiry(t *testing.T) {
	sim := simtest.Start(t, func(c *idnowsim.Config) { c.TokenLifetime = time.Second })
	c := simClient(t, sim, nil)
	ctx := t.Context()
	if _, err := c.ListFlows(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListFlows(ctx); err != nil {
		t.Fatal(err)
	}
	if n := sim.Stats().TokensIssued; n != 1 {
		t.Fatalf("tokens issued = %d before expiry, want 1 (cached)", n)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := c.ListFlows(ctx); err != nil {
		t.Fatalf("ListFlows after expiry: %v", err)
	}
	st := sim.Stats()
	if st.TokensIssued != 2 {
		t.Fatalf("tokens issued = %d after expiry, want 2", st.TokensIssued)
	}
}

func TestContractTokenRefreshAfter401(t *testing.T) {
	sim := simtest.Start(t)
	c := simClient(t, sim, nil)
	ctx := t.Context()
	if _, err := c.ListFlows(ctx); err != nil {
		t.Fatal(err)
	}
	sim.RevokeTokens()
	if _, err := c.ListFlows(ctx); err != nil {
		t.Fatalf("ListFlows after revocation: %v", err)
	}
	if n := sim.Stats().TokensIssued; n != 2 {
		t.Fatalf("tokens issued = %d, want 2 (one forced refresh)", n)
	}
}

func TestContractWrongCredentialsAndEnvironment(t *testing.T) {
	sim := simtest.Start(t)
	bad := simClient(t, sim, func(c *idnow.Config) { c.ClientSecret = "wrong" })
	err := bad.Token(t.Context())
	if !idnow.IsPermanent(err) || !errors.Is(err, idnow.ErrUnauthorized) {
		t.Fatalf("Token with a wrong secret = %v, want permanent ErrUnauthorized", err)
	}
	if bytes.Contains([]byte(err.Error()), []byte("wrong")) {
		t.Fatalf("error leaks the secret: %v", err)
	}

	staging := simClient(t, sim, func(c *idnow.Config) { c.Environment = idnow.EnvironmentStaging })
	if _, err := staging.ListFlows(t.Context()); !idnow.IsPermanent(err) {
		t.Fatalf("ListFlows in the other environment = %v, want a permanent error", err)
	}
}

func TestContractFaultsRetried(t *testing.T) {
	sim := simtest.Start(t, func(c *idnowsim.Config) {
		// Only 500s here: injected 429 and 503 carry a Retry-After of at least 1s, which the
		// client honours, so TestContractRetryAfterParsed covers them without waiting.
		c.Faults.Rate500 = 0.5
	})
	c := simClient(t, sim, func(c *idnow.Config) { c.Retry.MaxAttempts = 0 })
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	ids := sim.CreateSessions(3)
	for range 5 {
		for _, id := range ids {
			if _, err := c.GetSession(ctx, id); err != nil {
				t.Fatalf("GetSession(%s) under injected faults: %v", id, err)
			}
		}
	}
	if _, err := c.ListFlows(ctx); err != nil {
		t.Fatalf("ListFlows under injected faults: %v", err)
	}
	st := sim.Stats()
	if st.Faults500 == 0 {
		t.Fatalf("no fault was injected (stats %+v); the test did not exercise retries", st)
	}
}

func TestContractRetryAfterParsed(t *testing.T) {
	for _, status := range []int{429, 503} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			sim := simtest.Start(t)
			c := simClient(t, sim, nil)
			if err := c.Token(t.Context()); err != nil {
				t.Fatal(err)
			}
			faults := sim.Config().Faults
			faults.RetryAfter = 2 * time.Second
			if status == 429 {
				faults.Rate429 = 1
			} else {
				faults.Rate503 = 1
			}
			if err := sim.SetFaults(faults); err != nil {
				t.Fatal(err)
			}
			// A deadline shorter than Retry-After: the client hands the retryable error back at
			// once instead of sleeping past the caller's deadline.
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			_, err := c.ListFlows(ctx)
			var apiErr *idnow.APIError
			if !idnow.IsRetryable(err) || !errors.As(err, &apiErr) || apiErr.StatusCode != status || apiErr.RetryAfter != 2*time.Second {
				t.Fatalf("ListFlows = %v, want a retryable %d carrying the simulator's Retry-After of 2s", err, status)
			}
		})
	}
}
