//! The correlation engine: groups, thresholds, incident life cycles and the bounds on memory.
//! Pure code — no I/O, no clock: the caller passes `now`.
//!
//! Every input is handled in two steps so that nothing is lost when storing or publishing
//! fails: `plan_*` computes what would change ([`Change`]: the group's next state and the
//! incident version to emit) without touching the engine; the caller makes it durable (key-value
//! bucket, bus) and only then calls [`Engine::commit`]. A plan that is never committed leaves
//! the engine as it was, so a redelivered message is planned again and yields the same result.

use std::collections::{BTreeMap, HashMap};

use contracts::incident_v1::IncidentState;
use contracts::{Event, Incident, IncidentAcknowledgement, Timestamp};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::incident::{self, Acknowledged, Observed, Opening, Resolution, Tracked};
use crate::partition::Partition;
use crate::rules::{Role, Rule};
use crate::seen::{SeenChunk, SeenIds, SeenRestore, SeenWrite};

/// Key prefix of the group records in the bucket.
pub const GROUP_KEY_PREFIX: &str = "group.";

/// Namespace of the UUID v5 that names a group's record.
const GROUP_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_696f_6e2d_4775_6172_6469_616e_0001);

/// Bounds on what the engine keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Groups tracked at once (with or without an incident). Past it the least recently
    /// updated group without an incident is forgotten first, then the least recently updated
    /// incident.
    pub max_groups: usize,
    /// Event ids remembered for duplicate detection (oldest forgotten first).
    pub max_seen_event_ids: usize,
    /// How long an event id is remembered.
    pub seen_ttl: time::Duration,
    /// Event ids listed in one incident; later events are counted, not listed.
    pub max_event_ids_per_incident: usize,
}

impl Limits {
    /// The limits of one of `partitions` equal shares: the bounds on groups and seen ids are
    /// divided (rounded up), so that all partitions together keep what the configuration says.
    pub fn shared_by(self, partitions: u32) -> Self {
        let partitions = partitions.max(1) as usize;
        Self {
            max_groups: self.max_groups.div_ceil(partitions),
            max_seen_event_ids: self.max_seen_event_ids.div_ceil(partitions),
            ..self
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_groups: 10_000,
            max_seen_event_ids: 100_000,
            seen_ttl: time::Duration::hours(24),
            max_event_ids_per_incident: 500,
        }
    }
}

/// One group: a rule and the values of its group-by keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKey {
    pub rule: String,
    pub values: Vec<String>,
}

impl GroupKey {
    /// The group's key in the bucket: `group.<UUID v5 of rule and values>` (any characters in
    /// the values are safe this way).
    pub fn storage_key(&self) -> String {
        format!("{GROUP_KEY_PREFIX}{}", self.record_id())
    }

    /// The UUID v5 of rule and values that names the group's record (and picks its
    /// partition).
    pub fn record_id(&self) -> Uuid {
        let mut name = self.rule.clone();
        for value in &self.values {
            name.push('\u{1f}');
            name.push_str(value);
        }
        Uuid::new_v5(&GROUP_NAMESPACE, name.as_bytes())
    }
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.rule, self.values.join(", "))
    }
}

/// What guardian knows about one group: events counted below the threshold, or the incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub key: GroupKey,
    /// Events in the window that have not reached the threshold yet (no incident), oldest first.
    #[serde(default)]
    pub pending: Vec<Observed>,
    /// The open or acknowledged incident.
    pub incident: Option<Tracked>,
    /// When guardian last handled a matching event of the group (its clock): the window for
    /// forgetting pending events and for `resolve_after_s` runs from here.
    pub last_arrival: Timestamp,
}

impl Group {
    /// The events the group holds (counted, or listed in its incident).
    pub fn event_ids(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self.pending.iter().map(|o| o.event_id).collect();
        if let Some(tracked) = &self.incident {
            ids.extend(tracked.events.iter().map(|o| o.event_id));
        }
        ids
    }

