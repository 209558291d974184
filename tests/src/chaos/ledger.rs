//! What the streams hold after a chaos run, and the invariants checked against it. Each check
//! says in a comment what it can assert exactly and why; a broken invariant becomes one
//! finding naming the ids involved.
//!
//! The streams are read whole, as the admin, after the platform settled. "Stored messages"
//! counts what the server kept: a re-publication with the same `Nats-Msg-Id` within the
//! stream's duplicate window (120 s, longer than any redelivery in a run) is dropped by the
//! server and does not count; anything stored twice does.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use async_nats::jetstream::Context as JetStream;
use contracts::{Action, DeadLetter, Decision, Event, Incident, OpsCommand, OpsReceipt, Outcome};
use uuid::Uuid;

use super::flood::{FloodReport, Kind};
use super::tail::{all, Stored};

/// Every stored message of the contracts the chaos test looks at.
pub struct Ledger {
    pub events: Vec<Stored<Event>>,
    pub incidents: Vec<Stored<Incident>>,
    pub decisions: Vec<Stored<Decision>>,
    pub actions: Vec<Stored<Action>>,
    pub outcomes: Vec<Stored<Outcome>>,
    pub commands: Vec<Stored<OpsCommand>>,
    pub receipts: Vec<Stored<OpsReceipt>>,
    pub dead_letters: Vec<Stored<DeadLetter>>,
}

impl Ledger {
    pub async fn read(js: &JetStream) -> Result<Self> {
        Ok(Self {
            events: all(js).await?,
            incidents: all(js).await?,
            decisions: all(js).await?,
            actions: all(js).await?,
            outcomes: all(js).await?,
            commands: all(js).await?,
            receipts: all(js).await?,
            dead_letters: all(js).await?,
        })
    }

    /// The final receipts (success or failure) of each command id, as stored.
    pub fn final_receipts(&self) -> BTreeMap<Uuid, Vec<&OpsReceipt>> {
        let mut out: BTreeMap<Uuid, Vec<&OpsReceipt>> = BTreeMap::new();
        for receipt in self.receipts.iter().map(|r| &r.message) {
            if receipt.status.to_string() != "pending" {
                out.entry(receipt.command_id).or_default().push(receipt);
            }
        }
        out
    }

    /// The pending receipt of each command id, if one was stored.
    pub fn pending_receipts(&self) -> BTreeMap<Uuid, &OpsReceipt> {
        self.receipts
            .iter()
            .map(|r| &r.message)
            .filter(|r| r.status.to_string() == "pending")
            .map(|r| (r.command_id, r))
            .collect()
    }

    /// Outcomes that say an action failed although its ops command succeeded, by error code
    /// (commander stopped waiting for the receipt: a timeout, a reader that failed, its own
    /// death). Not a broken invariant — commander does not reconcile such commands yet
    /// (docs/RELIABILITY.md, "Not kept yet") — but worth knowing how often chaos causes it.
    pub fn outcomes_behind_their_commands(&self) -> BTreeMap<String, usize> {
        let finals = self.final_receipts();
        let succeeded: BTreeSet<Uuid> = self
            .commands
            .iter()
            .filter(|c| {
                finals
                    .get(&c.message.id)
                    .is_some_and(|r| r.iter().all(|r| r.status.to_string() == "success"))
            })
            .filter_map(|c| action_of(&c.message))
            .collect();
        tally(
            self.outcomes
                .iter()
                .map(|o| &o.message)
                .filter(|o| o.status.to_string() != "succeeded" && succeeded.contains(&o.action_id))
                .map(|o| o.error.as_ref().map_or(String::new(), |e| e.code.clone())),
        )
    }

    /// One line of counts, for the run's summary.
    pub fn summary(&self) -> String {
        let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
        for outcome in &self.outcomes {
            let mut status = outcome.message.status.to_string();
            if let Some(error) = &outcome.message.error {
                status = format!("{status}/{}", error.code);
            }
            *outcomes.entry(status).or_default() += 1;
        }
        format!(
            "{} events, {} incident versions, {} decisions, {} actions, {} outcomes {outcomes:?}, {} ops commands, {} receipts, {} dead letters",
            self.events.len(),
            self.incidents.len(),
            self.decisions.len(),
            self.actions.len(),
            self.outcomes.len(),
            self.commands.len(),
            self.receipts.len(),
            self.dead_letters.len()
        )
    }
}

