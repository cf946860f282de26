#!/usr/bin/env bash
# The node's processes: containerd, then the kubelet. hack/node/up.sh starts this script inside
# the node's network namespace and a private mount namespace of its own, so that every mount
# made here (by this script, the kubelet, containerd and its shims) is seen by them alone and
# is gone once the last of them exits. Usage: node.sh <kubelet binary>
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/node/lib.sh
source "$here/lib.sh"
kubelet=$1

# Paths the kubelet, containerd and the CNI plugins write to whatever their configuration says
# (/run/netns, /run/containerd, /var/lib/cni, /var/lib/kubelet/device-plugins,
# /var/log/containers): scratch space here, so the host's folders stay as they were.
for dir in /run /var/lib /var/log; do
  mount -t tmpfs -o mode=0755,size=64m sluice-node "$dir"
done

# The kubelet sets six kernel tunables it wants (vm.overcommit_memory=1, kernel.panic=10, ...).
# They are global to the machine: it reads files holding its wanted values instead, and so
# leaves the host's alone.
for tunable in "$state"/sysctl/*; do
  mount --bind "$tunable" "/proc/sys/$(basename "$tunable" | tr . /)"
done
# No iptables for the kubelet: it would add KUBE-* chains. Its rules would stay inside the node's
# network namespace, but no rules at all is simpler to check.
for xtables in /usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi; do
  [[ -e $xtables ]] && mount --bind "$state/no-iptables" "$xtables"
done

containerd --config "$state/containerd.toml" >"$state/containerd.log" 2>&1 &
echo $! >"$state/containerd.pid"
for _ in $(seq 1 100); do [[ -S "$state/containerd.sock" ]] && break; sleep 0.1; done

"$kubelet" --config="$state/kubelet.yaml" --kubeconfig="$kubeconfig" --root-dir="$state/kubelet" \
  --cert-dir="$state/kubelet/pki" --hostname-override="$node_name" --node-ip="$node_ip" \
  --node-labels=sluice.dev/real-node=true --v=1 >"$state/kubelet.log" 2>&1 &
echo $! >"$state/kubelet.pid"
wait
