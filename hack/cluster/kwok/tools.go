//go:build tools

// Package kwok pins kwok, which plays the nodes of the local cluster and starts its
// components as plain processes (kwokctl --runtime binary).
package kwok

import (
	_ "sigs.k8s.io/kwok/pkg/kwok/cmd"
	_ "sigs.k8s.io/kwok/pkg/kwokctl/cmd"
)