/// Broken invariants, each tagged with the invariant's name.
#[derive(Debug, Default)]
pub struct Findings {
    lines: Vec<(&'static str, String)>,
}

/// Findings shown per invariant in a failure message (the rest are counted).
const SHOWN_PER_INVARIANT: usize = 15;

impl Findings {
    pub fn broken(&mut self, invariant: &'static str, detail: impl std::fmt::Display) {
        self.lines.push((invariant, detail.to_string()));
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }
}

impl std::fmt::Display for Findings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut by_invariant: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (invariant, detail) in &self.lines {
            by_invariant.entry(invariant).or_default().push(detail);
        }
        for (invariant, details) in by_invariant {
            writeln!(f, "[{invariant}] broken {} time(s):", details.len())?;
            for detail in details.iter().take(SHOWN_PER_INVARIANT) {
                writeln!(f, "  - {detail}")?;
            }
            if details.len() > SHOWN_PER_INVARIANT {
                writeln!(f, "  … and {} more", details.len() - SHOWN_PER_INVARIANT)?;
            }
        }
        Ok(())
    }
}

/// Counts how often each key occurs.
fn tally<K: Ord>(keys: impl IntoIterator<Item = K>) -> BTreeMap<K, usize> {
    let mut counts = BTreeMap::new();
    for key in keys {
        *counts.entry(key).or_default() += 1;
    }
    counts
}

/// No event lost, none invented. Exact: an event published with its `Nats-Msg-Id` until the
/// server confirmed it is stored once (retries and repeats within the duplicate window are
/// dropped). A bound only for the copies sent without `Nats-Msg-Id`: each attempt whose
/// confirmation was lost may or may not have been stored, so such an event is stored at least
/// once and at most once plus its attempts.
pub fn check_events(ledger: &Ledger, flood: &FloodReport, findings: &mut Findings) {
    let stored = tally(ledger.events.iter().map(|e| e.message.event_id));
    for (id, sent) in &flood.sent {
        let copies = stored.get(id).copied().unwrap_or(0);
        let most = 1 + sent.without_msg_id as usize;
        if copies == 0 {
            findings.broken(
                "no event lost",
                format!("event {id} was confirmed by the server but is not in ORION_EVENTS"),
            );
        } else if copies > most {
            findings.broken("no event lost", format!("event {id} is stored {copies} times; at most {most} copies were sent without Nats-Msg-Id"));
        }
    }
    for id in stored.keys().filter(|id| !flood.sent.contains_key(id)) {
        findings.broken(
            "no event lost",
            format!("ORION_EVENTS holds event {id}, which nobody published"),
        );
    }
}

/// Each incident id: its versions, as stored, in stream order.
fn incidents_by_id(ledger: &Ledger) -> BTreeMap<Uuid, Vec<&Stored<Incident>>> {
    let mut out: BTreeMap<Uuid, Vec<&Stored<Incident>>> = BTreeMap::new();
    for stored in &ledger.incidents {
        out.entry(stored.message.incident_id)
            .or_default()
            .push(stored);
    }
    out
}

