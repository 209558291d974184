//! The Docker engine's own account of a chaos run: each workload container's id, the starts
//! Docker reported for it (its events API, followed live) and its `State.StartedAt` — checked
//! against the restart commands and their receipts.
//!
//! What can be asserted exactly, and what only as a bound: a restart command whose final
//! receipt is a success ran exactly once on the containers it lists, so Docker recorded one
//! start of each within the command's execution (from its pending receipt, or its issue time
//! when the pending receipt was lost, to its final receipt). A command whose final receipt is a
//! failure may have started a container once or not at all: an `interrupted` one was cut off
//! by the worker's death, possibly after Docker had been asked (Docker finishes a restart it
//! was asked for), and a timed-out Docker call may still complete. So each container's starts
//! lie between the successful restarts naming it and that plus the failed restarts of its
//! service; every start falls within some restart command's execution; and if a command had
//! run twice, its container would have one start more than the commands can account for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use bollard::query_parameters::{EventsOptions, InspectContainerOptions};
use bollard::Docker;
use futures::StreamExt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::ledger::{Findings, Ledger};
use crate::workload::Workload;

/// Clock slack when comparing Docker's event times with receipt times (one host, one clock;
/// receipts carry milliseconds).
const SLACK_NS: i128 = 5_000_000;
/// How long after a failed restart's receipt Docker may still start the container: a Docker
/// call that timed out is reported at once, while the engine may finish it later.
const LATE_START_NS: i128 = 30_000_000_000;

/// A workload's one container before the run.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub service: String,
    pub id: String,
    pub name: String,
    /// Unix time in nanoseconds after which starts count.
    pub since_ns: i128,
}

/// The one container of each workload, taken before the platform starts.
pub async fn baseline(workloads: &[Workload]) -> Result<Vec<Baseline>> {
    let mut out = Vec::new();
    for workload in workloads {
        let containers = workload.containers().await;
        let [container] = containers.as_slice() else {
            bail!(
                "{} has {} containers, expected 1",
                workload.name,
                containers.len()
            );
        };
        out.push(Baseline {
            service: workload.name.clone(),
            id: container.id.clone().unwrap_or_default(),
            name: container_name(container.name.as_deref()),
            since_ns: OffsetDateTime::now_utc().unix_timestamp_nanos(),
        });
    }
    Ok(out)
}

/// Docker's names start with `/`; ops-worker's receipts list them without.
fn container_name(name: Option<&str>) -> String {
    name.unwrap_or_default().trim_start_matches('/').to_string()
}

/// What Docker says happened to one container.
#[derive(Debug)]
pub struct History {
    pub baseline: Baseline,
    /// Start times (Unix nanoseconds) since the baseline, oldest first.
    pub starts: Vec<i128>,
    /// `State.StartedAt`, in Unix nanoseconds.
    pub started_at: Option<i128>,
    /// The ids of the service's containers now.
    pub ids_now: Vec<String>,
}

/// Docker's `start` events of the workloads' containers, recorded as they happen from the
/// baseline on: the engine keeps only its last few hundred events, which one run (and other
/// tests on the same engine) outgrows, so asking afterwards would miss some.
pub struct StartRecorder {
    starts: Arc<Mutex<Vec<(String, i128)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StartRecorder {
    /// Follows the events from the earliest baseline on (the engine replays what it still has
    /// since then, then streams).
    pub fn follow(docker: &Docker, baselines: &[Baseline]) -> Self {
        let since = baselines
            .iter()
            .map(|b| b.since_ns)
            .min()
            .unwrap_or_default();
        let options = EventsOptions {
            since: Some((since / 1_000_000_000).to_string()),
            until: None,
            filters: Some(HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                ("event".to_string(), vec!["start".to_string()]),
                (
                    "container".to_string(),
                    baselines.iter().map(|b| b.id.clone()).collect(),
                ),
            ])),
        };
        let starts = Arc::new(Mutex::new(Vec::new()));
        let record = starts.clone();
        let mut events = docker.events(Some(options));
        let task = tokio::spawn(async move {
            while let Some(Ok(event)) = events.next().await {
                let id = event.actor.and_then(|a| a.id).unwrap_or_default();
                let at = i128::from(event.time_nano.unwrap_or_default());
                record.lock().expect("recorder poisoned").push((id, at));
            }
        });
        Self { starts, task }
    }

    /// The starts of `baseline`'s container after its baseline, oldest first.
    fn starts_of(&self, baseline: &Baseline) -> Vec<i128> {
        let mut out: Vec<i128> = self
            .starts
            .lock()
            .expect("recorder poisoned")
            .iter()
            .filter(|(id, at)| *id == baseline.id && *at > baseline.since_ns)
            .map(|(_, at)| *at)
            .collect();
        out.sort();
        out
    }

    /// Whether the recording still runs (it ends only if the engine closes the stream).
    pub fn recording(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for StartRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What Docker says now about each workload, with the starts recorded during the run.
pub async fn history(
    docker: &Docker,
    workloads: &[Workload],
    baselines: &[Baseline],
    recorder: &StartRecorder,
) -> Result<Vec<History>> {
    if !recorder.recording() {
        bail!("Docker's event stream ended during the run: the record of starts is incomplete");
    }
    let mut out = Vec::new();
    for (workload, baseline) in workloads.iter().zip(baselines) {
        let containers = workload.containers().await;
        let inspect = docker
            .inspect_container(&baseline.id, None::<InspectContainerOptions>)
            .await
            .with_context(|| format!("inspecting {}", baseline.name))?;
        let started_at = inspect
            .state
            .and_then(|s| s.started_at)
            .and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok())
            .map(OffsetDateTime::unix_timestamp_nanos);
        out.push(History {
            baseline: baseline.clone(),
            starts: recorder.starts_of(baseline),
            started_at,
            ids_now: containers.into_iter().filter_map(|c| c.id).collect(),
        });
    }
    Ok(out)
}

