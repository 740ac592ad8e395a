package retry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	ok := Config{InitialBackoff: 200 * time.Millisecond, MaxBackoff: 30 * time.Second, Multiplier: 2, Jitter: 0.5}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string // substrings of the error; none = valid
	}{
		{"valid", func(*Config) {}, nil},
		{"zero multiplier means default", func(c *Config) { c.Multiplier = 0 }, nil},
		{"zero jitter", func(c *Config) { c.Jitter = 0 }, nil},
		{"equal bounds", func(c *Config) { c.MaxBackoff = c.InitialBackoff }, nil},
		{"zero initial", func(c *Config) { c.InitialBackoff = 0 }, []string{"x.retry.initial_backoff must be a positive duration"}},
		{"negative initial", func(c *Config) { c.InitialBackoff = -time.Second; c.MaxBackoff = time.Second }, []string{"x.retry.initial_backoff", "got -1s"}},
		{"max below initial", func(c *Config) { c.MaxBackoff = time.Millisecond }, []string{"x.retry.max_backoff (1ms) must be at least x.retry.initial_backoff (200ms)"}},
		{"shrinking multiplier", func(c *Config) { c.Multiplier = 0.5 }, []string{"multiplier 0.5"}},
		{"negative jitter", func(c *Config) { c.Jitter = -0.1 }, []string{"jitter -0.1"}},
		{"jitter of one", func(c *Config) { c.Jitter = 1 }, []string{"jitter 1 is outside [0, 1)"}},
		{"all at once", func(c *Config) { c.InitialBackoff = 0; c.MaxBackoff = -1; c.Jitter = 2 }, []string{"initial_backoff", "max_backoff", "jitter 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			err := c.Validate("x.retry")
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestNextBackOffSequence(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		random float64
		want   []time.Duration
	}{
		{"doubles up to the cap", Config{InitialBackoff: ms(100), MaxBackoff: ms(500), Multiplier: 2}, 0,
			[]time.Duration{ms(100), ms(200), ms(400), ms(500), ms(500)}},
		{"zero multiplier doubles", Config{InitialBackoff: ms(100), MaxBackoff: ms(1000)}, 0,
			[]time.Duration{ms(100), ms(200), ms(400), ms(800), ms(1000)}},
		{"multiplier 1.5", Config{InitialBackoff: ms(100), MaxBackoff: ms(300), Multiplier: 1.5}, 0,
			[]time.Duration{ms(100), ms(150), ms(225), ms(300)}},
		{"max below initial", Config{InitialBackoff: ms(100), MaxBackoff: ms(50)}, 0,
			[]time.Duration{ms(100), ms(50), ms(50)}},
		// random 0 draws the low end of the band, random ~1 the high end.
		{"jitter low end", Config{InitialBackoff: ms(100), MaxBackoff: ms(400), Jitter: 0.5}, 0,
			[]time.Duration{ms(50), ms(100), ms(200), ms(200)}},
		{"jitter high end", Config{InitialBackoff: ms(100), MaxBackoff: ms(400), Jitter: 0.5}, 0.999999999,
			[]time.Duration{ms(150), ms(300), ms(400), ms(400)}}, // capped at MaxBackoff
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.cfg.newBackOff(func() float64 { return tt.random })
			for i, want := range tt.want {
				// Rounding of the +1ns band extension may add a nanosecond.
				if got := b.NextBackOff(); got < want || got > want+time.Nanosecond {
					t.Fatalf("wait %d = %v, want %v", i+1, got, want)
				}
			}
		})
	}
}

func TestReset(t *testing.T) {
	b := Config{InitialBackoff: ms(10), MaxBackoff: ms(1000)}.NewBackOff()
	for range 4 {
		b.NextBackOff()
	}
	b.Reset()
	if got := b.NextBackOff(); got != ms(10) {
		t.Fatalf("NextBackOff after Reset = %v, want the initial 10ms", got)
	}
}

func TestJitterStaysInBand(t *testing.T) {
	b := Config{InitialBackoff: ms(200), MaxBackoff: ms(800), Jitter: 0.5}.NewBackOff()
	// Jitter spreads around the interval but never above MaxBackoff (800 ms).
	bands := [][2]time.Duration{{ms(100), ms(300)}, {ms(200), ms(600)}, {ms(400), ms(800)}, {ms(400), ms(800)}}
	for range 50 {
		b := Config{InitialBackoff: ms(800), MaxBackoff: ms(800), Jitter: 0.5}.NewBackOff()
		if got := b.NextBackOff(); got > ms(800) {
			t.Fatalf("wait %v above MaxBackoff 800ms", got)
		}
	}
	for i, band := range bands {
		if got := b.NextBackOff(); got < band[0] || got > band[1]+time.Nanosecond {
			t.Fatalf("wait %d = %v outside [%v, %v]", i+1, got, band[0], band[1])
		}
	}
}

func TestNextAfter(t *testing.T) {
	cfg := Config{InitialBackoff: ms(200), MaxBackoff: ms(30_000)}
	tests := []struct {
		name              string
		retryAfter, limit time.Duration
		want              time.Duration
	}{
		{"no hint: the backoff", 0, time.Minute, ms(200)},
		{"shorter hint: the backoff", ms(50), time.Minute, ms(200)},
		{"longer hint honoured", 2 * time.Second, time.Minute, 2 * time.Second},
		{"huge hint capped", time.Hour, 5 * time.Second, 5 * time.Second},
		{"cap below backoff: the backoff", time.Hour, ms(100), ms(200)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := cfg.NewBackOff()
			if got := b.NextAfter(tt.retryAfter, tt.limit); got != tt.want {
				t.Fatalf("NextAfter(%v, %v) = %v, want %v", tt.retryAfter, tt.limit, got, tt.want)
			}
			// The backoff advanced even when the hint won.
			if got := b.NextBackOff(); got != ms(400) {
				t.Fatalf("following NextBackOff = %v, want 400ms", got)
			}
		})
	}
}

func TestWait(t *testing.T) {
	errStop := errors.New("stopped by test")
	t.Run("elapses", func(t *testing.T) {
		if err := Wait(t.Context(), time.Millisecond); err != nil {
			t.Fatalf("Wait = %v, want nil", err)
		}
	})
	t.Run("zero wait", func(t *testing.T) {
		if err := Wait(t.Context(), 0); err != nil {
			t.Fatalf("Wait(0) = %v, want nil", err)
		}
	})
	t.Run("already cancelled, even for zero", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(t.Context())
		cancel(errStop)
		if err := Wait(ctx, 0); !errors.Is(err, errStop) {
			t.Fatalf("Wait = %v, want the cause %v", err, errStop)
		}
	})
	t.Run("cancelled mid-wait returns the cause", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(t.Context())
		done := make(chan error, 1)
		go func() { done <- Wait(ctx, time.Hour) }()
		cancel(errStop)
		if err := <-done; !errors.Is(err, errStop) {
			t.Fatalf("Wait = %v, want the cause %v", err, errStop)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
		defer cancel()
		if err := Wait(ctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait = %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestFitsDeadline(t *testing.T) {
	if !FitsDeadline(t.Context(), time.Hour) {
		t.Fatal("FitsDeadline without a deadline = false, want true")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	if !FitsDeadline(ctx, time.Second) {
		t.Error("FitsDeadline(1s) with an hour left = false, want true")
	}
	if FitsDeadline(ctx, 2*time.Hour) {
		t.Error("FitsDeadline(2h) with an hour left = true, want false")
	}
}
