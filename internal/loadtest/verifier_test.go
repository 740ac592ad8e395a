package loadtest

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
)

func newTestVerifier(t *testing.T, jwksURL string) *webhook.Verifier {
	t.Helper()
	v, err := webhook.NewVerifier(t.Context(), webhookConfig(TargetSpec{JWKSURL: jwksURL}), webhook.Deps{Registry: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}
