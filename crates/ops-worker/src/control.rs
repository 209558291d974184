//! The control board every ops-worker instance shares (bucket `ops_control`): which cancellable
//! commands each instance has admitted (`running.<id>`), and the cancellations that `halt`,
//! `cancel_all` broadcast (`cancel.<id>`).
//!
//! Several instances share the command consumer, so the instance that handles a `halt` is
//! usually not the one running the deploy it must stop. Process memory cannot reach the others;
//! this bucket can: each instance watches the cancellations and stops what it runs, and the
//! canceller waits for the `running` keys to go before it reports.
//!
//! Which commands a cancellation covers is decided by the bucket's revisions, not by clocks: a
//! `running` key written before the cancellation (a lower revision) is covered. An instance cancels
//! every matching command it runs when it sees the cancellation, so each covered command is
//! cancelled by the instance that runs it, whichever instance handled the cancelling command.

use std::time::Duration;

use contracts::buckets::OpsControl;
use contracts::bus::{Bus, Records, RecordsError};
use contracts::services::OpsWorker;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const RUNNING: &str = "running.";
const CANCEL: &str = "cancel.";

/// A cancellable command one instance has admitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    pub command_type: String,
    pub target: String,
    /// The instance (`executor_id`) running it.
    pub worker: String,
}

/// Which commands a cancellation stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    /// Every cancellable command (`cancel_all`).
    Everything,
    /// The commands whose target overlaps this one (`halt`; `all` overlaps every target).
    Target { target: String },
}

impl Scope {
    /// Whether a command on `target` is stopped by this cancellation.
    pub fn covers(&self, target: &str) -> bool {
        match self {
            Scope::Everything => true,
            Scope::Target { target: halted } => {
                target == halted || target == "all" || halted == "all"
            }
        }
    }
}

/// A broadcast cancellation, keyed by the command that asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    /// Who cancelled, as the cancelled commands' receipts say it: `halt <id>`, …
    pub by: String,
    pub scope: Scope,
}

/// A cancellation as an instance sees it on the board.
#[derive(Debug, Clone)]
pub struct Announced {
    pub cancellation: Cancellation,
    /// Commands registered below this revision are covered.
    pub revision: u64,
}

/// The board could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("the control board: {what}")]
pub struct ControlError {
    what: String,
    #[source]
    source: RecordsError,
}

fn control_error(what: impl Into<String>) -> impl FnOnce(RecordsError) -> ControlError {
    let what = what.into();
    move |source| ControlError { what, source }
}

/// The board (bucket `ops_control`).
#[derive(Clone)]
pub struct ControlBoard {
    records: Records<OpsWorker, OpsControl>,
}

impl ControlBoard {
    /// Opens the bucket (it must be provisioned).
    pub async fn open(bus: &Bus<OpsWorker>) -> Result<Self, ControlError> {
        let records = bus
            .records::<OpsControl>()
            .await
            .map_err(control_error("opening the bucket"))?;
        Ok(Self { records })
    }

    /// Registers a command this instance admitted, before it waits for its target. Returns the
    /// revision of an earlier registration of the same id (an instance that crashed or handed
    /// the command back), which [`ControlBoard::cancelled_since`] checks.
    pub async fn register(
        &self,
        id: &Uuid,
        running: &Running,
    ) -> Result<Option<u64>, ControlError> {
        let key = running_key(id);
        let earlier = self
            .records
            .entry(&key)
            .await
            .map_err(control_error(format!("reading {key}")))?
            .filter(|e| e.value.is_some())
            .map(|e| e.revision);
        let bytes = serde_json::to_vec(running).expect("records serialize");
        self.records
            .put(&key, bytes)
            .await
            .map_err(control_error(format!("registering {id}")))?;
        Ok(earlier)
    }

    /// A cancellation announced after `revision` that covers a command on `target`: the
    /// instance that held it before may have died before it could cancel it.
    pub async fn cancelled_since(
        &self,
        target: &str,
        revision: u64,
    ) -> Result<Option<Cancellation>, ControlError> {
        let later = self
            .records::<Cancellation>(CANCEL, |r| r > revision)
            .await?;
        Ok(later
            .into_iter()
            .map(|(_, cancellation)| cancellation)
            .find(|cancellation| cancellation.scope.covers(target)))
    }

