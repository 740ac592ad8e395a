package idnowsim

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestListFlowsPaged(t *testing.T) {
	sim := startSim(t, nil)
	c := testClient(t)
	tok := getToken(t, c, sim)
	total := len(flowCatalogue(EnvLive))

	tests := []struct {
		name      string
		query     string
		wantCode  int
		wantItems int
		wantPages int
	}{
		{"defaults", "", 200, total, 1},
		{"first page", "?page=1&size=3", 200, 3, (total + 2) / 3},
		{"last page", fmt.Sprintf("?page=%d&size=3", (total+2)/3), 200, total - 3*((total+2)/3-1), (total + 2) / 3},
		{"beyond last page", "?page=99&size=3", 200, 0, (total + 2) / 3},
		{"max size", "?size=100", 200, total, 1},
		{"size too big", "?size=101", 400, 0, 0},
		{"page zero", "?page=0", 400, 0, 0},
		{"page not a number", "?page=x", 400, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, c, http.MethodGet, sim.APIURL()+"/flows/live"+tt.query, tok, nil, nil)
			if r.code != tt.wantCode {
				t.Fatalf("status %d, want %d (%s)", r.code, tt.wantCode, r.body)
			}
			if r.code != 200 {
				return
			}
			m := r.json(t)
			content := m["content"].([]any)
			page := m["page"].(map[string]any)
			if len(content) != tt.wantItems || page["totalPages"] != float64(tt.wantPages) || page["totalElements"] != float64(total) {
				t.Fatalf("got %d items, page %v", len(content), page)
			}
		})
	}

	// Every flow across pages, once; some without a version, as some builds omit it.
	seen := map[string]bool{}
	withoutVersion := 0
	for p := 1; p <= (total+1)/2; p++ {
		r := do(t, c, http.MethodGet, fmt.Sprintf("%s/flows/live?page=%d&size=2", sim.APIURL(), p), tok, nil, nil)
		for _, f := range r.json(t)["content"].([]any) {
			fm := f.(map[string]any)
			id := fm["id"].(string)
			if seen[id] {
				t.Fatalf("flow %s on two pages", id)
			}
			seen[id] = true
			if _, ok := fm["version"]; !ok {
				withoutVersion++
			}
			if fm["environment"] != EnvLive || fm["name"] == "" {
				t.Fatalf("flow %v", fm)
			}
		}
	}
	if len(seen) != total || withoutVersion == 0 {
		t.Fatalf("paged through %d flows (%d without version), want %d (some without)", len(seen), withoutVersion, total)
	}
}

func TestListFlowsUnpaged(t *testing.T) {
	sim := startSim(t, func(c *Config) { c.FlowsPaging = PagingUnpaged })
	c := testClient(t)
	tok := getToken(t, c, sim)
	for _, path := range []string{"/flows/live?page=1&size=2", "/flows"} {
		r := do(t, c, http.MethodGet, sim.APIURL()+path, tok, nil, nil)
		m := r.json(t)
		if _, ok := m["page"]; ok || len(m["content"].([]any)) != len(flowCatalogue(EnvLive)) {
			t.Fatalf("%s: unpaged response %s", path, r.body)
		}
	}
}

