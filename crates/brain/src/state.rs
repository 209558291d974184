//! brain's durable state in the key-value bucket `brain_state` (brain is its only writer and
//! reader; the layout below is also declared in `schemas/inventory.toml`). Keys:
//!
//! | key | value |
//! | --- | --- |
//! | `limits.<action_type>.<target>` | [`LimitState`]: actions (cooldown, rate), failures (breaker), the waiting request, the last denial |
//! | `request.<approval_request_id>` | [`RequestRecord`]: the request as published, its limits, and how it was settled |
//! | `action.<action_id>` | [`ActionRecord`]: action type and target, until the action's outcome arrives |
//! | `outbox.<scope>.<id>` | [`Outbox`]: the effects of one message, written before anything is published |
//!
//! Targets are escaped for keys: characters other than letters, digits, `_` and `-` become
//! `=XX` (hex of each UTF-8 byte).
//!
//! Every message brain handles goes through an outbox: the effects (messages to publish, with
//! their ids) and state changes are decided once and stored under a key derived from the
//! message (its stream sequence), then applied, then published, then the message is acked; the
//! outbox stays an hour more (a confirmed ack can be lost with a cluster node, and the message
//! come again) and the rescan prunes it. A redelivery after a crash or a lost ack finds the
//! outbox and replays exactly the same effects (the server drops re-published ids within its duplicate window; commander is
//! idempotent per action id), so nothing is lost or done twice. State changes are idempotent;
//! the first one of an outbox is conditional on the revision brain decided with, so two
//! instances cannot both act on stale state. That is also why an incident's decision may start
//! from the limits this process last read or wrote ([`StateStore::last_limits`], no read): if
//! another instance wrote them since, the decision's first change conflicts, and brain forgets
//! them and decides again from the stored state. A decision that changes no limits is always
//! made on a fresh read. A limit key that did not exist when brain started and that it has not
//! seen since counts as absent, on the same terms.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use contracts::buckets::BrainState;
use contracts::bus::{Bus, Entry, Records, RecordsError};
use contracts::services::Brain;
use contracts::{Action, ApprovalRequest, Decision, Outcome, Timestamp};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::limits::{ActionMark, DenialMark, LimitState, RequestMark};
use crate::policy::LimitKey;
use crate::records::{RequestRecord, Settlement};

/// The bucket (see `schemas/inventory.toml`).
pub const BUCKET: &str = <contracts::buckets::BrainState as contracts::Bucket>::INFO.name;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("brain's state: {what}")]
    Store {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Someone else changed the key since it was read.
    #[error("key-value `{BUCKET}`: `{key}` changed since it was read")]
    Conflict { key: String },
}

fn store_error(
    what: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> StateError {
    StateError::Store {
        what: what.into(),
        source: Box::new(source),
    }
}

/// A value and the revision it was read at (`None`: never written, or deleted).
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: Option<T>,
    /// Revision of the key's last entry (a deletion marker included); `None` if never written.
    pub revision: Option<u64>,
}

impl<T> Versioned<T> {
    /// What a conditional write must find.
    pub fn expect(&self) -> Expect {
        match (self.value.is_some(), self.revision) {
            (true, Some(revision)) => Expect::Revision(revision),
            _ => Expect::Absent,
        }
    }
}

/// The condition of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Whatever is there (read-modify-write, retried on conflict).
    Any,
    /// The key must have no value.
    Absent,
    /// The key must still be at this revision.
    Revision(u64),
}

/// A message brain will publish.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum Effect {
    Decision(Box<Decision>),
    Action(Box<Action>),
    ApprovalRequest(Box<ApprovalRequest>),
}

impl Effect {
    /// The incident this effect answers (an action or request names it when it has one).
    pub fn incident_id(&self) -> Option<uuid::Uuid> {
        match self {
            Effect::Decision(d) => Some(d.incident_id),
            Effect::Action(a) => a.parameters.incident_id,
            Effect::ApprovalRequest(r) => r.incident_id,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Effect::Decision(d) => format!("decision {} {}", d.decision_id, d.decision_type),
            Effect::Action(a) => format!("action {} {}", a.action_id, a.action_type),
            Effect::ApprovalRequest(r) => format!("approval request {}", r.approval_request_id),
        }
    }
}

