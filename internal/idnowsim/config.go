package idnowsim

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Variant names shared by several Config fields.
const (
	// VariantMixed picks one of the documented variants at random per session or per event.
	VariantMixed = "mixed"

	// WebhookVariantJWT posts the signed JWT itself as the body (Content-Type: application/jwt).
	WebhookVariantJWT = "jwt"
	// WebhookVariantHeader posts the event as JSON and puts the signed JWT in X-Idnow-Signature.
	WebhookVariantHeader = "header"

	// ShapeNew answers data blocks as {"dataBlocks":[{datablockId,type,createdBy,...,content}]}.
	ShapeNew = "new"
	// ShapeOld answers data blocks as {"datablocks":[{type,createdByStep,createdAt,<flat fields>}]}.
	ShapeOld = "old"

	// PagingPaged pages flow lists with page (1-based) and size and returns a page object.
	PagingPaged = "paged"
	// PagingUnpaged returns every flow at once without a page object, as older builds do.
	PagingUnpaged = "unpaged"

	// LastStepID renders lastStep as {stepId, stepDescription, verdict}.
	LastStepID = "id"
	// LastStepName renders lastStep as {stepName, stepType, verdict}.
	LastStepName = "name"

	// OutcomeLower renders outcomes as accepted/rejected.
	OutcomeLower = "lower"
	// OutcomeUpper renders outcomes as ACCEPTED/REJECTED.
	OutcomeUpper = "upper"

	// EnvLive and EnvStaging are the two logical environments written into API paths.
	EnvLive    = "live"
	EnvStaging = "staging"
)

// Faults configures injected failures and latency. Rates are probabilities in [0,1] drawn per
// API request (or per webhook attempt for WebhookFail) from the simulator's seeded source.
type Faults struct {
	// Latency is added to every API response; LatencyJitter adds a uniform extra in [0, jitter).
	Latency       time.Duration `koanf:"latency"`
	LatencyJitter time.Duration `koanf:"latency_jitter"`
	// Rate429 answers 429 Too Many Requests with a Retry-After header of RetryAfter (whole seconds, min 1).
	Rate429    float64       `koanf:"rate_429"`
	RetryAfter time.Duration `koanf:"retry_after"`
	// Rate500 and Rate503 answer 500 and 503 (503 also carries Retry-After).
	Rate500 float64 `koanf:"rate_500"`
	Rate503 float64 `koanf:"rate_503"`
	// RateSlow delays a response by SlowDelay before it is answered normally, so client timeouts
	// can be exercised.
	RateSlow  float64       `koanf:"rate_slow"`
	SlowDelay time.Duration `koanf:"slow_delay"`
	// WebhookFail drops a webhook delivery attempt before it is sent (counted as failed, retried
	// with a new eventDeliverId like any other failure).
	WebhookFail float64 `koanf:"webhook_fail"`
	// CreateTimeoutRate makes create-session calls ambiguous: the session is created (and
	// announced like any other), but the answer is withheld until the client gives up or
	// CreateTimeoutHang passes, then 504 is written. Callers cannot tell whether it was created.
	CreateTimeoutRate float64 `koanf:"create_timeout_rate"`
	// CreateTimeoutHang bounds how long an ambiguous create holds the answer back.
	CreateTimeoutHang time.Duration `koanf:"create_timeout_hang"`
	// WebhookDropRate loses whole events: a dropped event's webhook is never attempted, not
	// even retried, as when IDnow gave up during an outage or a misconfigured URL. Only the
	// reconciler can then bring its status.
	WebhookDropRate float64 `koanf:"webhook_drop_rate"`

	// FileExpiredRate is the probability that the files endpoint redirects to a presigned URL
	// that has already expired (the storage answers 403 request_expired): a client must ask
	// the files endpoint again for a fresh URL.
	FileExpiredRate float64 `koanf:"file_expired_rate"`
	// FileMissingRate is the probability, drawn once per file when a session's evidence is
	// created, that the file is gone (the files endpoint answers 404 for it forever), as when
	// IDnow's retention purged it.
	FileMissingRate float64 `koanf:"file_missing_rate"`
	// FileSlowBodyRate is the probability that a presigned download pauses for SlowDelay
	// half-way through the body.
	FileSlowBodyRate float64 `koanf:"file_slow_body_rate"`
	// FileTruncatedRate is the probability that a presigned download ends half-way through the
	// body without an error. The response then carries no Content-Length (chunked), so only
	// the x-amz-checksum-sha256 header the storage sends can reveal the loss.
	FileTruncatedRate float64 `koanf:"file_truncated_rate"`
}

