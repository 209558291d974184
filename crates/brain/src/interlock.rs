//! The ops interlock, read live from the key-value bucket `ops_interlock` (written by
//! ops-worker's `disarm`/`arm`/`halt`/`set_risk`; brain only reads it).
//!
//! - `armed` → `{"armed": bool, "command_id": …, "at": …}`: disarmed means observe only
//!   (effective level N0). A missing key means armed (as ops-worker reads it).
//! - `risk_ceiling` → `{"level": "N0".."N3", …}`: caps the policy's level. Missing: no cap.
//!
//! Fail closed: a value brain cannot read, or a bucket it cannot reach, counts as disarmed
//! (or, for the ceiling, N0) until it can. Changes arrive through a key-value watch, so they
//! take effect without a restart.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::watch;

use crate::policy::Level;

/// Bucket of the interlock (see `schemas/inventory.toml`).
pub const BUCKET: &str = "ops_interlock";
pub const ARMED_KEY: &str = "armed";
pub const RISK_CEILING_KEY: &str = "risk_ceiling";

/// Armed or not, and why brain thinks so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Armed {
    Armed {
        detail: Option<String>,
    },
    Disarmed {
        detail: String,
    },
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
    /// Armed, no ceiling (what an empty bucket means).
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
            ARMED_KEY => self.armed = parse_armed(value),
            RISK_CEILING_KEY => self.ceiling = value.map(parse_ceiling),
            _ => {}
        }
    }
}

#[derive(Deserialize)]
struct ArmedValue {
    armed: bool,
    #[serde(default)]
    command_id: Option<String>,
    #[serde(default)]
    at: Option<String>,
}

#[derive(Deserialize)]
struct CeilingValue {
    level: String,
    #[serde(default)]
    command_id: Option<String>,
    #[serde(default)]
    at: Option<String>,
}

fn provenance(command_id: Option<&str>, at: Option<&str>) -> String {
    match (command_id, at) {
        (Some(id), Some(at)) => format!("ops command {id} at {at}"),
        (Some(id), None) => format!("ops command {id}"),
        (None, Some(at)) => format!("an ops command at {at}"),
        (None, None) => "an ops command".to_string(),
    }
}

