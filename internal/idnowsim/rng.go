package idnowsim

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// rng is a seeded source of randomness. The simulator has one root source seeded by
// Config.Seed; every session gets its own source seeded from the root when it is created, so a
// session's fate, timing, ids and data do not depend on how goroutines interleave. Faults,
// delivery ids and shuffling draw from the root. Signing keys, HMAC secrets and access tokens
// use crypto/rand instead.
type rng struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newRNG(seed int64) *rng {
	return &rng{r: rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15))}
}

// Float64 returns a number in [0,1).
func (g *rng) Float64() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.r.Float64()
}

// Int64 returns a non-negative random int64, used to seed per-session sources.
func (g *rng) Int64() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.r.Int64()
}

// IntN returns a number in [0,n).
func (g *rng) IntN(n int) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.r.IntN(n)
}

// Chance reports true with probability p.
func (g *rng) Chance(p float64) bool {
	if p <= 0 {
		return false
	}
	return g.Float64() < p
}

// Duration returns base plus a uniform extra in [0, jitter).
func (g *rng) Duration(base, jitter time.Duration) time.Duration {
	if jitter <= 0 {
		return base
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return base + time.Duration(g.r.Int64N(int64(jitter)))
}

// UUID returns a random RFC 4122 version 4 UUID drawn from the seeded source.
func (g *rng) UUID() string {
	g.mu.Lock()
	hi, lo := g.r.Uint64(), g.r.Uint64()
	g.mu.Unlock()
	hi = hi&^0xf000 | 0x4000     // version 4
	lo = lo&^(0xc<<60) | 0x8<<60 // RFC 4122 variant
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x",
		hi>>32, (hi>>16)&0xffff, hi&0xffff, lo>>48, lo&0xffffffffffff)
}

// Token returns n random bytes as lowercase hex, used for opaque tokens in simulated responses.
func (g *rng) Token(n int) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.r.UintN(256))
	}
	return fmt.Sprintf("%x", b)
}

// Pick returns one element of options.
func pick[T any](g *rng, options []T) T {
	return options[g.IntN(len(options))]
}
