#!/usr/bin/env bash
# Joins a real node, sluice-real-0, to the local cluster (make cluster-up): containerd and a
# kubelet built from the pinned Kubernetes, running the images hack/node/image.sh built.
# Needs root. The host keeps its addresses, mounts, sysctls and firewall rules:
#   - the node lives in a network namespace of its own: a bridge sluice0 holds the node's
#     address 10.250.1.1 and is the gateway of the pods' 10.250.1.0/24 (CNI bridge + host-local);
#   - the API server and Prometheus listen on the host's 127.0.0.1 only; socat carries them
#     over a unix socket to the same ports inside the namespace, where pods reach them at
#     10.250.1.1:<port>;
#   - containerd and the kubelet run in a private mount namespace (hack/node/node.sh);
#   - the kubelet's pods go under the cgroup /sluice-node, removed by down.sh.
# Idempotent: what runs is left running; a rebuilt image is imported again.
set -euo pipefail
# shellcheck source=hack/detach.sh
source "$(dirname "${BASH_SOURCE[0]}")/../detach.sh"  # daemons started here keep no inherited fd
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/node/lib.sh
source "$here/lib.sh"
start=$SECONDS
log() { printf '[node-up] %s\n' "$*"; }
fail() { printf '[node-up] %s\n' "$*" >&2; exit 1; }

((EUID == 0)) || fail "the real node needs root (network and mount namespaces, cgroups)"
"$root/hack/deps.sh" node
bin="$("$root/hack/cluster/build.sh" | tail -n 1)"
export PATH="$bin:$PATH"
kubectl() { command kubectl --kubeconfig "$kubeconfig" "$@"; }
ctr() { command ctr --address "$state/containerd.sock" --namespace k8s.io "$@"; }
podman() { "$here/podman.sh" "$@"; }

kubectl get --raw /readyz >/dev/null 2>&1 || fail "the local cluster is not running: make cluster-up"
port="$(api_port)"
openssl s_client -connect "127.0.0.1:$port" </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName \
  | grep -q "IP Address:$node_ip" \
  || fail "the API server's certificate does not name $node_ip: recreate the cluster (make cluster-down cluster-up)"
for name in "$image" "$pause_image" "$tools_image"; do
  podman image exists "$name" || fail "no image $name: make image"
done

# A node of an earlier cluster (another API server port) goes first.
if [[ -f "$state/api-port" && "$(cat "$state/api-port")" != "$port" ]]; then
  "$here/down.sh"
fi
mkdir -p "$state"
echo "$port" >"$state/api-port"
cat >"$state/node.env" <<ENV
NODE_NAME=$node_name
NODE_IP=$node_ip
APISERVER_PORT=$port
PROMETHEUS_PORT=$prom_port
POSTGRES_PORT=$pg_port
TOOLS_IMAGE=$tools_image
ENV

# What the tests compare with while the node runs: the host's values of the tunables the
# kubelet would set, before it started.
if [[ ! -f "$state/host-sysctls" ]]; then
  for tunable in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
                 kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
    echo "$tunable $(cat "/proc/sys/${tunable//.//}")"
  done >"$state/host-sysctls"
fi

# The network namespace, bound to a file (not /run/netns, which `ip netns` would make a mount).
if ! mountpoint -q "$netns"; then
  touch "$netns"
  unshare --net="$netns" true
  nsenter --net="$netns" sh -euc "
    ip link set lo up
    ip link add sluice0 type bridge
    ip addr add $node_ip/24 dev sluice0
    ip link set sluice0 up"
  log "network namespace $netns: sluice0 $node_ip/24"
fi

daemon() { # daemon <name> <command...>: start it detached unless its PID file names a live process
  local name=$1; shift
  running "$state/$name.pid" && return 0
  setsid "$@" >>"$state/$name.log" 2>&1 </dev/null &
  echo $! >"$state/$name.pid"
}
bridge() { # bridge <name> <port>: 127.0.0.1:<port> on the host, as 0.0.0.0:<port> in the namespace
  local name=$1 port=$2
  daemon "$name-host" socat "UNIX-LISTEN:$state/$name.sock,fork,unlink-early,mode=600" "TCP:127.0.0.1:$port"
  daemon "$name-node" nsenter --net="$netns" socat "TCP-LISTEN:$port,bind=0.0.0.0,fork,reuseaddr" \
    "UNIX-CONNECT:$state/$name.sock"
}
bridge apiserver "$port"
bridge prometheus "$prom_port"
bridge postgres "$pg_port"

# Configuration: containerd, the CNI network, the kubelet, and what node.sh mounts.
mkdir -p "$state/net.d" "$state/pod-logs" "$state/kubelet" "$state/sysctl" "$containerd_root"
cat >"$state/containerd.toml" <<TOML
version = 2
root = "$containerd_root"
state = "$state/containerd"
[grpc]
  address = "$state/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$state/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$state/net.d"
    max_conf_num = 1
TOML
cat >"$state/net.d/10-sluice.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "sluice-node",
 "plugins": [{"type": "bridge", "bridge": "sluice0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
              "ipam": {"type": "host-local", "dataDir": "$state/ipam",
                       "ranges": [[{"subnet": "$pod_subnet", "gateway": "$node_ip"}]]}}]}
