package gitopstest

// The Argo CD health checks in deploy/argocd/, run the way Argo CD runs them:
// the same Lua runtime (gopher-lua, at the version Argo CD v3.5 embeds), the
// object as the global `obj` (decoded from its JSON as Argo's util/lua
// does), a one-second limit, and the returned table's status and message.
// The layout is Argo's resource_customizations: <group>/<kind>/health.lua,
// health_test.yaml listing {inputPath, healthStatus}, testdata/*.yaml.
//
// Each script runs twice: as an argocd-cm customization runs (no standard
// libraries but package, base and table, unless useOpenLibs is set) and as
// Argo's built-in scripts run (all libraries). Both must give the expected
// status and message.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// repoRoot is the repository root, from hack/gitops-test.
const repoRoot = "../.."

var customizations = filepath.Join(repoRoot, "deploy", "argocd")

type healthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type healthTests struct {
	Tests []struct {
		InputPath    string       `json:"inputPath"`
		HealthStatus healthStatus `json:"healthStatus"`
	} `json:"tests"`
}

// The statuses Argo CD accepts from a health script; anything else is Unknown.
var validStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

func readObject(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	// As the API server's JSON reaches Argo CD and kstatus: an unstructured
	// object (integers are int64).
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
	return u.Object
}

// toLua converts a JSON value as Argo CD's util/lua decodeValue does.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(toLua(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), toLua(l, item))
		}
		return tbl
	}
	return lua.LNil
}

// runHealth runs script on obj; openLibs as Argo's useOpenLibs.
func runHealth(script string, obj map[string]any, openLibs bool) (healthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return healthStatus{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return healthStatus{}, err
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return healthStatus{}, fmt.Errorf("expect table output from Lua script, not %s", l.Get(-1).Type())
	}
	hs := healthStatus{Status: lua.LVAsString(ret.RawGetString("status")), Message: lua.LVAsString(ret.RawGetString("message"))}
	if !validStatuses[hs.Status] {
		return healthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return hs, nil
}

// healthDirs are the <group>/<kind> directories holding a health.lua.
func healthDirs(t *testing.T) []string {
	t.Helper()
	scripts, err := filepath.Glob(filepath.Join(customizations, "*", "*", "health.lua"))
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no health.lua under %s (%v)", customizations, err)
	}
	dirs := make([]string, 0, len(scripts))
	for _, s := range scripts {
		dirs = append(dirs, filepath.Dir(s))
	}
	sort.Strings(dirs)
	return dirs
}

func TestArgoCDHealthChecks(t *testing.T) {
	for _, dir := range healthDirs(t) {
		script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
		if err != nil {
			t.Fatal(err)
		}
		var tests healthTests
		data, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
		if err != nil {
			t.Fatalf("%s has health.lua but no health_test.yaml: %v", dir, err)
		}
		if err := yaml.UnmarshalStrict(data, &tests); err != nil {
			t.Fatalf("parsing %s/health_test.yaml: %v", dir, err)
		}
		if len(tests.Tests) == 0 {
			t.Fatalf("%s/health_test.yaml lists no tests", dir)
		}
		listed := map[string]bool{}
		for _, tc := range tests.Tests {
			listed[filepath.Clean(tc.InputPath)] = true
			name, _ := filepath.Rel(customizations, filepath.Join(dir, tc.InputPath))
			obj := readObject(t, filepath.Join(dir, tc.InputPath))
			for _, mode := range []struct {
				name     string
				openLibs bool
			}{{"argocd-cm", false}, {"built-in", true}} {
				t.Run(name+"/"+mode.name, func(t *testing.T) {
					got, err := runHealth(string(script), obj, mode.openLibs)
					if err != nil {
						t.Fatalf("health.lua failed: %v", err)
					}
					if got != tc.HealthStatus {
						t.Errorf("health = %+v, want %+v", got, tc.HealthStatus)
					}
				})
			}
		}
		// Every captured object has an expectation.
		files, _ := filepath.Glob(filepath.Join(dir, "testdata", "*.yaml"))
		for _, f := range files {
			rel, _ := filepath.Rel(dir, f)
			if !listed[rel] {
				t.Errorf("%s is not listed in %s/health_test.yaml", rel, dir)
			}
		}
	}
}

// Every health status Argo CD knows for a DtsJob is covered by the testdata,
// so none of the script's branches is untested.
func TestArgoCDHealthTestsCoverEveryStatus(t *testing.T) {
	dir := filepath.Join(customizations, "kubedts.io", "DtsJob")
	var tests healthTests
	data, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &tests); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, tc := range tests.Tests {
		seen[tc.HealthStatus.Status] = true
	}
	for _, want := range []string{"Healthy", "Progressing", "Degraded", "Suspended"} {
		if !seen[want] {
			t.Errorf("no DtsJob in testdata is %s: %v", want, seen)
		}
	}
}

// The argocd-cm snippet carries health.lua unchanged. UPDATE_TESTDATA=1
// rewrites it from health.lua.
func TestArgoCDConfigMapSnippetCarriesTheScript(t *testing.T) {
	const key = "resource.customizations.health.kubedts.io_DtsJob"
	script, err := os.ReadFile(filepath.Join(customizations, "kubedts.io", "DtsJob", "health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(customizations, "argocd-cm.yaml")
	if os.Getenv("UPDATE_TESTDATA") == "1" {
		var b strings.Builder
		b.WriteString(argocdCMHeader)
		b.WriteString("  " + key + ": |\n")
		for _, line := range strings.Split(strings.TrimRight(string(script), "\n"), "\n") {
			if line == "" {
				b.WriteString("\n")
			} else {
				b.WriteString("    " + line + "\n")
			}
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var cm struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   map[string]any    `json:"metadata"`
		Data       map[string]string `json:"data"`
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &cm); err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	if cm.Kind != "ConfigMap" || cm.Metadata["name"] != "argocd-cm" {
		t.Fatalf("%s is not the argocd-cm ConfigMap: %s %v", path, cm.Kind, cm.Metadata)
	}
	if cm.Data[key] != string(script) {
		t.Fatalf("%s: %s differs from health.lua; run `UPDATE_TESTDATA=1 make gitops-test` to rewrite it", path, key)
	}
}

const argocdCMHeader = `# The DtsJob health check for Argo CD: merge this key into the argocd-cm
# ConfigMap of your Argo CD installation (for example with
# ` + "`kubectl -n argocd patch configmap argocd-cm --patch-file deploy/argocd/argocd-cm.yaml`" + `).
# Generated from kubedts.io/DtsJob/health.lua by
# ` + "`UPDATE_TESTDATA=1 make gitops-test`" + `; hack/gitops-test checks that they match.
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
`
