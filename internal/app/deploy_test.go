package app

// Tests of the deployment artifacts under deploy/: every connector configuration shipped there
// loads and validates for the mode that runs it, the Kubernetes and compose wiring around it is
// consistent (mounts, probes, grace periods), and every metric the alerts and the dashboard query
// is one the code registers, with labels it has. A typo in a manifest fails `make test` instead of
// a rollout or, worse, an alert that can never fire.

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/config"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
)

// repoRoot is the module root as seen from this package's directory, where `go test` runs.
const repoRoot = "../.."

// configMountPath is where every shipped deployment mounts the connector's config.yaml.
const configMountPath = "/etc/idnow-connector/config.yaml"

func repoPath(parts ...string) string {
	return filepath.Join(append([]string{repoRoot}, parts...)...)
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
}

// --- Kubernetes ---------------------------------------------------------------------------------

// k8sWorkload is the part of a Deployment or StatefulSet these tests look at.
type k8sWorkload struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Replicas *int `yaml:"replicas"`
		Template struct {
			Spec struct {
				TerminationGracePeriodSeconds *int `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot *bool `yaml:"runAsNonRoot"`
				} `yaml:"securityContext"`
				Containers []k8sContainer `yaml:"containers"`
				Volumes    []k8sVolume    `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sContainer struct {
	Name  string `yaml:"name"`
	Args  []string
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	Lifecycle      struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	SecurityContext struct {
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sVolume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
		Items      []struct {
			Key  string `yaml:"key"`
			Path string `yaml:"path"`
		} `yaml:"items"`
	} `yaml:"secret"`
	EmptyDir any `yaml:"emptyDir"`
}

// environ turns the container's env into KEY=value pairs. Values from the downward API and from
// Secrets are stand-ins: what matters is that the variable names are keys the config knows.
func (c k8sContainer) environ() []string {
	var env []string
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			switch {
			case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
				v = "idnow-connector-" + c.Name + "-0" // the StatefulSet's first pod
			case e.ValueFrom.FieldRef != nil:
				v = "from-" + strings.ReplaceAll(e.ValueFrom.FieldRef.FieldPath, ".", "-")
			case e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Key == "archive-bucket-url":
				// The archiver's bucket URL is validated as a URL: stand in a well-formed one.
				v = "s3://bucket-from-secret"
			case e.ValueFrom.SecretKeyRef != nil:
				v = "secret-" + e.ValueFrom.SecretKeyRef.Key
			}
		}
		env = append(env, e.Name+"="+v)
	}
	return env
}

// mountedFile reports whether path is a file the container can read: under a mount of a volume
// that provides it (for Secrets with items, only the listed paths exist).
func (w k8sWorkload) mountedFile(c k8sContainer, path string) bool {
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" {
			if path == m.MountPath {
				return true
			}
			continue
		}
		rel, err := filepath.Rel(m.MountPath, path)
		if err != nil || strings.HasPrefix(rel, "..") || rel == "." {
			continue
		}
		for _, v := range w.Spec.Template.Spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.Secret == nil || len(v.Secret.Items) == 0 {
				return true
			}
			for _, it := range v.Secret.Items {
				if it.Path == rel {
					return true
				}
			}
		}
	}
	return false
}

func TestKubernetesConfigValidates(t *testing.T) {
	base := repoPath("deploy", "kubernetes", "base")
	var kust struct {
		Resources          []string `yaml:"resources"`
		ConfigMapGenerator []struct {
			Name  string   `yaml:"name"`
			Files []string `yaml:"files"`
		} `yaml:"configMapGenerator"`
	}
	readYAML(t, filepath.Join(base, "kustomization.yaml"), &kust)
	for _, r := range kust.Resources {
		if _, err := os.Stat(filepath.Join(base, r)); err != nil {
			t.Errorf("kustomization.yaml lists %s: %v", r, err)
		}
	}
	if len(kust.ConfigMapGenerator) != 1 || !slices.Equal(kust.ConfigMapGenerator[0].Files, []string{"config.yaml"}) {
		t.Fatalf("kustomization.yaml: want one configMapGenerator with files [config.yaml], got %+v", kust.ConfigMapGenerator)
	}
	configMap := kust.ConfigMapGenerator[0].Name

	tests := []struct {
		file      string
		container string
		mode      Mode
	}{
		{file: "ingress-deployment.yaml", container: "ingress", mode: ModeIngress},
		{file: "enricher-statefulset.yaml", container: "enricher", mode: ModeEnricher},
		{file: "reconciler-deployment.yaml", container: "reconciler", mode: ModeReconciler},
		{file: "commands-statefulset.yaml", container: "commands", mode: ModeCommands},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			if !slices.Contains(kust.Resources, tt.file) {
				t.Errorf("kustomization.yaml does not list %s", tt.file)
			}
			var w k8sWorkload
			readYAML(t, filepath.Join(base, tt.file), &w)
			for _, v := range w.Spec.Template.Spec.Volumes {
				if v.ConfigMap != nil && v.ConfigMap.Name != configMap {
					t.Errorf("volume %s mounts ConfigMap %q; the kustomization generates %q", v.Name, v.ConfigMap.Name, configMap)
				}
			}
			if len(w.Spec.Template.Spec.Containers) == 1 && w.Spec.Template.Spec.Containers[0].Name != tt.container {
				t.Fatalf("container %q, want %q", w.Spec.Template.Spec.Containers[0].Name, tt.container)
			}
			checkWorkload(t, w, tt.mode, filepath.Join(base, "config.yaml"))
		})
	}
}

