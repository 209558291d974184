//! ops-worker: executes HMAC-signed ops commands from `titan.ops.command.v1` against the Docker
//! engine and answers each with receipts on `titan.ops.receipt.v1`. Signing, verifying and
//! sending commands live in the `ops-client` crate, which senders share.
//!
//! What it is for:
//! - accepting exactly what the existing TypeScript console signs (`ops_client::signing`:
//!   HMAC-SHA256 over RFC 8785 canonical JSON, key rotation, constant-time comparison) and
//!   nothing else;
//! - never running a command twice, across restarts and crashes ([`state`], [`worker`]), and
//!   refusing commands outside the replay window;
//! - doing what each command says on Docker through bollard ([`docker`], [`executor`]): restart,
//!   rolling deploy with rollback, halt, the arm/disarm interlock, set_risk, cancel_all, and
//!   evidence bundles in a JetStream object store ([`evidence`]);
//! - keeping secrets out of those bundles ([`redact`]): every container environment value, and
//!   labels, options and command-line arguments that look like credentials, are replaced by
//!   `[redacted]` before anything is archived, and the bundle's `redactions.json` says where
//!   and why (never what); logs are capped at [`evidence::MAX_LOG_LINES`] lines and
//!   [`docker::MAX_LOG_BYTES`] bytes per container;
//! - answering with `pending` for long commands and exactly one final receipt ([`receipts`]).
//!
//! What it is not for: deciding what to run (brain), approvals (approval-cli), or any HTTP API.
//! It never acts on itself, on NATS, or on a service outside its allowlist, and takes a target
//! only as it is spelled: a name that is not canonical ([`contracts::target`]: `"web "`,
//! `"Web"`, …) gets a failure receipt and is never trimmed or case-folded into a service.
//!
//! Start at [`worker`] for the life of a command, then [`executor`] for what each type does.

pub mod config;
pub mod control;
pub mod docker;
pub mod evidence;
pub mod executor;
pub mod receipts;
pub mod redact;
pub mod state;
pub mod worker;