    /// Whether the group's record holds the event (counted, or listed in its incident): the
    /// record is then the durable proof that it was handled.
    pub fn holds(&self, id: &Uuid) -> bool {
        self.pending.iter().any(|o| o.event_id == *id)
            || self
                .incident
                .as_ref()
                .is_some_and(|t| t.events.iter().any(|e| e.event_id == *id))
    }

    /// [`Group::holds`], or the event caused the incident's current version (an event past the
    /// listing cap is counted but not listed).
    fn contains(&self, id: &Uuid) -> bool {
        self.holds(id) || self.incident.as_ref().is_some_and(|t| t.cause == *id)
    }
}

/// What a change does to its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// An event was counted; the threshold is not reached yet.
    Counted,
    /// The threshold was reached: a new incident.
    Opened,
    /// An event joined the open incident.
    Grew,
    Acknowledged,
    /// A `resolve_on` event resolved the incident.
    ResolvedByEvent,
    /// `resolve_after_s` passed without a matching event.
    ResolvedQuietly,
    /// A `resolve_on` event arrived while events were only counted: they are dropped.
    Cleared,
    /// Counted events left the window without reaching the threshold.
    Expired,
}

/// The next state of one group and the incident version to emit, not applied yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: GroupKey,
    /// The group afterwards; `None` forgets it (its record is deleted).
    pub after: Option<Group>,
    /// The incident version this change emits.
    pub emit: Option<Incident>,
    pub kind: ChangeKind,
    /// When the group is forgotten: the event ids it held, to remember as seen (its record was
    /// their durable proof of having been handled).
    pub forget: Vec<Uuid>,
}

impl Change {
    /// A new incident gets a random id, so it must be stored before it is published (a retry
    /// would otherwise open it again under another id). Every other change is rebuilt
    /// identically from the stored state, so it is published first and stored after.
    pub fn opens_incident(&self) -> bool {
        self.kind == ChangeKind::Opened
    }
}

/// One rule's share of handling an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Change(Box<Change>),
    /// The group already holds this event (a redelivery after a crash). `republish` is the
    /// group's current version when this event caused it: it may not have been published.
    AlreadyApplied {
        key: GroupKey,
        republish: Option<Incident>,
    },
    /// The rule matches but the event lacks a group-by field: the rule does not apply.
    MissingGroupKey {
        rule: String,
        field: String,
    },
}

/// Everything handling one event would do.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventPlan {
    pub steps: Vec<Step>,
    /// Some rule matched the event.
    pub relevant: bool,
    /// The event is relevant but no group will hold it (a resolving event, one past an
    /// incident's listing cap): remember its id in the seen set once the steps are done.
    pub remember: bool,
}

impl EventPlan {
    /// Every group the event concerns holds it already: a duplicate.
    pub fn is_duplicate(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, Step::AlreadyApplied { .. }))
            && self.steps.iter().all(|s| !matches!(s, Step::Change(_)))
    }
}

/// What an acknowledgement does.
#[derive(Debug, Clone, PartialEq)]
pub enum AckPlan {
    /// No open or acknowledged incident has this id (unknown, resolved, or forgotten).
    Unknown,
    /// The incident is acknowledged already (by another acknowledgement).
    AlreadyAcknowledged,
    /// This acknowledgement caused the current version (a redelivery): publish it again.
    AlreadyApplied {
        republish: Incident,
    },
    Change(Box<Change>),
}

/// A group forgotten to stay within `max_groups`.
#[derive(Debug, Clone, PartialEq)]
pub struct Evicted {
    pub key: GroupKey,
    pub storage_key: String,
    /// The incident left behind, if the group had one (it will never be updated again).
    pub incident_id: Option<Uuid>,
    /// The event ids it held, to remember as seen.
    pub event_ids: Vec<Uuid>,
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub duplicates: u64,
    pub opened: u64,
    pub grown: u64,
    pub acknowledged: u64,
    pub resolved_by_event: u64,
    pub resolved_quietly: u64,
    pub pending_expired: u64,
    pub groups_evicted: u64,
    pub incidents_evicted: u64,
}

