//! The ops interlock, read live from the key-value bucket `ops_interlock` through the typed
//! bucket handle of `contracts::buckets::OpsInterlock` (brain is a reader: it cannot write it;
//! ops-worker's `disarm`/`arm`/`halt`/`set_risk` and provisioning do). The values are
//! contracts generated from `schemas/titan/`:
//!
//! - `armed` → [`InterlockArmed`]: disarmed means observe only (effective level N0).
//! - `risk_ceiling` → [`InterlockRiskCeiling`]: caps the policy's level. Missing: no cap.
//!
//! Fail closed: a missing `armed` record (never written, or deleted), a value that breaks its
//! schema, or a bucket brain cannot reach all count as disarmed (and an unreadable ceiling as
//! N0) until it can read an `armed: true` record. Changes arrive through a key-value watch, so
//! they take effect without a restart.

use std::time::Duration;

use contracts::buckets::OpsInterlock;
use contracts::bus::{BucketHandle, Bus};
use contracts::generated::interlock_armed_v1::InterlockArmedSetBy;
use contracts::generated::interlock_risk_ceiling_v1::{
    InterlockRiskCeilingLevel, InterlockRiskCeilingSetBy,
};
use contracts::services;
use contracts::{InterlockArmed, InterlockRiskCeiling, KeyValue};
use futures::StreamExt;
use tokio::sync::watch;

use crate::policy::Level;

/// Key of the armed record (from the inventory, through the generated binding).
pub const ARMED_KEY: &str = <InterlockArmed as KeyValue<OpsInterlock>>::KEY;
/// Key of the autonomy ceiling.
pub const RISK_CEILING_KEY: &str = <InterlockRiskCeiling as KeyValue<OpsInterlock>>::KEY;

/// Armed or not, and why brain thinks so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Armed {
    Armed {
        detail: Option<String>,
    },
    Disarmed {
        detail: String,
    },
    /// There is no `armed` record (never written, or deleted): brain observes only until
    /// ops-worker writes one.
    Missing,
    /// The interlock cannot be read: brain observes only until it can.
    Unreadable {
        why: String,
    },
}

/// The autonomy ceiling set by `set_risk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceiling {
    pub level: Level,
    pub detail: String,
}

/// What brain knows of the interlock right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterlockState {
    pub armed: Armed,
    pub ceiling: Option<Ceiling>,
}

impl InterlockState {
    /// Armed, no ceiling (an `armed: true` record and no `risk_ceiling`).
    pub fn armed() -> Self {
        Self {
            armed: Armed::Armed { detail: None },
            ceiling: None,
        }
    }

    pub fn disarmed(detail: &str) -> Self {
        Self {
            armed: Armed::Disarmed {
                detail: detail.to_string(),
            },
            ceiling: None,
        }
    }

    /// No `armed` record and no ceiling: what an empty bucket means (disarmed, fail closed).
    pub fn missing() -> Self {
        Self {
            armed: Armed::Missing,
            ceiling: None,
        }
    }

    pub fn unreadable(why: impl Into<String>) -> Self {
        Self {
            armed: Armed::Unreadable { why: why.into() },
            ceiling: None,
        }
    }

    pub fn with_ceiling(mut self, level: Level, detail: &str) -> Self {
        self.ceiling = Some(Ceiling {
            level,
            detail: detail.to_string(),
        });
        self
    }

    /// Applies one key's new value (`None`: deleted or purged).
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) {
        match key {
            ARMED_KEY => {
                self.armed = armed_from(value.map(|b| decode_raw::<InterlockArmed>(key, b)))
            }
            RISK_CEILING_KEY => {
                self.ceiling =
                    value.map(|b| ceiling_from(decode_raw::<InterlockRiskCeiling>(key, b)))
            }
            _ => {}
        }
    }
}

/// Who wrote a record, in words. `set_by` names the writer; `by_provisioning` is whether that
/// is provisioning (each record has its own generated `set_by` enum, matched by the caller).
fn provenance(
    set_by: &dyn std::fmt::Display,
    by_provisioning: bool,
    command_id: Option<uuid::Uuid>,
    set_at: &contracts::Timestamp,
) -> String {
    match command_id {
        Some(id) => format!("ops command {id} at {set_at}"),
        None if by_provisioning => format!("provisioning at {set_at}"),
        None => format!("{set_by} at {set_at}"),
    }
}

/// The armed state from a read of `armed`: `None` absent, `Some(Err(why))` unreadable.
fn armed_from(read: Option<Result<InterlockArmed, String>>) -> Armed {
    match read {
        None => Armed::Missing,
        Some(Err(why)) => Armed::Unreadable { why },
        Some(Ok(v)) => {
            let by = provenance(
                &v.set_by,
                v.set_by == InterlockArmedSetBy::Provisioning,
                v.command_id,
                &v.set_at,
            );
            if v.armed {
                Armed::Armed {
                    detail: Some(format!("armed by {by}")),
                }
            } else {
                Armed::Disarmed {
                    detail: format!("disarmed by {by}"),
                }
            }
        }
    }
}

