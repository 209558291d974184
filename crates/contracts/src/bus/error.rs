//! Errors of the bus.

use crate::ContractError;

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Bad connection settings.
    #[error("bus configuration: {0}")]
    Config(String),
    /// The server could not be reached or refused the login.
    #[error("cannot connect to NATS at {url} as {user}: {reason}")]
    Connect {
        url: String,
        user: String,
        reason: String,
    },
    /// The message breaks its contract; nothing was sent.
    #[error(transparent)]
    Contract(#[from] ContractError),
    /// The server refused the subject for this identity (NATS permissions).
    #[error("NATS refused {operation} on `{subject}` for user `{user}`: {server_message}")]
    PermissionDenied {
        operation: &'static str,
        subject: String,
        user: String,
        server_message: String,
    },
    /// JetStream did not store the message.
    #[error("publish to `{subject}` failed: {reason}")]
    Publish { subject: String, reason: String },
    /// A stream, bucket, object store or durable consumer the service needs is missing, or set
    /// up differently from the inventory. Services never create them: provisioning does.
    #[error("{what} {problem}: provision the platform as the admin identity (`cargo xtask provision` or `orion-bus provision`)")]
    NotProvisioned { what: String, problem: String },
    /// A stream, consumer, bucket or object store could not be created or read.
    #[error("JetStream {what}: {reason}")]
    JetStream { what: String, reason: String },
    /// An at-most-once claim was changed by someone else since this holder's revision.
    #[error("the claim `{key}` in `{bucket}` was changed by someone else")]
    ClaimLost { bucket: String, key: String },
    /// Acknowledging a delivery failed.
    #[error("acknowledging message {stream_sequence} on `{subject}` failed: {reason}")]
    Ack {
        subject: String,
        stream_sequence: u64,
        reason: String,
    },
    /// A key-value bucket operation failed.
    #[error(transparent)]
    Bucket(#[from] super::BucketError),
    /// The consumer's message stream failed.
    #[error("consuming `{subject}` failed: {reason}")]
    Consume { subject: String, reason: String },
}
