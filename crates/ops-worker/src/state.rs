//! The worker's durable state in JetStream key-value buckets: the safety interlock and the
//! record of every command id, so that a command is never executed twice — not even across a
//! restart or a crash.

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// What the worker knows about one command id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CommandRecord {
    /// Execution started on `executor` at `at`; no final receipt yet.
    Claimed { executor: String, at: String },
    /// The final receipt, as published.
    Finished { receipt: Value },
}

/// The answer to "may I execute this command id?".
#[derive(Debug)]
pub enum Claim {
    /// First time: execute, then [`CommandLog::finish`] with this revision.
    New { revision: u64 },
    /// Seen before, with what was recorded then (and its revision).
    Seen {
        record: CommandRecord,
        revision: u64,
    },
}

/// One record per command id (bucket `ops_commands`).
#[derive(Clone)]
pub struct CommandLog {
    store: kv::Store,
}

impl CommandLog {
    pub async fn open(js: &jetstream::Context) -> Result<Self, StateError> {
        let store = js.get_key_value(COMMANDS_BUCKET).await.map_err(|e| {
            state_error(
                COMMANDS_BUCKET,
                "opening the bucket (is it provisioned?)",
                e,
            )
        })?;
        Ok(Self { store })
    }

    fn key(command_id: &uuid::Uuid) -> String {
        command_id.hyphenated().to_string()
    }

    /// Atomically claims `command_id` (key-value `create` fails if the key exists).
    pub async fn claim(
        &self,
        command_id: &uuid::Uuid,
        executor: &str,
    ) -> Result<Claim, StateError> {
        let key = Self::key(command_id);
        let record = CommandRecord::Claimed {
            executor: executor.to_string(),
            at: contracts::Timestamp::now().to_string(),
        };
        let bytes = serde_json::to_vec(&record).expect("records serialize");
        match self.store.create(&key, bytes.into()).await {
            Ok(revision) => Ok(Claim::New { revision }),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let entry = self
                    .store
                    .entry(&key)
                    .await
                    .map_err(|e| state_error(COMMANDS_BUCKET, format!("reading command {key}"), e))?
                    .ok_or_else(|| {
                        state_error(
                            COMMANDS_BUCKET,
                            format!("reading command {key}"),
                            "claimed but gone",
                        )
                    })?;
                let record = serde_json::from_slice(&entry.value).map_err(|e| {
                    state_error(COMMANDS_BUCKET, format!("decoding command {key}"), e)
                })?;
                Ok(Claim::Seen {
                    record,
                    revision: entry.revision,
                })
            }
            Err(e) => Err(state_error(
                COMMANDS_BUCKET,
                format!("claiming command {key}"),
                e,
            )),
        }
    }

    /// Records the final receipt; `revision` is the claim's, so two workers cannot both finish.
    pub async fn finish(
        &self,
        command_id: &uuid::Uuid,
        receipt: &Value,
        revision: u64,
    ) -> Result<(), StateError> {
        let key = Self::key(command_id);
        let bytes = serde_json::to_vec(&CommandRecord::Finished {
            receipt: receipt.clone(),
        })
        .expect("records serialize");
        self.store
            .update(&key, bytes.into(), revision)
            .await
            .map(|_| ())
            .map_err(|e| {
                state_error(
                    COMMANDS_BUCKET,
                    format!("recording the receipt of {key}"),
                    e,
                )
            })
    }

    /// The record of `command_id`, if any.
    pub async fn get(&self, command_id: &uuid::Uuid) -> Result<Option<CommandRecord>, StateError> {
        let key = Self::key(command_id);
        let value = self
            .store
            .get(&key)
            .await
            .map_err(|e| state_error(COMMANDS_BUCKET, format!("reading command {key}"), e))?;
        value
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| state_error(COMMANDS_BUCKET, format!("decoding command {key}"), e))
            })
            .transpose()
    }
}