// secretFiles lists the *_file keys mode reads, by full key.
func secretFiles(cfg Config, mode Mode) map[string]string {
	files := map[string]string{
		"kafka.tls.ca_file":        cfg.Kafka.TLS.CAFile,
		"kafka.tls.cert_file":      cfg.Kafka.TLS.CertFile,
		"kafka.tls.key_file":       cfg.Kafka.TLS.KeyFile,
		"kafka.sasl.password_file": cfg.Kafka.SASL.PasswordFile,
		// Both roles register or look up their schema when schema_registry.url is set.
		"schema_registry.password_file":     cfg.SchemaRegistry.PasswordFile,
		"schema_registry.bearer_token_file": cfg.SchemaRegistry.BearerTokenFile,
		"schema_registry.tls.ca_file":       cfg.SchemaRegistry.TLS.CAFile,
		"schema_registry.tls.cert_file":     cfg.SchemaRegistry.TLS.CertFile,
		"schema_registry.tls.key_file":      cfg.SchemaRegistry.TLS.KeyFile,
	}
	if mode.runsIngress() {
		files["webhook.static_header.value_file"] = cfg.Webhook.StaticHeader.ValueFile
	}
	if mode.runsEnricher() || mode.runsReconciler(cfg) || mode.runsCommands(cfg) {
		files["idnow.client_secret_file"] = cfg.IDnow.ClientSecretFile
	}
	return files
}

func checkK8sProbes(t *testing.T, c k8sContainer, cfg Config) {
	t.Helper()
	_, adminPort, err := net.SplitHostPort(cfg.Admin.Listen)
	if err != nil {
		t.Fatalf("admin.listen: %v", err)
	}
	ports := map[string]string{}
	for _, p := range c.Ports {
		ports[p.Name] = strconv.Itoa(p.ContainerPort)
	}
	if ports["admin"] != adminPort {
		t.Errorf("container port admin = %q, want admin.listen's port %s", ports["admin"], adminPort)
	}
	if _, ok := ports["http"]; ok {
		if _, port, _ := net.SplitHostPort(cfg.Ingress.Listen); ports["http"] != port {
			t.Errorf("container port http = %q, want ingress.listen's port %s", ports["http"], port)
		}
	}
	for name, p := range map[string]*k8sProbe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
		want := map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"}[name]
		switch {
		case p == nil:
			t.Errorf("%s is missing", name)
		case p.HTTPGet.Path != want || p.HTTPGet.Port != "admin":
			t.Errorf("%s = GET %s on port %q, want GET %s on port admin", name, p.HTTPGet.Path, p.HTTPGet.Port, want)
		}
	}
}

func checkK8sSecurity(t *testing.T, w k8sWorkload, c k8sContainer) {
	t.Helper()
	isTrue := func(b *bool) bool { return b != nil && *b }
	if !isTrue(c.SecurityContext.ReadOnlyRootFilesystem) {
		t.Error("securityContext.readOnlyRootFilesystem must be true")
	}
	if !isTrue(c.SecurityContext.RunAsNonRoot) && !isTrue(w.Spec.Template.Spec.SecurityContext.RunAsNonRoot) {
		t.Error("runAsNonRoot must be true")
	}
	if c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
		t.Error("securityContext.allowPrivilegeEscalation must be false")
	}
}

// --- docker compose -------------------------------------------------------------------------------

