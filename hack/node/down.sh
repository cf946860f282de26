#!/usr/bin/env bash
# Stops what hack/node/up.sh started and leaves nothing behind: the pods and the Node object
# go first, then the kubelet, the containers, containerd, the socat bridges, the kubelet's
# cgroups and the network namespace. Checks at the end that nothing of the node is left.
# hack/cluster/down.sh calls it before the cluster goes. Safe to run when no node runs.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/node/lib.sh
source "$here/lib.sh"
log() { printf '[node-down] %s\n' "$*"; }

cgroups() { find /sys/fs/cgroup/*/sluice-node -depth -type d 2>/dev/null; }
[[ -d "$state" ]] || [[ -n "$(cgroups)" ]] || exit 0
bin="$(ls -d "$cache"/bin/*/ 2>/dev/null | tail -n 1)"
export PATH="$bin:$PATH"
kubectl() { command kubectl --kubeconfig "$kubeconfig" --request-timeout=10s "$@"; }
ctr() { command ctr --address "$state/containerd.sock" --namespace k8s.io "$@"; }

stop() { # stop <name>: the process in <name>.pid, politely, then not
  local pidfile="$state/$1.pid" pid
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
}

# Pods first, while the kubelet can still tear down their sandboxes and network.
if [[ -f "$kubeconfig" ]] && kubectl get node "$node_name" >/dev/null 2>&1; then
  kubectl cordon "$node_name" >/dev/null
  # Without a kubelet to confirm them, the pods' deletions must be forced.
  grace=(--grace-period=5)
  running "$state/kubelet.pid" || grace=(--grace-period=0 --force)
  kubectl delete pods --all-namespaces --field-selector "spec.nodeName=$node_name" \
    "${grace[@]}" --timeout=60s >/dev/null 2>&1
  kubectl delete node "$node_name" --timeout=30s >/dev/null && log "deleted node $node_name"
fi
stop kubelet

# Whatever the kubelet left: every container and sandbox, then containerd itself.
if [[ -S "$state/containerd.sock" ]] && ctr version >/dev/null 2>&1; then
  for id in $(ctr containers ls -q); do
    ctr tasks kill --signal SIGKILL "$id" >/dev/null 2>&1
    ctr tasks delete --force "$id" >/dev/null 2>&1
    ctr containers delete "$id" >/dev/null 2>&1
  done
fi
stop containerd
stop node
for name in apiserver prometheus postgres; do
  stop "$name-node"
  stop "$name-host"
done

# Any process still in the node's network namespace or its cgroups is one of the node's (a
# container shim, a pod's process): end it, by PID.
leftovers() {
  local ns pid
  if mountpoint -q "$netns"; then
    ns="$(stat -L -c %i "$netns")"
    for pid in /proc/[0-9]*; do
      [[ "$(stat -L -c %i "$pid/ns/net" 2>/dev/null)" == "$ns" ]] && echo "${pid#/proc/}"
    done
  fi
  cat /sys/fs/cgroup/*/sluice-node/**/cgroup.procs 2>/dev/null
}
shopt -s globstar
mapfile -t pids < <(leftovers | sort -u)
if ((${#pids[@]})); then
  log "ending leftover processes: ${pids[*]}"
  kill -KILL "${pids[@]}" 2>/dev/null
  sleep 1
fi

# The kubelet's cgroups, deepest first, in every hierarchy.
for dir in $(cgroups); do
  rmdir "$dir" 2>/dev/null || log "could not remove cgroup $dir"
done
if mountpoint -q "$netns"; then
  umount "$netns" && log "deleted the network namespace"
fi

# Keep the last run's logs for a post-mortem; nothing else of it.
if [[ -d "$state" ]] && ! grep -q " $state" /proc/self/mounts; then
  mkdir -p "$root/.local/node-logs"
  cp "$state"/*.log "$root/.local/node-logs/" 2>/dev/null
  rm -rf "$state"
fi

left=()
[[ -n "$(cgroups)" ]] && left+=("cgroups: $(cgroups | tr '\n' ' ')")
grep -q " $state" /proc/self/mounts && left+=("mounts under $state")
[[ -n "$(leftovers)" ]] && left+=("processes: $(leftovers | tr '\n' ' ')")
if ((${#left[@]})); then
  log "left behind: ${left[*]}"
  exit 1
fi
log "nothing of the node is left"
