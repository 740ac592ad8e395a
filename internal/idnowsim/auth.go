package idnowsim

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// tokenInfo is what the simulator remembers about an issued access token.
type tokenInfo struct {
	env       string
	expiresAt time.Time
}

// clientScopes are the permissions IDnow documents for API clients; the simulated client has all.
const clientScopes = "api.read api.write flows.execute"

func (s *Simulator) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	auth := s.AuthURL()
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                auth,
		"token_endpoint":                        s.TokenURL(),
		"jwks_uri":                              s.JWKSURL(),
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"response_types_supported":              []string{"token"},
		"scopes_supported":                      strings.Fields(clientScopes),
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

func (s *Simulator) handleJWKS(w http.ResponseWriter, r *http.Request) {
	raw, err := s.keys.jwksJSON(r.Context(), time.Now())
	if err != nil {
		s.log.Error("serve JWKS", "err", err)
		writeError(w, http.StatusInternalServerError, "server_error", "cannot render the JWKS")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	// Short caching, so receivers pick up rotations quickly but do not refetch on every webhook.
	w.Header().Set("Cache-Control", "max-age=60")
	_, _ = w.Write(raw)
}

// handleToken implements the OAuth 2.0 client credentials grant (RFC 6749 §4.4) with both
// client_secret_basic and client_secret_post client authentication (§2.3.1).
func (s *Simulator) handleToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "the token endpoint accepts POST only")
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "send the parameters as application/x-www-form-urlencoded")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	form := r.PostForm

	method := "client_secret_post"
	id, secret := form.Get("client_id"), form.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		// RFC 6749 §2.3.1: credentials in the Basic header are form-urlencoded first.
		bu, err1 := url.QueryUnescape(u)
		bp, err2 := url.QueryUnescape(p)
		if err1 != nil || err2 != nil {
			s.rejectToken(w, "client_secret_basic", http.StatusBadRequest, "invalid_request", "malformed Basic credentials")
			return
		}
		if secret != "" || (id != "" && id != bu) {
			s.rejectToken(w, "client_secret_basic", http.StatusBadRequest, "invalid_request", "use exactly one client authentication method")
			return
		}
		method, id, secret = "client_secret_basic", bu, bp
	}

	switch gt := form.Get("grant_type"); gt {
	case "client_credentials":
	case "":
		s.rejectToken(w, method, http.StatusBadRequest, "invalid_request", "grant_type is required")
		return
	default:
		s.rejectToken(w, method, http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is supported")
		return
	}
	if id == "" || !equalConst(id, s.cfg.ClientID) || !equalConst(secret, s.cfg.ClientSecret) {
		if method == "client_secret_basic" {
			w.Header().Set("WWW-Authenticate", `Basic realm="idnow-simulator"`)
		}
		s.rejectToken(w, method, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}

	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		s.rejectToken(w, method, http.StatusInternalServerError, "server_error", "cannot issue a token")
		return
	}
	tok := hex.EncodeToString(b[:])
	s.mu.Lock()
	s.pruneTokensLocked(time.Now())
	s.tokens[tok] = tokenInfo{env: s.cfg.Environment, expiresAt: time.Now().Add(s.cfg.TokenLifetime)}
	s.mu.Unlock()

	s.counters.tokensIssued.Add(1)
	if method == "client_secret_basic" {
		s.counters.tokenBasic.Add(1)
	} else {
		s.counters.tokenPost.Add(1)
	}
	s.m.tokenRequests.WithLabelValues(method, "issued").Inc()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"expires_in":   int64(s.cfg.TokenLifetime / time.Second),
		"token_type":   "Bearer",
		"scope":        clientScopes,
	})
}

func (s *Simulator) rejectToken(w http.ResponseWriter, method string, code int, errCode, desc string) {
	s.counters.tokenRejected.Add(1)
	s.m.tokenRequests.WithLabelValues(method, errCode).Inc()
	writeOAuthError(w, code, errCode, desc)
}

// pruneTokensLocked forgets expired tokens so long runs do not grow the map; s.mu must be held.
func (s *Simulator) pruneTokensLocked(now time.Time) {
	for t, info := range s.tokens {
		if now.After(info.expiresAt) {
			delete(s.tokens, t)
		}
	}
}

// authorize checks the Bearer token and that it belongs to env. It writes the error response
// and returns false when the request must stop.
func (s *Simulator) authorize(w http.ResponseWriter, r *http.Request, env string) bool {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="idnow-simulator"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "missing Bearer token")
		return false
	}
	s.mu.Lock()
	info, found := s.tokens[tok]
	s.mu.Unlock()
	if !found || time.Now().After(info.expiresAt) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="idnow-simulator", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "invalid_token", "the access token is unknown, revoked or expired")
		return false
	}
	if env != "" && env != info.env {
		writeError(w, http.StatusForbidden, "forbidden", "this API client belongs to environment "+info.env+" and cannot access "+env)
		return false
	}
	return true
}

// tokenEnv returns the environment of the request's (already authorized) token.
func (s *Simulator) tokenEnv(r *http.Request) string {
	_, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[tok].env
}

func equalConst(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func writeOAuthError(w http.ResponseWriter, code int, errCode, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, code, map[string]string{"error": errCode, "error_description": desc})
}
