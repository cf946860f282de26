"""Metric providers (Prometheus) and the judge that turns a measurement into a verdict."""