    /// The readable records under `prefix` whose revision `keep` accepts, by the rest of their
    /// key. A record this version cannot read is not ours to judge; it is left out.
    async fn records<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
        keep: impl Fn(u64) -> bool,
    ) -> Result<Vec<(String, T)>, ControlError> {
        let keys = self
            .records
            .keys()
            .await
            .map_err(control_error(format!("listing `{prefix}*`")))?;
        let mut records = Vec::new();
        for key in keys {
            let Some(rest) = key.strip_prefix(prefix) else {
                continue;
            };
            let entry = self
                .records
                .entry(&key)
                .await
                .map_err(control_error(format!("reading {key}")))?;
            let Some((revision, value)) = entry.and_then(|e| Some((e.revision, e.value?))) else {
                continue;
            };
            if !keep(revision) {
                continue;
            }
            if let Ok(record) = serde_json::from_slice::<T>(&value) {
                records.push((rest.to_string(), record));
            }
        }
        Ok(records)
    }

    /// Removes a command once its final receipt is published (or it was handed back).
    pub async fn unregister(&self, id: &Uuid) -> Result<(), ControlError> {
        self.records
            .delete(&running_key(id))
            .await
            .map_err(control_error(format!("unregistering {id}")))
    }

    /// Broadcasts `cancellation` under the id of the command that asked for it; returns the
    /// revision that orders it against the registrations.
    pub async fn announce(
        &self,
        by_command: &Uuid,
        cancellation: &Cancellation,
    ) -> Result<u64, ControlError> {
        let bytes = serde_json::to_vec(cancellation).expect("records serialize");
        self.records
            .put(&format!("{CANCEL}{}", by_command.hyphenated()), bytes)
            .await
            .map_err(control_error(format!("announcing {}", cancellation.by)))
    }

    /// The commands registered before `revision` that `scope` covers, on every instance.
    pub async fn covered(
        &self,
        scope: &Scope,
        revision: u64,
    ) -> Result<Vec<(Uuid, Running)>, ControlError> {
        let running = self.records::<Running>(RUNNING, |r| r <= revision).await?;
        let mut covered: Vec<(Uuid, Running)> = running
            .into_iter()
            .filter(|(_, running)| scope.covers(&running.target))
            .filter_map(|(id, running)| Some((id.parse().ok()?, running)))
            .collect();
        covered.sort_by_key(|(id, _)| *id);
        Ok(covered)
    }

    /// Whether the command `id` is still registered by some instance.
    pub async fn is_running(&self, id: &Uuid) -> Result<bool, ControlError> {
        let key = running_key(id);
        self.records
            .value(&key)
            .await
            .map(|value| value.is_some())
            .map_err(control_error(format!("reading {key}")))
    }

    /// Calls `on` with every cancellation announced from now on, with its revision, until the
    /// task is dropped. A watch that fails is resumed after the last revision seen, so none is
    /// missed while the connection is down.
    pub async fn follow_cancellations(&self, mut on: impl FnMut(Announced)) {
        let mut last: Option<u64> = None;
        let filter = format!("{CANCEL}>");
        loop {
            let watch = self.records.watch(&filter, last.map(|r| r + 1)).await;
            let mut watch = match watch {
                Ok(watch) => watch,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the cancellations; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            while let Some(entry) = watch.next().await {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) => {
                        tracing::warn!(error = %e, "the cancellations watch failed; resuming");
                        break;
                    }
                };
                last = Some(entry.revision);
                let Some(value) = entry.value else {
                    continue;
                };
                match serde_json::from_slice::<Cancellation>(&value) {
                    Ok(cancellation) => on(Announced {
                        cancellation,
                        revision: entry.revision,
                    }),
                    Err(e) => {
                        tracing::warn!(key = %entry.key, error = %e, "ignored an unreadable cancellation")
                    }
                }
            }
        }
    }
}

fn running_key(id: &Uuid) -> String {
    format!("{RUNNING}{}", id.hyphenated())
}
