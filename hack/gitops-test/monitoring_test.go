package gitopstest

// The chart's PrometheusRule and Grafana dashboard, checked with the real
// promtool (built by hack/gitops-tools.sh from github.com/prometheus/prometheus):
//
//   - the rules as the chart renders them pass `promtool check rules`, and
//     the alert unit tests in testdata/alerts_test.yaml pass
//     `promtool test rules` (every alert has tests);
//   - every dashboard expression is valid PromQL (checked by promtool as a
//     recording rule, Grafana's variables replaced);
//   - the rules and the dashboard use only metrics documented in
//     docs/metrics.md, whose table tests/e2e_deploy.rs checks against a real
//     /metrics scrape.
//
// HELM and PROMTOOL name the binaries (make gitops-test sets them).

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var chart = filepath.Join(repoRoot, "deploy", "helm", "dts-operator")

func tool(t *testing.T, env string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		t.Fatalf("%s is not set: run `make gitops-test` (hack/test-gitops.sh sets it)", env)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s=%s: %v", env, path, err)
	}
	return path
}

func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(dir, ".helm-cache"),
		"HELM_CONFIG_HOME="+filepath.Join(dir, ".helm-config"), "HELM_DATA_HOME="+filepath.Join(dir, ".helm-data"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s failed: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// renderedRules renders the chart's PrometheusRule (release dts-operator in
// dts-system, as testdata/alerts_test.yaml expects) and returns its spec,
// which is a Prometheus rules file.
func renderedRules(t *testing.T, dir string, extra ...string) map[string]any {
	t.Helper()
	abs, err := filepath.Abs(chart)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"template", "dts-operator", abs, "--namespace", "dts-system",
		"--set", "prometheusRule.enabled=true", "--show-only", "templates/prometheusrule.yaml"}, extra...)
	out := run(t, dir, tool(t, "HELM"), args...)
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(out), &obj); err != nil {
		t.Fatalf("the rendered PrometheusRule is not YAML: %v\n%s", err, out)
	}
	if obj["kind"] != "PrometheusRule" {
		t.Fatalf("rendered %v, not a PrometheusRule", obj["kind"])
	}
	spec, ok := obj["spec"].(map[string]any)
	if !ok {
		t.Fatalf("PrometheusRule without spec: %v", obj)
	}
	return spec
}

func writeYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func alertNames(spec map[string]any) []string {
	var names []string
	groups, _ := spec["groups"].([]any)
	for _, g := range groups {
		rules, _ := g.(map[string]any)["rules"].([]any)
		for _, r := range rules {
			if name, ok := r.(map[string]any)["alert"].(string); ok {
				names = append(names, name)
			}
		}
	}
	sort.Strings(names)
	return names
}

func expressions(spec map[string]any) []string {
	var exprs []string
	groups, _ := spec["groups"].([]any)
	for _, g := range groups {
		rules, _ := g.(map[string]any)["rules"].([]any)
		for _, r := range rules {
			if e, ok := r.(map[string]any)["expr"].(string); ok {
				exprs = append(exprs, e)
			}
		}
	}
	return exprs
}