func TestCreateSession(t *testing.T) {
	sim := startSim(t, func(c *Config) { c.StepDelay = time.Hour }) // stays CREATED
	c := testClient(t)
	tok := getToken(t, c, sim)
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	tests := []struct {
		name, flow, body string
		want             int
	}{
		{"empty body", "flw-auto-ident", "", 201},
		{"full body", "flw-auto-ident", `{"input":{"basicIdentity":{"givenName":"Erika","familyName":"Mustermann","birthDate":"1964-08-12"}},
			"metadata":{"subjectId":"customer-1"},"redirectUrl":"https://example.com/done","state":"abc"}`, 201},
		{"unknown flow", "flw-nope", "{}", 404},
		{"bad json", "flw-auto-ident", "{", 400},
		{"metadata not strings", "flw-auto-ident", `{"metadata":{"n":1}}`, 400},
		{"state too long", "flw-auto-ident", `{"state":"` + strings.Repeat("x", 2049) + `"}`, 400},
		{"relative redirect", "flw-auto-ident", `{"redirectUrl":"/done"}`, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, c, http.MethodPost, sim.APIURL()+"/flows/"+tt.flow+"/live/sessions", tok, strings.NewReader(tt.body), jsonHeader)
			if r.code != tt.want {
				t.Fatalf("status %d, want %d (%s)", r.code, tt.want, r.body)
			}
			if r.code != 201 {
				return
			}
			m := r.json(t)
			sc := m["sessionContext"].(map[string]any)
			if m["flowId"] != tt.flow || m["flowVersion"] != float64(7) || m["environment"] != EnvLive ||
				sc["sessionStatus"] != StatusCreated || sc["createdAt"] == nil || sc["expiresAt"] == nil ||
				!strings.HasPrefix(m["playerUrl"].(string), sim.URL()+"/player/?token=") || m["sdkToken"] == "" {
				t.Fatalf("create response %s", r.body)
			}
			id := sc["sessionId"].(string)
			d := do(t, c, http.MethodGet, sim.APIURL()+"/live/sessions/"+id, tok, nil, nil).json(t)
			if d["sessionStatus"] != StatusCreated || d["outcome"] != OutcomeNoOutcome || d["startedAt"] != nil || d["completedAt"] != nil {
				t.Fatalf("new session details %v", d)
			}
			if tt.name == "full body" {
				if d["subjectId"] != "customer-1" || d["redirectUrl"] != "https://example.com/done" || d["state"] != "abc" {
					t.Fatalf("details lost request fields: %v", d)
				}
			}
		})
	}
	if r := do(t, c, http.MethodPost, sim.APIURL()+"/flows/flw-auto-ident/staging/sessions", tok, nil, jsonHeader); r.code != 403 {
		t.Fatalf("create in other environment: %d, want 403", r.code)
	}
}

// completedSession creates sessions until one completes with the wanted outcome.
func completedSession(t *testing.T, sim *Simulator, outcome string) SessionSnapshot {
	t.Helper()
	for range 20 {
		sim.CreateSessions(10)
		waitIdle(t, sim)
		for _, s := range sim.Sessions() {
			if s.Status == StatusCompleted && s.Outcome == outcome {
				return s
			}
		}
	}
	t.Fatalf("no session completed with outcome %s", outcome)
	return SessionSnapshot{}
}

