package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/enrich"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
)

// ScaleConfig bounds the enricher scale-out benchmark: the same backlog drained by 1, 2, 3...
// members of one consumer group while the API latency is the bound.
type ScaleConfig struct {
	Exe         string
	Brokers     []string
	Members     []int
	Concurrency int           // enrich.concurrency per member
	Latency     time.Duration // fixed simulator API latency L
	Delivery    string
	Events      int
	RunTimeout  time.Duration
}

// DefaultScaleConfig keeps the API the bound on 2 cores: 3 members at C=32, L=50 ms need
// about 1 000 events/s.
func DefaultScaleConfig() ScaleConfig {
	return ScaleConfig{Members: []int{1, 2, 3}, Concurrency: 32, Latency: 50 * time.Millisecond,
		Delivery: enrich.DeliveryExactlyOnce, Events: 12000, RunTimeout: 3 * time.Minute}
}

// Validate reports a config the runner cannot honour.
func (c ScaleConfig) Validate() error {
	var errs []error
	if c.Exe == "" {
		errs = append(errs, errors.New("scale-out bench: no executable"))
	}
	if len(c.Members) == 0 || slices.ContainsFunc(c.Members, func(n int) bool { return n <= 0 || n > 6 }) {
		errs = append(errs, errors.New("scale-out bench: -members must list member counts between 1 and 6 (the partitions), e.g. 1,2,3"))
	}
	if c.Concurrency <= 0 || c.Latency <= 0 || c.RunTimeout <= 0 {
		errs = append(errs, errors.New("scale-out bench: -concurrency, -latency and -run-timeout must be positive"))
	}
	if c.Events <= 0 || c.Events > 2_000_000 {
		errs = append(errs, errors.New("scale-out bench: -events must be between 1 and 2000000"))
	}
	if c.Delivery != enrich.DeliveryExactlyOnce && c.Delivery != enrich.DeliveryAtLeastOnce {
		errs = append(errs, fmt.Errorf("scale-out bench: -delivery %q: use exactly_once or at_least_once", c.Delivery))
	}
	return errors.Join(errs...)
}

// ScaleRun is one drain by Members members.
type ScaleRun struct {
	Members       int
	EventsPerSec  float64
	CallsPerEvent float64
	Limit         float64 // Members × C / (calls × L)
	DLQ           int64
}

// ScaleReport is the outcome of the scale-out benchmark.
type ScaleReport struct {
	Broker string
	Config ScaleConfig
	Runs   []ScaleRun
}

// RunScale drains a fresh backlog with each member count in turn. The members start on empty
// topics and the backlog is written once the group is stable, so the rate measures the members
// sharing the partitions, not their joining.
func RunScale(ctx context.Context, cfg ScaleConfig, log *slog.Logger) (*ScaleReport, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	env, err := newBenchEnv(ctx, cfg.Brokers, max(6000, min(cfg.Events/4, 25000)), log)
	if err != nil {
		return nil, err
	}
	defer env.close()
	if err := env.sim.SetFaults(idnowsim.Faults{Latency: cfg.Latency, RetryAfter: time.Second, SlowDelay: time.Second}); err != nil {
		return nil, err
	}
	rep := &ScaleReport{Broker: env.broker, Config: cfg}
	for i, m := range cfg.Members {
		r, err := env.scaleDrain(ctx, cfg, fmt.Sprintf("%s-scale-%d", env.run, i), m, log)
		if err != nil {
			return nil, fmt.Errorf("%d members: %w", m, err)
		}
		rep.Runs = append(rep.Runs, r)
	}
	return rep, nil
}

func (b *benchEnv) scaleDrain(ctx context.Context, cfg ScaleConfig, id string, members int, log *slog.Logger) (ScaleRun, error) {
	r := ScaleRun{Members: members}
	tp, err := b.topics(ctx, id)
	if err != nil {
		return r, err
	}
	group := "bench-" + id
	var children []*Child
	defer func() {
		for _, c := range children {
			_ = c.Stop(30 * time.Second)
		}
	}()
	for k := range members {
		spec := b.enricherSpec(tp, group, fmt.Sprintf("%s-m%d", id, k), cfg.Delivery, cfg.Concurrency)
		c, err := StartChild(cfg.Exe, spec, 30*time.Second)
		if err != nil {
			return r, err
		}
		children = append(children, c)
	}
	if err := waitGroupStable(ctx, b.adm, group, members, time.Minute); err != nil {
		return r, err
	}
	apiBefore := b.sim.Stats().APIRequests
	if err := produceBacklog(ctx, b.cl, tp.Sessions, cfg.Events, b.sessions, b.status); err != nil {
		return r, err
	}
	deadline := time.Now().Add(cfg.RunTimeout)
	var (
		t0     time.Time
		c0     int64
		warmAt = int64(cfg.Events) / 20
	)
	for {
		if time.Now().After(deadline) {
			return r, fmt.Errorf("%d members did not drain %d events within %s", members, cfg.Events, cfg.RunTimeout)
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		done, err := committed(ctx, b.adm, group, tp.Sessions)
		if err != nil {
			continue
		}
		if t0.IsZero() && done >= warmAt {
			t0, c0 = time.Now(), done
		}
		if done >= int64(cfg.Events) {
			r.EventsPerSec = float64(done-c0) / time.Since(t0).Seconds()
			break
		}
	}
	r.CallsPerEvent = float64(b.sim.Stats().APIRequests-apiBefore) / float64(cfg.Events)
	r.Limit = float64(members*cfg.Concurrency) / (r.CallsPerEvent * cfg.Latency.Seconds())
	ends, err := b.adm.ListEndOffsets(ctx, tp.DLQ)
	if err != nil {
		return r, fmt.Errorf("read DLQ end offsets: %w", err)
	}
	for _, ps := range ends {
		for _, o := range ps {
			r.DLQ += o.Offset
		}
	}
	log.Info("scale-out drain done", "members", members, "events_per_sec", int(r.EventsPerSec), "limit", int(r.Limit))
	return r, nil
}

// Write renders the report as markdown.
func (r *ScaleReport) Write(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "\n## Enricher scale-out (broker: %s; C=%d per member, %s, L=%s, %d events, 6 partitions, state store on)\n\n", r.Broker, c.Concurrency, c.Delivery, c.Latency, c.Events)
	fmt.Fprintln(w, "| members | events/s | API calls/event | limit members×C/(calls×L) | ratio to limit | vs 1 member | DLQ |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|")
	var one float64
	for _, x := range r.Runs {
		if x.Members == 1 {
			one = x.EventsPerSec
		}
	}
	for _, x := range r.Runs {
		vs := "-"
		if one > 0 {
			vs = fmt.Sprintf("**%.2fx**", x.EventsPerSec/one)
		}
		fmt.Fprintf(w, "| %d | %.0f | %.2f | %.0f | %.2f | %s | %d |\n", x.Members, x.EventsPerSec, x.CallsPerEvent, x.Limit, x.EventsPerSec/x.Limit, vs, x.DLQ)
	}
}