func TestPrometheusRulesPassPromtool(t *testing.T) {
	promtool := tool(t, "PROMTOOL")
	dir := t.TempDir()
	spec := renderedRules(t, dir)
	writeYAML(t, filepath.Join(dir, "rules.yaml"), spec)
	run(t, dir, promtool, "check", "rules", "rules.yaml")

	tests, err := os.ReadFile(filepath.Join("testdata", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, dir, promtool, "test", "rules", "alerts_test.yaml")
	t.Logf("promtool test rules:\n%s", out)

	// Every alert the chart ships has unit tests, and the tests name no
	// alert the chart lacks.
	var unit struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(tests, &unit); err != nil {
		t.Fatal(err)
	}
	tested := map[string]bool{}
	for _, tc := range unit.Tests {
		for _, a := range tc.AlertRuleTest {
			tested[a.Alertname] = true
		}
	}
	shipped := alertNames(spec)
	if len(shipped) < 6 {
		t.Errorf("the chart ships %d alerts: %v", len(shipped), shipped)
	}
	for _, name := range shipped {
		if !tested[name] {
			t.Errorf("alert %s has no test in testdata/alerts_test.yaml", name)
		}
		delete(tested, name)
	}
	for name := range tested {
		t.Errorf("testdata/alerts_test.yaml tests %s, which the chart does not ship", name)
	}
}

// With the observer off (dts.pollInterval=0) no observe cycle ever runs, so
// the no-leader alert, which counts them, is left out rather than firing.
func TestNoLeaderAlertIsLeftOutWithoutTheObserver(t *testing.T) {
	dir := t.TempDir()
	names := alertNames(renderedRules(t, dir, "--set-string", "dts.pollInterval=0"))
	for _, n := range names {
		if n == "DtsOperatorNoLeader" {
			t.Fatalf("DtsOperatorNoLeader rendered with dts.pollInterval=0: %v", names)
		}
	}
	if len(names) == 0 {
		t.Fatal("no alerts rendered")
	}
}

type dashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func readDashboard(t *testing.T) (dashboard, []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(chart, "dashboards", "dts-operator.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	return d, exprs
}

// Grafana's variables, as Grafana would substitute them.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$namespace", ".*", "$job", ".*")

func TestDashboardQueriesAreValidPromQL(t *testing.T) {
	promtool := tool(t, "PROMTOOL")
	d, exprs := readDashboard(t)
	if d.UID == "" || len(exprs) < 10 {
		t.Fatalf("dashboard %q (uid %q) has %d queries", d.Title, d.UID, len(exprs))
	}
	var rules []map[string]string
	for i, e := range exprs {
		if strings.Contains(e, "$") && strings.Contains(grafanaVars.Replace(e), "$") {
			t.Errorf("query %d uses an unknown Grafana variable: %s", i, e)
		}
		rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:query_%d", i), "expr": grafanaVars.Replace(e)})
	}
	dir := t.TempDir()
	writeYAML(t, filepath.Join(dir, "dashboard.yaml"), map[string]any{
		"groups": []any{map[string]any{"name": "dashboard", "rules": rules}},
	})
	run(t, dir, promtool, "check", "rules", "dashboard.yaml")
}

// The documented metrics: the first column of docs/metrics.md's table.
func documentedMetrics(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `([a-z_:]+)` \\| (counter|gauge|histogram) \\|")
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			out[m[1]] = m[2]
		}
	}
	if len(out) < 10 {
		t.Fatalf("docs/metrics.md documents only %d metrics: %v", len(out), out)
	}
	return out
}

var metricName = regexp.MustCompile(`\b(dts_operator_[a-z_]+|up)\b`)

func TestDashboardAndAlertsUseOnlyDocumentedMetrics(t *testing.T) {
	documented := documentedMetrics(t)
	known := func(name string) bool {
		if name == "up" {
			return true // Prometheus's own per-target series
		}
		if _, ok := documented[name]; ok {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if documented[strings.TrimSuffix(name, suffix)] == "histogram" {
				return true
			}
		}
		return false
	}
	_, exprs := readDashboard(t)
	exprs = append(exprs, expressions(renderedRules(t, t.TempDir()))...)
	used := map[string]bool{}
	for _, e := range exprs {
		for _, m := range metricName.FindAllString(e, -1) {
			used[m] = true
			if !known(m) {
				t.Errorf("%s is not a metric of docs/metrics.md (in %s)", m, e)
			}
		}
	}
	// The on-call views cover the operator's main families.
	for _, want := range []string{"dts_operator_dts_calls_total", "dts_operator_dtsjobs", "dts_operator_reconciles_total",
		"dts_operator_reconcile_failures_total", "dts_operator_dts_call_duration_seconds_bucket",
		"dts_operator_reconcile_duration_seconds_bucket", "dts_operator_observe_cycles_total"} {
		if !used[want] {
			t.Errorf("neither the dashboard nor the alerts use %s", want)
		}
	}
}
