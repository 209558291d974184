//! The flood: troubles on many services and edge devices, reported as events through the
//! event-source identity, with repeats and re-sends, while the faults happen.
//!
//! Each trouble is one group of one of guardian's rules (crates/guardian/guardian.toml) — a
//! service down, an edge device offline, an external API failing for a service — reported by a
//! few events, then recovered by its rule's resolving event. The flood is closed-loop per group:
//! a trouble's recovery is published only once guardian's incident stream shows one incident
//! holding all of the trouble's reports, and the group's next trouble starts only once that
//! incident is resolved. Events are redelivered out of order after a crash (a killed
//! guardian's unacknowledged messages come back after the ack wait, behind newer ones), so
//! without this a recovery could overtake its own reports and legitimately split one trouble
//! into two incidents; with it, "one trouble, exactly one incident, holding exactly its
//! reports" is an exact invariant (checked in [`super::ledger`]).
//!
//! Duplicates come in three kinds: the same event published again (same `Nats-Msg-Id`: the
//! stream drops it), a copy without `Nats-Msg-Id` while the trouble is open (the stream keeps
//! it; guardian must recognize the event id), and such a copy long after the trouble was
//! resolved (guardian must remember the id, not open a new incident).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::Context as JetStream;
use contracts::{Event, Incident};
use orion_testkit::wait_until;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use super::tail::Tail;
use crate::probe::Probe;
use crate::workload::Workload;

/// How long one publication is retried (the broker may be restarting or electing leaders).
const PUBLISH_PATIENCE: Duration = Duration::from_secs(60);

/// How often the flood looks at the incident stream.
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// Repeats with the same `Nats-Msg-Id` only this soon after the first publication: well within
/// the stream's duplicate window (120 s), so that the stream keeps exactly one of them.
const REPEAT_WITHIN: Duration = Duration::from_secs(60);

/// Calls `send` until the stream confirms (it returns `Ok`), for up to [`PUBLISH_PATIENCE`];
/// on giving up, the last try's error.
async fn until_confirmed<F, Fut>(mut send: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let last_error = Mutex::new(None);
    let confirmed = wait_until("the stream confirmed", PUBLISH_PATIENCE, || {
        let sending = send();
        let last_error = &last_error;
        async move {
            match sending.await {
                Ok(()) => Some(()),
                Err(error) => {
                    *last_error.lock().unwrap() = Some(error);
                    None
                }
            }
        }
    })
    .await;
    match confirmed {
        Ok(()) => Ok(()),
        // Every try failed, so there is a last error (the timeout itself only in theory).
        Err(timed_out) => Err(last_error
            .into_inner()
            .unwrap()
            .unwrap_or_else(|| timed_out.into())),
    }
}

/// The kinds of trouble, each correlated by one of guardian's example rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `service_down` … `service_up`: rule `service-outage` (threshold 1); brain's chaos policy
    /// restarts the service (SAFE), so these reach commander, ops-worker and Docker.
    Outage,
    /// `edge_device_offline` … `edge_device_online`: rule `edge-device-failure` (threshold 1);
    /// no policy rule, so brain decides NO_ACTION.
    Device,
    /// `external_api_failure` … `external_api_success`: rule `repeated-api-failures`
    /// (threshold 3); no policy rule either.
    ApiFailures,
}

impl Kind {
    /// guardian's rule, which every incident carries as its tag `rule`.
    pub fn rule(self) -> &'static str {
        match self {
            Kind::Outage => "service-outage",
            Kind::Device => "edge-device-failure",
            Kind::ApiFailures => "repeated-api-failures",
        }
    }

    /// The rule's group-by field, which is also the incident's tag naming the group.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Device => "device_id",
            Kind::Outage | Kind::ApiFailures => "service_name",
        }
    }

    /// The rule's threshold: reports of one group that open an incident.
    pub fn threshold(self) -> usize {
        match self {
            Kind::ApiFailures => 3,
            Kind::Outage | Kind::Device => 1,
        }
    }

    fn report(self) -> (&'static str, &'static str) {
        match self {
            Kind::Outage => ("service_down", "critical"),
            Kind::Device => ("edge_device_offline", "error"),
            Kind::ApiFailures => ("external_api_failure", "warning"),
        }
    }

    fn recovery(self) -> &'static str {
        match self {
            Kind::Outage => "service_up",
            Kind::Device => "edge_device_online",
            Kind::ApiFailures => "external_api_success",
        }
    }
}

/// One group: a rule and the service or device it is about.
#[derive(Debug, Clone)]
pub struct Group {
    pub kind: Kind,
    pub name: String,
    /// Index of the Docker workload of that name, if there is one.
    pub workload: Option<usize>,
}

