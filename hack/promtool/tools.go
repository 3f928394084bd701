//go:build tools

// Package tools pins promtool, which checks and unit-tests the chart's
// PrometheusRule (hack/gitops-test). Built by hack/gitops-tools.sh.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
