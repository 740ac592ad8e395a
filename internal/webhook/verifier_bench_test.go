package webhook_test

import (
	"log/slog"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook/webhooktest"
)

// BenchmarkVerifyParallel verifies distinct tokens from every available core at once, as the
// ingress does under load: it shows whether the verifier (key cache, metrics, parser) scales with
// cores or serialises somewhere. BenchmarkVerify in verifier_test.go is the single-core figure.
func BenchmarkVerifyParallel(b *testing.B) {
	ks := webhooktest.NewKeySet(b)
	v, err := webhook.NewVerifier(b.Context(), testConfig(ks.Serve(b)), webhook.Deps{Registry: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			// A small pool of distinct tokens: each goroutine cycles through them, so nothing in the
			// verifier can benefit from seeing the very same token twice in a row.
			toks := make([]string, 64)
			for i := range toks {
				id := strconv.Itoa(i)
				toks[i] = ks.Sign(b, alg, webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("sess-"+id, "evt-"+id)))
			}
			ctx := b.Context()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := v.Verify(ctx, toks[i%len(toks)]); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}
