package idnowsim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// presignedURL returns a presigned-style URL for a vault file that expires at exp. Like S3's,
// it is authenticated by its signature alone and must be fetched without the API's Bearer token.
func (s *Simulator) presignedURL(id string, exp time.Time) string {
	expires := strconv.FormatInt(exp.Unix(), 10)
	q := url.Values{"expires": {expires}, "signature": {s.presignSignature(id, expires)}}
	return s.URL() + "/presigned/" + url.PathEscape(id) + "?" + q.Encode()
}

func (s *Simulator) presignSignature(id, expires string) string {
	mac := hmac.New(sha256.New, s.presignKey)
	mac.Write([]byte(id))
	mac.Write([]byte{'\n'})
	mac.Write([]byte(expires))
	return hex.EncodeToString(mac.Sum(nil))
}

// handleFile answers GET /{env}/files/{vaultId} with a 302 to a presigned URL.
func (s *Simulator) handleFile(w http.ResponseWriter, r *http.Request) {
	env := r.PathValue("env")
	if !pathEnv(w, env) || !s.authorize(w, r, env) {
		return
	}
	id := r.PathValue("vaultId")
	s.mu.Lock()
	f, ok := s.files[id]
	s.mu.Unlock()
	if !ok || f.env != env {
		writeError(w, http.StatusNotFound, "not_found", "unknown vault entry in environment "+env)
		return
	}
	s.counters.fileRedirects.Add(1)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, s.presignedURL(id, time.Now().Add(s.cfg.PresignTTL)), http.StatusFound)
}

// handlePresigned serves a vault file's bytes to a valid, unexpired presigned URL. A request
// carrying an Authorization header is refused: it means the client leaked its API token to the
// file host, which the reference forbids.
func (s *Simulator) handlePresigned(w http.ResponseWriter, r *http.Request) {
	reject := func(code int, outcome, errCode, msg string) {
		s.counters.presignedRejected.Add(1)
		s.m.presigned.WithLabelValues(outcome).Inc()
		writeError(w, code, errCode, msg)
	}
	if r.Header.Get("Authorization") != "" {
		s.counters.presignedWithAuthz.Add(1)
		s.log.Warn("presigned file request carried an Authorization header; the client leaks its API token to the file host")
		reject(http.StatusBadRequest, "authorization_header", "authorization_not_allowed",
			"presigned URLs are authenticated by their signature; do not send an Authorization header")
		return
	}
	id := r.PathValue("vaultId")
	q := r.URL.Query()
	expires, sig := q.Get("expires"), q.Get("signature")
	exp, err := strconv.ParseInt(expires, 10, 64)
	if err != nil || !hmac.Equal([]byte(sig), []byte(s.presignSignature(id, expires))) {
		reject(http.StatusForbidden, "bad_signature", "signature_mismatch", "the presigned URL signature does not match")
		return
	}
	if time.Now().Unix() > exp {
		reject(http.StatusForbidden, "expired", "request_expired", "the presigned URL has expired; request the file again")
		return
	}
	s.mu.Lock()
	f, ok := s.files[id]
	s.mu.Unlock()
	if !ok {
		reject(http.StatusNotFound, "not_found", "not_found", "no such object")
		return
	}
	body := f.bytes()
	s.counters.presignedServed.Add(1)
	s.m.presigned.WithLabelValues("served").Inc()
	w.Header().Set("Content-Type", f.contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": f.filename}))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