func TestComposeConfigValidates(t *testing.T) {
	dir := repoPath("deploy", "compose")
	var compose struct {
		Services map[string]struct {
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
			Secrets     []string          `yaml:"secrets"`
			Healthcheck *struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
		Secrets map[string]struct {
			File string `yaml:"file"`
		} `yaml:"secrets"`
	}
	// yaml.v3 resolves the x-connector anchor and its merge keys.
	readYAML(t, filepath.Join(dir, "docker-compose.yml"), &compose)
	for _, name := range []string{"kafka", "ingress", "enricher", "reconciler", "commands", "simulator"} {
		if s, ok := compose.Services[name]; !ok || s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
			t.Errorf("service %s is missing or has no healthcheck", name)
		}
	}
	for name, s := range compose.Secrets {
		if _, err := os.Stat(filepath.Join(dir, s.File)); err != nil {
			t.Errorf("secret %s: %v", name, err)
		}
	}

	for _, mode := range []Mode{ModeIngress, ModeEnricher, ModeReconciler, ModeCommands} {
		t.Run(string(mode), func(t *testing.T) {
			s, ok := compose.Services[string(mode)]
			if !ok {
				t.Fatalf("no service %s", mode)
			}
			if want := []string{string(mode), "--config", configMountPath}; !slices.Equal(s.Command, want) {
				t.Errorf("command = %q, want %q", s.Command, want)
			}
			var hostConfig string
			for _, v := range s.Volumes {
				parts := strings.Split(v, ":")
				if len(parts) >= 2 && parts[1] == configMountPath {
					hostConfig = parts[0]
				}
			}
			if hostConfig == "" {
				t.Fatalf("no volume mounts %s", configMountPath)
			}
			var env []string
			for k, v := range s.Environment {
				env = append(env, k+"="+v)
			}
			cfg := DefaultConfig()
			src := config.Source{Path: filepath.Join(dir, hostConfig), Required: true, Environ: env}
			if err := config.Load(src, &cfg); err != nil {
				t.Fatalf("load: %v", err)
			}
			if err := cfg.Validate(mode); err != nil {
				t.Fatalf("Validate(%s): %v", mode, err)
			}
			for key, path := range secretFiles(cfg, mode) {
				if path == "" {
					continue
				}
				name, ok := strings.CutPrefix(path, "/run/secrets/")
				if !ok || !slices.Contains(s.Secrets, name) {
					t.Errorf("%s %s is not a secret mounted into service %s", key, path, mode)
				}
			}
		})
	}
}

// --- metrics registered by the code ---------------------------------------------------------------

// metricInfo is one metric family the connector registers.
type metricInfo struct {
	histogram bool
	// labels are its label names; nil when they could not be determined statically.
	labels []string
}

// targetLabels are added by Prometheus at scrape time (or by Kubernetes service discovery
// relabelling) and may appear in any selector.
var targetLabels = []string{"namespace", "pod", "instance", "job", "container", "service"}

