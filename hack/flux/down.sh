#!/usr/bin/env bash
# Stops what hack/flux/up.sh started, by the PIDs it recorded: kustomize-controller,
# source-controller and the Git server. Their state (.local/flux/) stays for the next up.sh.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="$(cd "$here/../.." && pwd)/.local/flux"
for name in kustomize-controller source-controller git-server; do
  pidfile="$state/$name.pid"
  [[ -f "$pidfile" ]] || continue
  pid="$(cat "$pidfile")"
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    echo "[flux-down] stopped $name"
  fi
  rm -f "$pidfile"
done
exit 0