// Files configures the evidence files of sessions that reach the document-verification step:
// a document front image and a verification report always, plus what is configured here.
// Sizes are bytes; the bytes are generated deterministically and streamed, never held.
type Files struct {
	// ImageSize is the size of every image and report; 0 (default) draws 2-8 KiB per file.
	ImageSize int64 `koanf:"image_size"`
	// ExtraImages adds a selfie to every session and a document back side to half of them
	// (default true).
	ExtraImages bool `koanf:"extra_images"`
	// VideoSize is the size of the identification video; 0 means no videos (default 1 MiB).
	VideoSize int64 `koanf:"video_size"`
	// VideoRate is the share of sessions that get a video of VideoSize (default 0.5).
	VideoRate float64 `koanf:"video_rate"`
	// LargeVideoSize and LargeVideoEvery give every LargeVideoEvery-th session that completes a
	// video of LargeVideoSize instead (e.g. 209715200 and 100: one 200 MiB video per 100
	// completed sessions); 0 (default) none.
	LargeVideoSize  int64 `koanf:"large_video_size"`
	LargeVideoEvery int   `koanf:"large_video_every"`
}

// maxFileSize bounds simulated file sizes: hundreds of MiB are supported, not terabytes.
const maxFileSize = 4 << 30

// Config is the `simulator.*` config section and also the `sim` subcommand's flags.
type Config struct {
	// Enabled starts the simulator inside `run` (development only).
	Enabled bool `koanf:"enabled"`
	// Listen is the TCP address to bind; 127.0.0.1:0 picks a free port.
	Listen string `koanf:"listen"`
	// PublicURL is the base URL advertised in discovery, presigned URLs and player URLs;
	// empty means http://<bound address>.
	PublicURL string `koanf:"public_url"`
	// ClientID and ClientSecret are the only credentials the token endpoint accepts.
	ClientID     string `koanf:"client_id"`
	ClientSecret string `koanf:"client_secret"`
	// Environment is the logical environment the client belongs to (live or staging); its token
	// is refused in the other one, as IDnow binds each API client to one environment.
	Environment string `koanf:"environment"`
	// TokenLifetime is expires_in of issued tokens; short values let clients test refresh.
	TokenLifetime time.Duration `koanf:"token_lifetime"`
	// KeyGrace is how long a rotated-out signing key stays in the JWKS.
	KeyGrace time.Duration `koanf:"key_grace"`
	// PresignTTL is how long a presigned file URL stays valid (IDnow: 3600 s).
	PresignTTL time.Duration `koanf:"presign_ttl"`

	// WebhookURL receives the webhooks; empty means none are sent (events are still recorded).
	WebhookURL string `koanf:"webhook_url"`
	// WebhookVariant is jwt, header or mixed.
	WebhookVariant string `koanf:"webhook_variant"`
	// WebhookMirrorURL, when set, also receives every delivery attempt (signed with itself as the
	// audience, same eventId and eventDeliverId), e.g. a second ingress replica; its answer
	// does not decide retries.
	WebhookMirrorURL string `koanf:"webhook_mirror_url"`
	// WebhookHeaders are static extra headers sent with every webhook (e.g. Authorization).
	WebhookHeaders map[string]string `koanf:"webhook_headers"`
	// WebhookTimeout bounds one delivery attempt (IDnow: the receiver must answer within 10 s).
	WebhookTimeout time.Duration `koanf:"webhook_timeout"`
	// WebhookRetries is how many times a failed delivery is retried (IDnow: 3).
	WebhookRetries int `koanf:"webhook_retries"`
	// WebhookRetryBackoff is the first retry delay; it doubles per attempt.
	WebhookRetryBackoff time.Duration `koanf:"webhook_retry_backoff"`
	// WebhookConcurrency is the number of parallel delivery workers.
	WebhookConcurrency int `koanf:"webhook_concurrency"`
	// Shuffle delays each event by a random amount in [0, ShuffleWindow) so deliveries arrive
	// out of order, as IDnow does not guarantee order.
	Shuffle       bool          `koanf:"shuffle"`
	ShuffleWindow time.Duration `koanf:"shuffle_window"`
	// StepEvents also emits a session.step.completed event when a step finishes, which exercises
	// receivers' handling of event names they do not know.
	StepEvents bool `koanf:"step_events"`

	// Sessions is how many sessions the simulator generates by itself after Start, at Rate per second.
	Sessions int     `koanf:"sessions"`
	Rate     float64 `koanf:"rate"`
	// StepDelay is the time between lifecycle steps of a session, plus uniform StepJitter.
	StepDelay  time.Duration `koanf:"step_delay"`
	StepJitter time.Duration `koanf:"step_jitter"`
	// Seed makes every random choice reproducible; 0 picks one from the clock (and logs it).
	Seed int64 `koanf:"seed"`

	// DataBlocksShape is new, old or mixed (chosen per session).
	DataBlocksShape string `koanf:"datablocks_shape"`
	// FlowsPaging is paged or unpaged.
	FlowsPaging string `koanf:"flows_paging"`
	// LastStepVariant is id, name or mixed (chosen per session).
	LastStepVariant string `koanf:"last_step_variant"`
	// OutcomeCase is lower, upper or mixed (chosen per session).
	OutcomeCase string `koanf:"outcome_case"`
	// DeletedBlockRate is the probability that a finished data block is later shown as DELETED.
	DeletedBlockRate float64 `koanf:"deleted_block_rate"`

	// Files configures the evidence files served through the files endpoint.
	Files Files `koanf:"files"`

	// Faults configures injected API latency and failures.
	Faults Faults `koanf:"faults"`

	// HugeDataBlocks pads chosen sessions' data-block lists with many small blocks, so that
	// their enriched record exceeds a broker's max.message.bytes (the enricher must shorten or
	// dead-letter it without holding up the other sessions).
	HugeDataBlocks HugeDataBlocks `koanf:"huge_datablocks"`
}