JSON
cat >"$state/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# Served inside the node's network namespace only; the API server never calls the kubelet
# (no logs or exec through it: hack/node/logs.sh reads the pod logs).
address: $node_ip
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$state/containerd.sock
podLogsDir: $state/pod-logs
cgroupDriver: cgroupfs
cgroupRoot: /sluice-node
failCgroupV1: false
failSwapOn: false
resolvConf: ""
registerWithTaints: [{key: sluice.dev/real-node, value: "true", effect: NoSchedule}]
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 20
YAML
printf '1\n' >"$state/sysctl/vm.overcommit_memory"
printf '0\n' >"$state/sysctl/vm.panic_on_oom"
printf '10\n' >"$state/sysctl/kernel.panic"
printf '1\n' >"$state/sysctl/kernel.panic_on_oops"
printf '1000000\n' >"$state/sysctl/kernel.keys.root_maxkeys"
printf '25000000\n' >"$state/sysctl/kernel.keys.root_maxbytes"
printf '#!/bin/sh\nexit 2\n' >"$state/no-iptables"
chmod +x "$state/no-iptables"

# The pods' cgroup root, in every hierarchy; a new cpuset takes its parent's CPUs and memory nodes.
for hierarchy in /sys/fs/cgroup/*/; do
  mkdir -p "$hierarchy/sluice-node"
done
for file in /sys/fs/cgroup/cpuset/cpuset.{cpus,mems}; do
  [[ -f $file && -z "$(cat "${file%/*}/sluice-node/${file##*/}")" ]] && cat "$file" >"${file%/*}/sluice-node/${file##*/}"
done

daemon node nsenter --net="$netns" unshare --mount --propagation private "$here/node.sh" "$bin/kubelet"
for _ in $(seq 1 100); do [[ -S "$state/containerd.sock" ]] && ctr version >/dev/null 2>&1 && break; sleep 0.1; done
ctr version >/dev/null 2>&1 || fail "containerd did not start: $state/containerd.log"

# The images, unless containerd holds this very build of them (podman's image ID).
for name in "$pause_image" "$image" "$tools_image"; do
  id="$(podman image inspect --format '{{.Id}}' "$name")"
  stamp="$containerd_root/imported/${name//[\/:]/_}"
  if [[ "$(cat "$stamp" 2>/dev/null)" == "$id" ]] && [[ -n "$(ctr images ls -q "name==$name")" ]]; then
    continue
  fi
  t=$SECONDS
  names=("$name")
  [[ $name == "$image" ]] && names+=(localhost/sluice:dev)
  podman save --format docker-archive -m "${names[@]}" | ctr images import - >/dev/null
  mkdir -p "${stamp%/*}" && echo "$id" >"$stamp"
  log "imported $name into the node's containerd in $((SECONDS - t))s"
done
# containerd's CRI also names every image by its ID: the names of earlier builds go, so that
# their layers are collected instead of piling up in the cache.
current=" $(podman image inspect --format 'sha256:{{.Id}}' "$pause_image" "$image" "$tools_image" | tr '\n' ' ')"
for ref in $(ctr images ls -q | grep '^sha256:'); do
  [[ $current == *" $ref "* ]] || ctr images rm "$ref" >/dev/null
done

for _ in $(seq 1 120); do kubectl get node "$node_name" >/dev/null 2>&1 && break; sleep 0.5; done
kubectl wait --for=condition=Ready "node/$node_name" --timeout=90s >/dev/null \
  || fail "$node_name is not Ready: $state/kubelet.log"
log "$node_name Ready in $((SECONDS - start))s"
cat <<TXT
  kubectl get node $node_name -o wide           # taint and label sluice.dev/real-node=true
  pods on it: nodeSelector + toleration sluice.dev/real-node, imagePullPolicy: Never, image $image
  from a pod: API server https://$node_ip:$port (KUBERNETES_SERVICE_HOST=$node_ip KUBERNETES_SERVICE_PORT=$port)
              Prometheus http://$node_ip:$prom_port
  hack/node/logs.sh <namespace> <pod>            # kubectl logs does not reach this node
  make node-down                                 # stops all of it
TXT
