#!/usr/bin/env bash
# Builds argocd-health from this folder's Go module (Argo CD's health and diff code,
# github.com/argoproj/argo-cd/v3) into ~/.cache/sluice/argocd/<hash>/ (hack/gohelper.sh).
# Prints the binary's path on its last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../gohelper.sh" "$here" argocd argocd-health
