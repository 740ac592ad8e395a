package ingress

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// dedupe remembers recently accepted eventIds so an IDnow redelivery inside the window is
// answered 2xx without writing the event again. Memory is bounded by MaxEntries: under a flood
// the least recently seen ids are forgotten first, which can only cause a harmless duplicate
// downstream. (golang-lru's expirable cache is not used because its cleanup goroutine can never
// be stopped; expiry is checked on read instead.) It is not safe for concurrent use: the
// tracker's lock guards it, so the cache needs no lock of its own (simplelru, not lru.Cache,
// which would take a second lock on every webhook).
type dedupe struct {
	window time.Duration
	now    func() time.Time
	lru    *simplelru.LRU[string, time.Time]
}

func newDedupe(cfg DedupeConfig) *dedupe {
	if cfg.Window <= 0 {
		return nil
	}
	c, err := simplelru.NewLRU[string, time.Time](cfg.MaxEntries, nil)
	if err != nil {
		// Only a non-positive size fails, which Config.Validate rules out.
		panic("ingress: dedupe cache: " + err.Error())
	}
	return &dedupe{window: cfg.Window, now: time.Now, lru: c}
}

// seen reports whether eventID was accepted within the window. A nil dedupe never has.
func (d *dedupe) seen(eventID string) bool {
	if d == nil {
		return false
	}
	at, ok := d.lru.Get(eventID)
	return ok && d.now().Sub(at) < d.window
}

// accepted records that eventID is now safely in Kafka.
func (d *dedupe) accepted(eventID string) {
	if d != nil {
		d.lru.Add(eventID, d.now())
	}
}

// flight is one produce of an eventId under way. Redeliveries of the same id that arrive
// meanwhile wait for its outcome instead of writing the event a second time.
type flight struct {
	done chan struct{} // closed when the produce finished; err is set before
	err  error
	// abandoned is set when some request gave up waiting (answered 503 after produce_timeout), so
	// an acknowledgement that still arrives is a late one worth a log line.
	abandoned atomic.Bool
}

// tracker combines the dedupe window with the produces in flight, under one lock, so a
// redelivery sees exactly one of: the event accepted (duplicate), a produce under way (join it),
// or neither (produce it). Without the single lock a redelivery could slip between a produce
// finishing and its id entering the window and write the event twice.
type tracker struct {
	mu       sync.Mutex
	dedupe   *dedupe
	inflight map[string]*flight
}

func newTracker(cfg DedupeConfig) *tracker {
	return &tracker{dedupe: newDedupe(cfg), inflight: make(map[string]*flight)}
}

// begin classifies a delivery of eventID. dup: already accepted within the window. Otherwise f is
// the produce to wait for, and lead says the caller must start it (and later call finish).
func (t *tracker) begin(eventID string) (f *flight, lead, dup bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dedupe.seen(eventID) {
		return nil, false, true
	}
	if f = t.inflight[eventID]; f != nil {
		return f, false, false
	}
	f = &flight{done: make(chan struct{})}
	t.inflight[eventID] = f
	return f, true, false
}

// finish records the outcome of the produce f of eventID: on success the id enters the dedupe
// window (whether or not anybody is still waiting for the answer), then waiters are released.
func (t *tracker) finish(eventID string, f *flight, err error) {
	t.mu.Lock()
	if err == nil {
		t.dedupe.accepted(eventID)
	}
	delete(t.inflight, eventID)
	t.mu.Unlock()
	f.err = err
	close(f.done)
}
