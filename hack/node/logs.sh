#!/usr/bin/env bash
# The logs of a pod on the real node, read from the kubelet's pod log folder: the API server
# does not reach this node's kubelet, so `kubectl logs` cannot. Prints every container's log
# of its latest run (or only <container>'s), without the CRI timestamp and stream prefix.
#   hack/node/logs.sh <namespace> <pod> [container]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/node/lib.sh
source "$here/lib.sh"
(($# >= 2)) || { echo "usage: hack/node/logs.sh <namespace> <pod> [container]" >&2; exit 2; }
namespace=$1 pod=$2 container=${3:-*}

shopt -s nullglob
pod_dirs=("$state/pod-logs/${namespace}_${pod}_"*/)
((${#pod_dirs[@]})) || { echo "no logs of pod $namespace/$pod on $node_name" >&2; exit 1; }
for dir in "${pod_dirs[-1]}"$container/; do
  latest="$(ls -v "$dir" | tail -n 1)"
  [[ -n $latest ]] || continue
  [[ $container == "*" ]] && echo "==> $(basename "$dir")"
  # CRI log lines: <time> <stream> <F|P> <text>; P marks a line continued by the next one.
  awk '{ tag = $3; sub(/^[^ ]+ [^ ]+ [^ ]+ ?/, ""); printf "%s%s", $0, (tag == "P" ? "" : "\n") }' "$dir/$latest"
done
