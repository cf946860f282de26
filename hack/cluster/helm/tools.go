//go:build tools

// Package helm pins Helm, so the chart is installed by the real thing in tests.
package helm

import _ "helm.sh/helm/v3/pkg/action"
