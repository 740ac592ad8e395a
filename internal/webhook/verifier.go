// Package webhook verifies IDnow webhooks: compact JWTs signed with a key from IDnow's JWKS,
// carrying the event under the `data` claim (reference §7).
//
// The HTTP side (content types, body limits, the two delivery variants) belongs to the ingress,
// which hands the raw token to Verifier.Verify and maps the result to a status: an error matching
// ErrInvalidToken (a *VerificationError with a non-secret Reason) is the sender's fault and
// becomes 401; ErrKeysUnavailable is the receiver's (the JWKS could not be loaded yet) and becomes
// 503 so that IDnow retries.
//
// Keys come from the JWKS via MicahParks/keyfunc and jwkset, are refreshed in the background and
// refetched, rate-limited, when a token names an unknown kid (IDnow rotated its keys); an unknown
// kid while the JWKS cannot be fetched is ErrKeysUnavailable, not a rejection. Before golang-jwt
// sees a token, its header and claims are scanned once, strictly: duplicate member names (at any
// depth), invalid UTF-8, a crit header, and exp/iat/nbf that are not JSON numbers are rejected,
// so the decoded event is the only reading of the signed bytes. golang-jwt then checks the
// signature and claims with an explicit allow-list of asymmetric algorithms, so unsigned tokens
// and HMAC-with-public-key confusion are rejected before any key is looked up; finally iat must
// be within webhook.max_token_age.
package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Claims are the verified claims of a webhook token. Data is the raw JSON of the `data` claim:
// the IDnow event (eventId, eventName, payload, ...), left for the ingress to map. It is taken
// from the verifier's strict scan of the claims (golang-jwt skips it rather than copy it again).
type Claims struct {
	jwt.RegisteredClaims
	Data json.RawMessage `json:"-"`
}

// errMissingKID is returned by the keyfunc when the token header has no usable kid: without it
// the key would have to be guessed, which we refuse.
var errMissingKID = errors.New("token header has no kid")

// Verifier verifies webhook tokens against IDnow's JWKS. It is safe for concurrent use. Create it
// with NewVerifier and stop it with Close.
type Verifier struct {
	parser     *jwt.Parser
	keyfunc    keyfunc.Keyfunc
	keys       *keyCache
	algorithms []string
	metrics    *metrics
	log        *slog.Logger
	// maxAge is webhook.max_token_age plus webhook.clock_skew: the largest accepted now - iat.
	maxAge time.Duration

	staticName string
	staticSum  [sha256.Size]byte

	cancel    context.CancelFunc
	closeIdle func() // set when the verifier owns its HTTP client
	closeOnce sync.Once
}

// Deps are the verifier's collaborators (the project's constructor convention: Config holds the
// user's settings, Deps what the application wires in).
type Deps struct {
	// HTTPClient is used for JWKS requests; nil means a private client with default settings,
	// whose idle connections Close releases.
	HTTPClient *http.Client
	// Registry receives the verifier's metrics; required (the default global registry is never
	// used implicitly).
	Registry prometheus.Registerer
	// Log receives the verifier's log lines; nil discards them.
	Log *slog.Logger
}

