//! Correlates ORION events into incidents (orion.event.v1 → orion.incident.v1).