// HugeDataBlocks chooses sessions whose data-block answer carries Blocks extra small blocks
// (type padding, about 60 bytes of JSON each). A session is chosen when it is the Every-th,
// 2*Every-th, ... session created, or by a draw with probability Rate from its own seeded source.
type HugeDataBlocks struct {
	// Rate is the probability per session; 0 (default) draws none.
	Rate float64 `koanf:"rate"`
	// Every chooses every Every-th created session; 0 (default) none. 1 chooses every session.
	Every int `koanf:"every"`
	// Blocks is how many padding blocks a chosen session answers; default 150000 (about 9 MB
	// of JSON, below idnow.max_response_size).
	Blocks int `koanf:"blocks"`
}

// DefaultConfig returns a configuration that behaves like IDnow with fast, demo-friendly timing:
// a session completes within about a second after it is created.
func DefaultConfig() Config {
	return Config{
		Listen:              "127.0.0.1:8091",
		ClientID:            "sim-client",
		ClientSecret:        "sim-secret",
		Environment:         EnvLive,
		TokenLifetime:       24 * time.Hour,
		KeyGrace:            time.Hour,
		PresignTTL:          time.Hour,
		WebhookVariant:      WebhookVariantJWT,
		WebhookTimeout:      10 * time.Second,
		WebhookRetries:      3,
		WebhookRetryBackoff: time.Second,
		WebhookConcurrency:  4,
		ShuffleWindow:       500 * time.Millisecond,
		Rate:                5,
		StepDelay:           200 * time.Millisecond,
		StepJitter:          100 * time.Millisecond,
		DataBlocksShape:     ShapeNew,
		FlowsPaging:         PagingPaged,
		LastStepVariant:     LastStepID,
		OutcomeCase:         OutcomeLower,
		DeletedBlockRate:    0.03,
		Faults: Faults{
			RetryAfter:        time.Second,
			SlowDelay:         2 * time.Second,
			CreateTimeoutHang: 30 * time.Second,
		},
		HugeDataBlocks: HugeDataBlocks{Blocks: 150000},
		Files:          Files{ExtraImages: true, VideoSize: 1 << 20, VideoRate: 0.5},
	}
}

