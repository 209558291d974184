//! commander: executes ORION actions (`orion.action.v1`) and reports exactly one outcome per
//! action (`orion.outcome.v1`).
//!
//! What it is for: turning each action type into real work ([`plan`]) — signed ops commands to
//! ops-worker (waiting for the final receipt, with a timeout), incident acknowledgements to
//! guardian, notifications to operators — at most once per action id, across crashes
//! ([`service`]).
//!
//! What it is not for: deciding what to do (brain) or touching Docker itself (ops-worker).

pub mod config;
pub mod plan;
pub mod service;