// registeredMetrics collects every metric family the code registers: prometheus.New* calls in
// the non-test Go sources (names built from string constants are resolved), the franz-go kprom
// metrics as internal/kafka configures them, and the Go and process collectors.
func registeredMetrics(t *testing.T) map[string]metricInfo {
	t.Helper()
	metrics := map[string]metricInfo{}
	for _, dir := range []string{"internal"} {
		err := filepath.WalkDir(repoPath(dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "testdata" {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			return scanMetrics(path, metrics)
		})
		if err != nil {
			t.Fatalf("scan %s for metrics: %v", dir, err)
		}
	}

	rec := &descRecorder{metrics: metrics}
	rec.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	kc := kafka.DefaultConfig()
	kc.Brokers = []string{"127.0.0.1:1"} // never dialled: creating the client registers the metrics
	opts, err := kafka.ClientOpts(kc, "deploy-test", rec)
	if err != nil {
		t.Fatalf("kafka client options: %v", err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	cl.Close()
	if rec.err != nil {
		t.Fatal(rec.err)
	}
	if !slices.ContainsFunc(keys(metrics), func(n string) bool { return strings.HasPrefix(n, "idnow_connector_kafka_") }) {
		t.Fatal("no idnow_connector_kafka_* metric registered by the kprom hooks")
	}
	return metrics
}

var metricConstructors = map[string]bool{
	"NewCounter": true, "NewCounterVec": true, "NewCounterFunc": true,
	"NewGauge": true, "NewGaugeVec": true, "NewGaugeFunc": true,
	"NewHistogram": true, "NewHistogramVec": true,
	"NewSummary": true, "NewSummaryVec": true,
}

// scanMetrics adds the metrics constructed in one Go file.
func scanMetrics(path string, metrics map[string]metricInfo) error {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	consts := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		if gd, ok := n.(*ast.GenDecl); ok && gd.Tok == token.CONST {
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						if s, ok := stringValue(vs.Values[i], consts); ok {
							consts[name.Name] = s
						}
					}
				}
			}
		}
		return true
	})
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || !metricConstructors[sel.Sel.Name] {
			return true
		}
		opts, ok := call.Args[0].(*ast.CompositeLit)
		if !ok {
			return true
		}
		optsType, ok := opts.Type.(*ast.SelectorExpr)
		if !ok || !strings.HasSuffix(optsType.Sel.Name, "Opts") {
			return true
		}
		var parts [3]string // namespace, subsystem, name
		for _, elt := range opts.Elts {
			kv, ok := elt.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			key, _ := kv.Key.(*ast.Ident)
			if key == nil {
				continue
			}
			idx := map[string]int{"Namespace": 0, "Subsystem": 1, "Name": 2}
			i, ok := idx[key.Name]
			if !ok {
				continue
			}
			if s, ok := stringValue(kv.Value, consts); ok {
				parts[i] = s
			} else {
				parts[i] = "\x00" // not statically known
			}
		}
		full := strings.Join(slices.DeleteFunc(parts[:], func(s string) bool { return s == "" }), "_")
		if full == "" || strings.Contains(full, "\x00") {
			return true
		}
		info := metricInfo{histogram: optsType.Sel.Name == "HistogramOpts", labels: []string{}}
		if strings.HasSuffix(sel.Sel.Name, "Vec") {
			info.labels = nil
			if len(call.Args) > 1 {
				if lit, ok := call.Args[1].(*ast.CompositeLit); ok {
					info.labels = []string{}
					for _, e := range lit.Elts {
						if s, ok := stringValue(e, consts); ok {
							info.labels = append(info.labels, s)
						}
					}
				}
			}
		}
		metrics[full] = info
		return true
	})
	return nil
}

// stringValue evaluates a string literal, a string constant or a concatenation of those.
func stringValue(e ast.Expr, consts map[string]string) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.Ident:
		s, ok := consts[e.Name]
		return s, ok
	case *ast.ParenExpr:
		return stringValue(e.X, consts)
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		l, ok1 := stringValue(e.X, consts)
		r, ok2 := stringValue(e.Y, consts)
		return l + r, ok1 && ok2
	}
	return "", false
}

// descRecorder is a prometheus.Registerer that records the metric families registered on it.
type descRecorder struct {
	metrics map[string]metricInfo
	err     error
}

var (
	descFQName = regexp.MustCompile(`fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}`)
)

func (r *descRecorder) Register(c prometheus.Collector) error {
	_, histogram := c.(prometheus.Histogram)
	if _, ok := c.(*prometheus.HistogramVec); ok {
		histogram = true
	}
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	for d := range ch {
		s := d.String()
		name := descFQName.FindStringSubmatch(s)
		lbl := descLabels.FindStringSubmatch(s)
		if name == nil || lbl == nil {
			r.err = fmt.Errorf("cannot read metric descriptor %s", s)
			continue
		}
		info := metricInfo{histogram: histogram, labels: []string{}}
		for _, part := range []string{lbl[1], lbl[2]} {
			for _, l := range strings.Split(part, ",") {
				l, _, _ = strings.Cut(l, "=")
				l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")")
				if l != "" {
					info.labels = append(info.labels, l)
				}
			}
		}
		r.metrics[name[1]] = info
	}
	return nil
}

func (r *descRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *descRecorder) Unregister(prometheus.Collector) bool { return true }

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var (
	// metricRef finds a metric name of the connector in a PromQL expression, with its label
	// matchers when it has a selector.
	metricRef = regexp.MustCompile(`\b(idnow_connector_[a-zA-Z0-9_]+)(\{[^}]*\})?`)
	// matcherLabel finds the label names of a selector's matchers.
	matcherLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
)

