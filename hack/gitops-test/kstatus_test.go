package gitopstest

// kstatus (sigs.k8s.io/cli-utils), which Flux's health checks, `kubectl
// wait`-style tools and Helm's --wait build on, computed for the DtsJobs
// captured from the e2e run (tests/e2e_gitops.rs writes them into
// deploy/argocd/kubedts.io/DtsJob/testdata). kstatus_test.yaml names the
// status each must have: Current once the desired state is reached,
// InProgress while calls are pending or retried, Failed when Stalled.

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

var captured = filepath.Join(customizations, "kubedts.io", "DtsJob", "testdata")

type kstatusTests struct {
	Tests []struct {
		// File name in deploy/argocd/kubedts.io/DtsJob/testdata.
		InputPath string `json:"inputPath"`
		Status    string `json:"status"`
		// Why, for the reader; not compared.
		Because string `json:"because"`
	} `json:"tests"`
}

func TestKstatusOfCapturedDtsJobs(t *testing.T) {
	data, err := os.ReadFile("kstatus_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var tests kstatusTests
	if err := yaml.UnmarshalStrict(data, &tests); err != nil {
		t.Fatalf("parsing kstatus_test.yaml: %v", err)
	}
	listed := map[string]bool{}
	seen := map[status.Status]bool{}
	for _, tc := range tests.Tests {
		listed[tc.InputPath] = true
		t.Run(tc.InputPath, func(t *testing.T) {
			obj := &unstructured.Unstructured{Object: readObject(t, filepath.Join(captured, tc.InputPath))}
			if obj.GetKind() != "DtsJob" {
				t.Fatalf("%s is a %s, not a DtsJob", tc.InputPath, obj.GetKind())
			}
			res, err := status.Compute(obj)
			if err != nil {
				t.Fatalf("kstatus: %v", err)
			}
			seen[res.Status] = true
			if string(res.Status) != tc.Status {
				t.Errorf("kstatus = %s (%q), want %s (%s)", res.Status, res.Message, tc.Status, tc.Because)
			}
		})
	}
	files, _ := filepath.Glob(filepath.Join(captured, "*.yaml"))
	if len(files) == 0 {
		t.Fatalf("no captured DtsJobs in %s", captured)
	}
	for _, f := range files {
		if !listed[filepath.Base(f)] {
			t.Errorf("%s has no kstatus expectation in kstatus_test.yaml", filepath.Base(f))
		}
	}
	for _, want := range []status.Status{status.CurrentStatus, status.InProgressStatus, status.FailedStatus} {
		if !seen[want] {
			t.Errorf("no captured DtsJob is %s", want)
		}
	}
}
