package idnowsim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// FlagSet returns the `sim` subcommand's flags bound to cfg, whose current values are the defaults.
func FlagSet(cfg *Config, output io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address to listen on (simulator.listen)")
	fs.StringVar(&cfg.PublicURL, "public-url", cfg.PublicURL, "base URL advertised in discovery and presigned URLs; default http://<listen address>")
	fs.StringVar(&cfg.ClientID, "client-id", cfg.ClientID, "client id the token endpoint accepts")
	fs.StringVar(&cfg.ClientSecret, "client-secret", cfg.ClientSecret, "client secret the token endpoint accepts")
	fs.StringVar(&cfg.Environment, "environment", cfg.Environment, "environment the client belongs to: live or staging")
	fs.DurationVar(&cfg.TokenLifetime, "token-lifetime", cfg.TokenLifetime, "lifetime of issued access tokens")
	fs.DurationVar(&cfg.KeyGrace, "key-grace", cfg.KeyGrace, "how long a rotated-out signing key stays in the JWKS")
	fs.DurationVar(&cfg.PresignTTL, "presign-ttl", cfg.PresignTTL, "validity of presigned file URLs")

	fs.StringVar(&cfg.WebhookURL, "webhook-url", cfg.WebhookURL, "where to POST signed webhooks; empty sends none")
	fs.StringVar(&cfg.WebhookVariant, "webhook-variant", cfg.WebhookVariant, "webhook delivery: jwt (application/jwt body), header (JSON + X-Idnow-Signature) or mixed")
	fs.Func("webhook-header", "static header sent with every webhook, as 'Name: value' (repeatable)", func(v string) error {
		name, value, ok := strings.Cut(v, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return errors.New("want 'Name: value'")
		}
		if cfg.WebhookHeaders == nil {
			cfg.WebhookHeaders = map[string]string{}
		}
		cfg.WebhookHeaders[strings.TrimSpace(name)] = strings.TrimSpace(value)
		return nil
	})
	fs.DurationVar(&cfg.WebhookTimeout, "webhook-timeout", cfg.WebhookTimeout, "timeout of one webhook delivery attempt")
	fs.IntVar(&cfg.WebhookRetries, "webhook-retries", cfg.WebhookRetries, "retries of a failed webhook delivery")
	fs.DurationVar(&cfg.WebhookRetryBackoff, "webhook-retry-backoff", cfg.WebhookRetryBackoff, "first webhook retry delay (doubles per attempt)")
	fs.IntVar(&cfg.WebhookConcurrency, "webhook-concurrency", cfg.WebhookConcurrency, "parallel webhook deliveries")
	fs.BoolVar(&cfg.Shuffle, "shuffle", cfg.Shuffle, "delay each webhook at random within --shuffle-window so deliveries arrive out of order")
	fs.DurationVar(&cfg.ShuffleWindow, "shuffle-window", cfg.ShuffleWindow, "maximum random delay added by --shuffle")
	fs.BoolVar(&cfg.StepEvents, "step-events", cfg.StepEvents, "also emit session.step.completed events (an undocumented event name)")

	fs.IntVar(&cfg.Sessions, "sessions", cfg.Sessions, "sessions to generate after start (0 = none)")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "generated sessions per second")
	fs.DurationVar(&cfg.StepDelay, "step-delay", cfg.StepDelay, "time between lifecycle steps of a session")
	fs.DurationVar(&cfg.StepJitter, "step-jitter", cfg.StepJitter, "uniform random extra added to --step-delay")
	fs.Int64Var(&cfg.Seed, "seed", cfg.Seed, "seed of every simulated choice; 0 picks one from the clock")

	fs.StringVar(&cfg.DataBlocksShape, "datablocks-shape", cfg.DataBlocksShape, "data block response shape: new, old or mixed")
	fs.StringVar(&cfg.FlowsPaging, "flows-paging", cfg.FlowsPaging, "flow list style: paged or unpaged")
	fs.StringVar(&cfg.LastStepVariant, "last-step-variant", cfg.LastStepVariant, "lastStep fields: id, name or mixed")
	fs.StringVar(&cfg.OutcomeCase, "outcome-case", cfg.OutcomeCase, "outcome spelling: lower, upper or mixed")
	fs.Float64Var(&cfg.DeletedBlockRate, "deleted-block-rate", cfg.DeletedBlockRate, "probability that a data block is shown as DELETED")

	fs.DurationVar(&cfg.Faults.Latency, "latency", cfg.Faults.Latency, "latency added to every API response")
	fs.DurationVar(&cfg.Faults.LatencyJitter, "latency-jitter", cfg.Faults.LatencyJitter, "uniform random extra API latency")
	fs.Float64Var(&cfg.Faults.Rate429, "fault-429", cfg.Faults.Rate429, "rate (0..1) of API requests answered 429 with Retry-After")
	fs.Float64Var(&cfg.HugeDataBlocks.Rate, "huge-datablocks-rate", cfg.HugeDataBlocks.Rate, "rate (0..1) of sessions whose data-block answer is padded with --huge-datablocks-blocks small blocks")
	fs.IntVar(&cfg.HugeDataBlocks.Every, "huge-datablocks-every", cfg.HugeDataBlocks.Every, "pad every N-th created session's data-block answer (0 = none)")
	fs.IntVar(&cfg.HugeDataBlocks.Blocks, "huge-datablocks-blocks", cfg.HugeDataBlocks.Blocks, "padding blocks per chosen session")
	fs.DurationVar(&cfg.Faults.RetryAfter, "retry-after", cfg.Faults.RetryAfter, "Retry-After sent with injected 429 and 503")
	fs.Float64Var(&cfg.Faults.Rate500, "fault-500", cfg.Faults.Rate500, "rate (0..1) of API requests answered 500")
	fs.Float64Var(&cfg.Faults.Rate503, "fault-503", cfg.Faults.Rate503, "rate (0..1) of API requests answered 503")
	fs.Float64Var(&cfg.Faults.RateSlow, "fault-slow", cfg.Faults.RateSlow, "rate (0..1) of API responses delayed by --slow-delay")
	fs.DurationVar(&cfg.Faults.SlowDelay, "slow-delay", cfg.Faults.SlowDelay, "delay of slow responses")
	fs.Float64Var(&cfg.Faults.CreateTimeoutRate, "fault-create-timeout", cfg.Faults.CreateTimeoutRate, "rate (0..1) of create-session calls performed but never answered (504 after the client gives up or --create-timeout-hang)")
	fs.DurationVar(&cfg.Faults.CreateTimeoutHang, "create-timeout-hang", cfg.Faults.CreateTimeoutHang, "how long an ambiguous create holds its answer back at most")
	fs.Float64Var(&cfg.Faults.WebhookFail, "webhook-fail", cfg.Faults.WebhookFail, "rate (0..1) of webhook attempts dropped before sending (then retried)")
	return fs
}