// checkExpr reports every metric in expr that the code does not register, histogram series
// referenced without their _bucket/_sum/_count suffix, and selector labels the metric lacks.
func checkExpr(metrics map[string]metricInfo, expr string) []string {
	var problems []string
	for _, m := range metricRef.FindAllStringSubmatch(expr, -1) {
		name, selector := m[1], m[2]
		info, ok := metrics[name]
		extra := []string(nil)
		if ok && info.histogram {
			problems = append(problems, fmt.Sprintf("%s is a histogram: query %s_bucket, _sum or _count", name, name))
			continue
		}
		if !ok {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				base, found := strings.CutSuffix(name, suffix)
				if hi, exists := metrics[base]; found && exists && hi.histogram {
					info, ok = hi, true
					if suffix == "_bucket" {
						extra = []string{"le"}
					}
				}
			}
		}
		if !ok {
			problems = append(problems, fmt.Sprintf("%s is not registered by the code", name))
			continue
		}
		if info.labels == nil || selector == "" {
			continue
		}
		for _, lm := range matcherLabel.FindAllStringSubmatch(selector, -1) {
			l := lm[1]
			if !slices.Contains(info.labels, l) && !slices.Contains(extra, l) && !slices.Contains(targetLabels, l) {
				problems = append(problems, fmt.Sprintf("%s has no label %q (it has %v)", name, l, info.labels))
			}
		}
	}
	return problems
}