// Validate reports every invalid setting, naming the config key and how to fix it.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("simulator.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.Listen == "" {
		bad("listen", "must not be empty; set host:port such as 127.0.0.1:8091 (port 0 picks a free one)")
	} else if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not host:port (%v); set e.g. 127.0.0.1:8091", c.Listen, err)
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("public_url", "%q must be an absolute http(s) URL such as http://localhost:8091, or empty", c.PublicURL)
		}
	}
	if c.ClientID == "" {
		bad("client_id", "must not be empty; set the client id the token endpoint accepts (default sim-client)")
	}
	if c.ClientSecret == "" {
		bad("client_secret", "must not be empty; set the client secret the token endpoint accepts (default sim-secret)")
	}
	if c.Environment != EnvLive && c.Environment != EnvStaging {
		bad("environment", "%q is not an IDnow environment; set live or staging", c.Environment)
	}
	if c.TokenLifetime < time.Second {
		bad("token_lifetime", "%s is too short; set at least 1s (IDnow issues 24h tokens)", c.TokenLifetime)
	}
	if c.KeyGrace < 0 {
		bad("key_grace", "must not be negative")
	}
	if c.PresignTTL < time.Second {
		bad("presign_ttl", "%s is too short; set at least 1s (IDnow uses 1h)", c.PresignTTL)
	}
	if c.WebhookURL != "" {
		if u, err := url.Parse(c.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("webhook_url", "%q must be an absolute http(s) URL such as http://127.0.0.1:8080/webhooks/idnow, or empty to send none", c.WebhookURL)
		}
	}
	if c.WebhookMirrorURL != "" {
		if u, err := url.Parse(c.WebhookMirrorURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("webhook_mirror_url", "%q must be an absolute http(s) URL such as http://127.0.0.1:8081/webhooks/idnow, or empty", c.WebhookMirrorURL)
		}
	}
	switch c.WebhookVariant {
	case WebhookVariantJWT, WebhookVariantHeader, VariantMixed:
	default:
		bad("webhook_variant", "%q is unknown; set jwt, header or mixed", c.WebhookVariant)
	}
	for name := range c.WebhookHeaders {
		if name == "" || strings.ContainsAny(name, " \t:\r\n") {
			bad("webhook_headers", "%q is not a valid header name; use a token such as Authorization or X-Api-Key", name)
		}
	}
	if c.WebhookTimeout <= 0 {
		bad("webhook_timeout", "must be positive; IDnow allows the receiver 10s")
	}
	if c.WebhookRetries < 0 || c.WebhookRetries > 10 {
		bad("webhook_retries", "%d is out of range; set 0..10 (IDnow retries 3 times)", c.WebhookRetries)
	}
	if c.WebhookRetryBackoff <= 0 {
		bad("webhook_retry_backoff", "must be positive, e.g. 1s")
	}
	if c.WebhookConcurrency < 1 {
		bad("webhook_concurrency", "must be at least 1")
	}
	if c.Shuffle && c.ShuffleWindow <= 0 {
		bad("shuffle_window", "must be positive when simulator.shuffle is true, e.g. 500ms")
	}
	if c.Sessions < 0 {
		bad("sessions", "must not be negative; 0 generates none")
	}
	if c.Sessions > 0 && !(c.Rate > 0) {
		bad("rate", "must be positive when simulator.sessions > 0, e.g. 5 (sessions per second)")
	}
	if c.StepDelay < 0 || c.StepJitter < 0 {
		bad("step_delay", "step_delay and step_jitter must not be negative")
	}
	if !oneOf(c.DataBlocksShape, ShapeNew, ShapeOld, VariantMixed) {
		bad("datablocks_shape", "%q is unknown; set new, old or mixed", c.DataBlocksShape)
	}
	if !oneOf(c.FlowsPaging, PagingPaged, PagingUnpaged) {
		bad("flows_paging", "%q is unknown; set paged or unpaged", c.FlowsPaging)
	}
	if !oneOf(c.LastStepVariant, LastStepID, LastStepName, VariantMixed) {
		bad("last_step_variant", "%q is unknown; set id, name or mixed", c.LastStepVariant)
	}
	if !oneOf(c.OutcomeCase, OutcomeLower, OutcomeUpper, VariantMixed) {
		bad("outcome_case", "%q is unknown; set lower, upper or mixed", c.OutcomeCase)
	}
	if !validRate(c.DeletedBlockRate) {
		bad("deleted_block_rate", "%v must be within 0..1", c.DeletedBlockRate)
	}
	if !validRate(c.HugeDataBlocks.Rate) {
		bad("huge_datablocks.rate", "%v must be within 0..1", c.HugeDataBlocks.Rate)
	}
	if c.HugeDataBlocks.Every < 0 {
		bad("huge_datablocks.every", "must not be negative; 0 chooses no session, N every N-th")
	}
	if (c.HugeDataBlocks.Rate > 0 || c.HugeDataBlocks.Every > 0) && (c.HugeDataBlocks.Blocks < 1 || c.HugeDataBlocks.Blocks > 1000000) {
		bad("huge_datablocks.blocks", "%d is out of range; set 1..1000000 (default 150000)", c.HugeDataBlocks.Blocks)
	}
	for _, f := range []struct {
		key string
		v   int64
	}{{"image_size", c.Files.ImageSize}, {"video_size", c.Files.VideoSize}, {"large_video_size", c.Files.LargeVideoSize}} {
		if f.v < 0 || f.v > maxFileSize {
			bad("files."+f.key, "%d is out of range; set 0..%d bytes", f.v, int64(maxFileSize))
		}
	}
	if !validRate(c.Files.VideoRate) {
		bad("files.video_rate", "%v must be within 0..1", c.Files.VideoRate)
	}
	if c.Files.LargeVideoEvery < 0 {
		bad("files.large_video_every", "must not be negative; 0 gives no session the large video, N every N-th")
	}
	errs = append(errs, c.Faults.validate("simulator.faults.")...)
	return errors.Join(errs...)
}

