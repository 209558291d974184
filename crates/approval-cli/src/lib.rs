//! The operators' command line: approve, deny or force risky actions, watch notifications, and print an incident's audit trail.