fn parse_armed(value: Option<&[u8]>) -> Armed {
    let Some(bytes) = value else {
        return Armed::Armed { detail: None };
    };
    match serde_json::from_slice::<ArmedValue>(bytes) {
        Ok(v) => {
            let by = provenance(v.command_id.as_deref(), v.at.as_deref());
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
        Err(e) => Armed::Unreadable {
            why: format!(
                "`{ARMED_KEY}` holds {:?}, not {{\"armed\": true|false}}: {e}",
                String::from_utf8_lossy(bytes)
            ),
        },
    }
}

fn parse_ceiling(bytes: &[u8]) -> Ceiling {
    match serde_json::from_slice::<CeilingValue>(bytes) {
        Ok(v) => match Level::parse(&v.level) {
            Some(level) => Ceiling {
                level,
                detail: format!(
                    "set by {}",
                    provenance(v.command_id.as_deref(), v.at.as_deref())
                ),
            },
            None => Ceiling {
                level: Level::N0,
                detail: format!(
                    "`{RISK_CEILING_KEY}` names level {:?}, not N0..N3: read as N0 (fail closed)",
                    v.level
                ),
            },
        },
        Err(e) => Ceiling {
            level: Level::N0,
            detail: format!(
                "`{RISK_CEILING_KEY}` holds {:?}, not {{\"level\": \"N0\"..\"N3\"}} ({e}): read as N0 (fail closed)",
                String::from_utf8_lossy(bytes)
            ),
        },
    }
}

/// The live interlock: a watch task keeps it current. Dropping it stops the task.
pub struct Interlock {
    receiver: watch::Receiver<InterlockState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Interlock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Interlock {
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
    pub async fn watch(js: jetstream::Context) -> Self {
        let initial = match read_once(&js).await {
            Ok(state) => state,
            Err(why) => {
                tracing::warn!(%why, "the ops interlock cannot be read: observing only until it can");
                InterlockState::unreadable(why)
            }
        };
        tracing::info!(state = ?initial, "ops interlock");
        let (sender, receiver) = watch::channel(initial);
        let task = tokio::spawn(watch_loop(js, sender));
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

async fn open(js: &jetstream::Context) -> Result<kv::Store, String> {
    js.get_key_value(BUCKET)
        .await
        .map_err(|e| format!("bucket `{BUCKET}` cannot be opened (is it provisioned?): {e}"))
}

async fn read_once(js: &jetstream::Context) -> Result<InterlockState, String> {
    let store = open(js).await?;
    let mut state = InterlockState::armed();
    for key in [ARMED_KEY, RISK_CEILING_KEY] {
        let value = store
            .get(key)
            .await
            .map_err(|e| format!("reading `{key}` of `{BUCKET}`: {e}"))?;
        state.apply(key, value.as_deref());
    }
    Ok(state)
}

async fn watch_loop(js: jetstream::Context, sender: watch::Sender<InterlockState>) {
    let mut delay = Duration::from_millis(500);
    loop {
        match watch_once(&js, &sender).await {
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
    js: &jetstream::Context,
    sender: &watch::Sender<InterlockState>,
) -> Result<(), String> {
    let store = open(js).await?;
    // Latest value of every key first, then every change.
    let mut entries = store
        .watch_with_history(">")
        .await
        .map_err(|e| format!("watching `{BUCKET}`: {e}"))?;
    // Start from a clean read: the watch re-delivers the current values, and a key that was
    // deleted before the watch started does not show up at all.
    let fresh = read_once(js).await?;
    sender.send_if_modified(|s| {
        let changed = *s != fresh;
        *s = fresh;
        changed
    });
    while let Some(entry) = entries.next().await {
        let entry = entry.map_err(|e| format!("watching `{BUCKET}`: {e}"))?;
        let value = match entry.operation {
            kv::Operation::Put => Some(entry.value.as_ref()),
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
        sender.send_if_modified(|s| {
            let before = s.clone();
            s.apply(&entry.key, value);
            if *s != before {
                tracing::info!(key = %entry.key, state = ?s, "ops interlock changed");
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

    #[test]
    fn values_written_by_ops_worker_are_read() {
        let mut s = InterlockState::armed();
        s.apply(
            ARMED_KEY,
            Some(br#"{"armed":false,"command_id":"c1","at":"2026-02-14T12:00:00Z"}"#),
        );
        assert_eq!(
            s.armed,
            Armed::Disarmed {
                detail: "disarmed by ops command c1 at 2026-02-14T12:00:00Z".into()
            }
        );
        s.apply(
            RISK_CEILING_KEY,
            Some(br#"{"level":"N1","command_id":"c2","at":"t"}"#),
        );
        assert_eq!(s.ceiling.as_ref().unwrap().level, Level::N1);
        s.apply(ARMED_KEY, Some(br#"{"armed":true}"#));
        assert!(matches!(s.armed, Armed::Armed { .. }));
        s.apply(RISK_CEILING_KEY, None);
        assert_eq!(s.ceiling, None);
        s.apply(ARMED_KEY, None);
        assert_eq!(s.armed, Armed::Armed { detail: None });
        s.apply("something_else", Some(b"x"));
        assert_eq!(s, InterlockState::armed());
    }

    #[test]
    fn unreadable_values_fail_closed() {
        let mut s = InterlockState::armed();
        s.apply(ARMED_KEY, Some(b"yes"));
        assert!(matches!(s.armed, Armed::Unreadable { .. }));
        s.apply(RISK_CEILING_KEY, Some(br#"{"level":"N9"}"#));
        assert_eq!(s.ceiling.as_ref().unwrap().level, Level::N0);
        s.apply(RISK_CEILING_KEY, Some(b"[]"));
        assert_eq!(s.ceiling.as_ref().unwrap().level, Level::N0);
    }
}