func (f Faults) validate(prefix string) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", prefix, key, fmt.Sprintf(format, args...)))
	}
	if f.Latency < 0 || f.LatencyJitter < 0 {
		bad("latency", "latency and latency_jitter must not be negative")
	}
	for _, r := range []struct {
		key string
		v   float64
	}{{"rate_429", f.Rate429}, {"rate_500", f.Rate500}, {"rate_503", f.Rate503}, {"rate_slow", f.RateSlow}, {"webhook_fail", f.WebhookFail}, {"webhook_drop_rate", f.WebhookDropRate},
		{"create_timeout_rate", f.CreateTimeoutRate},
		{"file_expired_rate", f.FileExpiredRate}, {"file_missing_rate", f.FileMissingRate}, {"file_slow_body_rate", f.FileSlowBodyRate}, {"file_truncated_rate", f.FileTruncatedRate}} {
		if !validRate(r.v) {
			bad(r.key, "%v must be within 0..1", r.v)
		}
	}
	if sum := f.Rate429 + f.Rate500 + f.Rate503; sum > 1 {
		bad("rate_429", "rate_429 + rate_500 + rate_503 = %v exceeds 1; lower them", sum)
	}
	if f.Rate429+f.Rate503 > 0 && f.RetryAfter < time.Second {
		bad("retry_after", "must be at least 1s when 429 or 503 faults are injected (Retry-After is in whole seconds)")
	}
	if f.CreateTimeoutRate > 0 && f.CreateTimeoutHang <= 0 {
		bad("create_timeout_hang", "must be positive when create_timeout_rate > 0, e.g. 30s (longer than the client's timeout)")
	}
	if (f.RateSlow > 0 || f.FileSlowBodyRate > 0) && f.SlowDelay <= 0 {
		bad("slow_delay", "must be positive when rate_slow > 0, e.g. 2s")
	}
	return errs
}

// Validate checks a Faults value given to SetFaults.
func (f Faults) Validate() error { return errors.Join(f.validate("simulator.faults.")...) }

func validRate(v float64) bool { return v >= 0 && v <= 1 }

func oneOf(v string, options ...string) bool {
	for _, o := range options {
		if v == o {
			return true
		}
	}
	return false
}