/// One restart command on a service, as its receipts tell.
struct Restart {
    command: uuid::Uuid,
    /// From its pending receipt (or its issue) to its final receipt (for a failure, a while
    /// longer), Unix nanoseconds.
    window: (i128, i128),
    /// Final receipt a success: the container names it lists.
    restarted: Option<Vec<String>>,
}

fn nanos(ts: &contracts::Timestamp) -> i128 {
    ts.as_offset_date_time().unix_timestamp_nanos()
}

/// The restart commands on `service` that have exactly one final receipt (the others are
/// findings of their own, see [`super::ledger::check_commands`]).
fn restarts_of(ledger: &Ledger, service: &str) -> Vec<Restart> {
    let finals = ledger.final_receipts();
    let pending = ledger.pending_receipts();
    let mut out = Vec::new();
    for command in ledger.commands.iter().map(|c| &c.message) {
        if command.type_.to_string() != "restart" || command.target != service {
            continue;
        }
        let Some([last]) = finals.get(&command.id).map(Vec::as_slice) else {
            continue;
        };
        let begun = pending.get(&command.id).map_or(&command.ts, |p| &p.ts);
        let restarted = (last.status.to_string() == "success").then(|| {
            last.result
                .as_ref()
                .and_then(|r| r.get("restarted"))
                .and_then(|r| r.as_array())
                .map(|names| {
                    names
                        .iter()
                        .filter_map(|n| n.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        });
        let late = if restarted.is_some() {
            0
        } else {
            LATE_START_NS
        };
        out.push(Restart {
            command: command.id,
            window: (nanos(begun), nanos(&last.ts) + late),
            restarted,
        });
    }
    out
}

/// The restarts agree with Docker: the container is the same one, each successful restart
/// started it within its execution, every start lies within some restart's execution, no
/// more starts than the commands account for, and `State.StartedAt` is the last start.
pub fn check_restarts(histories: &[History], ledger: &Ledger, findings: &mut Findings) {
    for history in histories {
        let Baseline {
            service, id, name, ..
        } = &history.baseline;
        if history.ids_now != [id.clone()] {
            findings.broken(
                "Docker agrees",
                format!(
                    "{service}: its containers are now {:?}, before the run only {id}",
                    history.ids_now
                ),
            );
        }
        let restarts = restarts_of(ledger, service);
        let within =
            |at: i128, (from, to): (i128, i128)| from - SLACK_NS <= at && at <= to + SLACK_NS;
        let ran: Vec<&Restart> = restarts
            .iter()
            .filter(|r| r.restarted.as_ref().is_some_and(|n| n.contains(name)))
            .collect();
        let failed = restarts.iter().filter(|r| r.restarted.is_none()).count();
        for restart in &ran {
            if !history.starts.iter().any(|&at| within(at, restart.window)) {
                findings.broken("no ops command executed twice", format!("{service}: restart {} succeeded listing {name}, but Docker recorded no start of it during that command", restart.command));
            }
        }
        for &at in &history.starts {
            if !restarts.iter().any(|r| within(at, r.window)) {
                findings.broken("no ops command executed twice", format!("{service}: Docker started {name} at {at} ns, within no restart command's execution"));
            }
        }
        let starts = history.starts.len();
        if starts < ran.len() || starts > ran.len() + failed {
            findings.broken("no ops command executed twice", format!("{service}: Docker started {name} {starts} times; {} successful restarts name it and {failed} failed restarts may each have started it once", ran.len()));
        }
        if let (Some(&last), Some(started_at)) = (history.starts.last(), history.started_at) {
            // The run Docker reports is the one its last start event announced: after every
            // earlier start, and not after that event (Docker sets StartedAt first and sends
            // the event once the start returns, which a loaded engine takes hundreds of ms to
            // do, so the gap itself is no finding).
            let previous = history.starts.iter().rev().nth(1).copied();
            if started_at > last + SLACK_NS || previous.is_some_and(|p| started_at <= p) {
                findings.broken("Docker agrees", format!("{service}: State.StartedAt is {started_at} ns, which is not the run of the last start event ({last} ns; the one before: {previous:?})"));
            }
        }
    }
}

/// Starts per container, for the run's summary.
pub fn summary(histories: &[History]) -> String {
    histories
        .iter()
        .map(|h| format!("{}: {} starts", h.baseline.name, h.starts.len()))
        .collect::<Vec<_>>()
        .join(", ")
}