// NewVerifier validates cfg, registers the metrics on deps.Registry and starts loading the JWKS.
//
// It makes one JWKS request (bounded by cfg.JWKSTimeout and ctx) before returning so that, when
// the host is up, the verifier is ready at once. If that request fails, NewVerifier still succeeds:
// it logs a warning and keeps retrying in the background, Ready reports false and Verify returns
// ErrKeysUnavailable until keys are loaded. Background work stops when ctx ends or Close is
// called; Close must be called in any case to wait for it.
func NewVerifier(ctx context.Context, cfg Config, deps Deps) (*Verifier, error) {
	httpClient, reg, log := deps.HTTPClient, deps.Registry, deps.Log
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("create webhook verifier: %w", err)
	}
	if reg == nil {
		return nil, errors.New("create webhook verifier: nil prometheus.Registerer: pass the application's registry")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "webhook")
	ownClient := httpClient == nil
	if ownClient {
		// A private transport, so Close can drop its idle connections (and their goroutines)
		// without touching connections of other components.
		httpClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}

	v := &Verifier{
		algorithms: slices.Clone(cfg.Algorithms),
		log:        log,
		staticName: cfg.StaticHeader.Name,
		maxAge:     cfg.MaxTokenAge + cfg.ClockSkew,
	}
	if ownClient {
		v.closeIdle = httpClient.CloseIdleConnections
	}
	if v.staticName != "" {
		secret, err := staticHeaderValue(cfg.StaticHeader)
		if err != nil {
			return nil, fmt.Errorf("create webhook verifier: %w", err)
		}
		// Comparing digests keeps the comparison constant-time even in the length of the value.
		v.staticSum = sha256.Sum256([]byte(secret))
	}

	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("create webhook verifier: %w", err)
	}
	v.metrics = m

	// A plain-http jwks_url got past Validate only with AllowInsecureHTTP; the application's
	// start-up transport notes warn about it once, naming the key, so no second line here.

	runCtx, cancel := context.WithCancel(ctx)
	v.cancel = cancel
	v.keys = &keyCache{
		MemoryJWKSet: jwkset.NewMemoryStorage(),
		url:          cfg.JWKSURL,
		client:       httpClient,
		timeout:      cfg.JWKSTimeout,
		algorithms:   v.algorithms,
		limiter:      rate.NewLimiter(rate.Every(cfg.JWKSRefetchMinInterval), 1),
		metrics:      m,
		log:          log,
		ctx:          runCtx,
	}
	kf, err := keyfunc.New(keyfunc.Options{Ctx: runCtx, Storage: v.keys})
	if err != nil {
		cancel()
		m.unregister(reg)
		return nil, fmt.Errorf("create webhook verifier: build keyfunc: %w", err)
	}
	v.keyfunc = kf
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(v.algorithms),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithLeeway(cfg.ClockSkew),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(),
	)

	loaded := false
	if call := v.keys.startRefresh(false); call != nil {
		select {
		case <-call.done:
			loaded = call.err == nil
		case <-ctx.Done():
		}
	}
	if !loaded {
		log.Warn("webhook JWKS not loaded at start-up; webhooks get 503 until it is, retrying in the background",
			"jwks_url", cfg.JWKSURL)
	}
	v.keys.wg.Add(1)
	go v.keys.run(cfg.JWKSRefreshInterval, loaded)

	log.Info("webhook verifier started",
		"jwks_url", cfg.JWKSURL, "issuer", cfg.Issuer, "audience", cfg.Audience,
		"algorithms", strings.Join(v.algorithms, ","), "clock_skew", cfg.ClockSkew.String(),
		"max_token_age", cfg.MaxTokenAge.String(), "static_header", v.staticName != "")
	return v, nil
}

// Verify checks a compact JWT webhook token: strict JSON in header and claims (no duplicate member
// names at any depth, valid UTF-8, no crit header, numeric exp/iat/nbf), header (allowed alg, kid
// present and known), signature, iss, aud, exp and iat (both required; with webhook.clock_skew
// leeway), nbf, the age bound webhook.max_token_age on iat, and that the data claim holds a JSON
// object. It returns the verified claims, or an error that matches ErrInvalidToken (a
// *VerificationError), ErrKeysUnavailable (the kid is not loaded and the JWKS cannot be fetched,
// or no keys are loaded), or the ctx error if ctx ended while waiting for a JWKS refetch.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	return v.VerifyData(ctx, token, nil)
}

// VerifyData is Verify that also hands the members of the data claim to visit (see DataMember)
// during the strict scan that validates the claims, so the caller builds its event from the one
// reading of the signed bytes instead of parsing Claims.Data again. visit runs before the
// signature and the rest of the claims are checked (a token rejected later may have been
// visited): what it builds may be used only when VerifyData returns no error. It is never called
// after VerifyData returns.
func (v *Verifier) VerifyData(ctx context.Context, token string, visit func(DataMember)) (*Claims, error) {
	claims, reason, err := v.verify(ctx, token, visit)
	v.metrics.observe(reason)
	return claims, err
}

