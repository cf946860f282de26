"""Sluice: progressive delivery for Kubernetes, judged by Prometheus."""

GROUP = "sluice.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FIELD_MANAGER = "sluice"
