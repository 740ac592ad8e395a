package ingress

import (
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// dedupe remembers recently accepted eventIds so an IDnow redelivery inside the window is
// answered 2xx without writing the event again. Memory is bounded by MaxEntries: under a flood
// the least recently seen ids are forgotten first, which can only cause a harmless duplicate
// downstream. (golang-lru's expirable cache is not used because its cleanup goroutine can never
// be stopped; expiry is checked on read instead.)
type dedupe struct {
	window time.Duration
	now    func() time.Time
	lru    *lru.Cache[string, time.Time]
}

func newDedupe(cfg DedupeConfig) *dedupe {
	if cfg.Window <= 0 {
		return nil
	}
	c, err := lru.New[string, time.Time](cfg.MaxEntries)
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