impl Group {
    fn data(&self) -> Value {
        let mut data = json!({ self.kind.key(): self.name });
        if self.kind == Kind::ApiFailures {
            data["api"] = json!("payments");
        }
        data
    }

    /// Whether `incident` is about this group.
    pub fn matches(&self, incident: &Incident) -> bool {
        incident.tags.get("rule").map(String::as_str) == Some(self.kind.rule())
            && incident.tags.get(self.kind.key()) == Some(&self.name)
    }
}

/// One trouble and what the flood published for it.
#[derive(Debug, Clone)]
pub struct Trouble {
    pub group: usize,
    /// The distinct events reporting it, in publication order.
    pub reports: Vec<Uuid>,
    /// The event that recovered it, once published.
    pub recovery: Option<Uuid>,
    /// The incident the flood saw holding all its reports.
    pub incident: Option<Uuid>,
    /// Whether the flood killed the group's container when the trouble began.
    pub crashed: bool,
}

/// How often an event id was sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    /// Publications with the event's `Nats-Msg-Id` (the stream keeps one).
    pub with_msg_id: u32,
    /// Attempts to publish a copy without it (each may have been stored).
    pub without_msg_id: u32,
}

/// What the flood did.
#[derive(Debug, Default)]
pub struct FloodReport {
    pub groups: Vec<Group>,
    pub troubles: Vec<Trouble>,
    /// Every event id the flood published.
    pub sent: BTreeMap<Uuid, Sent>,
    /// Events that match no rule (telemetry): stored, and ignored by guardian.
    pub noise: BTreeSet<Uuid>,
    /// Troubles not finished by the deadline, and why.
    pub unfinished: Vec<String>,
    pub crashes: usize,
}

/// How big the flood is.
#[derive(Debug, Clone)]
pub struct FloodSettings {
    /// Troubles started at least, even if the faults are over before.
    pub min_troubles: usize,
    /// Troubles under way at once.
    pub max_active: usize,
    /// Pause between two publications, in milliseconds.
    pub pause_ms: Range<u64>,
    /// The whole flood must be over by then.
    pub deadline: Duration,
}

/// Where a trouble under way is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Reports still to be published.
    Reporting { left: usize },
    /// All reports published; waiting for an incident holding them all.
    AwaitingIncident,
    /// Recovery published; waiting for the incident to be resolved.
    Recovering { incident: Uuid },
}

struct Active {
    trouble: usize,
    stage: Stage,
}

/// The incidents as the flood sees them: every version's listed events, and whether resolved.
#[derive(Default)]
struct IncidentView {
    seen: HashMap<Uuid, (Incident, BTreeSet<Uuid>, bool)>,
}

impl IncidentView {
    fn absorb(&mut self, incident: Incident) {
        let resolved = incident.state.to_string() == "resolved";
        let entry = self
            .seen
            .entry(incident.incident_id)
            .or_insert_with(|| (incident.clone(), BTreeSet::new(), false));
        entry.1.extend(incident.event_ids.iter().copied());
        entry.2 |= resolved;
    }

    /// The incident of `group` that lists every one of `reports`.
    fn holding(&self, group: &Group, reports: &[Uuid]) -> Option<Uuid> {
        self.seen
            .iter()
            .find(|(_, (first, events, _))| {
                group.matches(first) && reports.iter().all(|r| events.contains(r))
            })
            .map(|(id, _)| *id)
    }

    fn resolved(&self, id: &Uuid) -> bool {
        self.seen.get(id).is_some_and(|(_, _, resolved)| *resolved)
    }
}

/// The running flood.
pub struct Flood {
    probe: Probe,
    incidents: Tail<Incident>,
    workloads: Arc<Vec<Workload>>,
    settings: FloodSettings,
    rng: StdRng,
    ids: StdRng,
    view: IncidentView,
    events: HashMap<Uuid, Event>,
    /// When each event was first published.
    first_sent: HashMap<Uuid, Instant>,
    active: Vec<Active>,
    report: FloodReport,
}

impl Flood {
    /// `rng` chooses what to publish, `ids` the event ids (so a seed gives the same ids).
    pub fn new(
        probe: Probe,
        admin: JetStream,
        workloads: Arc<Vec<Workload>>,
        groups: Vec<Group>,
        settings: FloodSettings,
        rng: StdRng,
        ids: StdRng,
    ) -> Self {
        // A short timeout: on a cluster that lost a node, a reader placed on the lost peer
        // never answers, and the flood should try again soon rather than stall.
        let mut admin = admin;
        admin.set_timeout(Duration::from_secs(2));
        Self {
            probe,
            incidents: Tail::new(admin, Duration::from_millis(100)),
            workloads,
            settings,
            rng,
            ids,
            view: IncidentView::default(),
            events: HashMap::new(),
            first_sent: HashMap::new(),
            active: Vec::new(),
            report: FloodReport {
                groups,
                ..Default::default()
            },
        }
    }