func TestCheckExpr(t *testing.T) {
	metrics := map[string]metricInfo{
		"idnow_connector_x_total":           {labels: []string{"result"}},
		"idnow_connector_x_seconds":         {histogram: true, labels: []string{"outcome"}},
		"idnow_connector_unknown_labels":    {},
		"idnow_connector_no_labels_at_all":  {labels: []string{}},
		"idnow_connector_x_seconds_unknown": {labels: nil},
	}
	tests := []struct {
		expr string
		want []string // substrings of the problems, in order
	}{
		{expr: `sum(rate(idnow_connector_x_total{result="ok"}[5m]))`},
		{expr: `histogram_quantile(0.9, sum by (le) (rate(idnow_connector_x_seconds_bucket{outcome="ok",namespace=~".*",le!=""}[5m])))`},
		{expr: `rate(idnow_connector_x_seconds_sum[5m]) / rate(idnow_connector_x_seconds_count[5m])`},
		{expr: `idnow_connector_unknown_labels{anything="x"}`},
		{expr: `rate(idnow_connector_x_totals[5m])`, want: []string{"idnow_connector_x_totals is not registered"}},
		{expr: `rate(idnow_connector_x_total{reslt="ok"}[5m])`, want: []string{`no label "reslt"`}},
		{expr: `idnow_connector_x_seconds`, want: []string{"is a histogram"}},
		{expr: `idnow_connector_x_total_bucket`, want: []string{"idnow_connector_x_total_bucket is not registered"}},
		{expr: `idnow_connector_no_labels_at_all{le="1"}`, want: []string{`no label "le"`}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got := checkExpr(metrics, tt.expr)
			if len(got) != len(tt.want) {
				t.Fatalf("problems = %q, want %d matching %q", got, len(tt.want), tt.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// --- Prometheus alerts ----------------------------------------------------------------------------

func TestAlertRules(t *testing.T) {
	metrics := registeredMetrics(t)
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Record      string            `yaml:"record"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, repoPath("deploy", "prometheus", "alerts.yaml"), &rules)
	if len(rules.Groups) == 0 {
		t.Fatal("alerts.yaml has no groups")
	}
	seen := map[string]bool{}
	exprs := ""
	for _, g := range rules.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: needs a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			id := g.Name + "/" + r.Alert
			if r.Alert == "" {
				t.Errorf("%s: rule without alert name", id)
			}
			if seen[r.Alert] {
				t.Errorf("%s: duplicate alert name", id)
			}
			seen[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: empty expr", id)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", id, r.For, err)
				}
			}
			if sev := r.Labels["severity"]; sev != "critical" && sev != "warning" {
				t.Errorf("%s: severity label %q, want critical or warning", id, sev)
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: annotation %s is missing", id, a)
				}
			}
			if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") || strings.Count(r.Expr, "{") != strings.Count(r.Expr, "}") {
				t.Errorf("%s: unbalanced brackets in %q", id, r.Expr)
			}
			for _, p := range checkExpr(metrics, r.Expr) {
				t.Errorf("%s: %s", id, p)
			}
			exprs += r.Expr + "\n"
		}
	}
	// The situations the operators asked to be paged or warned about, by the metric that shows them.
	for _, want := range []string{
		`kafka_unavailable|keys_unavailable|overloaded`,
		`result="unauthorized"`,
		`idnow_connector_webhook_jwks_refreshes_total`,
		`idnow_connector_webhook_jwks_last_success_timestamp_seconds`,
		`idnow_connector_enrich_blocked`,
		`idnow_connector_enrich_consumer_lag`,
		`idnow_connector_enrich_dlq_records_total`,
		`idnow_connector_enrich_transactions_total{result="aborted"}`,
		`idnow_connector_idnow_requests_total{status_class=~"5xx`,
		`class="rate_limited"`,
		`idnow_connector_idnow_token_refreshes_total{result="error"}`,
		// Issue 9: the watchdog and the hanging-transaction detector page whatever the lag
		// says, shortened records are reported, and a role that is down or not scraped at all
		// is noticed.
		`idnow_connector_enrich_stalled`,
		`idnow_connector_enrich_hanging_transactions`,
		`idnow_connector_enrich_records_truncated_total`,
		`absent(idnow_connector_build_info{mode=~"ingress|run"})`,
		`absent(idnow_connector_build_info{mode=~"enricher|run"})`,
		`up{job="idnow-connector-ingress"}`,
		`up{job="idnow-connector-enricher"}`,
		// Issue 15: the end-to-end latency SLO.
		`histogram_quantile(0.99, sum(rate(idnow_connector_enrich_end_to_end_seconds_bucket[10m])) by (le)) > 30`,
	} {
		if !strings.Contains(exprs, want) {
			t.Errorf("no alert expression contains %s", want)
		}
	}
	for _, r := range regexp.MustCompile(`mode=~?"([^"]+)"`).FindAllStringSubmatch(exprs, -1) {
		for _, m := range strings.Split(r[1], "|") {
			if !slices.Contains([]Mode{ModeRun, ModeIngress, ModeEnricher}, Mode(m)) {
				t.Errorf("alerts select build_info mode %q, which no command reports", m)
			}
		}
	}
}

// alertNames returns the names of the alerting rules in alerts.yaml.
func alertNames(t *testing.T) []string {
	t.Helper()
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, repoPath("deploy", "prometheus", "alerts.yaml"), &rules)
	var names []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				names = append(names, r.Alert)
			}
		}
	}
	return names
}

// TestAlertRulesTested checks that alerts_test.yaml, which `promtool test rules` runs in
// `make promtool-check`, covers every alert both ways: a test where it fires and one where it
// stays silent. An alert added without them fails here, before anyone relies on it.
func TestAlertRulesTested(t *testing.T) {
	var suite struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			Name      string `yaml:"name"`
			ExprTests []struct {
				Expr       string `yaml:"expr"`
				ExpSamples []struct {
					Labels string `yaml:"labels"`
				} `yaml:"exp_samples"`
			} `yaml:"promql_expr_test"`
		} `yaml:"tests"`
	}
	readYAML(t, repoPath("deploy", "prometheus", "alerts_test.yaml"), &suite)
	if !slices.Equal(suite.RuleFiles, []string{"alerts.yaml"}) {
		t.Fatalf("alerts_test.yaml rule_files = %q, want [alerts.yaml]", suite.RuleFiles)
	}
	selector := regexp.MustCompile(`^ALERTS\{alertname(=~|=)"([^"]+)"`)
	firingLabel := regexp.MustCompile(`alertname="([^"]+)",\s*alertstate="firing"`)
	fires, silent := map[string]bool{}, map[string]bool{}
	names := alertNames(t)
	for _, tc := range suite.Tests {
		for _, et := range tc.ExprTests {
			m := selector.FindStringSubmatch(et.Expr)
			if m == nil {
				t.Errorf("test %q: expr %q does not select ALERTS by alertname", tc.Name, et.Expr)
				continue
			}
			if len(et.ExpSamples) == 0 {
				match := func(n string) bool { return n == m[2] }
				if m[1] == "=~" {
					re, err := regexp.Compile("^(?:" + m[2] + ")$")
					if err != nil {
						t.Errorf("test %q: %v", tc.Name, err)
						continue
					}
					match = re.MatchString
				}
				for _, n := range names {
					if match(n) {
						silent[n] = true
					}
				}
				continue
			}
			for _, s := range et.ExpSamples {
				if f := firingLabel.FindStringSubmatch(s.Labels); f != nil {
					fires[f[1]] = true
				}
			}
		}
	}
	for _, n := range names {
		if !fires[n] {
			t.Errorf("alert %s: no test in alerts_test.yaml expects it to fire", n)
		}
		if !silent[n] {
			t.Errorf("alert %s: no test in alerts_test.yaml expects it to stay silent", n)
		}
	}
}

