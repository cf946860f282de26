"""The thin I/O layer: reads, server-side applies, status writes and events."""