func TestSessionDetailsAndDataBlocks(t *testing.T) {
	tests := []struct {
		name       string
		shape      string
		lastStep   string
		outcome    string
		wantBlocks string
		wantType   string
		wantOut    string
	}{
		{"new shape, id step, lower", ShapeNew, LastStepID, OutcomeLower, "dataBlocks", "basicIdentity", "accepted"},
		{"old shape, name step, upper", ShapeOld, LastStepName, OutcomeUpper, "datablocks", "BasicIdentity", "ACCEPTED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := startSim(t, func(c *Config) {
				c.DataBlocksShape, c.LastStepVariant, c.OutcomeCase = tt.shape, tt.lastStep, tt.outcome
			})
			c := testClient(t)
			tok := getToken(t, c, sim)
			snap := completedSession(t, sim, OutcomeAccepted)

			d := do(t, c, http.MethodGet, sim.APIURL()+"/live/sessions/"+snap.SessionID, tok, nil, nil).json(t)
			if d["sessionStatus"] != StatusCompleted || d["outcome"] != tt.wantOut || d["completedAt"] == nil ||
				d["startedAt"] == nil || d["results"] == nil || d["subjectId"] == nil {
				t.Fatalf("details %v", d)
			}
			ls := d["lastStep"].(map[string]any)
			if tt.lastStep == LastStepID && (ls["stepId"] != "decision" || ls["stepDescription"] == nil) ||
				tt.lastStep == LastStepName && (ls["stepType"] != "DECISION" || ls["stepName"] == nil) {
				t.Fatalf("lastStep %v", ls)
			}

			var bodies [][]byte
			for _, p := range []string{"/live/sessions/" + snap.SessionID + "/datablocks", "/sessions/" + snap.SessionID + "/live/datablocks"} {
				r := do(t, c, http.MethodGet, sim.APIURL()+p, tok, nil, nil)
				if r.code != 200 {
					t.Fatalf("%s: %d %s", p, r.code, r.body)
				}
				bodies = append(bodies, r.body)
			}
			if !bytes.Equal(bodies[0], bodies[1]) {
				t.Fatalf("the two data-block paths differ:\n%s\n%s", bodies[0], bodies[1])
			}
			blocks := response{body: bodies[0]}.json(t)[tt.wantBlocks].([]any)
			if len(blocks) != 4 {
				t.Fatalf("%d blocks, want 4: %s", len(blocks), bodies[0])
			}
			first := blocks[0].(map[string]any)
			if first["type"] != tt.wantType {
				t.Fatalf("first block %v", first)
			}
			if tt.shape == ShapeNew {
				cb := first["createdBy"].(map[string]any)
				content := first["content"].(map[string]any)
				if first["status"] != "STORED" || cb["stepId"] != "basic-identity" || cb["clock"] != float64(1) ||
					content["givenName"] == nil || first["datablockId"] == nil {
					t.Fatalf("new-shape block %v", first)
				}
			} else if first["createdByStep"] != "basic-identity" || first["givenName"] == nil || first["name"] == nil {
				t.Fatalf("old-shape block %v", first)
			}
			if !strings.Contains(string(bodies[0]), `"$ref":"vault"`) {
				t.Fatalf("no vault file reference in %s", bodies[0])
			}
		})
	}
}

func TestDeletedBlocks(t *testing.T) {
	sim := startSim(t, func(c *Config) { c.DeletedBlockRate = 1 })
	c := testClient(t)
	tok := getToken(t, c, sim)
	snap := completedSession(t, sim, OutcomeAccepted)
	blocks := do(t, c, http.MethodGet, sim.APIURL()+"/live/sessions/"+snap.SessionID+"/datablocks", tok, nil, nil).json(t)["dataBlocks"].([]any)
	deleted := 0
	for _, b := range blocks {
		bm := b.(map[string]any)
		if bm["status"] == "DELETED" {
			deleted++
			if v, ok := bm["content"]; !ok || v != nil {
				t.Fatalf("deleted block with content %v", bm)
			}
		}
	}
	if deleted != 3 { // every block but outcomeStatus
		t.Fatalf("%d deleted blocks, want 3", deleted)
	}
}

