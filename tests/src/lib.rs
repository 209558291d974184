//! The whole platform, end to end: a real NATS server with the generated permissions, every
//! service as its own process (the binaries operators run), and real containers on the Docker
//! engine. The end-to-end tests (`tests/flow.rs`) and the demo (`orion-demo`, run by
//! `cargo xtask demo`) both drive the platform through this crate.
//!
//! Not for production: it starts loopback servers and throw-away containers.

pub mod attacker;
pub mod chaos;
pub mod images;
pub mod probe;
pub mod prometheus;
pub mod stack;
pub mod testing;
pub mod workload;
