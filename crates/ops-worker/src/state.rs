//! The worker's durable state in JetStream key-value buckets: the safety interlock, and the
//! record of every command id (a `contracts::bus::ClaimLog`), so that a command is never
//! executed twice — not even across a restart or a crash.

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};

/// Bucket of the interlock (see `schemas/inventory.toml`).
pub const INTERLOCK_BUCKET: &str = "ops_interlock";
/// Bucket of the command records.
pub const COMMANDS_BUCKET: &str = "ops_commands";
/// Key of the armed/disarmed flag.
pub const ARMED_KEY: &str = "armed";
/// Key of the autonomy ceiling set by `set_risk`.
pub const RISK_CEILING_KEY: &str = "risk_ceiling";

#[derive(Debug, thiserror::Error)]
#[error("JetStream key-value `{bucket}`: {what}: {reason}")]
pub struct StateError {
    pub bucket: &'static str,
    pub what: String,
    pub reason: String,
}

fn state_error(
    bucket: &'static str,
    what: impl Into<String>,
    e: impl std::fmt::Display,
) -> StateError {
    StateError {
        bucket,
        what: what.into(),
        reason: e.to_string(),
    }
}

/// The value stored under `armed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmedState {
    pub armed: bool,
    /// The command that set it.
    pub command_id: String,
    pub at: String,
}

/// The value stored under `risk_ceiling`: the highest autonomy level brain may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskCeiling {
    pub level: String,
    pub command_id: String,
    pub at: String,
}

/// The platform-wide safety interlock: armed or disarmed, and the autonomy ceiling.
#[derive(Clone)]
pub struct Interlock {
    store: kv::Store,
}

impl Interlock {
    pub async fn open(js: &jetstream::Context) -> Result<Self, StateError> {
        let store = js.get_key_value(INTERLOCK_BUCKET).await.map_err(|e| {
            state_error(
                INTERLOCK_BUCKET,
                "opening the bucket (is it provisioned?)",
                e,
            )
        })?;
        Ok(Self { store })
    }

    /// Armed unless a `disarm` or `halt` said otherwise.
    pub async fn armed(&self) -> Result<bool, StateError> {
        let value = self
            .store
            .get(ARMED_KEY)
            .await
            .map_err(|e| state_error(INTERLOCK_BUCKET, "reading `armed`", e))?;
        match value {
            None => Ok(true),
            Some(bytes) => serde_json::from_slice::<ArmedState>(&bytes)
                .map(|s| s.armed)
                .map_err(|e| state_error(INTERLOCK_BUCKET, "decoding `armed`", e)),
        }
    }

    pub async fn set_armed(&self, armed: bool, command_id: &str) -> Result<(), StateError> {
        let value = ArmedState {
            armed,
            command_id: command_id.to_string(),
            at: contracts::Timestamp::now().to_string(),
        };
        self.put(ARMED_KEY, &value).await
    }

    pub async fn risk_ceiling(&self) -> Result<Option<RiskCeiling>, StateError> {
        let value = self
            .store
            .get(RISK_CEILING_KEY)
            .await
            .map_err(|e| state_error(INTERLOCK_BUCKET, "reading `risk_ceiling`", e))?;
        value
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| state_error(INTERLOCK_BUCKET, "decoding `risk_ceiling`", e))
            })
            .transpose()
    }

    pub async fn set_risk_ceiling(&self, level: &str, command_id: &str) -> Result<(), StateError> {
        let value = RiskCeiling {
            level: level.to_string(),
            command_id: command_id.to_string(),
            at: contracts::Timestamp::now().to_string(),
        };
        self.put(RISK_CEILING_KEY, &value).await
    }

    async fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(value).expect("state values serialize");
        self.store
            .put(key, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| state_error(INTERLOCK_BUCKET, format!("writing `{key}`"), e))
    }
}

/// The record of every command id (bucket `ops_commands`): claimed, then its final receipt.
pub async fn command_log(js: &jetstream::Context) -> Result<contracts::bus::ClaimLog, StateError> {
    contracts::bus::ClaimLog::open(js, COMMANDS_BUCKET)
        .await
        .map_err(|e| state_error(COMMANDS_BUCKET, "opening the bucket", e))
}
