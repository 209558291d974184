//! ops-client: everything a sender of ops commands and ops-worker must agree on, and nothing
//! that touches Docker.
//!
//! What it is for:
//! - signing and verifying commands exactly as the existing TypeScript console does
//!   ([`signing`]: HMAC-SHA256 over RFC 8785 canonical JSON, key rotation, constant-time
//!   comparison), and reading the keys from the environment ([`keys`]);
//! - building, signing and sending a command and waiting for its final receipt ([`client`]),
//!   accepting only a receipt ops-worker derives for what was sent ([`ids`]).
//!
//! What it is not for: executing commands (ops-worker), deciding what to send (brain,
//! commander). commander depends on this crate, not on ops-worker, so it links no Docker client.

pub mod client;
pub mod ids;
pub mod keys;
pub mod signing;

pub use client::{
    build_signed, issued_for, send_and_wait, sign, ClientError, CommandRequest, Receipts,
};
pub use contracts::generated::ops_receipt_v1::OpsReceiptErrorCode as FailureCode;
pub use ids::{receipt_id, receipt_type, refusal_id};
pub use keys::{keys_from_env, KeysError};
pub use signing::{SignatureError, SigningKeys};
