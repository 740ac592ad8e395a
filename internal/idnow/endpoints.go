package idnow

// The endpoints: each builds a request, hands it to the transport (transport.go), which owns
// authentication, limits, metrics and retries, and decodes the answer.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// maxFlowPages stops ListFlows from looping forever on a server whose paging never ends.
const maxFlowPages = 10000

// ListFlows returns every flow of the configured environment, walking all pages when the
// server pages and taking the single answer when it does not.
func (c *Client) ListFlows(ctx context.Context) ([]Flow, error) {
	path := []string{"flows", c.cfg.Environment}
	if c.cfg.FlowsPath == FlowsPathPlain {
		path = []string{"flows"}
	}
	var all []Flow
	for page := 1; ; page++ {
		q := url.Values{"page": {strconv.Itoa(page)}, "size": {"100"}}
		var resp pagedList[Flow]
		req := &request{endpoint: EndpointListFlows, method: http.MethodGet, url: c.apiURL(q, path...), idempotent: true, auth: true}
		if err := c.doJSON(ctx, req, resp.decode); err != nil {
			return nil, err
		}
		all = append(all, resp.items...)
		if resp.page == nil || len(resp.items) == 0 || page >= resp.page.TotalPages {
			return all, nil
		}
		if page >= maxFlowPages {
			return nil, &APIError{Op: EndpointListFlows, Err: fmt.Errorf("%w: more than %d pages of flows", ErrDecode, maxFlowPages)}
		}
	}
}

// CreateSession starts a session of flowID in the configured environment. Because a POST is
// not idempotent, it is retried only when the server provably did not act on it (429, 503,
// connection refused); other retryable errors are returned for the caller to judge.
func (c *Client) CreateSession(ctx context.Context, flowID string, body CreateSessionRequest) (*CreatedSession, error) {
	if err := checkID(EndpointCreateSession, "flow id", flowID); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, &APIError{Op: EndpointCreateSession, Err: fmt.Errorf("encode request: %w", err)}
	}
	var out CreatedSession
	req := &request{endpoint: EndpointCreateSession, method: http.MethodPost, url: c.apiURL(nil, "flows", flowID, c.cfg.Environment, "sessions"), body: payload, auth: true}
	if err := c.doJSON(ctx, req, func(b []byte) error { return json.Unmarshal(b, &out) }); err != nil {
		return nil, err
	}
	if out.SessionID == "" {
		return nil, &APIError{Op: EndpointCreateSession, Err: fmt.Errorf("%w: answer carries no sessionId", ErrDecode)}
	}
	return &out, nil
}

// GetSession reads a session's current details.
func (c *Client) GetSession(ctx context.Context, sessionID string) (*Session, error) {
	if err := checkID(EndpointGetSession, "session id", sessionID); err != nil {
		return nil, err
	}
	var out Session
	req := &request{endpoint: EndpointGetSession, method: http.MethodGet, url: c.apiURL(nil, c.cfg.Environment, "sessions", sessionID), sessionID: sessionID, idempotent: true, auth: true}
	// Decoding into the wire form directly, not through Session.UnmarshalJSON, spares a second
	// validating pass over the body.
	if err := c.doJSON(ctx, req, func(b []byte) error {
		w, err := decodeSessionWire(b)
		if err != nil {
			return err
		}
		out = w.session()
		return nil
	}); err != nil {
		return nil, err
	}
	if out.SessionID == "" {
		out.SessionID = sessionID
	}
	return &out, nil
}

