//go:build tools

// Package tools pins controller-gen and Flux's helm-controller API types:
// hack/gitops-tools.sh generates the HelmRelease CRD from those types, as
// helm-controller's own Makefile does (its root module, which holds the
// generated YAML, is not served by the Go module proxy).
package tools

import (
	_ "github.com/fluxcd/helm-controller/api/v2"
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)
