package app

// Tests of the Helm chart in deploy/helm/idnow-kafka-connector: its copy of the alerts stays
// identical to deploy/prometheus/alerts.yaml, its rendering (with the default values and with
// every optional part on) is structurally valid Kubernetes, the workloads pass the same checks
// TestKubernetesConfigValidates applies to the kustomize base (config loads and validates with
// the container's environment, secrets are mounted, probes, grace periods), and with the default
// values the workloads, Services, autoscaler, disruption budgets, network policies and config
// equal the kustomize base: "Kustomize stays in sync".
//
// Rendering needs the helm CLI, which scripts/helm.sh builds from the Go module proxy (CI runs
// `make helm-check`, which builds it first). Without it the rendering tests skip and say so; the
// alerts-copy test always runs.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const (
	helmVersion = "v3.22.0"
	// helmRelease is the release name the comparison uses: the one deploy/README.md recommends,
	// which gives the kustomize base's resource names.
	helmRelease   = "idnow-connector"
	helmNamespace = "idnow-connector"
)

func helmChartPath(parts ...string) string {
	return repoPath(append([]string{"deploy", "helm", "idnow-kafka-connector"}, parts...)...)
}

func TestHelmAlertsCopy(t *testing.T) {
	orig, err := os.ReadFile(repoPath("deploy", "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	chartCopy, err := os.ReadFile(helmChartPath("files", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(orig, chartCopy) {
		t.Fatal("deploy/helm/idnow-kafka-connector/files/alerts.yaml differs from deploy/prometheus/alerts.yaml " +
			"(Helm cannot read files outside the chart, so the PrometheusRule wraps a copy): run " +
			"`cp deploy/prometheus/alerts.yaml deploy/helm/idnow-kafka-connector/files/alerts.yaml`")
	}
}

// helmBinary finds the helm CLI: $HELM, else the build scripts/helm.sh leaves in the tool cache
// (scripts/cache-common.sh's locations). It skips the test when there is none, rather than
// building it here: that takes minutes and the module proxy.
func helmBinary(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		if _, err := os.Stat(h); err != nil {
			t.Fatalf("HELM=%s: %v", h, err)
		}
		return h
	}
	var roots []string
	if c := os.Getenv("IDNOW_KAFKA_CONNECTOR_CACHE"); c != "" {
		if !filepath.IsAbs(c) {
			c = repoPath(c)
		}
		roots = append(roots, c)
	} else {
		if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
			roots = append(roots, filepath.Join(x, "idnow-kafka-connector"))
		} else if home, err := os.UserHomeDir(); err == nil {
			roots = append(roots, filepath.Join(home, ".cache", "idnow-kafka-connector"))
		}
		roots = append(roots, repoPath(".cache"))
	}
	for _, root := range roots {
		dir := filepath.Join(root, "helm-"+helmVersion)
		// .kube-version marks a complete build by the current scripts/helm.sh.
		if _, err := os.Stat(filepath.Join(dir, ".kube-version")); err == nil {
			return filepath.Join(dir, "helm")
		}
	}
	t.Skipf("helm %s is not built (looked in %s): run `make helm-check` (builds it with scripts/helm.sh) or set HELM", helmVersion, strings.Join(roots, ", "))
	return ""
}

// k8sObject is one rendered manifest, generically.
type k8sObject map[string]any

func (o k8sObject) kind() string { s, _ := o["kind"].(string); return s }

func (o k8sObject) name() string {
	s, _ := dig(o, "metadata", "name").(string)
	return s
}

// dig walks nested maps; nil when a step is missing.
func dig(v any, path ...string) any {
	if o, ok := v.(k8sObject); ok {
		v = map[string]any(o)
	}
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// helmTemplate renders the chart with the given values files (relative to the chart).
func helmTemplate(t *testing.T, helm string, valuesFiles ...string) []k8sObject {
	t.Helper()
	args := []string{"template", helmRelease, helmChartPath(), "--namespace", helmNamespace}
	for _, f := range valuesFiles {
		args = append(args, "--values", helmChartPath(f))
	}
	cmd := exec.CommandContext(t.Context(), helm, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return decodeManifests(t, out)
}

func decodeManifests(t *testing.T, b []byte) []k8sObject {
	t.Helper()
	var objs []k8sObject
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		// Into a plain map: yaml.v3 would make every nested map a k8sObject too.
		var o map[string]any
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("rendered manifests do not parse as YAML: %v", err)
		}
		if o != nil {
			objs = append(objs, k8sObject(o))
		}
	}
}