// RunCLI is the `sim` subcommand: it parses args, starts the simulator, prints its URLs and
// credentials with curl examples, and runs until ctx is done. Metrics are served at /metrics
// on the simulator's own listener.
func RunCLI(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler) // the project's nil-logger rule (README, Contributing)
	}
	cfg := DefaultConfig()
	fs := FlagSet(&cfg, stdout)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("sim: unexpected arguments %q", fs.Args())
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sim, err := New(cfg, Deps{Registry: reg, Log: log})
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	sim.handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if err := sim.Start(ctx); err != nil {
		return fmt.Errorf("sim: %w", errors.Join(err, sim.Close()))
	}
	printBanner(stdout, sim)
	<-ctx.Done()
	if err := sim.Close(); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	return nil
}

func printBanner(w io.Writer, sim *Simulator) {
	c := sim.Config()
	// The credentials are the simulator's own throw-away ones; printing them is the point.
	_, _ = fmt.Fprintf(w, `IDnow simulator running (seed %d)
  base URL       %s
  discovery      %s
  token URL      %s
  JWKS           %s
  API            %s  (environment %s)
  client id      %s
  client secret  %s
  webhook URL    %s (variant %s)
  metrics        %s/metrics

Try:
  TOKEN=$(curl -s -u %s:%s -d grant_type=client_credentials %s | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  curl -s -H "Authorization: Bearer $TOKEN" %s/flows/%s
`,
		c.Seed, sim.URL(), sim.DiscoveryURL(), sim.TokenURL(), sim.JWKSURL(), sim.APIURL(), c.Environment,
		c.ClientID, c.ClientSecret, orNone(c.WebhookURL), c.WebhookVariant, sim.URL(),
		c.ClientID, c.ClientSecret, sim.TokenURL(), sim.APIURL(), c.Environment)
}

func orNone(s string) string {
	if s == "" {
		return "(none: webhooks are not sent)"
	}
	return s
}
