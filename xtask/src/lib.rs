//! Project automation for the platform, run as `cargo xtask <command>`.
//!
//! - `codegen`: generates the contract types, registry, documents and NATS permissions from
//!   `schemas/` (see [`codegen`]);
//! - `check`: the contract governance check (see [`check`]);
//! - `release`: records the current contract set as the released baseline;
//! - `test`: installs and starts what the tests need, then runs them all (see [`machine`]);
//! - `fuzz`: runs every cargo-fuzz target of `fuzz/` for a given time (see [`fuzz`]).
//!
//! It is a library as well as a binary so that tests can run every check against a temporary
//! copy of the repository. It is not a runtime dependency of any service.

pub mod check;
pub mod codegen;
pub mod contract_set_file;
pub mod fuzz;
pub mod inventory;
pub mod machine;
pub mod naming;
pub mod release;
pub mod stack;