func TestListFlowSessions(t *testing.T) {
	sim := startSim(t, func(c *Config) { c.StepDelay, c.StepJitter = time.Hour, 0 })
	c := testClient(t)
	tok := getToken(t, c, sim)
	var ids []string
	for range 5 {
		ids = append(ids, createSession(t, c, sim, tok, "flw-age-verification", ""))
		time.Sleep(2 * time.Millisecond) // distinct createdAt for a meaningful sort
	}
	createSession(t, c, sim, tok, "flw-auto-ident", "") // another flow: not listed

	list := func(query string) (ids []string, page map[string]any, code int) {
		r := do(t, c, http.MethodGet, sim.APIURL()+"/flows/flw-age-verification/live/sessions"+query, tok, nil, nil)
		if r.code != 200 {
			return nil, nil, r.code
		}
		m := r.json(t)
		for _, s := range m["content"].([]any) {
			ids = append(ids, s.(map[string]any)["sessionId"].(string))
		}
		return ids, m["page"].(map[string]any), r.code
	}
	got, page, _ := list("?page=1&size=2&sortBy=createdAt")
	if strings.Join(got, ",") != strings.Join(ids[:2], ",") || page["totalElements"] != float64(5) || page["totalPages"] != float64(3) {
		t.Fatalf("page 1 asc = %v %v, want %v", got, page, ids[:2])
	}
	got, _, _ = list("?page=1&size=2&sortBy=createdAt&sortDesc=true")
	if strings.Join(got, ",") != ids[4]+","+ids[3] {
		t.Fatalf("page 1 desc = %v", got)
	}
	got, _, _ = list("?page=3&size=2")
	if len(got) != 1 || got[0] != ids[4] {
		t.Fatalf("page 3 = %v", got)
	}
	if _, _, code := list("?sortBy=name"); code != 400 {
		t.Fatalf("bad sortBy: %d", code)
	}
	if _, _, code := list("?sortDesc=maybe"); code != 400 {
		t.Fatalf("bad sortDesc: %d", code)
	}
	if r := do(t, c, http.MethodGet, sim.APIURL()+"/flows/flw-nope/live/sessions", tok, nil, nil); r.code != 404 {
		t.Fatalf("unknown flow: %d", r.code)
	}
}

func TestFiles(t *testing.T) {
	sim := startSim(t, nil)
	c := testClient(t)
	tok := getToken(t, c, sim)
	snap := completedSession(t, sim, OutcomeAccepted)
	// Front, report and selfie always; back side and video for some sessions.
	if len(snap.Files) < 3 || len(snap.Files) > 5 {
		t.Fatalf("session has %d files, want 3 to 5", len(snap.Files))
	}
	fileID := snap.Files[0]

	r := do(t, c, http.MethodGet, sim.APIURL()+"/live/files/"+fileID, tok, nil, nil)
	if r.code != http.StatusFound {
		t.Fatalf("file: %d, want 302", r.code)
	}
	loc := r.header.Get("Location")
	if !strings.HasPrefix(loc, sim.URL()+"/presigned/"+fileID+"?") {
		t.Fatalf("Location %q", loc)
	}

	// Without Authorization: the bytes.
	r = do(t, c, http.MethodGet, loc, "", nil, nil)
	if r.code != 200 || r.header.Get("Content-Type") != "image/jpeg" ||
		r.header.Get("Content-Length") != fmt.Sprint(len(r.body)) ||
		!strings.Contains(r.header.Get("Content-Disposition"), "document-front.jpg") ||
		!bytes.HasPrefix(r.body, []byte{0xFF, 0xD8, 0xFF}) {
		t.Fatalf("presigned: %d %v (%d bytes)", r.code, r.header, len(r.body))
	}
	fs, _ := sim.File(fileID)
	if sum := sha256.Sum256(r.body); sum != fs.SHA256 || r.header.Get("X-Amz-Checksum-Sha256") != base64.StdEncoding.EncodeToString(sum[:]) || fs.Size != int64(len(r.body)) {
		t.Fatalf("served digest %x, header %q, File() %x / %d bytes", sum, r.header.Get("X-Amz-Checksum-Sha256"), fs.SHA256, fs.Size)
	}

	// With the Bearer token: refused and recorded.
	if r = do(t, c, http.MethodGet, loc, tok, nil, nil); r.code != http.StatusBadRequest {
		t.Fatalf("presigned with Authorization: %d, want 400", r.code)
	}
	if got := sim.Stats().PresignedWithAuthorization; got != 1 {
		t.Fatalf("PresignedWithAuthorization = %d, want 1", got)
	}

	u, _ := url.Parse(loc)
	q := u.Query()
	tampered := *u
	q2 := url.Values{"expires": {fmt.Sprint(time.Now().Add(48 * time.Hour).Unix())}, "signature": q["signature"]}
	tampered.RawQuery = q2.Encode()
	expired := sim.presignedURL(fileID, time.Now().Add(-time.Minute))
	tests := []struct {
		name, url string
		want      int
	}{
		{"tampered expiry", tampered.String(), 403},
		{"expired", expired, 403},
		{"no signature", sim.URL() + "/presigned/" + fileID, 403},
		{"unknown file", sim.presignedURL("nope", time.Now().Add(time.Minute)), 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := do(t, c, http.MethodGet, tt.url, "", nil, nil); r.code != tt.want {
				t.Fatalf("status %d, want %d", r.code, tt.want)
			}
		})
	}

	if r := do(t, c, http.MethodGet, sim.APIURL()+"/live/files/unknown", tok, nil, nil); r.code != 404 {
		t.Fatalf("unknown vault entry: %d", r.code)
	}
	if r := do(t, c, http.MethodGet, sim.APIURL()+"/staging/files/"+fileID, tok, nil, nil); r.code != 403 {
		t.Fatalf("other environment: %d", r.code)
	}
	// The PDF report is served as a PDF.
	r = do(t, c, http.MethodGet, do(t, c, http.MethodGet, sim.APIURL()+"/live/files/"+snap.Files[1], tok, nil, nil).header.Get("Location"), "", nil, nil)
	if r.header.Get("Content-Type") != "application/pdf" || !bytes.HasPrefix(r.body, []byte("%PDF-")) {
		t.Fatalf("report: %v", r.header)
	}
}

