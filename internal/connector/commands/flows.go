package commands

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
)

// flowResolver turns a flow name into its id through GET /flows/{environment} (paged or not:
// the client walks every page), cached for commands.flow_cache_ttl and read again on a miss,
// at most once per commands.flow_refresh_interval.
type flowResolver struct {
	api      API
	env      string
	ttl      time.Duration
	minGap   time.Duration
	now      func() time.Time
	m        *metrics
	mu       sync.Mutex
	byName   map[string][]idnow.Flow
	readAt   time.Time
	tried    time.Time
	limiterW func(context.Context) error
}

// errFlowList marks a failure to read the flow list (retryable: IDnow or the network).
type errFlowList struct{ err error }

func (e *errFlowList) Error() string { return "read the flow list: " + e.err.Error() }
func (e *errFlowList) Unwrap() error { return e.err }

func normName(n string) string { return strings.ToLower(strings.TrimSpace(n)) }

// resolve returns the flow id of name. reason is set (unknown_flow, ambiguous_flow_name) with
// a message when the name resolves to no flow or several; err is a failed read of the list.
func (f *flowResolver) resolve(ctx context.Context, name string) (id, reason, msg string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	fresh := f.byName != nil && now.Sub(f.readAt) < f.ttl
	matches, ok := f.byName[normName(name)]
	if !fresh || (!ok && now.Sub(f.tried) >= f.minGap) {
		if err := f.read(ctx); err != nil {
			if f.byName == nil {
				return "", "", "", err
			}
			// A stale list still answers the names it knows.
		}
		matches, ok = f.byName[normName(name)]
	}
	switch {
	case !ok:
		return "", "unknown_flow", fmt.Sprintf("no flow of environment %s is named %q (GET /flows/%s lists the names); check the name or send flowId", f.env, name, f.env), nil
	case len(matches) > 1:
		return "", "ambiguous_flow_name", fmt.Sprintf("%d flows are named %q; send flowId instead", len(matches), name), nil
	}
	return matches[0].ID, "", "", nil
}

// read loads the flow list; f.mu is held.
func (f *flowResolver) read(ctx context.Context) error {
	f.tried = f.now()
	if err := f.limiterW(ctx); err != nil {
		return &errFlowList{err}
	}
	flows, err := f.api.ListFlows(ctx)
	if err != nil {
		f.m.flowRefresh.WithLabelValues("error").Inc()
		return &errFlowList{err}
	}
	f.m.flowRefresh.WithLabelValues("success").Inc()
	by := map[string][]idnow.Flow{}
	for _, fl := range flows {
		if fl.ID == "" {
			continue
		}
		k := normName(fl.Name)
		by[k] = append(by[k], fl)
	}
	f.byName, f.readAt = by, f.now()
	return nil
}
