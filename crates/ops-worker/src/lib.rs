//! ops-worker: executes HMAC-signed ops commands from `titan.ops.command.v1` against the Docker
//! engine and answers on `titan.ops.receipt.v1`.

pub mod docker;
pub mod signing;