// TestHugeDataBlocks: simulator.huge_datablocks pads exactly the chosen sessions' data-block
// answers (every third here), in both shapes, and leaves the others as they were.
func TestHugeDataBlocks(t *testing.T) {
	for _, shape := range []string{ShapeNew, ShapeOld} {
		t.Run(shape, func(t *testing.T) {
			sim := startSim(t, func(c *Config) {
				c.DataBlocksShape = shape
				c.HugeDataBlocks = HugeDataBlocks{Every: 3, Blocks: 1000}
			})
			c := testClient(t)
			tok := getToken(t, c, sim)
			sim.CreateSessions(6)
			waitIdle(t, sim)
			key := map[string]string{ShapeNew: "dataBlocks", ShapeOld: "datablocks"}[shape]
			padded := 0
			for _, s := range sim.Sessions() {
				blocks := do(t, c, http.MethodGet, sim.APIURL()+"/live/sessions/"+s.SessionID+"/datablocks", tok, nil, nil).json(t)[key].([]any)
				if got, want := len(blocks), len(s.DataBlockTypes)+s.PaddingBlocks; got != want {
					t.Errorf("session %s: %d blocks, want %d (%d padding)", s.SessionID, got, want, s.PaddingBlocks)
				}
				switch s.PaddingBlocks {
				case 1000:
					padded++
					if last := blocks[len(blocks)-1].(map[string]any); last["type"] != "padding" {
						t.Errorf("last block of a padded session is %v", last)
					}
				case 0:
				default:
					t.Errorf("session %s has %d padding blocks, want 0 or 1000", s.SessionID, s.PaddingBlocks)
				}
			}
			if padded != 2 {
				t.Errorf("%d of 6 sessions padded, want 2 (every 3rd)", padded)
			}
		})
	}
}

func TestHugeDataBlocksValidate(t *testing.T) {
	for _, h := range []HugeDataBlocks{{Rate: 1.5, Blocks: 10}, {Every: -1, Blocks: 10}, {Every: 2, Blocks: 0}} {
		cfg := testConfig()
		cfg.HugeDataBlocks = h
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "simulator.huge_datablocks.") {
			t.Errorf("%+v: Validate = %v, want an error naming simulator.huge_datablocks.*", h, err)
		}
	}
}

