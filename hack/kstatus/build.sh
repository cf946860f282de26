#!/usr/bin/env bash
# Builds kstatus from this folder's Go module (sigs.k8s.io/cli-utils' kstatus) into
# ~/.cache/sluice/kstatus/<hash>/ (hack/gohelper.sh). Prints the binary's path on its last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../gohelper.sh" "$here" kstatus kstatus