/// One trouble, exactly one incident, holding exactly its reports, resolved at the end; no
/// incident without a trouble; never two open incidents of one group at once. Exact, because
/// the flood is closed-loop (see [`super::flood`]): a trouble's recovery is published only once
/// one incident holds all its reports, and a group's next trouble only once that incident is
/// resolved. "At once" is judged in stream order (guardian's publications), not by the
/// versions' timestamps, which follow the events' own timestamps.
pub fn check_incidents(ledger: &Ledger, flood: &FloodReport, findings: &mut Findings) {
    let incidents = incidents_by_id(ledger);
    let listed = |versions: &[&Stored<Incident>]| -> BTreeSet<Uuid> {
        versions
            .iter()
            .flat_map(|v| v.message.event_ids.iter().copied())
            .collect()
    };
    for (id, versions) in &incidents {
        for version in versions {
            let ids = &version.message.event_ids;
            if ids.iter().collect::<BTreeSet<_>>().len() != ids.len() {
                findings.broken(
                    "no event counted twice",
                    format!(
                        "incident {id} version #{} lists an event twice: {ids:?}",
                        version.seq
                    ),
                );
            }
        }
    }
    check_resolved_stays_resolved(&incidents, findings);
    let mut owned: BTreeSet<Uuid> = BTreeSet::new();
    for trouble in &flood.troubles {
        let group = &flood.groups[trouble.group];
        let what = format!("{} {}", group.kind.rule(), group.name);
        let reports: BTreeSet<Uuid> = trouble.reports.iter().copied().collect();
        let holders: Vec<&Uuid> = incidents
            .iter()
            .filter(|(_, v)| !listed(v).is_disjoint(&reports))
            .map(|(id, _)| id)
            .collect();
        let [holder] = holders.as_slice() else {
            findings.broken(
                "one incident per trouble",
                format!(
                    "{what}: its reports {reports:?} are in {} incidents {holders:?}",
                    holders.len()
                ),
            );
            continue;
        };
        owned.insert(**holder);
        let versions = &incidents[*holder];
        let held = listed(versions);
        if held != reports {
            findings.broken("one incident per trouble", format!("{what}: incident {holder} lists {held:?}, the trouble's reports are {reports:?} (a duplicate or a late copy joined, or a report is missing)"));
        }
        if !versions.iter().all(|v| group.matches(&v.message)) {
            findings.broken(
                "one incident per trouble",
                format!("{what}: incident {holder} has versions tagged for another group"),
            );
        }
        let last = versions.last().expect("an incident has a version");
        if last.message.state.to_string() != "resolved" {
            findings.broken(
                "one incident per trouble",
                format!(
                    "{what}: incident {holder} ends {} after its recovery {:?}",
                    last.message.state, trouble.recovery
                ),
            );
        }
    }
    for id in incidents.keys().filter(|id| !owned.contains(id)) {
        findings.broken(
            "one incident per trouble",
            format!(
                "incident {id} belongs to no trouble (opened again, or by a duplicate): {:?}",
                incidents[id]
                    .iter()
                    .map(|v| (&v.message.state, &v.message.event_ids))
                    .collect::<Vec<_>>()
            ),
        );
    }
    check_no_overlap(&incidents, flood, findings);
}

/// An incident's life ends with its resolution: no version after a resolved one is open or
/// acknowledged (a resolved version published again is fine).
fn check_resolved_stays_resolved(
    incidents: &BTreeMap<Uuid, Vec<&Stored<Incident>>>,
    findings: &mut Findings,
) {
    for (id, versions) in incidents {
        let Some(end) = versions
            .iter()
            .position(|v| v.message.state.to_string() == "resolved")
        else {
            continue;
        };
        if let Some(after) = versions[end..]
            .iter()
            .find(|v| v.message.state.to_string() != "resolved")
        {
            findings.broken("no incident reopened", format!("incident {id} was published resolved (#{}), then {} again (#{}) with events {:?}", versions[end].seq, after.message.state, after.seq, after.message.event_ids));
        }
    }
}

/// For each group, its incidents' lives [first version, resolved version] in stream order do
/// not overlap.
fn check_no_overlap(
    incidents: &BTreeMap<Uuid, Vec<&Stored<Incident>>>,
    flood: &FloodReport,
    findings: &mut Findings,
) {
    for group in &flood.groups {
        let mut lives: Vec<(u64, u64, Uuid)> = incidents
            .iter()
            .filter(|(_, v)| group.matches(&v[0].message))
            .map(|(id, v)| {
                let end = v
                    .iter()
                    .find(|s| s.message.state.to_string() == "resolved")
                    .map_or(u64::MAX, |s| s.seq);
                (v[0].seq, end, *id)
            })
            .collect();
        lives.sort();
        for pair in lives.windows(2) {
            let ((_, end, earlier), (start, _, later)) = (pair[0], pair[1]);
            if start < end {
                findings.broken("never two open incidents for one trouble", format!("{} {}: incident {later} opened (#{start}) while {earlier} was still open (resolved at #{end})", group.kind.rule(), group.name));
            }
        }
    }
}

/// Exactly one decision per stored incident version. Exact: brain keeps its effects in an
/// outbox keyed by the incident message's stream sequence, so a redelivered version replays the
/// same decision (same id, dropped by the stream) instead of deciding again, and a crash
/// before the outbox was stored published nothing.
pub fn check_decisions(ledger: &Ledger, findings: &mut Findings) {
    let versions = tally(ledger.incidents.iter().map(|i| i.message.incident_id));
    let decisions = tally(ledger.decisions.iter().map(|d| d.message.incident_id));
    for (incident, count) in &versions {
        let decided = decisions.get(incident).copied().unwrap_or(0);
        if decided != *count {
            findings.broken(
                "one decision per incident version",
                format!("incident {incident}: {count} stored versions, {decided} decisions"),
            );
        }
    }
    for incident in decisions.keys().filter(|i| !versions.contains_key(i)) {
        findings.broken(
            "one decision per incident version",
            format!("decisions about incident {incident}, which guardian never published"),
        );
    }
    for (id, count) in tally(ledger.decisions.iter().map(|d| d.message.decision_id)) {
        if count > 1 {
            findings.broken(
                "one decision per incident version",
                format!("decision {id} is stored {count} times"),
            );
        }
    }
}

