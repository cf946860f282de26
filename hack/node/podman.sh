#!/usr/bin/env bash
# The project's podman: its own configuration (containers.conf) and its own storage in the cache
# outside the repo, so the machine's podman images and settings are left alone.
#   hack/node/podman.sh images
#   hack/node/podman.sh run --rm --entrypoint sluice localhost/sluice:dev --help
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
store="${SLUICE_CACHE:-$HOME/.cache/sluice}/containers"
export CONTAINERS_CONF="$here/containers.conf"
# A run or a build leaves empty traces behind: runc's state folder, and a libpod_parent cgroup in
# every hierarchy. Remove the ones this call made, once empty.
made=()
for dir in /run/runc /sys/fs/cgroup/*/; do
  [[ $dir == */ ]] && dir+=libpod_parent
  [[ -d "$dir" ]] || made+=("$dir")
done
status=0
podman --root "$store/storage" --runroot "$store/run" --tmpdir "$store/tmp" "$@" || status=$?
for dir in "${made[@]}"; do
  [[ -d "$dir" ]] && find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
done
exit "$status"
