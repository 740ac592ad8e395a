package idnow

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// presignedHost is a storage host that records whether any request carried Authorization.
type presignedHost struct {
	srv       *httptest.Server
	hits      atomic.Int64
	sawAuth   atomic.Bool
	mu        sync.Mutex
	failFirst int // answer this status to the first request, 0 = never fail
}

func newPresignedHost(t *testing.T, body []byte, chunked bool) *presignedHost {
	t.Helper()
	p := &presignedHost{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := p.hits.Add(1)
		if r.Header.Get("Authorization") != "" {
			p.sawAuth.Store(true)
		}
		if r.URL.Query().Get("sig") != "abc" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		p.mu.Lock()
		fail := p.failFirst
		p.mu.Unlock()
		if n == 1 && fail != 0 {
			w.WriteHeader(fail)
			return
		}
		w.Header().Set("Content-Type", "image/jpeg")
		w.Header().Set("Content-Disposition", `attachment; filename="front.jpg"`)
		if chunked {
			// Flushing before the end forces chunked encoding: no Content-Length.
			half := len(body) / 2
			_, _ = w.Write(body[:half])
			http.NewResponseController(w).Flush()
			_, _ = w.Write(body[half:])
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func redirectTo(location string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", location)
		w.WriteHeader(http.StatusFound)
	}
}

func TestGetFileFollowsRedirectWithoutAuthorization(t *testing.T) {
	content := bytes.Repeat([]byte("jpegdata"), 1000)
	f := newFake(t)
	p := newPresignedHost(t, content, false)
	f.handle("GET /live/files/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "v-front" {
			writeJSON(w, http.StatusNotFound, map[string]string{"code": "not_found"})
			return
		}
		redirectTo(p.srv.URL+"/bucket/v-front?sig=abc")(w, r)
	})
	c, _ := newTestClient(t, f, nil)
	file, err := c.GetFile(t.Context(), "v-front")
	if err != nil {
		t.Fatalf("GetFile: %v", err)
	}
	defer file.Body.Close()
	got, err := io.ReadAll(file.Body)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, content) || file.ContentType != "image/jpeg" || file.Name != "front.jpg" || file.Size != int64(len(content)) {
		t.Fatalf("file = %+v, %d bytes", file, len(got))
	}
	if p.sawAuth.Load() {
		t.Fatal("the presigned host received an Authorization header")
	}
	if n := f.hitCount("GET /live/files/{id}"); n != 1 {
		t.Fatalf("API hits = %d, want 1", n)
	}
	if got := metricValue(t, c.m.requests.WithLabelValues(EndpointGetFile, "3xx")); got != 1 {
		t.Fatalf("requests_total{get_file,3xx} = %v, want 1", got)
	}
	if got := metricValue(t, c.m.requests.WithLabelValues(EndpointGetFileDownload, "2xx")); got != 1 {
		t.Fatalf("requests_total{get_file_download,2xx} = %v, want 1", got)
	}
}

func TestGetFileRelativeLocationOnSameHost(t *testing.T) {
	f := newFake(t)
	var sawAuth atomic.Bool
	f.mux.HandleFunc("GET /presigned/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			sawAuth.Store(true)
		}
		w.Header().Set("Content-Type", "application/pdf")
		_, _ = w.Write([]byte("%PDF-1.7"))
	})
	f.handle("GET /live/files/{id}", redirectTo("/presigned/x?sig=1"))
	c, _ := newTestClient(t, f, nil)
	file, err := c.GetFile(t.Context(), "x")
	if err != nil {
		t.Fatalf("GetFile: %v", err)
	}
	got, _ := io.ReadAll(file.Body)
	_ = file.Body.Close()
	if string(got) != "%PDF-1.7" || file.ContentType != "application/pdf" {
		t.Fatalf("file %+v body %q", file, got)
	}
	if sawAuth.Load() {
		t.Fatal("Authorization reached the presigned path even on the API's own host")
	}
}

func TestGetFileSizeLimit(t *testing.T) {
	const limit = 1000
	tests := []struct {
		name     string
		size     int
		chunked  bool
		wantOpen error // error from GetFile
		wantRead error // error from reading the body
	}{
		{"at the limit with length", limit, false, nil, nil},
		{"at the limit chunked", limit, true, nil, nil},
		{"over the limit with length fails before streaming", limit + 1, false, ErrFileTooLarge, nil},
		{"over the limit chunked fails while streaming", 3 * limit, true, nil, ErrFileTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			p := newPresignedHost(t, bytes.Repeat([]byte{'x'}, tt.size), tt.chunked)
			f.handle("GET /live/files/{id}", redirectTo(p.srv.URL+"/f?sig=abc"))
			c, _ := newTestClient(t, f, func(c *Config) { c.MaxFileSize = limit })
			file, err := c.GetFile(t.Context(), "v1")
			if !errors.Is(err, tt.wantOpen) || (err == nil) != (tt.wantOpen == nil) {
				t.Fatalf("GetFile err = %v, want %v", err, tt.wantOpen)
			}
			if err != nil {
				if !IsPermanent(err) {
					t.Fatalf("oversized file error %v is not permanent", err)
				}
				return
			}
			defer file.Body.Close()
			got, err := io.ReadAll(file.Body)
			if !errors.Is(err, tt.wantRead) || (err == nil) != (tt.wantRead == nil) {
				t.Fatalf("read err = %v, want %v", err, tt.wantRead)
			}
			if len(got) > limit {
				t.Fatalf("read %d bytes, more than the %d limit", len(got), limit)
			}
			if err == nil && len(got) != tt.size {
				t.Fatalf("read %d bytes, want %d", len(got), tt.size)
			}
		})
	}
}