func (v *Verifier) verify(ctx context.Context, token string, visit func(DataMember)) (*Claims, string, error) {
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, ReasonMalformed, invalid(ReasonMalformed, errors.New("empty token"))
	}
	rawData, reason, err := precheck(token, visit)
	if err != nil {
		return nil, reason, invalid(reason, err)
	}
	claims := &Claims{}
	parsed, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		if kid, ok := t.Header[jwkset.HeaderKID].(string); !ok || kid == "" {
			return nil, errMissingKID
		}
		return v.keyfunc.KeyfuncCtx(ctx)(t)
	})
	if err != nil {
		reason, err := v.classify(parsed, err)
		return nil, reason, err
	}
	// precheck guaranteed a numeric iat, and golang-jwt has already refused one in the future.
	if age := time.Since(claims.IssuedAt.Time); age > v.maxAge {
		return nil, ReasonTooOld, invalid(ReasonTooOld, fmt.Errorf(
			"iat is %s old, more than webhook.max_token_age plus clock_skew (%s): IDnow signs every delivery when it sends it, so this is a replay or a token minted with a far-future exp",
			age.Truncate(time.Second), v.maxAge))
	}
	claims.Data = rawData
	data := bytes.TrimSpace(rawData)
	switch {
	case len(data) == 0 || bytes.Equal(data, []byte("null")):
		return nil, ReasonMissingData, invalid(ReasonMissingData, errors.New("token has no data claim"))
	case data[0] != '{':
		return nil, ReasonInvalidData, invalid(ReasonInvalidData, errors.New("data claim is not a JSON object"))
	}
	return claims, reasonOK, nil
}

