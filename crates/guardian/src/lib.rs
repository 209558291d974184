//! guardian: correlates ORION events (`orion.event.v1`) into incidents (`orion.incident.v1`),
//! and applies incident acknowledgements (`orion.incident_acknowledgement.v1`).
//!
//! What it is for: turning a stream of observations into a small number of incidents, by
//! configurable rules ([`rules`]: match, group-by keys, window, threshold, severity, resolution),
//! keeping each incident up to date as it grows, is acknowledged and resolves, ignoring
//! duplicate events, staying within bounded memory, and surviving restarts. What it is not for:
//! deciding what to do about an incident (brain), or executing anything (commander).
//!
//! # Modules
//!
//! - [`config`] — the TOML file, overlays and environment; validation (fail closed).
//! - [`rules`] — a rule: which events count, how they are grouped. Pure.
//! - [`engine`] — groups, thresholds, the incident state machine, bounds. Pure, no I/O, no clock.
//! - [`incident`] — how each incident version is built (tags, description, timestamps). Pure.
//! - [`seen`] — the bounded set of handled event ids. Pure.
//! - [`store`] — the state in the JetStream key-value bucket `guardian_state`.
//! - [`service`] — the loop: consume, plan, store, publish, acknowledge.
//!
//! # Correlation
//!
//! An event counts for a rule when its type is in `match.event_type` and it passes the
//! optional `source`, `severity`, `data.*` and `tags.*` filters. The rule's `group_by` values
//! of the event (e.g. `data.service_name`) select its group. A group without an incident counts
//! its events in a sliding window of `window_s` seconds (by event timestamps); when `threshold`
//! of them fall in the window, an incident opens with all of them. While it is open, every
//! further matching event of the group joins it.
//!
//! # The incident state machine
//!
//! ```text
//!   (threshold reached) ──▶ open ──(acknowledgement)──▶ acknowledged
//!                            │ ▲ grows                     │ ▲ grows
//!                            │ └─┘                         │ └─┘
//!                            └──(resolve_on event, or resolve_after_s quiet)──▶ resolved (final)
//! ```
//!
//! - **open**: emitted when the threshold is reached, with a new UUID v4 `incident_id`.
//! - **grows** (state unchanged): a matching event of the group joins; `event_ids` gets it
//!   (oldest first, by event timestamp), `correlation_window.end` (or `start`) moves, the
//!   severity may rise (never fall). Re-emitted with the same `incident_id`.
//! - **acknowledged**: an `IncidentAcknowledgement` with the incident's id; re-emitted. A second
//!   acknowledgement changes nothing. Acknowledgements of unknown or resolved incidents are
//!   acknowledged on the bus and logged.
//! - **resolved**: an event whose type is in the rule's `resolve_on` with the same group-by
//!   values, or no matching event for `resolve_after_s`; emitted once, final. Later matching
//!   events open a NEW incident (a new `incident_id`).
//!
//! # Contract with the consumers of incidents (brain, approval-cli)
//!
//! **Tags.** Every incident carries, for each `group_by` key of its rule, the key's last path
//! segment mapped to the group's value (`data.service_name` → `service_name: "payments"`,
//! `data.device_id` → `device_id`, `tags.team` → `team`), plus `rule: <rule name>`. Nothing
//! else. brain renders action parameters (which service to restart, which device) from these
//! tags, so a rule meant to lead to `restart_service` must group by `data.service_name`.
//!
//! **Versions and timestamps.** Each emitted version's `timestamp` is deterministic: the
//! timestamp of the event or acknowledgement that caused it (for a quiet resolution, the last
//! event's arrival plus `resolve_after_s`), but always at least 1 ms after the previous version,
//! in UTC. So `incident_id:timestamp:state` — the bus's `Nats-Msg-Id` — identifies one version:
//! a version re-published after a crash is dropped by the server (within its 120 s duplicate
//! window), and a consumer can deduplicate on the same triple beyond that window. Versions of
//! one incident are published in order; their timestamps strictly increase.
//!
//! **Event ids.** `event_ids` lists at most `limits.max_event_ids_per_incident` events (the
//! first ones); later events still widen the window and are counted in the description.
//!
//! # Durability
//!
//! The bucket `guardian_state` holds one record per group (`group.<uuid v5>`: the events counted
//! below the threshold, or the incident with everything its next version needs) and a ring of
//! chunks of event ids (`seen.<slot>`). A group's record is the durable proof that its events
//! were handled; when the group ends (resolved, expired, evicted) its event ids move to the seen
//! set, which also keeps relevant events that no group holds (a resolving event). On start,
//! guardian loads both: open incidents continue (the next matching event updates the same
//! `incident_id`), handled events stay duplicates. A message is acknowledged only after its
//! effects are stored and published, and a failure hands it back (`nak` with a delay); see
//! [`service`] for the order that makes a crash at any point neither lose nor double a version.
//!
//! # Bounds
//!
//! `limits.max_groups` caps the groups tracked (least recently updated groups below their
//! threshold are forgotten first, then the least recently updated incidents; each eviction is
//! logged and counted in [`engine::Stats`]); `limits.max_seen_event_ids` and
//! `limits.seen_ttl_s` cap the seen set (oldest first); `limits.max_event_ids_per_incident`
//! caps one incident's list. The bucket's keys are bounded the same way: one per group, and at
//! most `max_seen_event_ids / 64` seen chunks (nats-server 2.9 has no per-key TTL, so guardian
//! deletes keys itself).
//!
//! # Several instances (active-active)
//!
//! Correlation needs all events of a group in one process, so the group keys are split into the
//! partitions the inventory declares (1 by default; see [`partition`] and docs/RELIABILITY.md
//! for why): a group belongs to one partition,
//! each partition has its own durables, lease and keys, and one instance at a time holds it.
//! Every instance joins as a member ([`members`]) and holds an even share of the partitions
//! ([`instance`]): alone, it holds them all; a newcomer gets its share handed back; when one
//! dies, the others take its partitions over `lease.ttl_s` (plus up to a quarter of it) after it
//! stopped renewing (see [`lease`]), and continue its open incidents. Per-group order holds
//! because a group's events only ever reach the engine of its partition, one at a time.

pub mod config;
pub mod engine;
pub mod incident;
pub mod instance;
pub mod lease;
pub mod members;
pub mod partition;
pub mod rules;
pub mod seen;
pub mod service;
pub mod store;

pub use config::GuardianConfig;
pub use engine::{Engine, Limits};
pub use service::Guardian;