/// What [`Engine::restore`] found.
#[derive(Debug, Default)]
pub struct RestoreReport {
    pub groups: usize,
    pub incidents: usize,
    pub seen: SeenRestore,
    /// Groups over `max_groups` (the cap was lowered): forget them and delete their records.
    pub evicted: Vec<Evicted>,
    /// Groups whose rule is no longer configured: kept (acknowledgements still apply) but no
    /// event joins them and they never resolve by time.
    pub orphans: Vec<GroupKey>,
}

struct Slot {
    group: Group,
    touched: u64,
}

/// The correlation engine.
pub struct Engine {
    rules: Vec<Rule>,
    limits: Limits,
    groups: HashMap<GroupKey, Slot>,
    /// Least recently updated first: groups without an incident, and groups with one.
    pending_lru: BTreeMap<u64, GroupKey>,
    incident_lru: BTreeMap<u64, GroupKey>,
    by_incident: HashMap<Uuid, GroupKey>,
    clock: u64,
    seen: SeenIds,
    stats: Stats,
    /// The share of the groups this engine handles; events of other groups are not its own.
    partition: Option<Partition>,
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn utc(t: Timestamp) -> Timestamp {
    t.to_utc().clamped()
}

impl Engine {
    pub fn new(rules: Vec<Rule>, limits: Limits) -> Self {
        let seen = SeenIds::new(
            limits.max_seen_event_ids,
            i64::try_from(limits.seen_ttl.whole_milliseconds()).unwrap_or(i64::MAX),
        );
        Self {
            rules,
            limits,
            groups: HashMap::new(),
            pending_lru: BTreeMap::new(),
            incident_lru: BTreeMap::new(),
            by_incident: HashMap::new(),
            clock: 0,
            seen,
            stats: Stats::default(),
            partition: None,
        }
    }