// GetDataBlocks reads a session's data blocks, from the path form chosen by
// idnow.datablocks_path, and normalises both response shapes. The result holds personal
// data: never log it.
func (c *Client) GetDataBlocks(ctx context.Context, sessionID string) ([]DataBlock, error) {
	if err := checkID(EndpointGetDataBlocks, "session id", sessionID); err != nil {
		return nil, err
	}
	path := []string{c.cfg.Environment, "sessions", sessionID, "datablocks"}
	if c.cfg.DataBlocksPath == DataBlocksSessionFirst {
		path = []string{"sessions", sessionID, c.cfg.Environment, "datablocks"}
	}
	var out []DataBlock
	req := &request{endpoint: EndpointGetDataBlocks, method: http.MethodGet, url: c.apiURL(nil, path...), sessionID: sessionID, idempotent: true, auth: true}
	err := c.doJSON(ctx, req, func(b []byte) error {
		var err error
		out, err = parseDataBlocks(b)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListFlowSessions reads one page of a flow's sessions (documented by some builds only);
// reconciliation jobs use it to catch missed webhooks.
func (c *Client) ListFlowSessions(ctx context.Context, flowID string, page ListPage) (*SessionPage, error) {
	if err := checkID(EndpointListFlowSessions, "flow id", flowID); err != nil {
		return nil, err
	}
	q := url.Values{}
	if page.Page > 0 {
		q.Set("page", strconv.Itoa(page.Page))
	}
	if page.Size > 0 {
		q.Set("size", strconv.Itoa(page.Size))
	}
	if page.SortBy != "" {
		q.Set("sortBy", page.SortBy)
		q.Set("sortDesc", strconv.FormatBool(page.SortDesc))
	}
	var resp pagedList[Session]
	req := &request{endpoint: EndpointListFlowSessions, method: http.MethodGet, url: c.apiURL(q, "flows", flowID, c.cfg.Environment, "sessions"), idempotent: true, auth: true}
	if err := c.doJSON(ctx, req, resp.decode); err != nil {
		return nil, err
	}
	return &SessionPage{Sessions: resp.items, Page: resp.page}, nil
}

// GetFile fetches a vault file. The API answers 302 to a presigned URL; the client follows
// it by hand with a plain request that carries no Authorization header, so the bearer token
// never reaches the storage host. That URL is held to https and, at dial time, to public
// addresses (unless idnow.allow_insecure_http), and may not redirect further: errors
// matching ErrInsecureURL say which rule it broke. The body is streamed, not buffered: the
// caller must close File.Body, and reading past idnow.max_file_size fails with
// ErrFileTooLarge. idnow.timeout bounds each step until response headers; the body read is
// bounded by ctx only. Every file access is logged by IDnow, so call this only when
// configured to.
//
// A presigned URL the storage refuses with 403 (expired: IDnow's are valid for 3600 s, and a
// clock skew or a long queue can outlive that) is replaced by a fresh one from the files
// endpoint, up to maxPresignRefreshes times, before the 403 is returned.
func (c *Client) GetFile(ctx context.Context, vaultEntryID string) (*File, error) {
	if err := checkID(EndpointGetFile, "vault entry id", vaultEntryID); err != nil {
		return nil, err
	}
	for refresh := 0; ; refresh++ {
		f, err := c.getFile(ctx, vaultEntryID)
		var ae *APIError
		if err == nil || refresh >= maxPresignRefreshes || !errors.As(err, &ae) ||
			ae.Op != EndpointGetFileDownload || ae.StatusCode != http.StatusForbidden {
			return f, err
		}
		c.m.presignRefreshes.Inc()
		c.log.Info("presigned file URL refused (expired?); asking the files endpoint for a fresh one",
			"vault_entry_id", vaultEntryID, "refresh", refresh+1)
	}
}

// maxPresignRefreshes bounds how often GetFile asks for a fresh presigned URL after a 403.
const maxPresignRefreshes = 3

// getFile is one files-endpoint call (with the API's own retries) and one download.
func (c *Client) getFile(ctx context.Context, vaultEntryID string) (*File, error) {
	req := &request{
		endpoint:       EndpointGetFile,
		method:         http.MethodGet,
		url:            c.apiURL(nil, c.cfg.Environment, "files", vaultEntryID),
		vaultEntryID:   vaultEntryID,
		idempotent:     true,
		auth:           true,
		acceptRedirect: true,
	}
	var file *File
	err := c.withRetry(ctx, req, func(ctx context.Context) (string, error) {
		var location *url.URL
		used, err := c.attempt(ctx, req, func(resp *http.Response) error {
			if resp.StatusCode < 300 {
				return fmt.Errorf("%w: expected a redirect to the presigned file URL, got HTTP %d", ErrDecode, resp.StatusCode)
			}
			loc, err := resp.Location()
			if err != nil {
				return fmt.Errorf("%w: redirect without a usable Location: %w", ErrDecode, err)
			}
			location = loc
			return nil
		})
		if err != nil {
			return used, err
		}
		// A fresh presigned URL is requested on every attempt: an expired one cannot be reused.
		f, err := c.downloadFile(ctx, vaultEntryID, location)
		if err != nil {
			return used, err
		}
		file = f
		return used, nil
	})
	if err != nil {
		return nil, err
	}
	return file, nil
}

// checkID refuses an identifier that cannot stand as one API path segment. apiURL escapes
// every segment ("/", "?", "#", "%" and control characters included), but url.PathEscape
// leaves "." and ".." as they are, and servers and proxies resolve those as path navigation:
// GET /sessions/.. would address another resource. IDnow never issues such identifiers, so
// one means a malformed or crafted event.
func checkID(op, kind, id string) error {
	switch id {
	case "":
		return &APIError{Op: op, Err: fmt.Errorf("%w: %s is empty", ErrInvalidID, kind)}
	case ".", "..":
		return &APIError{Op: op, Err: fmt.Errorf("%w: %s %q is path navigation, not an identifier; the request was not sent", ErrInvalidID, kind, id)}
	}
	return nil
}

// apiURL joins escaped path segments onto idnow.api_url.
func (c *Client) apiURL(q url.Values, segments ...string) string {
	var b strings.Builder
	b.WriteString(c.apiBase)
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	if len(q) > 0 {
		b.WriteByte('?')
		b.WriteString(q.Encode())
	}
	return b.String()
}

// pagedList decodes {"content":[...],"page":{...}}, the same without page, or a bare array.
type pagedList[T any] struct {
	items []T
	page  *PageInfo
}

func (p *pagedList[T]) decode(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		return json.Unmarshal(b, &p.items)
	}
	var w struct {
		Content  []T             `json:"content"`
		Flows    []T             `json:"flows"`
		Sessions []T             `json:"sessions"`
		Page     json.RawMessage `json:"page"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	switch {
	case w.Content != nil:
		p.items = w.Content
	case w.Flows != nil:
		p.items = w.Flows
	default:
		p.items = w.Sessions
	}
	if pg := bytes.TrimSpace(w.Page); len(pg) > 0 && pg[0] == '{' {
		var info struct {
			Size          flexString `json:"size"`
			Number        flexString `json:"number"`
			TotalElements flexString `json:"totalElements"`
			TotalPages    flexString `json:"totalPages"`
		}
		if err := json.Unmarshal(pg, &info); err != nil {
			return fmt.Errorf("page: %w", err)
		}
		atoi := func(s flexString) int64 { n, _ := strconv.ParseInt(string(s), 10, 64); return n }
		p.page = &PageInfo{Size: int(atoi(info.Size)), Number: int(atoi(info.Number)), TotalElements: atoi(info.TotalElements), TotalPages: int(atoi(info.TotalPages))}
	}
	return nil
}