/// A change to brain's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mutation {
    /// An action was emitted on `key` (and, if it answers one, its request no longer waits).
    RecordAction {
        key: LimitKey,
        mark: ActionMark,
        #[serde(default)]
        answers_request: Option<Uuid>,
        expect: Expect,
    },
    /// An approval request was made for `key`.
    OpenRequest {
        key: LimitKey,
        mark: RequestMark,
        record: Box<RequestRecord>,
        expect: Expect,
    },
    /// A signed decision for a request was refused: remember it, so a replay never counts.
    RecordRefusal {
        request_id: Uuid,
        refusal: crate::records::RefusedAnswer,
    },
    /// A request was settled (`expect` is the request record's revision).
    SettleRequest {
        request_id: Uuid,
        key: LimitKey,
        settlement: Settlement,
        #[serde(default)]
        denial: Option<DenialMark>,
        expect: Expect,
    },
}

/// The effects of one message, stored before they happen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outbox {
    pub created_at: Timestamp,
    pub mutations: Vec<Mutation>,
    pub effects: Vec<Effect>,
}

/// What brain remembers about an action until its outcome arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub key: LimitKey,
    pub at: Timestamp,
}

/// What an outcome changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeEffect {
    /// Not an action brain knows (not brain's, or its outcome was already counted).
    Unknown,
    /// Counted for the breaker of `key` (`failure`: it failed or was rolled back).
    Counted { key: LimitKey, failure: bool },
}

/// Escapes a target for a key: `[A-Za-z0-9_-]` stay, every other byte becomes `=XX`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("={byte:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("=00");
    }
    out
}

pub fn limits_key(key: &LimitKey) -> String {
    format!(
        "limits.{}.{}",
        escape(&key.action_type),
        escape(&key.target)
    )
}

pub fn request_key(id: Uuid) -> String {
    format!("request.{id}")
}

pub fn action_key(id: Uuid) -> String {
    format!("action.{id}")
}

pub fn outbox_key(scope: &str, id: impl std::fmt::Display) -> String {
    format!("outbox.{scope}.{id}")
}

/// How many times a read-modify-write is retried when another writer got there first.
const RETRIES: usize = 8;

/// How many limit keys [`StateStore`] remembers as last written before it starts over (one per
/// action type and target: far more than a deployment has). After a start over, a key seen
/// before is read again; one created since the start may be taken as absent once more, which at
/// worst costs a conflict.
const LIMITS_REMEMBERED: usize = 4096;

/// The `brain_state` bucket.
#[derive(Clone)]
pub struct StateStore {
    kv: Records<Brain, BrainState>,
    /// Each limit key as this process last read or wrote it, with its revision (`None`: the
    /// last write failed, read it again). Only a start for a conditional write: another
    /// instance may have written since, and the write then fails its condition.
    last_limits: Arc<Mutex<HashMap<String, Option<Versioned<LimitState>>>>>,
    /// The limit keys that held a value when this process started ([`StateStore::learn_limit_keys`]):
    /// any other key it has not seen is taken as absent.
    stored_at_start: Arc<OnceLock<HashSet<String>>>,
}

impl StateStore {
    pub async fn open(bus: &Bus<Brain>) -> Result<Self, StateError> {
        let kv = bus
            .records::<BrainState>()
            .await
            .map_err(|e| store_error("opening the bucket", e))?;
        Ok(Self {
            kv,
            last_limits: Arc::default(),
            stored_at_start: Arc::default(),
        })
    }

    async fn read<T: DeserializeOwned>(&self, key: &str) -> Result<Versioned<T>, StateError> {
        let entry = self
            .kv
            .entry(key)
            .await
            .map_err(|e| store_error(format!("reading `{key}`"), e))?;
        match entry {
            None => Ok(Versioned {
                value: None,
                revision: None,
            }),
            Some(Entry {
                value: None,
                revision,
                ..
            }) => Ok(Versioned {
                value: None,
                revision: Some(revision),
            }),
            Some(Entry {
                value: Some(bytes),
                revision,
                ..
            }) => {
                let value = serde_json::from_slice(&bytes)
                    .map_err(|e| store_error(format!("decoding `{key}`"), e))?;
                Ok(Versioned {
                    value: Some(value),
                    revision: Some(revision),
                })
            }
        }
    }

