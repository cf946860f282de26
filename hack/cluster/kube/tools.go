//go:build tools

// Package kube pins k8s.io/kubernetes so that hack/cluster/build.sh can build the
// control plane binaries from the Go module proxy. Nothing here is imported at run time.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubernetes/cmd/kubelet/app"
	_ "k8s.io/kubectl/pkg/cmd"
)
