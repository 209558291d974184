//! Decides how to respond to ORION incidents: policy, autonomy levels, approvals (orion.incident.v1 → decisions, actions, approval requests).
