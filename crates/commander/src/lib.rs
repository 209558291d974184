//! commander: executes ORION actions (`orion.action.v1`) and reports exactly one outcome per
//! action (`orion.outcome.v1`).
//!
//! What it is for: executing only what brain decided — every action must carry brain's Ed25519
//! signature over its exact contents, checked against brain's trusted public keys before
//! anything else ([`authority`]; an unsigned, forged or altered action is dead-lettered as
//! `bad_signature` and never reaches ops-worker) — and turning each action type into real work
//! ([`plan`]): signed ops commands to ops-worker (waiting for the final receipt, with a
//! timeout), incident acknowledgements to guardian, notifications to operators — at most once
//! per action id, across crashes and replays ([`service`]).
//!
//! What it is not for: deciding what to do (brain) or touching Docker itself (ops-worker).

pub mod authority;
pub mod config;
pub mod plan;
pub mod service;
