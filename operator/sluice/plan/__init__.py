"""Pure decision logic: (observed state, now) -> Plan. No I/O, no clock, no kopf."""
