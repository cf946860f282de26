"""The `sluice` command (also `kubectl sluice`)."""
