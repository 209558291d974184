//! Errors of the bus. Each keeps what NATS reported as its source, and [`BusError::kind`] says
//! what kind of failure it is, so callers decide by kind and never by the text.

use crate::ContractError;

/// What kind of failure a [`BusError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusErrorKind {
    /// Bad settings (URL, credentials, an undeclared consumer): fix the configuration.
    Config,
    /// The server could not be reached, did not answer in time, or nothing answered: retry
    /// later.
    Unreachable,
    /// The server refused the login or the operation for this identity (NATS permissions).
    Refused,
    /// The message breaks its contract; nothing was sent.
    Invalid,
    /// A stream, consumer or bucket the service needs is missing or differs from the inventory.
    NotProvisioned,
    /// Someone else changed a record since this holder's revision.
    Conflict,
    /// The server or client reported another failure.
    Failed,
}

/// What the NATS client or server reported, kept whole (its kind decides whether it counts as
/// unreachable).
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct NatsError {
    unreachable: bool,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl NatsError {
    /// A failure that is not about reaching the server.
    pub(crate) fn other(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            unreachable: false,
            source: source.into(),
        }
    }

    /// A failure to reach the server (tests build one without a server).
    #[cfg(test)]
    pub(crate) fn unreachable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            unreachable: true,
            source: source.into(),
        }
    }

    /// Whether the server could not be reached, did not answer in time, or nothing answered.
    pub fn is_unreachable(&self) -> bool {
        self.unreachable
    }
}

/// async-nats error kinds that tell an unreachable server (a timeout, no responders) from any
/// other failure.
pub(crate) trait ReachKind {
    fn unreachable(&self) -> bool;
}

impl<K> From<async_nats::error::Error<K>> for NatsError
where
    K: ReachKind + Clone + std::fmt::Debug + std::fmt::Display + PartialEq + Send + Sync + 'static,
{
    fn from(error: async_nats::error::Error<K>) -> Self {
        Self {
            unreachable: error.kind().unreachable(),
            source: Box::new(error),
        }
    }
}

/// `reach_kinds!(Kind: Variant | Variant, …)`: the variants of each kind that mean unreachable.
macro_rules! reach_kinds {
    ($($kind:path : $($variant:ident)|+ ;)+) => {
        $(impl ReachKind for $kind {
            fn unreachable(&self) -> bool {
                use $kind as K;
                matches!(self, $(K::$variant)|+)
            }
        })+
    };
}

impl From<async_nats::Error> for NatsError {
    fn from(source: async_nats::Error) -> Self {
        Self::other(source)
    }
}

impl From<serde_json::Error> for NatsError {
    fn from(source: serde_json::Error) -> Self {
        Self::other(source)
    }
}

use async_nats::jetstream as js;
reach_kinds! {
    async_nats::ConnectErrorKind: TimedOut | Io | Dns | MaxReconnects;
    async_nats::RequestErrorKind: TimedOut | NoResponders;
    js::context::PublishErrorKind: TimedOut;
    js::context::RequestErrorKind: TimedOut | NoResponders;
    js::context::ConsumerInfoErrorKind: TimedOut | NoResponders | Request;
    js::context::CreateStreamErrorKind: TimedOut;
    js::context::CreateKeyValueErrorKind: TimedOut;
    js::context::KeyValueErrorKind: GetBucket;
    js::context::GetStreamErrorKind: Request;
    js::kv::CreateErrorKind: Publish | Ack;
    js::stream::DirectGetErrorKind: TimedOut | Request;
    js::stream::PurgeErrorKind: TimedOut | Request;
    js::stream::ConsumerErrorKind: TimedOut | Request;
    js::consumer::StreamErrorKind: TimedOut;
    js::consumer::pull::OrderedErrorKind: NoResponders;
    js::consumer::pull::MessagesErrorKind: NoResponders;
    js::kv::EntryErrorKind: TimedOut;
    js::kv::WatchErrorKind: TimedOut;
    js::kv::UpdateErrorKind: TimedOut;
    js::object_store::GetErrorKind: TimedOut;
    js::object_store::PutErrorKind: TimedOut;
}

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Bad connection settings.
    #[error("bus configuration: {0}")]
    Config(String),
    /// The server could not be reached or refused the login.
    #[error("cannot connect to NATS at {url} as {user}: {source}")]
    Connect {
        url: String,
        user: String,
        #[source]
        source: NatsError,
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
    #[error("publish to `{subject}` failed: {source}")]
    Publish {
        subject: String,
        #[source]
        source: NatsError,
    },
    /// A stream, bucket, object store or durable consumer the service needs is missing, or set
    /// up differently from the inventory. Services never create them: provisioning does.
    #[error("{what} {problem}: provision the platform as the admin identity (`cargo xtask provision` or `orion-bus provision`)")]
    NotProvisioned { what: String, problem: String },
    /// A stream, consumer, bucket or object store could not be created or read.
    #[error("JetStream {what}: {source}")]
    JetStream {
        what: String,
        #[source]
        source: NatsError,
    },
    /// An at-most-once claim was changed by someone else since this holder's revision.
    #[error("the claim `{key}` in `{bucket}` was changed by someone else")]
    ClaimLost { bucket: String, key: String },
    /// Acknowledging a delivery failed.
    #[error("acknowledging message {stream_sequence} on `{subject}` failed: {source}")]
    Ack {
        subject: String,
        stream_sequence: u64,
        #[source]
        source: NatsError,
    },
    /// A key-value bucket operation failed.
    #[error(transparent)]
    Bucket(#[from] super::BucketError),
    /// The consumer's message stream failed.
    #[error("consuming `{subject}` failed: {source}")]
    Consume {
        subject: String,
        #[source]
        source: NatsError,
    },
}

impl BusError {
    /// What kind of failure this is.
    pub fn kind(&self) -> BusErrorKind {
        match self {
            Self::Config(_) => BusErrorKind::Config,
            // A server that answers and refuses the login is not unreachable: retrying will not
            // help, the credentials must change.
            Self::Connect { source, .. } if !source.is_unreachable() => BusErrorKind::Refused,
            Self::Connect { .. } => BusErrorKind::Unreachable,
            Self::Contract(_) => BusErrorKind::Invalid,
            Self::PermissionDenied { .. } => BusErrorKind::Refused,
            Self::NotProvisioned { .. } => BusErrorKind::NotProvisioned,
            Self::ClaimLost { .. } => BusErrorKind::Conflict,
            Self::Bucket(e) => match e.kind() {
                super::BucketErrorKind::Invalid => BusErrorKind::Invalid,
                super::BucketErrorKind::Open => BusErrorKind::NotProvisioned,
                _ => BusErrorKind::Failed,
            },
            Self::Publish { source, .. }
            | Self::JetStream { source, .. }
            | Self::Ack { source, .. }
            | Self::Consume { source, .. } => {
                if source.is_unreachable() {
                    BusErrorKind::Unreachable
                } else {
                    BusErrorKind::Failed
                }
            }
        }
    }
}
