#!/usr/bin/env bash
# Installs the Debian packages the project needs and this machine lacks, and nothing else.
#   hack/deps.sh           the local cluster: Prometheus, curl, openssl, python3-venv
#   hack/deps.sh node      the real node and the image: podman, mmdebstrap, containerd, runc,
#                          the CNI plugins, socat, gcc and libc6-dev (for the pause image), and
#                          PostgreSQL (the hook e2e tests migrate a real database)
# Go (>= 1.26) and Python (>= 3.11) are assumed. Only apt-get is used, and only when something
# is missing; then it needs root.
set -euo pipefail

need=()
want() { # want <package> <test...>: the package is needed unless the test passes
  local package=$1; shift
  "$@" >/dev/null 2>&1 || need+=("$package")
}
has() { command -v "$1"; }
dpkg_has() { dpkg-query -W -f='${Status}' "$1" | grep -q 'ok installed'; }

for group in "${@:-cluster}"; do
  case $group in
    cluster)
      want prometheus has prometheus
      want curl has curl
      want openssl has openssl  # the TLS e2e test makes its own CA
      want python3-venv python3 -c 'import venv, ensurepip'
      ;;
    node)
      want mmdebstrap has mmdebstrap
      want podman has podman
      want runc test -x /usr/sbin/runc
      want containerd has containerd
      want containernetworking-plugins test -x /usr/lib/cni/bridge
      want socat has socat
      want iproute2 has ip
      want gcc has gcc
      want libc6-dev dpkg_has libc6-dev
      want postgresql compgen -G '/usr/lib/postgresql/*/bin/initdb'
      ;;
    *) echo "hack/deps.sh: unknown group '$group' (cluster, node)" >&2; exit 2 ;;
  esac
done

((${#need[@]})) || exit 0
if ((EUID != 0)); then
  echo "hack/deps.sh: missing Debian packages: ${need[*]} (run as root, or apt-get install them)" >&2
  exit 1
fi
echo "[deps] installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${need[@]}"