    /// Floods until the faults are over (`faults_over`), at least `min_troubles` troubles
    /// were started and every trouble is resolved, or the deadline passes.
    pub async fn run(mut self, faults_over: watch::Receiver<bool>) -> Result<FloodReport> {
        let begun = Instant::now();
        let mut looked = begun - LOOK_EVERY;
        loop {
            if looked.elapsed() >= LOOK_EVERY {
                looked = Instant::now();
                self.look().await;
                self.advance().await?;
            }
            let starting =
                !*faults_over.borrow() || self.report.troubles.len() < self.settings.min_troubles;
            if !starting && self.active.is_empty() {
                return Ok(self.report);
            }
            if begun.elapsed() >= self.settings.deadline {
                self.give_up();
                return Ok(self.report);
            }
            if starting {
                self.start_trouble().await?;
            }
            self.step().await?;
            // Pacing, not waiting: a seeded pause between two steps of the flood.
            let pause = self.rng.random_range(self.settings.pause_ms.clone());
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    /// Reads the incidents stored since the last look (nothing while the broker is away).
    async fn look(&mut self) {
        if let Ok(stored) = self.incidents.read().await {
            for incident in stored {
                self.view.absorb(incident.message);
            }
        }
    }

    /// Moves troubles on as guardian's incidents allow: recovery once one incident holds all
    /// reports, done once it is resolved.
    async fn advance(&mut self) -> Result<()> {
        let mut index = 0;
        while index < self.active.len() {
            let Active { trouble, stage } = self.active[index];
            let group = self.report.troubles[trouble].group;
            match stage {
                Stage::AwaitingIncident => {
                    let reports = &self.report.troubles[trouble].reports;
                    let group = &self.report.groups[group];
                    if let Some(incident) = self.view.holding(group, reports) {
                        self.report.troubles[trouble].incident = Some(incident);
                        self.recover(trouble).await?;
                        self.active[index].stage = Stage::Recovering { incident };
                    }
                }
                Stage::Recovering { incident } if self.view.resolved(&incident) => {
                    self.active.remove(index);
                    continue;
                }
                _ => {}
            }
            index += 1;
        }
        Ok(())
    }

    /// Starts a trouble on a group with none under way, if there is room.
    async fn start_trouble(&mut self) -> Result<()> {
        if self.active.len() >= self.settings.max_active {
            return Ok(());
        }
        let busy: BTreeSet<usize> = self
            .active
            .iter()
            .map(|a| self.report.troubles[a.trouble].group)
            .collect();
        let idle: Vec<usize> = (0..self.report.groups.len())
            .filter(|g| !busy.contains(g))
            .collect();
        let Some(&group) = idle.choose(&mut self.rng) else {
            return Ok(());
        };
        let kind = self.report.groups[group].kind;
        let reports = kind.threshold() + self.rng.random_range(0..=2);
        let workload = self.report.groups[group].workload;
        let crashed = workload.is_some() && self.rng.random_bool(0.5);
        if let (true, Some(workload)) = (crashed, workload) {
            // Really down, so that the restart has something to do. A container that is
            // already down (or being restarted) may refuse the kill; that is fine.
            let _ = self.workloads[workload].crash().await;
            self.report.crashes += 1;
        }
        self.report.troubles.push(Trouble {
            group,
            reports: Vec::new(),
            recovery: None,
            incident: None,
            crashed,
        });
        self.active.push(Active {
            trouble: self.report.troubles.len() - 1,
            stage: Stage::Reporting { left: reports },
        });
        Ok(())
    }

    /// One publication, chosen at random: mostly the next report of a trouble, sometimes a
    /// repeat, a copy without `Nats-Msg-Id`, a late copy of a resolved trouble's report, or
    /// an event no rule cares about.
    async fn step(&mut self) -> Result<()> {
        match self.rng.random_range(0..100) {
            0..=64 => self.next_report().await,
            65..=76 => match self.open_report(REPEAT_WITHIN) {
                Some(id) => self.repeat(id).await,
                None => Ok(()),
            },
            77..=86 => match self.open_report(Duration::MAX) {
                Some(id) => self.copy_without_msg_id(id).await,
                None => Ok(()),
            },
            87..=93 => match self.finished_report() {
                Some(id) => self.copy_without_msg_id(id).await,
                None => Ok(()),
            },
            _ => self.noise().await,
        }
    }

    async fn next_report(&mut self) -> Result<()> {
        let reporting: Vec<usize> = (0..self.active.len())
            .filter(|&i| matches!(self.active[i].stage, Stage::Reporting { .. }))
            .collect();
        let Some(&index) = reporting.choose(&mut self.rng) else {
            return Ok(());
        };
        let trouble = self.active[index].trouble;
        let group = &self.report.groups[self.report.troubles[trouble].group];
        let (event_type, severity) = group.kind.report();
        let event = self.new_event(event_type, severity, group.data())?;
        self.publish(&event).await?;
        self.report.troubles[trouble].reports.push(event.event_id);
        let Stage::Reporting { left } = self.active[index].stage else {
            unreachable!("chosen among the reporting troubles");
        };
        self.active[index].stage = match left - 1 {
            0 => Stage::AwaitingIncident,
            left => Stage::Reporting { left },
        };
        Ok(())
    }

    async fn recover(&mut self, trouble: usize) -> Result<()> {
        let group = &self.report.groups[self.report.troubles[trouble].group];
        let event = self.new_event(group.kind.recovery(), "info", group.data())?;
        self.publish(&event).await?;
        self.report.troubles[trouble].recovery = Some(event.event_id);
        Ok(())
    }

    async fn noise(&mut self) -> Result<()> {
        let device = format!("probe-{}", self.rng.random_range(0..4));
        let data = json!({"device_id": device, "metric": "temperature_c", "value": 41.5});
        let event = self.new_event("edge_telemetry", "info", data)?;
        self.publish(&event).await?;
        self.report.noise.insert(event.event_id);
        Ok(())
    }

    /// A report of a trouble under way, first published less than `within` ago.
    fn open_report(&mut self, within: Duration) -> Option<Uuid> {
        let reports: Vec<Uuid> = self
            .active
            .iter()
            .flat_map(|a| self.report.troubles[a.trouble].reports.iter().copied())
            .filter(|id| self.first_sent[id].elapsed() < within)
            .collect();
        reports.choose(&mut self.rng).copied()
    }

    /// A report of a trouble that is over.
    fn finished_report(&mut self) -> Option<Uuid> {
        let under_way: BTreeSet<usize> = self.active.iter().map(|a| a.trouble).collect();
        let reports: Vec<Uuid> = self
            .report
            .troubles
            .iter()
            .enumerate()
            .filter(|(i, _)| !under_way.contains(i))
            .flat_map(|(_, t)| t.reports.iter().copied())
            .collect();
        reports.choose(&mut self.rng).copied()
    }

    fn new_event(&mut self, event_type: &str, severity: &str, data: Value) -> Result<Event> {
        let id = uuid::Builder::from_random_bytes(self.ids.random()).into_uuid();
        let event = Probe::event(id, event_type, severity, data)?;
        self.events.insert(id, event.clone());
        Ok(event)
    }

    async fn repeat(&mut self, id: Uuid) -> Result<()> {
        let event = self.events[&id].clone();
        self.publish(&event).await
    }

    /// Publishes with the event's `Nats-Msg-Id` until the stream confirms it: a retry of a
    /// publication that did arrive is dropped as a duplicate, so retrying is safe.
    async fn publish(&mut self, event: &Event) -> Result<()> {
        let probe = &self.probe;
        until_confirmed(|| probe.repeat(event))
            .await
            .with_context(|| format!("publishing event {}", event.event_id))?;
        self.report
            .sent
            .entry(event.event_id)
            .or_default()
            .with_msg_id += 1;
        self.first_sent
            .entry(event.event_id)
            .or_insert_with(Instant::now);
        Ok(())
    }

    /// A copy without `Nats-Msg-Id`, retried until confirmed; every attempt is counted, as
    /// an attempt whose confirmation was lost may still have been stored.
    async fn copy_without_msg_id(&mut self, id: Uuid) -> Result<()> {
        let event = &self.events[&id];
        let probe = &self.probe;
        let sent = &mut self.report.sent;
        until_confirmed(|| {
            sent.entry(id).or_default().without_msg_id += 1;
            probe.resend_without_msg_id(event)
        })
        .await
        .with_context(|| format!("re-sending event {id}"))
    }

    fn give_up(&mut self) {
        for active in &self.active {
            let trouble = &self.report.troubles[active.trouble];
            let group = &self.report.groups[trouble.group];
            self.report.unfinished.push(format!(
                "{} {}: stuck at {:?} (reports {:?})",
                group.kind.rule(),
                group.name,
                active.stage,
                trouble.reports
            ));
        }
    }
}
