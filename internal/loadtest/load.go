package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LoadConfig bounds one load run: it stops after Duration or after len(Tokens) requests,
// whichever comes first. Each token is posted once, so every request is a distinct webhook.
type LoadConfig struct {
	URL         string        // the webhook endpoint, on 127.0.0.1
	Tokens      []string      // pre-signed distinct webhook tokens
	Concurrency int           // connections, each with one request in flight
	Duration    time.Duration // the timed window
	Timeout     time.Duration // per request; a timeout counts as an error
}

// LoadResult is what one load run measured.
type LoadResult struct {
	Concurrency int
	Requests    int // completed requests (2xx or not)
	Errors      int // transport errors, timeouts and non-2xx answers
	ErrorKinds  map[string]int
	Elapsed     time.Duration // from the first request to the last answer
	RPS         float64       // successful requests per second
	P50, P99    time.Duration
	P999        time.Duration
	Max         time.Duration
}

// Load posts webhooks at a fixed concurrency. Latencies are recorded per request into a
// slice sized by the token count, so the run allocates nothing per request but the request
// itself and its percentiles are exact.
func Load(ctx context.Context, cfg LoadConfig) (LoadResult, error) {
	if cfg.Concurrency <= 0 || len(cfg.Tokens) == 0 || cfg.Duration <= 0 {
		return LoadResult{}, errors.New("loadtest: Load needs a positive concurrency and duration and at least one token")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second // IDnow's answer deadline
	}
	tr := &http.Transport{
		MaxIdleConns:        cfg.Concurrency,
		MaxIdleConnsPerHost: cfg.Concurrency,
		MaxConnsPerHost:     cfg.Concurrency,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: cfg.Timeout}

	lat := make([]time.Duration, len(cfg.Tokens))
	ok := make([]bool, len(cfg.Tokens))
	var (
		next    atomic.Int64
		mu      sync.Mutex
		kinds   = map[string]int{}
		wg      sync.WaitGroup
		runCtx  context.Context
		cancel  context.CancelFunc
		lastEnd atomic.Int64
	)
	runCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start := time.Now()
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(cfg.Tokens) {
					return
				}
				t0 := time.Now()
				kind := post(client, cfg.URL, cfg.Tokens[i])
				end := time.Now()
				lat[i] = end.Sub(t0)
				ok[i] = kind == ""
				for {
					prev := lastEnd.Load()
					if end.UnixNano() <= prev || lastEnd.CompareAndSwap(prev, end.UnixNano()) {
						break
					}
				}
				if kind != "" {
					mu.Lock()
					kinds[kind]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	issued := min(int(next.Load()), len(cfg.Tokens))
	res := LoadResult{Concurrency: cfg.Concurrency, Requests: issued, ErrorKinds: kinds}
	res.Elapsed = time.Unix(0, lastEnd.Load()).Sub(start)
	done := lat[:issued]
	good := 0
	for i := range issued {
		if ok[i] {
			good++
		}
	}
	res.Errors = issued - good
	if res.Elapsed > 0 {
		res.RPS = float64(good) / res.Elapsed.Seconds()
	}
	sorted := slices.Clone(done)
	slices.Sort(sorted)
	res.P50, res.P99, res.P999 = quantile(sorted, 0.50), quantile(sorted, 0.99), quantile(sorted, 0.999)
	if len(sorted) > 0 {
		res.Max = sorted[len(sorted)-1]
	}
	return res, nil
}

// quantile returns the nearest-rank quantile of sorted durations.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// post sends one webhook in the current delivery variant and returns "" on 2xx, otherwise a
// short bounded error kind for the report.
func post(client *http.Client, url, token string) string {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(token))
	if err != nil {
		return "request"
	}
	req.Header.Set("Content-Type", "application/jwt")
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout") {
			return "timeout"
		}
		return "transport"
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		// The first words of the answer tell a 503 for Kafka from one for overload.
		return fmt.Sprintf("http_%d %s", resp.StatusCode, firstWords(body))
	}
	return ""
}

func firstWords(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 80 {
		b = b[:80]
	}
	return string(b)
}
