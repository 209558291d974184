//! The operators' command line: approve, deny or force risky actions, watch the platform live,
//! and print an incident's audit trail. Identity on the bus: `approval-cli`
//! ([`contracts::services::ApprovalCli`]); connection from `ORION_NATS_*` (see `--help`).
//!
//! | command | what it does |
//! | --- | --- |
//! | `keygen --identity NAME --out FILE` | Ed25519 admin key (PKCS#8, base64, mode 0600, never overwritten); prints brain's `[[admins]]` entry |
//! | `list [--all]` | pending approval requests (no answer, not expired); `--all` adds answered/expired with status |
//! | `show ID` | one request in full, with its decision chain (decision, answers, actions, outcomes) |
//! | `approve` / `deny` / `force ID --reason … [--identity] [--key] [--valid-for]` | signed `orion.approval_decision.v1` (header `Orion-Signature`) |
//! | `watch [--everything]` | new requests, decisions, actions, outcomes, notifications, dead letters, live |
//! | `trail INCIDENT_ID [--full-scan]` | every message of an incident's chain, in time order |
//! | `ack INCIDENT_ID --reason …` | `orion.incident_acknowledgement.v1` for guardian |
//! | `silence (--target T \| --incident-type X \| --tag K=V …) (--for 2h \| --until TIME) --reason …` | signed `orion.silence.v1`: brain takes no action on what matches until it ends (at most 7 days) |
//! | `silences [--all]` | silences in force and scheduled; `--all` adds expired and lifted |
//! | `unsilence ID --reason …` | the signed lift of a silence (same `silence_id`, state `lifted`) |
//!
//! Every command takes `--json`. Exit codes: 0 done, 1 refused or not found, 2 usage, 3 NATS
//! unreachable. IDs may be given as a unique prefix (at least 4 characters).
//!
//! The binary (`src/main.rs`) only parses arguments and maps failures to exit codes; the work
//! is in these modules so that it can be tested:
//!
//! - [`records`]: messages as read back from the streams (raw JSON, decoded [`contracts::Message`]).
//! - [`streams`]: reading a stream to its end, or following it, with ordered pull consumers.
//! - [`approvals`]: pending/answered/expired requests, id prefixes, building an approval decision.
//! - [`trail`]: the chain of one incident, and the decision chain of one approval request, in
//!   time order (pure).
//! - [`render`]: one-line summaries, times, durations, tables.
//! - [`silences`]: silence windows and criteria, building silences and lifts, and where each
//!   silence in the stream stands.
//! - [`keys`]: admin key files and brain's `[[admins]]` snippet.
//! - [`cli`]: the arguments; [`commands`]: the subcommands, one module each, and what they
//!   share (connecting, reading, failures and exit codes).
//!
//! What the other services can rely on:
//!
//! - The signature covers the RFC 8785 canonical form of the approval decision exactly as
//!   published (`contracts::to_value`, which includes `override_cooldown` and
//!   `override_circuit_breaker` even when false): verify it against the received payload parsed
//!   as JSON, with the key of its `admin_identity`
//!   (`contracts::signing::Verifier::verify_claimed`).
//! - An approval decision's `expires_at` is `issued_at` + `--valid-for` (default 300 s); the
//!   tool refuses to answer an expired request and, unless `--again`, one already answered.
//! - The audit trail links messages by ids: requests by `incident_id` or `decision_id`, actions
//!   by `decision_id` or `approval_id`, ops commands by the action id in `meta.reason`
//!   (`orion action <action_id>: …`), receipts by `command_id`, outcomes by `action_id`,
//!   notifications and acknowledgements by `incident_id` or `action_id`, dead letters by any id
//!   of the chain found in their raw payload, silences by the `silence_id` tag of brain's
//!   decisions.
//! - A silence is signed exactly like an approval decision (the same key, header and canonical
//!   form); its lift is the same `silence_id` with state `lifted`, signed by whoever lifts it.

pub mod approvals;
pub mod cli;
pub mod commands;
pub mod keys;
pub mod records;
pub mod render;
pub mod silences;
pub mod streams;
pub mod trail;