/// Each action stored once, for an EXECUTE_SAFE_ACTION decision that names it, at most one
/// per decision, and only for outages (the only incidents the chaos policy acts on). Exact,
/// for the outbox reason above.
pub fn check_actions(ledger: &Ledger, flood: &FloodReport, findings: &mut Findings) {
    let decisions: BTreeMap<Uuid, &Decision> = ledger
        .decisions
        .iter()
        .map(|d| (d.message.decision_id, &d.message))
        .collect();
    for (id, count) in tally(ledger.actions.iter().map(|a| a.message.action_id)) {
        if count > 1 {
            findings.broken(
                "one action per decision",
                format!("action {id} is stored {count} times"),
            );
        }
    }
    let per_decision = tally(ledger.actions.iter().map(|a| a.message.decision_id));
    for (decision, count) in per_decision.iter().filter(|(_, c)| **c > 1) {
        findings.broken(
            "one action per decision",
            format!("decision {decision} has {count} actions"),
        );
    }
    let outages: BTreeSet<&str> = flood
        .groups
        .iter()
        .filter(|g| g.kind == Kind::Outage)
        .map(|g| g.name.as_str())
        .collect();
    for action in ledger.actions.iter().map(|a| &a.message) {
        let named = decisions.get(&action.decision_id).is_some_and(|d| {
            d.decision_type.to_string() == "EXECUTE_SAFE_ACTION"
                && d.tags.get("action_id") == Some(&action.action_id.to_string())
        });
        if !named {
            findings.broken(
                "one action per decision",
                format!(
                    "action {} has no EXECUTE_SAFE_ACTION decision {} naming it",
                    action.action_id, action.decision_id
                ),
            );
        }
        let target = action
            .parameters
            .service_name
            .as_ref()
            .map(|s| s.to_string());
        if !target.as_deref().is_some_and(|t| outages.contains(t)) {
            findings.broken(
                "one action per decision",
                format!(
                    "action {} targets {target:?}, not a service the flood reported down",
                    action.action_id
                ),
            );
        }
    }
}

/// Exactly one outcome per action, counting stored messages (a re-publication of the stored
/// outcome after a crash has the same outcome id and is dropped by the stream). Exact:
/// commander records the outcome in its claim before publishing it, and a redelivered action
/// whose claim has no outcome gets an `interrupted` one, never a second execution.
pub fn check_outcomes(ledger: &Ledger, findings: &mut Findings) {
    let actions: BTreeSet<Uuid> = ledger.actions.iter().map(|a| a.message.action_id).collect();
    let outcomes = tally(ledger.outcomes.iter().map(|o| o.message.action_id));
    for action in &actions {
        match outcomes.get(action).copied().unwrap_or(0) {
            1 => {}
            n => findings.broken(
                "exactly one outcome per action",
                format!("action {action} has {n} stored outcomes"),
            ),
        }
    }
    for action in outcomes.keys().filter(|a| !actions.contains(a)) {
        findings.broken(
            "exactly one outcome per action",
            format!("an outcome for action {action}, which brain never published"),
        );
    }
}

/// Whether ops-worker answered the never-stored command `id` with its `withdrawn` receipt.
fn withdrawn_unsent(ledger: &Ledger, id: Uuid) -> bool {
    ledger.final_receipts().get(&id).is_some_and(|receipts| {
        receipts.iter().all(|r| {
            r.error_code
                == Some(contracts::generated::ops_receipt_v1::OpsReceiptErrorCode::Withdrawn)
        }) && !receipts.is_empty()
    })
}

/// The action an ops command was sent for (commander's reason names it).
pub fn action_of(command: &OpsCommand) -> Option<Uuid> {
    let reason = command.meta.reason.strip_prefix("orion action ")?;
    reason.split(':').next()?.parse().ok()
}

