//! ops-worker: executes HMAC-signed ops commands from `titan.ops.command.v1` against the Docker
//! engine and answers on `titan.ops.receipt.v1`.

pub mod client;
pub mod config;
pub mod docker;
pub mod evidence;
pub mod executor;
pub mod receipts;
pub mod signing;
pub mod state;
pub mod worker;