    /// The engine of one partition: events of groups outside it are ignored (another
    /// partition's engine handles them).
    pub fn for_partition(rules: Vec<Rule>, limits: Limits, partition: Partition) -> Self {
        Self {
            partition: Some(partition),
            ..Self::new(rules, limits)
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Groups tracked now.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Open or acknowledged incidents tracked now.
    pub fn incident_count(&self) -> usize {
        self.by_incident.len()
    }

    /// Every tracked group (in no particular order).
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values().map(|s| &s.group)
    }

    pub fn group(&self, key: &GroupKey) -> Option<&Group> {
        self.groups.get(key).map(|s| &s.group)
    }

    /// The tracked incident with this id.
    pub fn incident(&self, incident_id: &Uuid) -> Option<&Tracked> {
        let key = self.by_incident.get(incident_id)?;
        self.group(key)?.incident.as_ref()
    }

    pub fn seen(&self) -> &SeenIds {
        &self.seen
    }

    fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// Whether `event_id` is in the seen set: handled before by a group that is gone, or
    /// remembered on its own. (Events a group still holds are recognised by
    /// [`Engine::plan_event`] as [`Step::AlreadyApplied`].)
    pub fn is_duplicate(&self, event_id: &Uuid) -> bool {
        self.seen.contains(event_id)
    }

    /// Counts a duplicate the caller ignored.
    pub fn note_duplicate(&mut self) {
        self.stats.duplicates += 1;
    }

    /// What handling `event` at `now` would change, rule by rule (in configuration order).
    pub fn plan_event(&self, event: &Event, now: OffsetDateTime) -> EventPlan {
        let mut plan = EventPlan::default();
        let mut held = false;
        let observed = Observed {
            event_id: event.event_id,
            at: utc(event.timestamp),
            severity: event.severity,
        };
        for rule in &self.rules {
            let Some(role) = rule.role(event) else {
                continue;
            };
            let values = match rule.group_values(event) {
                Ok(values) => values,
                Err(field) => {
                    plan.steps.push(Step::MissingGroupKey {
                        rule: rule.name.clone(),
                        field: field.to_string(),
                    });
                    continue;
                }
            };
            let key = GroupKey {
                rule: rule.name.clone(),
                values,
            };
            if self.partition.is_some_and(|p| !p.owns(&key)) {
                continue;
            }
            plan.relevant = true;
            let existing = self.group(&key);
            if let Some(group) = existing.filter(|g| g.contains(&event.event_id)) {
                held |= group.holds(&event.event_id);
                let republish = group
                    .incident
                    .as_ref()
                    .filter(|t| t.cause == event.event_id)
                    .map(|t| t.incident.clone());
                plan.steps.push(Step::AlreadyApplied { key, republish });
                continue;
            }
            match role {
                Role::Correlates => {
                    let change = self.correlate(rule, key, existing, observed.clone(), now);
                    held |= change
                        .after
                        .as_ref()
                        .is_some_and(|g| g.holds(&event.event_id));
                    plan.steps.push(Step::Change(Box::new(change)));
                }
                Role::Resolves => {
                    if let Some(group) = existing {
                        plan.steps
                            .push(Step::Change(Box::new(resolve_by_event(group, event))));
                    }
                }
            }
        }
        plan.remember = plan.relevant && !held;
        plan
    }

    fn correlate(
        &self,
        rule: &Rule,
        key: GroupKey,
        existing: Option<&Group>,
        observed: Observed,
        now: OffsetDateTime,
    ) -> Change {
        let last_arrival = utc(Timestamp(now));
        if let Some(tracked) = existing.and_then(|g| g.incident.as_ref()) {
            let grown = tracked.grow(observed, self.limits.max_event_ids_per_incident);
            let emit = Some(grown.incident.clone());
            return Change {
                after: Some(Group {
                    key: key.clone(),
                    pending: Vec::new(),
                    incident: Some(grown),
                    last_arrival,
                }),
                key,
                emit,
                kind: ChangeKind::Grew,
                forget: Vec::new(),
            };
        }
        let cause = observed.event_id;
        let cause_at = observed.at.0;
        let mut pending = existing.map(|g| g.pending.clone()).unwrap_or_default();
        let position = pending.partition_point(|e| e.at <= observed.at);
        pending.insert(position, observed);
        let newest = pending.last().map(|e| e.at).expect("just inserted");
        let oldest_kept = newest.saturating_sub(rule.window);
        pending.retain(|e| e.at >= oldest_kept);
        if pending.len() < rule.threshold {
            return Change {
                after: Some(Group {
                    key: key.clone(),
                    pending,
                    incident: None,
                    last_arrival,
                }),
                key,
                emit: None,
                kind: ChangeKind::Counted,
                forget: Vec::new(),
            };
        }
        let names: Vec<String> = rule.group_by.iter().map(|k| k.tag.clone()).collect();
        let event_types: Vec<String> = rule.event_types.iter().map(|t| t.to_string()).collect();
        let tracked = Tracked::open(Opening {
            incident_type: rule.incident_type,
            rule: &rule.name,
            event_types: &event_types,
            tags: incident::tags(&rule.name, &names, &key.values),
            fixed_severity: rule.severity,
            events: pending,
            max_listed: self.limits.max_event_ids_per_incident,
            cause,
            cause_at,
        });
        let emit = Some(tracked.incident.clone());
        Change {
            after: Some(Group {
                key: key.clone(),
                pending: Vec::new(),
                incident: Some(tracked),
                last_arrival,
            }),
            key,
            emit,
            kind: ChangeKind::Opened,
            forget: Vec::new(),
        }
    }

    /// What `ack` does to its incident.
    pub fn plan_acknowledgement(&self, ack: &IncidentAcknowledgement) -> AckPlan {
        let Some(key) = self.by_incident.get(&ack.incident_id) else {
            return AckPlan::Unknown;
        };
        let group = &self.groups[key].group;
        let tracked = group
            .incident
            .as_ref()
            .expect("indexed groups have an incident");
        if tracked.cause == ack.acknowledgement_id {
            return AckPlan::AlreadyApplied {
                republish: tracked.incident.clone(),
            };
        }
        if tracked.incident.state != IncidentState::Open {
            return AckPlan::AlreadyAcknowledged;
        }
        let next = tracked.acknowledge(
            Acknowledged {
                by: ack.acknowledged_by.to_string(),
                note: ack.note.clone(),
                acknowledgement_id: ack.acknowledgement_id,
            },
            ack.timestamp.0,
        );
        let emit = Some(next.incident.clone());
        AckPlan::Change(Box::new(Change {
            key: key.clone(),
            after: Some(Group {
                incident: Some(next),
                ..group.clone()
            }),
            emit,
            kind: ChangeKind::Acknowledged,
            forget: Vec::new(),
        }))
    }

    /// Incidents quiet for their rule's `resolve_after_s`, and counted events whose window
    /// passed, at `now`. Sorted by group for a stable order.
    pub fn plan_expiry(&self, now: OffsetDateTime) -> Vec<Change> {
        let mut changes = Vec::new();
        for slot in self.groups.values() {
            let group = &slot.group;
            let rule = self.rule(&group.key.rule);
            match (&group.incident, rule) {
                (Some(tracked), Some(rule)) => {
                    let Some(after) = rule.resolve_after else {
                        continue;
                    };
                    // Saturates: a due time past the end of the range is never reached.
                    let due = group.last_arrival.saturating_add(after).0;
                    if now < due {
                        continue;
                    }
                    let resolution = Resolution::Quiet {
                        after_s: after.whole_seconds(),
                    };
                    changes.push(Change {
                        key: group.key.clone(),
                        after: None,
                        emit: Some(tracked.resolve(&resolution, due)),
                        kind: ChangeKind::ResolvedQuietly,
                        forget: group.event_ids(),
                    });
                }
                (Some(_), None) => {}
                (None, rule) => {
                    let window = rule.map(|r| r.window).unwrap_or(time::Duration::ZERO);
                    if now >= group.last_arrival.saturating_add(window).0 {
                        changes.push(Change {
                            key: group.key.clone(),
                            after: None,
                            emit: None,
                            kind: ChangeKind::Expired,
                            forget: group.event_ids(),
                        });
                    }
                }
            }
        }
        changes.sort_by(|a, b| a.key.cmp(&b.key));
        changes
    }

    /// Applies a change that is now durable. Returns the groups forgotten to stay within
    /// `max_groups` (delete their records).
    pub fn commit(&mut self, change: Change) -> Vec<Evicted> {
        match change.kind {
            ChangeKind::Counted | ChangeKind::Cleared => {}
            ChangeKind::Opened => self.stats.opened += 1,
            ChangeKind::Grew => self.stats.grown += 1,
            ChangeKind::Acknowledged => self.stats.acknowledged += 1,
            ChangeKind::ResolvedByEvent => self.stats.resolved_by_event += 1,
            ChangeKind::ResolvedQuietly => self.stats.resolved_quietly += 1,
            ChangeKind::Expired => self.stats.pending_expired += 1,
        }
        self.remove(&change.key);
        match change.after {
            Some(group) => {
                self.insert(group);
                self.enforce_cap(&change.key)
            }
            None => Vec::new(),
        }
    }

    fn remove(&mut self, key: &GroupKey) -> Option<Group> {
        let slot = self.groups.remove(key)?;
        match &slot.group.incident {
            Some(tracked) => {
                self.incident_lru.remove(&slot.touched);
                self.by_incident.remove(&tracked.incident.incident_id);
            }
            None => {
                self.pending_lru.remove(&slot.touched);
            }
        }
        Some(slot.group)
    }

    fn insert(&mut self, group: Group) {
        self.clock += 1;
        let touched = self.clock;
        let key = group.key.clone();
        match &group.incident {
            Some(tracked) => {
                self.incident_lru.insert(touched, key.clone());
                self.by_incident
                    .insert(tracked.incident.incident_id, key.clone());
            }
            None => {
                self.pending_lru.insert(touched, key.clone());
            }
        }
        self.groups.insert(key, Slot { group, touched });
    }

    fn enforce_cap(&mut self, keep: &GroupKey) -> Vec<Evicted> {
        let mut evicted = Vec::new();
        while self.groups.len() > self.limits.max_groups.max(1) {
            let victim = self
                .pending_lru
                .values()
                .chain(self.incident_lru.values())
                .find(|k| *k != keep)
                .cloned();
            let Some(victim) = victim else { break };
            let group = self.remove(&victim).expect("indexed groups exist");
            let incident_id = group.incident.as_ref().map(|t| t.incident.incident_id);
            if incident_id.is_some() {
                self.stats.incidents_evicted += 1;
            }
            self.stats.groups_evicted += 1;
            evicted.push(Evicted {
                storage_key: victim.storage_key(),
                key: victim,
                incident_id,
                event_ids: group.event_ids(),
            });
        }
        evicted
    }

    /// The chunk to write so that `event_id` is remembered; apply it with
    /// [`Engine::commit_seen`] once written.
    pub fn plan_seen(&self, event_id: Uuid, now: OffsetDateTime) -> SeenWrite {
        self.plan_seen_at(event_id, unix_ms(now))
    }

    /// The chunks to write so that all of `event_ids` are remembered (in order); apply each
    /// with [`Engine::commit_seen`] once all are written.
    pub fn plan_seen_many(&self, event_ids: &[Uuid], now: OffsetDateTime) -> Vec<SeenWrite> {
        self.seen.plan_insert_many(event_ids, unix_ms(now))
    }

    /// [`Engine::plan_seen`] with the time in unix milliseconds.
    pub fn plan_seen_at(&self, event_id: Uuid, at_ms: i64) -> SeenWrite {
        self.seen.plan_insert(event_id, at_ms)
    }

    /// Applies a written chunk; returns how many old ids were forgotten to make room.
    pub fn commit_seen(&mut self, write: SeenWrite) -> usize {
        self.seen.commit(write)
    }

    /// Forgets ids past their time to live; returns the keys to delete and how many ids went.
    pub fn expire_seen(&mut self, now: OffsetDateTime) -> (Vec<String>, usize) {
        self.seen.expire(unix_ms(now))
    }

    /// Loads the state found in the bucket into an empty engine.
    pub fn restore(
        &mut self,
        mut groups: Vec<Group>,
        chunks: Vec<(String, SeenChunk)>,
        now: OffsetDateTime,
    ) -> RestoreReport {
        let mut report = RestoreReport {
            seen: self.seen.restore(chunks, unix_ms(now)),
            ..Default::default()
        };
        // Oldest first, so that the least recently updated are the first to go.
        groups.sort_by(|a, b| a.last_arrival.cmp(&b.last_arrival).then(a.key.cmp(&b.key)));
        for group in groups {
            if self.rule(&group.key.rule).is_none() {
                report.orphans.push(group.key.clone());
            }
            report.groups += 1;
            if group.incident.is_some() {
                report.incidents += 1;
            }
            let key = group.key.clone();
            self.insert(group);
            report.evicted.extend(self.enforce_cap(&key));
        }
        report
    }
}

fn resolve_by_event(group: &Group, event: &Event) -> Change {
    match &group.incident {
        Some(tracked) => {
            let resolution = Resolution::ByEvent {
                event_type: event.event_type.to_string(),
                event_id: event.event_id,
            };
            Change {
                key: group.key.clone(),
                after: None,
                emit: Some(tracked.resolve(&resolution, event.timestamp.0)),
                kind: ChangeKind::ResolvedByEvent,
                forget: group.event_ids(),
            }
        }
        None => Change {
            key: group.key.clone(),
            after: None,
            emit: None,
            kind: ChangeKind::Cleared,
            forget: group.event_ids(),
        },
    }
}

#[cfg(test)]
mod tests;
