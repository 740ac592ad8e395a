package app

import (
	"net/url"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/admin"
)

// statusProvider gives the admin server's status page the process's configuration summary and
// the enricher's newest DLQ entries. It reads App fields that Start sets before the admin
// server serves.
type statusProvider struct{ a *App }

// Readiness checks each role registers (startIngress, startEnricher); the status page groups
// them by role.
var roleChecks = map[string][]string{
	"ingress":  {"kafka", "jwks"},
	"enricher": {"enricher"},
	// The reconciler registers no readiness check (a follower is as ready as the leader); the
	// page shows its passes.
	"reconciler": {},
	"commands":   {"commands"},
	// Ready once it joined its consumer group.
	"archiver": {"archiver"},
}

func (p statusProvider) Summary() admin.Summary {
	a := p.a
	s := admin.Summary{
		Mode: string(a.mode), Version: a.version, Brokers: append([]string(nil), a.brokers...),
		Topics:    admin.Topics{Sessions: a.cfg.Topics.Sessions, Enriched: a.cfg.Topics.Enriched, DLQ: a.cfg.Topics.DLQ},
		Encoding:  encodingSummary(a.cfg.SchemaRegistry.URL),
		Simulator: a.cfg.Simulator.Enabled,
		Roles:     []admin.Role{},
	}
	if a.mode.runsIngress() {
		s.Roles = append(s.Roles, admin.Role{Name: "ingress", Checks: roleChecks["ingress"]})
	}
	if a.mode.runsEnricher() {
		s.Roles = append(s.Roles, admin.Role{Name: "enricher", Checks: roleChecks["enricher"]})
		s.Delivery = a.cfg.Enrich.Delivery
	}
	if a.mode.runsReconciler(a.cfg) {
		s.Roles = append(s.Roles, admin.Role{Name: "reconciler", Checks: roleChecks["reconciler"]})
	}
	if a.mode.runsCommands(a.cfg) {
		s.Roles = append(s.Roles, admin.Role{Name: "commands", Checks: roleChecks["commands"]})
	}
	if a.mode.runsArchiver(a.cfg) {
		s.Roles = append(s.Roles, admin.Role{Name: "archiver", Checks: roleChecks["archiver"]})
	}
	return s
}

func (p statusProvider) RecentDLQ() []admin.DLQEntry {
	if p.a.enricher == nil {
		return nil
	}
	recent := p.a.enricher.RecentDLQ()
	out := make([]admin.DLQEntry, len(recent))
	for i, e := range recent {
		out[i] = admin.DLQEntry{EventID: e.EventID, SessionID: e.SessionID, Reason: e.Reason, At: e.At.UTC()}
	}
	return out
}

// encodingSummary names the record encoding; a registry URL is shown without credentials,
// query or fragment (schema_registry.url may carry user:password@).
func encodingSummary(registryURL string) string {
	if registryURL == "" {
		return "Avro single-object encoding (no schema registry)"
	}
	u, err := url.Parse(registryURL)
	if err != nil || u.Host == "" {
		return "Avro, Confluent wire format through a schema registry"
	}
	return "Avro, Confluent wire format through the schema registry at " + u.Scheme + "://" + u.Host + u.Path
}