// classify turns a golang-jwt error into the result reason and the error returned to the caller.
// The order matters: golang-jwt joins several claim errors, and the first match wins.
func (v *Verifier) classify(parsed *jwt.Token, err error) (string, error) {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return reasonCanceled, fmt.Errorf("verify webhook token: %w", err)
	case errors.Is(err, ErrKeysUnavailable):
		// The chain keeps the cause (JWKS fetch error, kid) for the ingress's log line.
		return reasonKeysUnavailable, fmt.Errorf("verify webhook token: %w", err)
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ReasonMalformed, invalid(ReasonMalformed, err)
	case parsed != nil && (parsed.Method == nil || !slices.Contains(v.algorithms, parsed.Method.Alg())):
		// golang-jwt checks the alg allow-list before anything else once the token is decoded,
		// and reports a rejection as a bad signature; the method tells the cases apart.
		return ReasonAlgorithmNotAllowed, invalid(ReasonAlgorithmNotAllowed, err)
	case errors.Is(err, errMissingKID):
		return ReasonMissingKID, invalid(ReasonMissingKID, err)
	case errors.Is(err, jwkset.ErrKeyNotFound):
		return ReasonUnknownKey, invalid(ReasonUnknownKey, err)
	case errors.Is(err, keyfunc.ErrKeyfunc), errors.Is(err, jwt.ErrInvalidKeyType):
		// The kid names a key whose own alg differs from the token's, or whose type cannot verify
		// that algorithm (an EC key for RS256).
		return ReasonKeyMismatch, invalid(ReasonKeyMismatch, err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ReasonBadSignature, invalid(ReasonBadSignature, err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return ReasonExpired, invalid(ReasonExpired, err)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued), errors.Is(err, jwt.ErrTokenNotValidYet):
		return ReasonNotYetValid, invalid(ReasonNotYetValid, err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return ReasonWrongIssuer, invalid(ReasonWrongIssuer, err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return ReasonWrongAudience, invalid(ReasonWrongAudience, err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return ReasonMissingClaim, invalid(ReasonMissingClaim, err)
	default:
		// Claims of the wrong JSON type and similar oddities.
		return ReasonMalformed, invalid(ReasonMalformed, err)
	}
}

// precheck scans the header and claims of a compact JWS once, strictly, before golang-jwt decodes
// them with its lenient, last-wins encoding/json: it rejects what two readers of the same signed
// bytes could read differently (duplicate member names anywhere, invalid UTF-8), a crit header,
// exp/iat/nbf that are not JSON numbers, and a missing exp or iat. It returns the reason and the
// cause, or "" and nil; and the JSON text of the data claim, whose members go to visit when set
// (scanClaims). The signature is left to golang-jwt.
func precheck(token string, visit func(DataMember)) (data []byte, reason string, err error) {
	headerSeg, rest, ok1 := strings.Cut(token, ".")
	claimsSeg, sigSeg, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sigSeg, ".") {
		return nil, ReasonMalformed, errors.New("token is not a compact JWS: want three base64url segments separated by dots")
	}

	// One buffer for both segments: the token is decoded once more by golang-jwt, so keep this
	// pass cheap.
	enc := base64.RawURLEncoding
	buf := make([]byte, enc.DecodedLen(len(headerSeg))+enc.DecodedLen(len(claimsSeg)))
	n, err := enc.Decode(buf, []byte(headerSeg))
	if err != nil {
		return nil, ReasonMalformed, fmt.Errorf("JOSE header is not unpadded base64url: %w", err)
	}
	header, buf := buf[:n], buf[n:]
	crit := false
	if err := checkJSONObject(header, func(name []byte, _ JSONKind) {
		if string(name) == "crit" {
			crit = true
		}
	}); err != nil {
		return nil, jsonReason(err), fmt.Errorf("JOSE header: %w", err)
	}
	if crit {
		return nil, ReasonCritHeader, errors.New(`JOSE header has a "crit" parameter: RFC 7515 §4.1.11 requires rejecting tokens with critical extensions the receiver does not understand, and this receiver understands none`)
	}

	n, err = enc.Decode(buf, []byte(claimsSeg))
	if err != nil {
		return nil, ReasonMalformed, fmt.Errorf("claims are not unpadded base64url: %w", err)
	}
	payload := buf[:n]
	var exp, iat, nbf JSONKind
	data, err = scanClaims(payload, func(name []byte, kind JSONKind) {
		switch string(name) {
		case "exp":
			exp = kind
		case "iat":
			iat = kind
		case "nbf":
			nbf = kind
		}
	}, visit)
	if err != nil {
		return nil, jsonReason(err), fmt.Errorf("claims: %w", err)
	}
	for _, c := range []struct {
		name     string
		kind     JSONKind
		required bool
	}{{"exp", exp, true}, {"iat", iat, true}, {"nbf", nbf, false}} {
		switch {
		case c.kind == KindAbsent && c.required:
			return nil, ReasonMissingClaim, fmt.Errorf("token has no %s claim: IDnow webhook tokens carry exp and iat as NumericDate (seconds since the epoch)", c.name)
		case c.kind != KindAbsent && c.kind != KindNumber:
			return nil, ReasonClaimNotNumeric, fmt.Errorf("%s claim is %s: it must be a JSON number of seconds since the epoch (RFC 7519 NumericDate)", c.name, c.kind)
		}
	}
	return data, "", nil
}

// jsonReason maps a checkJSONObject error to the reason it is reported and counted under.
func jsonReason(err error) string {
	switch {
	case errors.Is(err, errJSONDuplicateKey):
		return ReasonDuplicateKey
	case errors.Is(err, errJSONInvalidUTF8):
		return ReasonInvalidUTF8
	default:
		return ReasonMalformed
	}
}

// CheckStaticHeader checks the static header configured in webhook.static_header: it must be
// present exactly once with the expected value, compared in constant time. It returns nil when the
// check is disabled, else a *VerificationError with ReasonStaticHeader. Failures are counted in
// idnow_connector_webhook_verifications_total{result="static_header"}.
func (v *Verifier) CheckStaticHeader(h http.Header) error {
	if v.staticName == "" {
		return nil
	}
	values := h.Values(v.staticName)
	var err error
	switch {
	case len(values) == 0:
		err = errors.New("header absent")
	case len(values) > 1:
		err = errors.New("header repeated")
	default:
		got := sha256.Sum256([]byte(values[0]))
		if subtle.ConstantTimeCompare(got[:], v.staticSum[:]) != 1 {
			err = errors.New("header value does not match")
		}
	}
	if err != nil {
		v.metrics.observe(ReasonStaticHeader)
		return invalid(ReasonStaticHeader, fmt.Errorf("%s: %w", v.staticName, err))
	}
	return nil
}

// Ready reports whether at least one signing key is loaded, i.e. whether Verify can accept
// tokens. Wire it into the readiness endpoint.
func (v *Verifier) Ready() bool { return v.keys.count.Load() > 0 }

// Close stops the background JWKS refresh and waits for it and for any fetch in flight. It is
// idempotent. Verify keeps working with the keys already loaded but no longer refetches.
func (v *Verifier) Close() {
	v.closeOnce.Do(func() {
		v.cancel()
		v.keys.close()
		if v.closeIdle != nil {
			v.closeIdle()
		}
	})
}

// staticHeaderValue returns the configured secret, reading value_file when set.
func staticHeaderValue(c StaticHeaderConfig) (string, error) {
	if c.ValueFile == "" {
		return c.Value, nil
	}
	b, err := os.ReadFile(c.ValueFile)
	if err != nil {
		return "", fmt.Errorf("read webhook.static_header.value_file: %w", err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("webhook.static_header.value_file %q is empty: put the expected header value in it", c.ValueFile)
	}
	return s, nil
}

// compile-time check that the cache satisfies the storage interface keyfunc expects.
var _ jwkset.Storage = (*keyCache)(nil)