// helmAPIVersions are the kinds the chart may render and the API version each must use (the
// stable ones Kubernetes 1.30+ serves, and the Prometheus Operator's).
var helmAPIVersions = map[string]string{
	"ServiceAccount":          "v1",
	"ConfigMap":               "v1",
	"Service":                 "v1",
	"Deployment":              "apps/v1",
	"StatefulSet":             "apps/v1",
	"HorizontalPodAutoscaler": "autoscaling/v2",
	"PodDisruptionBudget":     "policy/v1",
	"NetworkPolicy":           "networking.k8s.io/v1",
	"ServiceMonitor":          "monitoring.coreos.com/v1",
	"PrometheusRule":          "monitoring.coreos.com/v1",
}

// helmCases are the value sets the chart is rendered with, and the kinds each must yield.
var helmCases = []struct {
	name   string
	values []string
	kinds  map[string]int
	// workloads are the Deployments and StatefulSets rendered, by kind/name, and the role each
	// runs; TestHelmWorkloadsValidate checks each against the rendered config.
	workloads map[string]Mode
}{
	{
		name: "default",
		kinds: map[string]int{"ServiceAccount": 1, "ConfigMap": 1, "Service": 3, "Deployment": 2, "StatefulSet": 2,
			"HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 2, "NetworkPolicy": 4},
		workloads: map[string]Mode{
			"Deployment/idnow-connector-ingress":    ModeIngress,
			"StatefulSet/idnow-connector-enricher":  ModeEnricher,
			"Deployment/idnow-connector-reconciler": ModeReconciler,
			"StatefulSet/idnow-connector-commands":  ModeCommands,
		},
	},
	{
		name:   "all-on",
		values: []string{"ci/all-on-values.yaml"},
		kinds: map[string]int{"ServiceAccount": 1, "ConfigMap": 1, "Service": 3, "Deployment": 3, "StatefulSet": 2,
			"PodDisruptionBudget": 2, "NetworkPolicy": 5, "ServiceMonitor": 1, "PrometheusRule": 1},
		workloads: map[string]Mode{
			"Deployment/idnow-connector-ingress":    ModeIngress,
			"StatefulSet/idnow-connector-enricher":  ModeEnricher,
			"Deployment/idnow-connector-reconciler": ModeReconciler,
			"StatefulSet/idnow-connector-commands":  ModeCommands,
			"Deployment/idnow-connector-archiver":   ModeArchiver,
		},
	},
	{
		// reconciler.enabled=false drops the reconciler's Deployment and NetworkPolicy only.
		name:   "reconciler-off",
		values: []string{"ci/reconciler-off-values.yaml"},
		kinds: map[string]int{"ServiceAccount": 1, "ConfigMap": 1, "Service": 3, "Deployment": 1, "StatefulSet": 2,
			"HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 2, "NetworkPolicy": 3},
		workloads: map[string]Mode{
			"Deployment/idnow-connector-ingress":   ModeIngress,
			"StatefulSet/idnow-connector-enricher": ModeEnricher,
			"StatefulSet/idnow-connector-commands": ModeCommands,
		},
	},
}

// TestHelmRendering checks the rendered manifests structurally (kubeconform would need its
// schemas from the network): kinds and API versions, names and namespaces, selectors that select
// the pods they are meant for, references between objects, no Secret rendered (secrets are
// referenced only), and the PrometheusRule carrying exactly the alert groups.
func TestHelmRendering(t *testing.T) {
	helm := helmBinary(t)
	for _, tc := range helmCases {
		t.Run(tc.name, func(t *testing.T) {
			objs := helmTemplate(t, helm, tc.values...)
			kinds := map[string]int{}
			byKindName := map[string]k8sObject{}
			for _, o := range objs {
				kind := o.kind()
				kinds[kind]++
				want, known := helmAPIVersions[kind]
				switch {
				case !known:
					t.Errorf("unexpected kind %q (%s); a Secret in particular must never be rendered", kind, o.name())
					continue
				case o["apiVersion"] != want:
					t.Errorf("%s %s: apiVersion %v, want %s", kind, o.name(), o["apiVersion"], want)
				}
				if n := o.name(); n == "" || len(n) > 63 {
					t.Errorf("%s: metadata.name %q must be 1-63 characters", kind, n)
				}
				if ns := dig(o, "metadata", "namespace"); ns != helmNamespace {
					t.Errorf("%s %s: metadata.namespace %v, want the release namespace %s", kind, o.name(), ns, helmNamespace)
				}
				if kind != "ConfigMap" && kind != "ServiceAccount" && dig(o, "spec") == nil {
					t.Errorf("%s %s has no spec", kind, o.name())
				}
				byKindName[kind+"/"+o.name()] = o
			}
			if !reflect.DeepEqual(kinds, tc.kinds) {
				t.Errorf("rendered kinds %v, want %v", kinds, tc.kinds)
			}
			checkHelmReferences(t, objs, byKindName)
		})
	}
}

func checkHelmReferences(t *testing.T, objs []k8sObject, byKindName map[string]k8sObject) {
	t.Helper()
	podLabels := map[string]map[string]any{} // workload kind/name -> its pod template's labels
	for _, o := range objs {
		switch o.kind() {
		case "Deployment", "StatefulSet":
			id := o.kind() + "/" + o.name()
			labels, _ := dig(o, "spec", "template", "metadata", "labels").(map[string]any)
			sel, _ := dig(o, "spec", "selector", "matchLabels").(map[string]any)
			if len(sel) == 0 || !selects(sel, labels) {
				t.Errorf("%s: spec.selector.matchLabels %v does not select its own pod labels %v", id, sel, labels)
			}
			podLabels[id] = labels
			spec := dig(o, "spec", "template", "spec")
			if sa, _ := dig(spec, "serviceAccountName").(string); byKindName["ServiceAccount/"+sa] == nil {
				t.Errorf("%s: serviceAccountName %q is not rendered", id, sa)
			}
			vols, _ := dig(spec, "volumes").([]any)
			for _, v := range vols {
				if cm, ok := dig(v, "configMap", "name").(string); ok && byKindName["ConfigMap/"+cm] == nil {
					t.Errorf("%s: volume mounts ConfigMap %q, which is not rendered", id, cm)
				}
			}
			containers, _ := dig(spec, "containers").([]any)
			if len(containers) == 0 {
				t.Errorf("%s has no containers", id)
			}
			for _, c := range containers {
				for _, field := range []string{"name", "image"} {
					if s, _ := dig(c, field).(string); s == "" {
						t.Errorf("%s: a container has no %s", id, field)
					}
				}
			}
			if o.kind() == "StatefulSet" {
				svc, _ := dig(o, "spec", "serviceName").(string)
				if s := byKindName["Service/"+svc]; s == nil || dig(s, "spec", "clusterIP") != "None" {
					t.Errorf("%s: serviceName %q must be a rendered headless Service", id, svc)
				}
			}
		}
	}
	// Every selector must pick exactly one workload's pods.
	matching := func(sel map[string]any) []string {
		var ids []string
		for id, labels := range podLabels {
			if len(sel) > 0 && selects(sel, labels) {
				ids = append(ids, id)
			}
		}
		return ids
	}
	for _, o := range objs {
		var sel map[string]any
		switch o.kind() {
		case "Service":
			sel, _ = dig(o, "spec", "selector").(map[string]any)
		case "PodDisruptionBudget":
			sel, _ = dig(o, "spec", "selector", "matchLabels").(map[string]any)
		case "NetworkPolicy":
			sel, _ = dig(o, "spec", "podSelector", "matchLabels").(map[string]any)
		case "HorizontalPodAutoscaler":
			name, _ := dig(o, "spec", "scaleTargetRef", "name").(string)
			if byKindName["Deployment/"+name] == nil {
				t.Errorf("HorizontalPodAutoscaler %s targets Deployment %q, which is not rendered", o.name(), name)
			}
			continue
		case "ServiceMonitor":
			sel, _ := dig(o, "spec", "selector", "matchLabels").(map[string]any)
			var n int
			for _, s := range objs {
				labels, _ := dig(s, "metadata", "labels").(map[string]any)
				if s.kind() == "Service" && selects(sel, labels) {
					n++
					jobLabel, _ := dig(o, "spec", "jobLabel").(string)
					job, _ := labels[jobLabel].(string)
					component, _ := dig(s, "spec", "selector", "app.kubernetes.io/component").(string)
					if jobLabel == "" || job != "idnow-connector-"+component {
						t.Errorf("Service %s: job from label %q is %q; the alerts expect idnow-connector-%s", s.name(), jobLabel, job, component)
					}
				}
			}
			if n != 3 {
				t.Errorf("ServiceMonitor selects %d Services, want the ingress's, the enricher's and the commands role's", n)
			}
			continue
		case "PrometheusRule":
			var alerts map[string]any
			readYAML(t, repoPath("deploy", "prometheus", "alerts.yaml"), &alerts)
			if !reflect.DeepEqual(dig(o, "spec", "groups"), alerts["groups"]) {
				t.Error("PrometheusRule spec.groups differ from deploy/prometheus/alerts.yaml's groups")
			}
			continue
		default:
			continue
		}
		if ids := matching(sel); len(ids) != 1 {
			t.Errorf("%s %s: selector %v matches workloads %v, want exactly one", o.kind(), o.name(), sel, ids)
		}
	}
}

func selects(sel, labels map[string]any) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestHelmWorkloadsValidate applies TestKubernetesConfigValidates's checks to the chart's
// workloads, with the config.yaml the chart renders into its ConfigMap.
func TestHelmWorkloadsValidate(t *testing.T) {
	helm := helmBinary(t)
	for _, tc := range helmCases {
		t.Run(tc.name, func(t *testing.T) {
			objs := helmTemplate(t, helm, tc.values...)
			var configYAML string
			for _, o := range objs {
				if o.kind() == "ConfigMap" {
					configYAML, _ = dig(o, "data", "config.yaml").(string)
				}
			}
			if configYAML == "" {
				t.Fatal("no ConfigMap with data config.yaml rendered")
			}
			configFile := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(configFile, []byte(configYAML), 0o600); err != nil {
				t.Fatal(err)
			}
			rendered := 0
			for _, o := range objs {
				if k := o.kind(); k == "Deployment" || k == "StatefulSet" {
					rendered++
					if _, ok := tc.workloads[k+"/"+o.name()]; !ok {
						t.Errorf("unexpected workload %s/%s rendered", k, o.name())
					}
				}
			}
			if rendered != len(tc.workloads) {
				t.Errorf("%d workloads rendered, want %d", rendered, len(tc.workloads))
			}
			for id, mode := range tc.workloads {
				t.Run(string(mode), func(t *testing.T) {
					var w k8sWorkload
					found := false
					for _, o := range objs {
						if o.kind()+"/"+o.name() == id {
							remarshal(t, o, &w)
							found = true
						}
					}
					if !found {
						t.Fatalf("%s is not rendered", id)
					}
					checkWorkload(t, w, mode, configFile)
				})
			}
		})
	}
}

// remarshal converts a generic object into a typed one through YAML.
func remarshal(t *testing.T, from, to any) {
	t.Helper()
	b, err := yaml.Marshal(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, to); err != nil {
		t.Fatal(err)
	}
}

// kustomizeSyncFields are the parts of each object that must be equal in the kustomize base and
// the chart's default rendering. Names, labels, annotations and the image are left out: Helm adds
// its labels and a config checksum, and kustomize sets the image.
var kustomizeSyncFields = map[string][][]string{
	"Deployment": {
		{"spec", "replicas"}, {"spec", "revisionHistoryLimit"}, {"spec", "strategy"},
	},
	"StatefulSet": {
		{"spec", "replicas"}, {"spec", "serviceName"}, {"spec", "podManagementPolicy"},
		{"spec", "revisionHistoryLimit"}, {"spec", "updateStrategy"},
	},
	"Service":                 {{"spec", "type"}, {"spec", "clusterIP"}, {"spec", "ports"}},
	"HorizontalPodAutoscaler": {{"spec", "scaleTargetRef"}, {"spec", "minReplicas"}, {"spec", "maxReplicas"}, {"spec", "metrics"}, {"spec", "behavior"}},
	"PodDisruptionBudget":     {{"spec", "minAvailable"}, {"spec", "maxUnavailable"}},
	"NetworkPolicy":           {{"spec", "policyTypes"}, {"spec", "ingress"}},
	"ServiceAccount":          {{"automountServiceAccountToken"}},
}

// kustomizePodFields are compared in each workload's pod template spec, and kustomizeContainerFields
// in its container.
var (
	kustomizePodFields = [][]string{
		{"serviceAccountName"}, {"automountServiceAccountToken"}, {"terminationGracePeriodSeconds"},
		{"securityContext"}, {"volumes"},
	}
	kustomizeContainerFields = [][]string{
		{"name"}, {"imagePullPolicy"}, {"args"}, {"ports"}, {"env"}, {"readinessProbe"}, {"livenessProbe"},
		{"lifecycle"}, {"resources"}, {"securityContext"}, {"volumeMounts"},
	}
)

// TestHelmKustomizeInSync renders the chart with its default values and compares it with the
// kustomize base, object by object: the workloads' replicas, rollout strategy, pod settings,
// volumes, containers (args, ports, env, probes, preStop, resources, security, mounts) and
// topology spread; the Services' ports, the HPA, the PDBs, the NetworkPolicies; and the config
// file. A change to one deployment method without the other fails here.
func TestHelmKustomizeInSync(t *testing.T) {
	helm := helmBinary(t)
	chart := map[string]k8sObject{}
	for _, o := range helmTemplate(t, helm) {
		chart[o.kind()+"/"+o.name()] = o
	}

	base := repoPath("deploy", "kubernetes", "base")
	var kust struct {
		Resources []string `yaml:"resources"`
	}
	readYAML(t, filepath.Join(base, "kustomization.yaml"), &kust)
	seen := map[string]bool{}
	for _, r := range kust.Resources {
		b, err := os.ReadFile(filepath.Join(base, r))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range decodeManifests(t, b) {
			id := k.kind() + "/" + k.name()
			if k.kind() == "Namespace" {
				continue // Helm installs into an existing (or --create-namespace) namespace
			}
			seen[id] = true
			h := chart[id]
			if h == nil {
				t.Errorf("kustomize base %s has %s; the chart does not render it", r, id)
				continue
			}
			for _, path := range kustomizeSyncFields[k.kind()] {
				compareField(t, id, k, h, path)
			}
			if k.kind() == "Deployment" || k.kind() == "StatefulSet" {
				compareWorkloads(t, id, k, h)
			}
		}
	}
	for id := range chart {
		if !seen[id] && id != "ConfigMap/idnow-connector-config" {
			t.Errorf("the chart renders %s, which the kustomize base lacks", id)
		}
	}

	// The config file: the chart's default config: equals base/config.yaml.
	var baseConfig, chartConfig map[string]any
	readYAML(t, filepath.Join(base, "config.yaml"), &baseConfig)
	cm := chart["ConfigMap/idnow-connector-config"]
	if cm == nil {
		t.Fatal("the chart renders no ConfigMap idnow-connector-config")
	}
	s, _ := dig(cm, "data", "config.yaml").(string)
	if err := yaml.Unmarshal([]byte(s), &chartConfig); err != nil {
		t.Fatalf("the chart's config.yaml: %v", err)
	}
	for _, d := range diffValues("config", baseConfig, chartConfig) {
		t.Errorf("values.yaml config: differs from deploy/kubernetes/base/config.yaml: %s", d)
	}
}

// TestHelmKustomizeArchiverInSync compares the kustomize overlay deploy/kubernetes/archiver with
// the chart rendered with archiver.enabled (ci/archiver-values.yaml), field by field as
// TestHelmKustomizeInSync does for the base.
func TestHelmKustomizeArchiverInSync(t *testing.T) {
	helm := helmBinary(t)
	chart := map[string]k8sObject{}
	for _, o := range helmTemplate(t, helm, "ci/archiver-values.yaml") {
		chart[o.kind()+"/"+o.name()] = o
	}
	dir := repoPath("deploy", "kubernetes", "archiver")
	var kust struct {
		Resources []string `yaml:"resources"`
	}
	readYAML(t, filepath.Join(dir, "kustomization.yaml"), &kust)
	compared := 0
	for _, r := range kust.Resources {
		if strings.HasPrefix(r, "..") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range decodeManifests(t, b) {
			id := k.kind() + "/" + k.name()
			h := chart[id]
			if h == nil {
				t.Errorf("overlay %s has %s; the chart with archiver.enabled does not render it", r, id)
				continue
			}
			compared++
			for _, path := range kustomizeSyncFields[k.kind()] {
				compareField(t, id, k, h, path)
			}
			if k.kind() == "Deployment" {
				compareWorkloads(t, id, k, h)
			}
		}
	}
	if compared != 2 {
		t.Errorf("compared %d archiver objects, want 2 (Deployment and NetworkPolicy)", compared)
	}
}

func compareWorkloads(t *testing.T, id string, k, h k8sObject) {
	t.Helper()
	kPod, hPod := dig(k, "spec", "template", "spec"), dig(h, "spec", "template", "spec")
	for _, path := range kustomizePodFields {
		compareField(t, id+" pod", kPod, hPod, path)
	}
	// Topology spread: the same keys and skew; the chart's labelSelector adds the release's
	// instance label to the base's, which is checked by TestHelmRendering's selector checks.
	strip := func(v any) []any {
		list, _ := v.([]any)
		var out []any
		for _, c := range list {
			m := map[string]any{}
			for key, val := range c.(map[string]any) {
				if key != "labelSelector" {
					m[key] = val
				}
			}
			out = append(out, m)
		}
		return out
	}
	for _, d := range diffValues("topologySpreadConstraints", strip(dig(kPod, "topologySpreadConstraints")), strip(dig(hPod, "topologySpreadConstraints"))) {
		t.Errorf("%s: %s", id, d)
	}
	kc, _ := dig(kPod, "containers").([]any)
	hc, _ := dig(hPod, "containers").([]any)
	if len(kc) != 1 || len(hc) != 1 {
		t.Fatalf("%s: want one container in each rendering, got %d (kustomize) and %d (helm)", id, len(kc), len(hc))
	}
	for _, path := range kustomizeContainerFields {
		compareField(t, id+" container", kc[0], hc[0], path)
	}
}

func compareField(t *testing.T, id string, k, h any, path []string) {
	t.Helper()
	for _, d := range diffValues(strings.Join(path, "."), dig(k, path...), dig(h, path...)) {
		t.Errorf("%s: %s", id, d)
	}
}

// diffValues lists the differences between the kustomize (a) and the chart (b) value at path.
func diffValues(path string, a, b any) []string {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			break
		}
		var diffs []string
		keys := map[string]bool{}
		for k := range av {
			keys[k] = true
		}
		for k := range bv {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			diffs = append(diffs, diffValues(path+"."+k, av[k], bv[k])...)
		}
		return diffs
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			break
		}
		var diffs []string
		for i := range av {
			diffs = append(diffs, diffValues(fmt.Sprintf("%s[%d]", path, i), av[i], bv[i])...)
		}
		return diffs
	}
	if reflect.DeepEqual(a, b) {
		return nil
	}
	return []string{fmt.Sprintf("%s: kustomize %s, helm %s", path, brief(a), brief(b))}
}

