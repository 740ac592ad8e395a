package idnow

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// downloadFile GETs the presigned URL without credentials and returns the streaming body.
func (c *Client) downloadFile(ctx context.Context, vaultEntryID string, location *url.URL) (*File, error) {
	apiErr := func(status int, err error) *APIError {
		return &APIError{Op: EndpointGetFileDownload, VaultEntryID: vaultEntryID, StatusCode: status, Err: err}
	}
	if err := c.preflightFileURL(location); err != nil {
		return nil, apiErr(0, err)
	}
	// The body outlives this function, so the timeout is a timer that only guards the wait
	// for headers; after that, cancel belongs to the returned body's Close.
	dctx, cancel := context.WithCancel(ctx)
	var timedOut atomic.Bool
	timer := time.AfterFunc(c.cfg.Timeout, func() {
		timedOut.Store(true)
		cancel()
	})
	hreq, err := http.NewRequestWithContext(dctx, http.MethodGet, location.String(), nil)
	if err != nil {
		timer.Stop()
		cancel()
		return nil, apiErr(0, fmt.Errorf("build request: %w", err))
	}
	hreq.Header.Set("User-Agent", userAgent)

	start := time.Now()
	resp, err := c.download.Do(hreq)
	stopped := timer.Stop()
	c.m.duration.WithLabelValues(EndpointGetFileDownload).Observe(time.Since(start).Seconds())
	if err != nil {
		cancel()
		c.m.requests.WithLabelValues(EndpointGetFileDownload, "error").Inc()
		// net/http names the URL in its errors; the presigned signature must not reach logs.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redactURL(ue.URL)
		}
		if ctx.Err() == nil && timedOut.Load() {
			err = fmt.Errorf("%w after %s: %w", ErrTimeout, c.cfg.Timeout, err)
		}
		return nil, apiErr(0, ctxOr(ctx, err))
	}
	c.m.requests.WithLabelValues(EndpointGetFileDownload, statusClass(resp.StatusCode)).Inc()
	if !stopped {
		// Headers arrived just as the timer fired: the context is already cancelled.
		_ = resp.Body.Close()
		cancel()
		return nil, apiErr(0, fmt.Errorf("%w after %s", ErrTimeout, c.cfg.Timeout))
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		e := apiErr(resp.StatusCode, fmt.Errorf("%w: presigned file URL %s answered a redirect to %s; only the API's redirect to the presigned URL is followed",
			ErrInsecureURL, redactURL(location.String()), locationOf(resp)))
		_ = resp.Body.Close()
		cancel()
		return nil, e
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		e := apiErr(resp.StatusCode, nil)
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), c.now())
		e.Body, _ = io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		_ = resp.Body.Close()
		cancel()
		return nil, e
	}
	if resp.ContentLength > c.cfg.MaxFileSize {
		_ = resp.Body.Close()
		cancel()
		return nil, apiErr(0, fmt.Errorf("%w: Content-Length %d > %d", ErrFileTooLarge, resp.ContentLength, c.cfg.MaxFileSize))
	}
	f := &File{
		ContentType: resp.Header.Get("Content-Type"),
		Size:        resp.ContentLength,
		Body:        &limitedBody{rc: resp.Body, max: c.cfg.MaxFileSize, cancel: cancel, vaultEntryID: vaultEntryID},
	}
	if v := resp.Header.Get("X-Amz-Checksum-Sha256"); v != "" {
		if sum, err := base64.StdEncoding.DecodeString(v); err == nil && len(sum) == sha256.Size {
			f.SHA256 = sum
		}
	}
	if cd := resp.Header.Get("Content-Disposition"); cd != "" {
		if _, params, err := mime.ParseMediaType(cd); err == nil {
			f.Name = params["filename"]
		}
	}
	return f, nil
}

// limitedBody streams at most max bytes and fails loudly beyond, rather than silently
// truncating a document an archive would then store as if complete.
type limitedBody struct {
	rc           io.ReadCloser
	max          int64
	n            int64
	cancel       context.CancelFunc
	vaultEntryID string
	closeOnce    sync.Once
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.n > b.max {
		return 0, b.tooLarge()
	}
	// Read at most one byte beyond the limit: enough to detect an oversized file.
	if room := b.max - b.n + 1; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if b.n > b.max {
		return n - int(b.n-b.max), b.tooLarge()
	}
	return n, err
}

func (b *limitedBody) tooLarge() error {
	return &APIError{Op: EndpointGetFileDownload, VaultEntryID: b.vaultEntryID, Err: fmt.Errorf("%w: more than %d bytes", ErrFileTooLarge, b.max)}
}

func (b *limitedBody) Close() error {
	var err error
	b.closeOnce.Do(func() {
		err = b.rc.Close()
		b.cancel()
	})
	return err
}
