#!/usr/bin/env bash
# Stops what up.sh started: Prometheus, the traffic simulator and the kwok cluster, and first
# the real node, if one runs (hack/node/down.sh), and Flux (hack/flux/down.sh).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
local_dir="$root/.local"
export KWOK_WORKDIR="$local_dir/kwok"
"$root/hack/node/down.sh"
"$root/hack/flux/down.sh"  # Flux's controllers and Git server (hack/flux/up.sh), if they run
for name in operator prometheus simulator; do
  pidfile="$local_dir/$name.pid"
  if [[ -f "$pidfile" ]]; then
    kill "$(cat "$pidfile")" 2>/dev/null && echo "[cluster-down] stopped $name"
    rm -f "$pidfile"
  fi
done
bin="$(ls -d "${SLUICE_CACHE:-$HOME/.cache/sluice}"/bin/*/ 2>/dev/null | tail -n 1)"
if [[ -n "$bin" && -x "$bin/kwokctl" ]]; then
  PATH="$bin:$PATH" kwokctl delete cluster --name sluice >/dev/null 2>&1 && echo "[cluster-down] deleted cluster sluice"
fi
rm -rf "$local_dir/prometheus"
exit 0