/// The ceiling from a read of `risk_ceiling` that found a value (`Err(why)`: unreadable).
fn ceiling_from(read: Result<InterlockRiskCeiling, String>) -> Ceiling {
    match read {
        Ok(v) => Ceiling {
            level: match v.level {
                InterlockRiskCeilingLevel::N0 => Level::N0,
                InterlockRiskCeilingLevel::N1 => Level::N1,
                InterlockRiskCeilingLevel::N2 => Level::N2,
                InterlockRiskCeilingLevel::N3 => Level::N3,
            },
            detail: format!(
                "set by {}",
                provenance(
                    &v.set_by,
                    v.set_by == InterlockRiskCeilingSetBy::Provisioning,
                    v.command_id,
                    &v.set_at
                )
            ),
        },
        Err(why) => Ceiling {
            level: Level::N0,
            detail: format!("{why}: read as N0 (fail closed)"),
        },
    }
}

/// Decodes raw bytes of a key (from the watch) with the value's schema.
fn decode_raw<T: contracts::Contract>(key: &str, bytes: &[u8]) -> Result<T, String> {
    contracts::decode::<T>(bytes).map_err(|e| {
        format!(
            "`{key}` holds {:?}, not a valid `schemas/{}` record: {e}",
            String::from_utf8_lossy(bytes),
            T::INFO.schema_path,
        )
    })
}

