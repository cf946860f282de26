//go:build tools

// Package etcd pins etcd's server module so hack/cluster/build.sh can build etcd from the
// Go module proxy (its own go.mod has replace lines, so `go install` of it fails).
package etcd

import _ "go.etcd.io/etcd/server/v3/etcdmain"