// TestAlertScrapeJobs checks the scrape-job convention the availability alerts rely on: each
// job named in an up{job="..."} selector is a Service the ServiceMonitor selects, since the
// Prometheus Operator names a job after the Service it scrapes (unless jobLabel says
// otherwise, which the ServiceMonitor must therefore not set).
func TestAlertScrapeJobs(t *testing.T) {
	b, err := os.ReadFile(repoPath("deploy", "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var monitor struct {
		Spec struct {
			JobLabel string `yaml:"jobLabel"`
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
		} `yaml:"spec"`
	}
	readYAML(t, repoPath("deploy", "kubernetes", "monitoring", "servicemonitor.yaml"), &monitor)
	if monitor.Spec.JobLabel != "" {
		t.Fatalf("the ServiceMonitor sets jobLabel %q: the alerts' job names would no longer be the Service names", monitor.Spec.JobLabel)
	}
	scraped := map[string]bool{}
	files, err := filepath.Glob(repoPath("deploy", "kubernetes", "base", "*-service.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		var svc struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name   string            `yaml:"name"`
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
		}
		readYAML(t, f, &svc)
		selected := svc.Kind == "Service"
		for k, v := range monitor.Spec.Selector.MatchLabels {
			selected = selected && svc.Metadata.Labels[k] == v
		}
		if selected {
			scraped[svc.Metadata.Name] = true
		}
	}
	jobs := regexp.MustCompile(`\bup\{job="([^"]+)"\}`).FindAllStringSubmatch(string(b), -1)
	if len(jobs) == 0 {
		t.Fatal("no up{job=...} alert in alerts.yaml")
	}
	for _, j := range jobs {
		if !scraped[j[1]] {
			t.Errorf("alerts.yaml watches up{job=%q}, but the ServiceMonitor scrapes no Service of that name (it scrapes %v)", j[1], keys(scraped))
		}
	}
}

// --- Grafana dashboard ----------------------------------------------------------------------------

func TestGrafanaDashboard(t *testing.T) {
	metrics := registeredMetrics(t)
	b, err := os.ReadFile(repoPath("deploy", "grafana", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string           `json:"title"`
		UID        string           `json:"uid"`
		Panels     []map[string]any `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Error("dashboard needs a title and a uid")
	}
	vars := map[string]bool{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = true
		for _, p := range checkExpr(metrics, v.Definition) {
			t.Errorf("variable %s: %s", v.Name, p)
		}
	}
	if !vars["datasource"] {
		t.Error("dashboard has no datasource variable: it would be bound to one Prometheus")
	}

	ids := map[float64]bool{}
	queries := 0
	for _, p := range dash.Panels {
		title, _ := p["title"].(string)
		id, _ := p["id"].(float64)
		if ids[id] {
			t.Errorf("panel %q: duplicate id %v", title, id)
		}
		ids[id] = true
		if p["type"] == "row" {
			continue
		}
		targets, _ := p["targets"].([]any)
		if len(targets) == 0 {
			t.Errorf("panel %q has no queries", title)
		}
		for _, tg := range targets {
			expr, _ := tg.(map[string]any)["expr"].(string)
			if expr == "" {
				t.Errorf("panel %q: target without expr", title)
				continue
			}
			queries++
			for _, v := range regexp.MustCompile(`\$([a-z_]+)`).FindAllStringSubmatch(expr, -1) {
				if !vars[v[1]] && !strings.HasPrefix(v[1], "__") {
					t.Errorf("panel %q: query uses undefined variable $%s", title, v[1])
				}
			}
			for _, prob := range checkExpr(metrics, expr) {
				t.Errorf("panel %q: %s", title, prob)
			}
		}
	}
	if queries < 20 {
		t.Errorf("dashboard has %d queries; expected panels for ingress, webhook keys, enricher, IDnow API and Kafka", queries)
	}
	// Issue 9: the enricher's watchdog, hanging transactions and shortened records each have
	// a panel, and the Kafka panels use the names the client metrics really have.
	for _, want := range []string{
		"idnow_connector_enrich_stalled",
		"idnow_connector_enrich_hanging_transactions",
		"idnow_connector_enrich_records_truncated_total",
		"idnow_connector_kafka_produce_records_total",
		"idnow_connector_kafka_fetch_records_total",
		"idnow_connector_kafka_buffered_produce_records{",
		// Issue 15: p50/p99 of both latency histograms.
		"histogram_quantile(0.5, sum by (le) (rate(idnow_connector_enrich_end_to_end_seconds_bucket",
		"histogram_quantile(0.99, sum by (le) (rate(idnow_connector_enrich_event_age_seconds_bucket",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("no dashboard query uses %s", want)
		}
	}
}

// checkWorkload is TestKubernetesConfigValidates's check of one workload against the config
// file it mounts.
func checkWorkload(t *testing.T, w k8sWorkload, mode Mode, configFile string) {
	t.Helper()
	if len(w.Spec.Template.Spec.Containers) != 1 || w.Spec.Template.Spec.Containers[0].Name != string(mode) {
		t.Fatalf("want exactly one container %q", mode)
	}
	c := w.Spec.Template.Spec.Containers[0]
	if want := []string{string(mode), "--config", configMountPath}; !slices.Equal(c.Args, want) {
		t.Errorf("args = %q, want %q", c.Args, want)
	}
	if !w.mountedFile(c, configMountPath) {
		t.Errorf("%s is not mounted", configMountPath)
	}
	cfg := DefaultConfig()
	src := config.Source{Path: configFile, Required: true, Environ: c.environ()}
	if err := config.Load(src, &cfg); err != nil {
		t.Fatalf("load with the container's environment: %v", err)
	}
	if err := cfg.Validate(mode); err != nil {
		t.Fatalf("Validate(%s): %v", mode, err)
	}
	if cfg.Simulator.Enabled {
		t.Error("simulator.enabled in the chart's configuration")
	}
	if cfg.Kafka.UsesEmbedded() {
		t.Error("kafka.brokers is empty: the chart's configuration would start the embedded development broker")
	}
	for key, path := range secretFiles(cfg, mode) {
		if path != "" && !w.mountedFile(c, path) {
			t.Errorf("%s %s is not provided by any volume mount", key, path)
		}
	}
	checkK8sProbes(t, c, cfg)
	checkK8sSecurity(t, w, c)
	grace := w.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil {
		t.Fatal("terminationGracePeriodSeconds is not set")
	}
	switch mode {
	case ModeIngress:
		if w.Spec.Replicas == nil || *w.Spec.Replicas < 2 {
			t.Error("the ingress needs at least 2 replicas")
		}
		if c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds <= 0 {
			t.Fatal("the ingress needs a preStop sleep so the load balancer drops the pod before it stops accepting")
		}
		need := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds)*time.Second + StopBudget(cfg, ModeIngress)
		if time.Duration(*grace)*time.Second <= need {
			t.Errorf("terminationGracePeriodSeconds %d must exceed the preStop sleep plus the process's stop budget (%s)", *grace, need)
		}
	case ModeEnricher:
		if w.Spec.Replicas == nil || *w.Spec.Replicas < 1 || *w.Spec.Replicas > int(cfg.Topics.Partitions) {
			t.Errorf("enricher replicas must be between 1 and topics.partitions (%d)", cfg.Topics.Partitions)
		}
		if need := StopBudget(cfg, ModeEnricher); time.Duration(*grace)*time.Second <= need {
			t.Errorf("terminationGracePeriodSeconds %d must exceed the process's stop budget %s", *grace, need)
		}
		if cfg.Enrich.InstanceID != "idnow-connector-enricher-0" {
			t.Errorf("enrich.instance_id = %q, want the pod name from the downward API", cfg.Enrich.InstanceID)
		}
	case ModeReconciler:
		// One replica is active, the rest stand by; none at all leaves lost webhooks unrepaired.
		if w.Spec.Replicas == nil || *w.Spec.Replicas < 1 {
			t.Error("the reconciler needs at least 1 replica")
		}
		if need := StopBudget(cfg, ModeReconciler); time.Duration(*grace)*time.Second <= need {
			t.Errorf("terminationGracePeriodSeconds %d must exceed the process's stop budget %s", *grace, need)
		}
	case ModeCommands:
		if w.Spec.Replicas == nil || *w.Spec.Replicas < 1 || *w.Spec.Replicas > int(cfg.Topics.Partitions) {
			t.Errorf("commands replicas must be between 1 and topics.partitions (%d)", cfg.Topics.Partitions)
		}
		if need := StopBudget(cfg, ModeCommands); time.Duration(*grace)*time.Second <= need {
			t.Errorf("terminationGracePeriodSeconds %d must exceed the process's stop budget %s", *grace, need)
		}
		if cfg.Commands.InstanceID != "idnow-connector-commands-0" {
			t.Errorf("commands.instance_id = %q, want the pod name from the downward API", cfg.Commands.InstanceID)
		}
	}
}