func TestGetFileDownloadFailureRetriesWithFreshRedirect(t *testing.T) {
	f := newFake(t)
	p := newPresignedHost(t, []byte("data"), false)
	p.failFirst = http.StatusServiceUnavailable
	f.handle("GET /live/files/{id}", redirectTo(p.srv.URL+"/f?sig=abc"))
	c, _ := newTestClient(t, f, nil)
	file, err := c.GetFile(t.Context(), "v1")
	if err != nil {
		t.Fatalf("GetFile: %v", err)
	}
	_ = file.Body.Close()
	if n := f.hitCount("GET /live/files/{id}"); n != 2 {
		t.Fatalf("API hits = %d, want 2 (a fresh presigned URL per attempt)", n)
	}
}

func TestGetFileErrors(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		check   func(error) bool
	}{
		{"404 from the API", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusNotFound, map[string]string{"code": "not_found"})
		}, func(err error) bool { return IsPermanent(err) && errors.Is(err, ErrNotFound) }},
		{"200 instead of a redirect", func(w http.ResponseWriter, r *http.Request) { writeRaw(w, http.StatusOK, `{}`) },
			func(err error) bool { return IsPermanent(err) && errors.Is(err, ErrDecode) }},
		{"redirect without Location", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusFound) },
			func(err error) bool { return IsPermanent(err) && errors.Is(err, ErrDecode) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.handle("GET /live/files/{id}", tt.handler)
			c, _ := newTestClient(t, f, nil)
			_, err := c.GetFile(t.Context(), "v-7")
			if !tt.check(err) {
				t.Fatalf("err = %v", err)
			}
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.VaultEntryID != "v-7" {
				t.Fatalf("error %v does not name the vault entry", err)
			}
		})
	}
}

// TestGetFileRefreshesExpiredPresignedURL: a 403 from the storage (an expired URL) makes the
// client ask the files endpoint for a fresh URL, a bounded number of times.
func TestGetFileRefreshesExpiredPresignedURL(t *testing.T) {
	f := newFake(t)
	p := newPresignedHost(t, []byte("data"), false)
	var calls atomic.Int64
	f.handle("GET /live/files/{id}", func(w http.ResponseWriter, r *http.Request) {
		// The first URL has a wrong signature: the storage answers 403, as for an expired one.
		if calls.Add(1) == 1 {
			redirectTo(p.srv.URL+"/f?sig=expired")(w, r)
			return
		}
		redirectTo(p.srv.URL+"/f?sig=abc")(w, r)
	})
	c, _ := newTestClient(t, f, nil)
	file, err := c.GetFile(t.Context(), "v1")
	if err != nil {
		t.Fatalf("GetFile: %v", err)
	}
	_ = file.Body.Close()
	if n := calls.Load(); n != 2 {
		t.Fatalf("files endpoint calls = %d, want 2", n)
	}
	if got := metricValue(t, c.m.presignRefreshes); got != 1 {
		t.Fatalf("presign_refreshes_total = %v, want 1", got)
	}

	// A storage that always refuses: the 403 comes back after maxPresignRefreshes refreshes.
	f2 := newFake(t)
	f2.handle("GET /live/files/{id}", redirectTo(p.srv.URL+"/f?sig=never"))
	c2, _ := newTestClient(t, f2, nil)
	_, err = c2.GetFile(t.Context(), "v1")
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusForbidden || ae.Op != EndpointGetFileDownload {
		t.Fatalf("err = %v, want the storage's 403", err)
	}
	if n := f2.hitCount("GET /live/files/{id}"); n != 1+maxPresignRefreshes {
		t.Fatalf("files endpoint calls = %d, want %d", n, 1+maxPresignRefreshes)
	}
}

// TestGetFileDeclaredChecksum: the storage's x-amz-checksum-sha256 is handed to the caller.
func TestGetFileDeclaredChecksum(t *testing.T) {
	content := []byte("evidence")
	sum := sha256.Sum256(content)
	f := newFake(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Amz-Checksum-Sha256", base64.StdEncoding.EncodeToString(sum[:]))
		_, _ = w.Write(content)
	}))
	t.Cleanup(srv.Close)
	f.handle("GET /live/files/{id}", redirectTo(srv.URL+"/f"))
	c, _ := newTestClient(t, f, nil)
	file, err := c.GetFile(t.Context(), "v1")
	if err != nil {
		t.Fatalf("GetFile: %v", err)
	}
	_ = file.Body.Close()
	if !bytes.Equal(file.SHA256, sum[:]) {
		t.Fatalf("SHA256 = %x, want %x", file.SHA256, sum)
	}
}
