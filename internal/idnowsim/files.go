package idnowsim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
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
	if f.missing {
		s.counters.filesMissing.Add(1)
		writeError(w, http.StatusNotFound, "not_found", "the vault entry's file is no longer available (retention)")
		return
	}
	s.counters.fileRedirects.Add(1)
	exp := time.Now().Add(s.cfg.PresignTTL)
	if s.rng.Chance(s.currentFaults().FileExpiredRate) {
		// Issued already expired, as a URL cached past its 3600 s would be.
		s.counters.expiredURLs.Add(1)
		s.m.faults.WithLabelValues("file_expired_url").Inc()
		exp = time.Now().Add(-time.Second)
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, s.presignedURL(id, exp), http.StatusFound)
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
	faults := s.currentFaults()
	truncated := s.rng.Chance(faults.FileTruncatedRate)
	slowBody := s.rng.Chance(faults.FileSlowBodyRate)
	sum := f.sha256()
	size := f.length()
	s.counters.presignedServed.Add(1)
	s.m.presigned.WithLabelValues("served").Inc()
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": f.filename}))
	// As S3 answers for an object stored with a SHA-256 checksum: the digest of the whole object.
	h.Set("X-Amz-Checksum-Sha256", base64.StdEncoding.EncodeToString(sum[:]))
	if !truncated {
		h.Set("Content-Length", strconv.FormatInt(size, 10))
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	body := f.open()
	half := size / 2
	if truncated || slowBody {
		if _, err := io.CopyN(w, body, half); err != nil {
			return
		}
		if truncated {
			// Ends the chunked body cleanly: the client sees a shorter file, no error.
			s.counters.truncatedBodies.Add(1)
			s.m.faults.WithLabelValues("file_truncated_body").Inc()
			return
		}
		s.counters.slowBodies.Add(1)
		s.m.faults.WithLabelValues("file_slow_body").Inc()
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		t := time.NewTimer(faults.SlowDelay)
		select {
		case <-r.Context().Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	_, _ = io.Copy(w, body)
}

// FileSnapshot describes a vault file for tests and tooling to assert against.
type FileSnapshot struct {
	VaultEntryID string
	SessionID    string
	ContentType  string
	Filename     string
	Size         int64
	// SHA256 is the digest of the bytes the presigned URL serves.
	SHA256 [32]byte
	// Missing is true when the files endpoint answers 404 for it.
	Missing bool
}

// File returns a vault file's description; its digest is computed on first use (one pass over
// the generated bytes).
func (s *Simulator) File(vaultEntryID string) (FileSnapshot, bool) {
	s.mu.Lock()
	f, ok := s.files[vaultEntryID]
	s.mu.Unlock()
	if !ok {
		return FileSnapshot{}, false
	}
	return FileSnapshot{
		VaultEntryID: f.id, SessionID: f.sessionID, ContentType: f.contentType, Filename: f.filename,
		Size: f.length(), SHA256: f.sha256(), Missing: f.missing,
	}, true
}