/// Brain's live view of the interlock records ops-worker writes (ops-worker's own
/// `state::Interlock` is the writer's side): a watch task keeps it current. Dropping it stops
/// the task.
pub struct InterlockWatch {
    receiver: watch::Receiver<InterlockState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for InterlockWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl InterlockWatch {
    /// A fixed interlock (tests, and `brain check`).
    pub fn fixed(state: InterlockState) -> Self {
        let (sender, receiver) = watch::channel(state);
        let task = tokio::spawn(async move {
            // Keep the sender alive as long as the handle.
            sender.closed().await;
        });
        Self { receiver, task }
    }

    /// Reads the bucket once, then watches it. If the bucket cannot be read, the state is
    /// [`Armed::Unreadable`] (observe only) and the task keeps trying.
    pub async fn watch(bus: Bus<services::Brain>) -> Self {
        let initial = match read_once(&bus).await {
            Ok(state) => state,
            Err(why) => {
                tracing::warn!(%why, "the ops interlock cannot be read: observing only until it can");
                InterlockState::unreadable(why)
            }
        };
        if initial.armed == Armed::Missing {
            tracing::warn!("the ops interlock has no `armed` record: observing only until ops-worker writes one (`arm`)");
        }
        tracing::info!(state = ?initial, "ops interlock");
        let (sender, receiver) = watch::channel(initial);
        let task = tokio::spawn(watch_loop(bus, sender));
        tokio::spawn(export_armed(receiver.clone()));
        Self { receiver, task }
    }

    /// The state now.
    pub fn current(&self) -> InterlockState {
        self.receiver.borrow().clone()
    }

    /// A receiver that sees every change (tests wait on it).
    pub fn subscribe(&self) -> watch::Receiver<InterlockState> {
        self.receiver.clone()
    }
}

type Handle = BucketHandle<services::Brain, OpsInterlock>;

async fn open(bus: &Bus<services::Brain>) -> Result<Handle, String> {
    bus.bucket::<OpsInterlock>()
        .await
        .map_err(|e| e.to_string())
}

/// Reads both keys. A value that breaks its schema is not an error here: it becomes the
/// fail-closed state of its key. An error is a bucket brain cannot read at all.
async fn read_state(bucket: &Handle) -> Result<InterlockState, String> {
    use contracts::bus::BucketErrorKind::Unreadable;
    let mut state = InterlockState::missing();
    state.armed = match bucket.get::<InterlockArmed>().await {
        Ok(value) => armed_from(value.map(Ok)),
        Err(e) if e.kind() == Unreadable => armed_from(Some(Err(e.to_string()))),
        Err(e) => return Err(e.to_string()),
    };
    state.ceiling = match bucket.get::<InterlockRiskCeiling>().await {
        Ok(value) => value.map(|v| ceiling_from(Ok(v))),
        Err(e) if e.kind() == Unreadable => Some(ceiling_from(Err(e.to_string()))),
        Err(e) => return Err(e.to_string()),
    };
    Ok(state)
}

async fn read_once(bus: &Bus<services::Brain>) -> Result<InterlockState, String> {
    read_state(&open(bus).await?).await
}

/// `orion_interlock_armed` follows the state until the watch ends.
async fn export_armed(mut changes: watch::Receiver<InterlockState>) {
    loop {
        let armed = matches!(changes.borrow_and_update().armed, Armed::Armed { .. });
        contracts::metrics::INTERLOCK_ARMED.set(&[], if armed { 1.0 } else { 0.0 });
        if changes.changed().await.is_err() {
            return;
        }
    }
}

async fn watch_loop(bus: Bus<services::Brain>, sender: watch::Sender<InterlockState>) {
    let mut delay = Duration::from_millis(500);
    loop {
        match watch_once(&bus, &sender).await {
            Ok(()) => tracing::warn!("the ops interlock watch ended; watching again"),
            Err(why) => {
                tracing::warn!(%why, "the ops interlock cannot be watched; observing only until it can");
                sender.send_modify(|s| *s = InterlockState::unreadable(why.clone()));
            }
        }
        if sender.is_closed() {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Watches until the stream ends or fails; every entry updates the state.
async fn watch_once(
    bus: &Bus<services::Brain>,
    sender: &watch::Sender<InterlockState>,
) -> Result<(), String> {
    let bucket = open(bus).await?;
    // Latest value of every key first, then every change.
    let mut changes = bucket.watch().await.map_err(|e| e.to_string())?;
    // Start from a clean read: the watch re-delivers the current values, and a key that was
    // deleted before the watch started does not show up at all.
    let fresh = read_state(&bucket).await?;
    sender.send_if_modified(|s| {
        let changed = *s != fresh;
        *s = fresh;
        changed
    });
    while let Some(change) = changes.next().await {
        let change = change.map_err(|e| e.to_string())?;
        sender.send_if_modified(|s| {
            let before = s.clone();
            s.apply(&change.key, change.value.as_deref());
            if *s != before {
                tracing::info!(key = %change.key, state = ?s, "ops interlock changed");
                true
            } else {
                false
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const C1: &str = "7d3f2b1e-5c4a-4e8f-9b2d-1a6c8e0f3b51";

    #[test]
    fn values_written_by_ops_worker_are_read() {
        let mut s = InterlockState::missing();
        let disarmed =
            contracts::encode(&InterlockArmed::by_command(false, C1.parse().unwrap())).unwrap();
        s.apply(ARMED_KEY, Some(&disarmed));
        let Armed::Disarmed { detail } = &s.armed else {
            panic!("{:?}", s.armed)
        };
        assert!(
            detail.starts_with(&format!("disarmed by ops command {C1} at ")),
            "{detail}"
        );
        s.apply(
            RISK_CEILING_KEY,
            Some(
                format!(r#"{{"v":1,"level":"N1","set_by":"ops_command","command_id":"{C1}","set_at":"2026-02-14T12:00:00Z"}}"#)
                    .as_bytes(),
            ),
        );
        assert_eq!(s.ceiling.as_ref().unwrap().level, Level::N1);
        s.apply(
            ARMED_KEY,
            Some(&contracts::encode(&InterlockArmed::provisioned()).unwrap()),
        );
        let Armed::Armed { detail } = &s.armed else {
            panic!("{:?}", s.armed)
        };
        assert!(detail
            .as_deref()
            .unwrap()
            .starts_with("armed by provisioning at "));
        s.apply(RISK_CEILING_KEY, None);
        assert_eq!(s.ceiling, None);
        s.apply("something_else", Some(b"x"));
        assert!(matches!(s.armed, Armed::Armed { .. }));
    }

    #[test]
    fn a_missing_armed_record_is_disarmed() {
        let mut s = InterlockState::armed();
        s.apply(ARMED_KEY, None);
        assert_eq!(s.armed, Armed::Missing);
        assert_eq!(InterlockState::missing().armed, Armed::Missing);
    }

    #[test]
    fn unreadable_values_fail_closed() {
        let mut s = InterlockState::armed();
        s.apply(ARMED_KEY, Some(b"yes"));
        assert!(matches!(s.armed, Armed::Unreadable { .. }));
        // A record of the layout before contract set 1.1 (no `v`) said armed: unreadable now.
        s.apply(
            ARMED_KEY,
            Some(br#"{"armed":true,"command_id":"c1","at":"2026-02-14T12:00:00Z"}"#),
        );
        let Armed::Unreadable { why } = &s.armed else {
            panic!("{:?}", s.armed)
        };
        assert!(why.contains("interlock_armed.v1.schema.json"), "{why}");
        s.apply(RISK_CEILING_KEY, Some(br#"{"level":"N9"}"#));
        assert_eq!(s.ceiling.as_ref().unwrap().level, Level::N0);
        s.apply(RISK_CEILING_KEY, Some(b"[]"));
        assert_eq!(s.ceiling.as_ref().unwrap().level, Level::N0);
    }
}