func brief(v any) string {
	if v == nil {
		return "<unset>"
	}
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strings.ReplaceAll(s, "\n", " ")
}

// TestHelmValuesRejected: bad values fail at render time with a message naming the value,
// through values.schema.json or the templates' own checks, instead of producing pods that
// crash-loop or a Secret written into the chart.
func TestHelmValuesRejected(t *testing.T) {
	helm := helmBinary(t)
	tests := []struct {
		name string
		set  []string
		want string // a fragment of helm's error
	}{
		{name: "no secret name", set: []string{"secrets.existingSecret="}, want: "existingSecret"},
		{name: "misspelt key", set: []string{"ingress.replica=3"}, want: "replica"},
		{name: "one ingress replica", set: []string{"ingress.replicas=1"}, want: "/ingress/replicas"},
		{name: "admin port not numeric", set: []string{"config.admin.listen=:admin"}, want: "admin"},
		{name: "HPA min above max", set: []string{"ingress.autoscaling.minReplicas=8", "ingress.autoscaling.maxReplicas=4"}, want: "minReplicas"},
		{name: "pull policy", set: []string{"image.pullPolicy=Sometimes"}, want: "pullPolicy"},
		{name: "inline secret values", set: []string{"secrets.password=hunter2"}, want: "password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"template", helmRelease, helmChartPath(), "--namespace", helmNamespace}
			for _, s := range tt.set {
				args = append(args, "--set", s)
			}
			out, err := exec.CommandContext(t.Context(), helm, args...).CombinedOutput()
			if err == nil {
				t.Fatalf("helm template --set %s rendered; want an error", strings.Join(tt.set, " --set "))
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("error does not mention %q:\n%s", tt.want, out)
			}
		})
	}
}
