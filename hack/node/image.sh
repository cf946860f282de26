#!/usr/bin/env bash
# Builds the operator image and the pause image without Docker and without a registry:
#   1. python:3.11-slim is stood in for by a Debian bookworm rootfs made with mmdebstrap
#      (Debian's own packages, from the Debian mirror), imported into podman under that name;
#   2. the project's Dockerfile, unchanged, builds on it: localhost/sluice:<chart appVersion>
#      and localhost/sluice:dev;
#   3. the pause image is compiled from the pinned k8s.io/kubernetes module's own pause.c.
# Cached: the base and pause images are made once, podman's layer cache keeps the rest.
# Images live in the project's podman storage (hack/node/podman.sh images).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/node/lib.sh
source "$here/lib.sh"
"$root/hack/deps.sh" node

start=$SECONDS
took() { echo "$((SECONDS - $1))s"; }
log() { printf '[image] %s\n' "$*"; }
podman() { "$here/podman.sh" "$@"; }

base=docker.io/library/python:3.11-slim
if ! podman image exists "$base"; then
  t=$SECONDS
  mirror=http://deb.debian.org/debian
  # Debian's python3 under /usr: pip needs its PEP 668 marker gone to install into the image,
  # as it would into the official image's /usr/local python.
  mmdebstrap --quiet --variant=apt \
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook='rm -f "$1"/usr/lib/python3.*/EXTERNALLY-MANAGED' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm - "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
    "deb $mirror-security bookworm-security main" \
    | podman import --quiet --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$base" >/dev/null
  log "base $base (Debian bookworm) made in $(took "$t")"
fi

if ! podman image exists "$pause_image"; then
  t=$SECONDS
  kube_dir="$(cd "$root/hack/cluster/kube" && GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' k8s.io/kubernetes)"
  context="$(mktemp -d)"
  trap 'rm -rf "$context"' EXIT
  gcc -Os -Wall -Werror -static -DVERSION="v${pause_image##*:}-sluice" -o "$context/pause" "$kube_dir/build/pause/linux/pause.c"
  printf 'FROM scratch\nADD pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$context/Containerfile"
  podman build --quiet --pull=never -t "$pause_image" "$context" >/dev/null
  log "$pause_image compiled from $kube_dir/build/pause in $(took "$t")"
fi

# The tools image hook Jobs run in the tests: psql and pg_dump, from Debian's packages.
if ! podman image exists "$tools_image"; then
  t=$SECONDS
  mirror=http://deb.debian.org/debian
  mmdebstrap --quiet --variant=apt --include=postgresql-client,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm - "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
    "deb $mirror-security bookworm-security main" \
    | podman import --quiet --change 'ENV LANG=C.UTF-8' --change 'CMD ["psql"]' - "$tools_image" >/dev/null
  log "$tools_image (Debian bookworm, postgresql-client) made in $(took "$t")"
fi

# pip reaches PyPI through the machine's CA bundle, mounted for the build only (never baked in).
t=$SECONDS
ca=()
[[ -f /etc/ssl/certs/ca-certificates.crt ]] && ca=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
build() { podman build --quiet --pull=never "${ca[@]}" -f "$root/Dockerfile" "$@" "$root" >/dev/null; }
# The build stage keeps a name, so that pruning the layers of earlier builds keeps the
# dependency layer cached.
build --target build -t localhost/sluice-build:cache
build -t "$image" -t localhost/sluice:dev
podman image prune --force >/dev/null
log "$image built in $(took "$t")"

for name in "$image" "$pause_image" "$tools_image"; do
  podman images --filter reference="$name" --format '  {{.Repository}}:{{.Tag}}  {{.Size}}'
done
log "done in $(took "$start")"