    /// Writes `value` at `key` if the key is as `read` found it.
    async fn write<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        read_revision: Option<u64>,
    ) -> Result<u64, StateError> {
        let bytes = serde_json::to_vec(value).expect("state values serialize");
        let written = match read_revision {
            None => self.kv.create(key, bytes).await,
            Some(revision) => self.kv.update(key, bytes, revision).await,
        };
        written.map_err(|e: RecordsError| {
            if e.is_conflict() {
                StateError::Conflict { key: key.into() }
            } else {
                store_error(format!("writing `{key}`"), e)
            }
        })
    }

    /// Read-modify-write of `key` under `expect`; `change` returns whether it changed anything.
    async fn modify<T, F>(&self, key: &str, expect: Expect, change: F) -> Result<(), StateError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(&mut Option<T>) -> bool,
    {
        self.modify_from(key, expect, None, change).await.map(drop)
    }

    /// [`StateStore::modify`] starting from `known`, the value as just read (so the first try
    /// costs one write, not a read and a write). Safe with any `known`: every write is
    /// conditional on the revision it was computed from, and a conflict reads again. Returns
    /// the key as it now stands.
    async fn modify_from<T, F>(
        &self,
        key: &str,
        expect: Expect,
        mut known: Option<Versioned<T>>,
        mut change: F,
    ) -> Result<Versioned<T>, StateError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(&mut Option<T>) -> bool,
    {
        for _ in 0..RETRIES {
            let current: Versioned<T> = match known.take() {
                Some(known) => known,
                None => self.read(key).await?,
            };
            match expect {
                Expect::Any => {}
                Expect::Absent if current.value.is_some() => {
                    return Err(StateError::Conflict { key: key.into() })
                }
                Expect::Absent => {}
                Expect::Revision(r) if current.revision != Some(r) || current.value.is_none() => {
                    return Err(StateError::Conflict { key: key.into() })
                }
                Expect::Revision(_) => {}
            }
            let mut value = current.value;
            if !change(&mut value) {
                return Ok(Versioned {
                    value,
                    revision: current.revision,
                });
            }
            let Some(value) = value else {
                return Ok(Versioned {
                    value: None,
                    revision: current.revision,
                });
            };
            match self.write(key, &value, current.revision).await {
                Ok(revision) => {
                    return Ok(Versioned {
                        value: Some(value),
                        revision: Some(revision),
                    })
                }
                Err(StateError::Conflict { .. }) if expect == Expect::Any => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StateError::Conflict { key: key.into() })
    }

    /// The limits of `key` as stored now (one read).
    pub async fn limits(&self, key: &LimitKey) -> Result<Versioned<LimitState>, StateError> {
        let key = limits_key(key);
        let limits = self.read(&key).await;
        self.note_limits(&key, &limits);
        limits
    }

    /// The limits of `key` as this process last read or wrote them, if it has: where a decision
    /// may start without a read, because what it changes is written only if the key is still at
    /// that revision. Another instance may have written since, so a decision that changes
    /// nothing must not rest on it.
    pub fn last_limits(&self, key: &LimitKey) -> Option<Versioned<LimitState>> {
        let key = limits_key(key);
        match self.remembered().get(&key) {
            Some(remembered) => remembered.clone(),
            None => match self.stored_at_start.get() {
                Some(stored) if !stored.contains(&key) => Some(Versioned {
                    value: None,
                    revision: None,
                }),
                _ => None,
            },
        }
    }

    /// Lists the limit keys stored now, so that [`StateStore::last_limits`] can take every
    /// other key as absent (a decision on a new target then starts without a read; if another
    /// instance wrote it since, its first write conflicts as with any stale start).
    pub async fn learn_limit_keys(&self) -> Result<(), StateError> {
        let stored = self.keys("limits.").await?.into_iter().collect();
        let _ = self.stored_at_start.set(stored);
        Ok(())
    }

    fn remembered(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Option<Versioned<LimitState>>>> {
        // A panic while holding the lock leaves a map of whole entries: still usable.
        self.last_limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers a limit key as read or written, or forgets it when the read or write failed
    /// (a conflict included: someone else wrote it).
    fn note_limits(&self, key: &str, limits: &Result<Versioned<LimitState>, StateError>) {
        let mut remembered = self.remembered();
        if remembered.len() >= LIMITS_REMEMBERED && !remembered.contains_key(key) {
            remembered.clear();
        }
        remembered.insert(key.to_string(), limits.as_ref().ok().cloned());
    }

    /// [`StateStore::modify_from`] of a limit key, remembered for [`StateStore::last_limits`].
    async fn modify_limits<F>(
        &self,
        key: &LimitKey,
        expect: Expect,
        known: Option<Versioned<LimitState>>,
        change: F,
    ) -> Result<(), StateError>
    where
        F: FnMut(&mut Option<LimitState>) -> bool,
    {
        let key = limits_key(key);
        let limits = self.modify_from(&key, expect, known, change).await;
        self.note_limits(&key, &limits);
        limits.map(drop)
    }

    pub async fn request(&self, id: Uuid) -> Result<Versioned<RequestRecord>, StateError> {
        self.read(&request_key(id)).await
    }

    pub async fn action(&self, id: Uuid) -> Result<Option<ActionRecord>, StateError> {
        Ok(self.read(&action_key(id)).await?.value)
    }

    pub async fn outbox(&self, key: &str) -> Result<Option<Outbox>, StateError> {
        Ok(self.read(key).await?.value)
    }

    /// Stores `outbox` at `key` unless one is there; returns the one that is there if so.
    pub async fn claim_outbox(
        &self,
        key: &str,
        outbox: &Outbox,
    ) -> Result<Option<Outbox>, StateError> {
        match self.write(key, outbox, None).await {
            Ok(_) => Ok(None),
            Err(StateError::Conflict { .. }) => match self.outbox(key).await? {
                Some(existing) => Ok(Some(existing)),
                // Deleted in between: a finished outbox; store ours after all.
                None => {
                    let current: Versioned<Outbox> = self.read(key).await?;
                    self.write(key, outbox, current.revision)
                        .await
                        .map(|_| None)
                }
            },
            Err(e) => Err(e),
        }
    }

    /// The limit key of an action brain sent, for its outcome to count against.
    async fn record_action(&self, key: &LimitKey, mark: &ActionMark) -> Result<(), StateError> {
        let record = ActionRecord {
            key: key.clone(),
            at: mark.at,
        };
        let bytes = serde_json::to_vec(&record).expect("records serialize");
        self.kv
            .put(&action_key(mark.action_id), bytes)
            .await
            .map(|_| ())
            .map_err(|e| store_error(format!("writing `{}`", action_key(mark.action_id)), e))
    }

    pub async fn delete(&self, key: &str) -> Result<(), StateError> {
        self.kv
            .delete(key)
            .await
            .map_err(|e| store_error(format!("deleting `{key}`"), e))
    }

    /// Every key (with a value) that starts with `prefix`.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        let keys = self
            .kv
            .keys()
            .await
            .map_err(|e| store_error("listing keys", e))?;
        Ok(keys
            .into_iter()
            .filter(|key| key.starts_with(prefix))
            .collect())
    }

    /// Applies one mutation. With `first`, its expectation holds (a conflict means someone
    /// else changed the state since brain decided); on replay every mutation is idempotent.
    /// `known_limits` is the limit state brain decided on, read a moment ago: a limit change
    /// starts from it instead of reading it again.
    pub async fn apply(
        &self,
        mutation: &Mutation,
        first: bool,
        known_limits: Option<Versioned<LimitState>>,
    ) -> Result<(), StateError> {
        let now = Timestamp::now();
        let expect = |e: Expect| if first { e } else { Expect::Any };
        match mutation {
            Mutation::RecordAction {
                key,
                mark,
                answers_request,
                expect: e,
            } => {
                let limits = self.modify_limits(
                    key,
                    expect(*e),
                    known_limits,
                    |state: &mut Option<LimitState>| {
                        state.get_or_insert_with(LimitState::default).note_action(
                            mark.clone(),
                            *answers_request,
                            now,
                        )
                    },
                );
                // Two keys, written together: one round trip instead of two. Nothing is
                // published before both are stored, and a replay writes both again.
                let (limits, record) = tokio::join!(limits, self.record_action(key, mark));
                if let Err(e) = limits {
                    if first && matches!(e, StateError::Conflict { .. }) {
                        // brain decides again, with a new action: this one never goes out.
                        let _ = self.delete(&action_key(mark.action_id)).await;
                    }
                    return Err(e);
                }
                record
            }
            Mutation::OpenRequest {
                key,
                mark,
                record,
                expect: e,
            } => {
                self.modify_limits(
                    key,
                    expect(*e),
                    known_limits,
                    |state: &mut Option<LimitState>| {
                        state
                            .get_or_insert_with(LimitState::default)
                            .note_request(mark.clone(), now)
                    },
                )
                .await?;
                let key = request_key(record.id());
                match self.write(&key, record, None).await {
                    Ok(_) | Err(StateError::Conflict { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Mutation::RecordRefusal {
                request_id,
                refusal,
            } => {
                self.modify(
                    &request_key(*request_id),
                    Expect::Any,
                    |record: &mut Option<RequestRecord>| match record {
                        Some(record) if record.refusal_of(refusal.approval_id).is_none() => {
                            record.refused.push(refusal.clone());
                            true
                        }
                        // Recorded already (a redelivery), or pruned: nothing to add.
                        _ => false,
                    },
                )
                .await
            }
            Mutation::SettleRequest {
                request_id,
                key,
                settlement,
                denial,
                expect: e,
            } => {
                let request_key = request_key(*request_id);
                let mut settled_otherwise = false;
                self.modify(
                    &request_key,
                    expect(*e),
                    |record: &mut Option<RequestRecord>| {
                        let Some(record) = record else {
                            // Pruned long after it was settled: nothing to settle.
                            settled_otherwise = true;
                            return false;
                        };
                        match &record.settlement {
                            Some(existing) if existing == settlement => false,
                            Some(_) => {
                                settled_otherwise = true;
                                false
                            }
                            None => {
                                record.settlement = Some(settlement.clone());
                                true
                            }
                        }
                    },
                )
                .await?;
                if settled_otherwise {
                    return Err(StateError::Conflict { key: request_key });
                }
                self.modify_limits(key, Expect::Any, None, |state: &mut Option<LimitState>| {
                    let state = state.get_or_insert_with(LimitState::default);
                    let before = state.clone();
                    state.settle_request(*request_id, denial.clone());
                    *state != before
                })
                .await
            }
        }
    }

    /// Counts `outcome` for the breaker of its action's target, then forgets the action.
    pub async fn record_outcome(&self, outcome: &Outcome) -> Result<OutcomeEffect, StateError> {
        let Some(record) = self.action(outcome.action_id).await? else {
            return Ok(OutcomeEffect::Unknown);
        };
        let failure = crate::approvals::failure_of(outcome);
        let counted = failure.is_some();
        if let Some(mark) = failure {
            let now = Timestamp::now();
            self.modify_limits(
                &record.key,
                Expect::Any,
                None,
                |state: &mut Option<LimitState>| {
                    state
                        .get_or_insert_with(LimitState::default)
                        .note_failure(mark.clone(), now)
                },
            )
            .await?;
        }
        self.delete(&action_key(outcome.action_id)).await?;
        Ok(OutcomeEffect::Counted {
            key: record.key,
            failure: counted,
        })
    }
}

/// How long settled requests and left-over outboxes are kept.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_and_unambiguous() {
        assert_eq!(escape("web"), "web");
        assert_eq!(escape("api.v2"), "api=2Ev2");
        assert_eq!(escape("gw 7/α"), "gw=207=2F=CE=B1");
        assert_eq!(escape(""), "=00");
        let key = limits_key(&LimitKey {
            action_type: "restart_service".into(),
            target: "payments.api:8080".into(),
        });
        assert_eq!(key, "limits.restart_service.payments=2Eapi=3A8080");
        assert!(key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=.".contains(c)));
    }

    #[test]
    fn outboxes_round_trip() {
        let outbox = Outbox {
            created_at: Timestamp::now(),
            mutations: vec![Mutation::RecordAction {
                key: LimitKey {
                    action_type: "restart_service".into(),
                    target: "web".into(),
                },
                mark: ActionMark {
                    action_id: Uuid::from_u128(1),
                    at: Timestamp::now(),
                    incident_id: Uuid::from_u128(2),
                    approval_id: None,
                },
                answers_request: None,
                expect: Expect::Revision(7),
            }],
            effects: vec![],
        };
        let text = serde_json::to_string(&outbox).unwrap();
        let back: Outbox = serde_json::from_str(&text).unwrap();
        assert!(matches!(
            &back.mutations[0],
            Mutation::RecordAction {
                expect: Expect::Revision(7),
                ..
            }
        ));
    }
}