// TestFileEvidenceAndFaults: configured sizes (a large video of every N-th session), bytes
// that are the same on every download, and the file faults: an already expired URL, a 404
// for a missing file, a truncated body that only the checksum header reveals, a slow body.
func TestFileEvidenceAndFaults(t *testing.T) {
	sim := startSim(t, func(c *Config) {
		c.Files = Files{ImageSize: 10000, ExtraImages: true, LargeVideoSize: 3 << 20, LargeVideoEvery: 1}
	})
	c := testClient(t)
	tok := getToken(t, c, sim)
	snap := completedSession(t, sim, OutcomeAccepted)
	var video string
	for _, id := range snap.Files {
		f, ok := sim.File(id)
		if !ok {
			t.Fatalf("File(%s) unknown", id)
		}
		switch f.ContentType {
		case "video/mp4":
			video = id
			if f.Size != 3<<20 {
				t.Errorf("video size %d, want %d", f.Size, 3<<20)
			}
		default:
			if f.Size != 10000 {
				t.Errorf("%s size %d, want 10000", f.Filename, f.Size)
			}
		}
	}
	if video == "" {
		t.Fatalf("no video among %v", snap.Files)
	}
	get := func() response {
		loc := do(t, c, http.MethodGet, sim.APIURL()+"/live/files/"+video, tok, nil, nil).header.Get("Location")
		return do(t, c, http.MethodGet, loc, "", nil, nil)
	}
	first, second := get(), get()
	if first.code != 200 || !bytes.Equal(first.body, second.body) || !bytes.HasPrefix(first.body[4:], []byte("ftypmp42")) {
		t.Fatalf("video: %d, %d and %d bytes, equal %v", first.code, len(first.body), len(second.body), bytes.Equal(first.body, second.body))
	}

	// Every download truncated: no Content-Length, half the bytes, the full digest in the header.
	if err := sim.SetFaults(Faults{FileTruncatedRate: 1}); err != nil {
		t.Fatal(err)
	}
	r := get()
	sum := sha256.Sum256(r.body)
	if r.code != 200 || r.header.Get("Content-Length") != "" || len(r.body) != len(first.body)/2 ||
		r.header.Get("X-Amz-Checksum-Sha256") == base64.StdEncoding.EncodeToString(sum[:]) {
		t.Fatalf("truncated: %d, %d bytes, headers %v", r.code, len(r.body), r.header)
	}
	// Slow: complete, just late.
	if err := sim.SetFaults(Faults{FileSlowBodyRate: 1, SlowDelay: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if r := get(); !bytes.Equal(r.body, first.body) {
		t.Fatalf("slow body differs: %d bytes", len(r.body))
	}
	// Expired on issue.
	if err := sim.SetFaults(Faults{FileExpiredRate: 1}); err != nil {
		t.Fatal(err)
	}
	if r := get(); r.code != http.StatusForbidden {
		t.Fatalf("expired URL: %d, want 403", r.code)
	}
	st := sim.Stats()
	if st.TruncatedBodies != 1 || st.SlowBodies != 1 || st.ExpiredURLsIssued != 1 {
		t.Fatalf("stats %+v", st)
	}

	// Missing files, drawn when created: every file of a new session answers 404.
	if err := sim.SetFaults(Faults{FileMissingRate: 1}); err != nil {
		t.Fatal(err)
	}
	before := len(sim.Sessions())
	sim.CreateSessions(5)
	waitIdle(t, sim)
	snap = SessionSnapshot{}
	for _, s := range sim.Sessions()[before:] {
		if len(s.Files) > 0 {
			snap = s
		}
		if len(s.MissingFiles) != len(s.Files) {
			t.Fatalf("session %s: missing %v of %v", s.SessionID, s.MissingFiles, s.Files)
		}
	}
	if len(snap.Files) == 0 {
		t.Fatal("none of 5 new sessions has files")
	}
	if r := do(t, c, http.MethodGet, sim.APIURL()+"/live/files/"+snap.MissingFiles[0], tok, nil, nil); r.code != http.StatusNotFound {
		t.Fatalf("missing file: %d, want 404", r.code)
	}
}