/// Commander executed each action at most once: at most one ops command per action (besides
/// the `withdraw` of a command it stopped waiting for, which runs nothing), every
/// command for a known action, each stored once. Each command has exactly one final receipt
/// (exact: ops-worker records it in its claim before publishing; a redelivery re-publishes it
/// under the same id, or reports the command `interrupted` if its worker died mid-run). And a
/// succeeded outcome stands for a successful command. The one thing only bounded: an outcome
/// that is not `succeeded` (timeout, interrupted commander) says nothing about its command,
/// which may still have run once — ops-worker's receipt tells.
pub fn check_commands(ledger: &Ledger, findings: &mut Findings) {
    let actions: BTreeSet<Uuid> = ledger.actions.iter().map(|a| a.message.action_id).collect();
    for (id, count) in tally(ledger.commands.iter().map(|c| c.message.id)) {
        if count > 1 {
            findings.broken(
                "no ops command executed twice",
                format!("command {id} is stored {count} times"),
            );
        }
    }
    let sent: BTreeSet<Uuid> = ledger.commands.iter().map(|c| c.message.id).collect();
    let mut by_action: BTreeMap<Uuid, Vec<Uuid>> = BTreeMap::new();
    for command in ledger.commands.iter().map(|c| &c.message) {
        if command.type_ == contracts::generated::ops_command_v1::OpsCommandType::Withdraw {
            // commander taking back a command it stopped waiting for: it runs nothing itself. The
            // command may never have been stored (its publish failed while a node was lost):
            // then ops-worker records it as withdrawn, so it can never run.
            let named = command
                .params
                .get("command_id")
                .and_then(|id| id.as_str())
                .and_then(|id| id.parse::<Uuid>().ok());
            match named {
                Some(id) if sent.contains(&id) => {}
                Some(id) if withdrawn_unsent(ledger, id) => {}
                _ => findings.broken(
                    "no ops command executed twice",
                    format!(
                        "withdraw {} names a command that was neither sent nor recorded as withdrawn: {:?}",
                        command.id, command.params
                    ),
                ),
            }
            continue;
        }
        match action_of(command) {
            Some(action) if actions.contains(&action) => {
                by_action.entry(action).or_default().push(command.id)
            }
            _ => findings.broken(
                "no ops command executed twice",
                format!(
                    "command {} ({}) was sent for no known action: {:?}",
                    command.id, command.type_, command.meta.reason
                ),
            ),
        }
    }
    for (action, commands) in by_action.iter().filter(|(_, c)| c.len() > 1) {
        findings.broken(
            "no ops command executed twice",
            format!(
                "action {action} was executed {} times: commands {commands:?}",
                commands.len()
            ),
        );
    }
    let finals = ledger.final_receipts();
    for command in ledger.commands.iter().map(|c| &c.message) {
        let receipts = finals
            .get(&command.id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if receipts.len() != 1 {
            let statuses: Vec<String> = receipts
                .iter()
                .map(|r| format!("{} {:?}", r.status, r.error))
                .collect();
            findings.broken(
                "exactly one final receipt per command",
                format!(
                    "command {} has {} final receipts: {statuses:?}",
                    command.id,
                    receipts.len()
                ),
            );
        }
    }
    for outcome in ledger.outcomes.iter().map(|o| &o.message) {
        if outcome.status.to_string() != "succeeded" {
            continue;
        }
        let Some(command) = by_action.get(&outcome.action_id).and_then(|c| c.first()) else {
            findings.broken(
                "exactly one outcome per action",
                format!(
                    "outcome {} succeeded, but no ops command was sent for action {}",
                    outcome.outcome_id, outcome.action_id
                ),
            );
            continue;
        };
        let succeeded = finals
            .get(command)
            .is_some_and(|r| r.iter().all(|r| r.status.to_string() == "success"));
        if !succeeded {
            findings.broken(
                "exactly one outcome per action",
                format!(
                    "outcome {} succeeded, but command {command}'s final receipt did not",
                    outcome.outcome_id
                ),
            );
        }
    }
}

/// Nothing was given up: no message dead-lettered (the flood sends only valid messages, and no
/// handler may exhaust its deliveries under these faults).
pub fn check_dead_letters(ledger: &Ledger, findings: &mut Findings) {
    for letter in ledger.dead_letters.iter().map(|d| &d.message) {
        let mut letter = contracts::to_value(letter).unwrap_or_default();
        // The payload is base64 and long; the rest says who gave up what and why.
        letter.as_object_mut().map(|l| l.remove("payload_base64"));
        findings.broken("nothing dead-lettered", letter);
    }
}
