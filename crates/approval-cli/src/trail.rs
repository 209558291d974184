//! The audit trail of one incident: every message of its chain, in time order.
//!
//! [`build_trail`] is a pure function from the decoded messages of the streams to the ordered
//! chain, so it is tested without a server. The chain, from the incident outwards:
//!
//! - every version of the incident (`orion.incident.v1`, same `incident_id`);
//! - its events (`incident.event_ids`, over all versions);
//! - decisions about it (`decision.incident_id`);
//! - approval requests (`incident_id`, or `decision_id` of one of those decisions);
//! - approval decisions (`approval_request_id` of one of those requests) and legacy approvals
//!   (`decision_id`);
//! - actions (`decision_id` of a decision, `approval_id` of an approval, or
//!   `parameters.incident_id`);
//! - ops commands commander sent for those actions (`meta.reason` names the action id:
//!   commander writes `orion action <action_id>: …`), and their receipts (`command_id`);
//! - outcomes (`action_id`), notifications and acknowledgements (`incident_id` or `action_id`);
//! - dead letters whose raw payload mentions the incident or any id of the chain;
//! - the silences that kept brain from acting (brain's decision names them in its
//!   `silence_id` tag), as created and as lifted.
//!
//! [`request_chain`] is the smaller chain `show` prints for one approval request.

use std::collections::HashSet;

use base64::Engine;
use contracts::Message;
use uuid::Uuid;

use crate::approvals::RequestView;
use crate::records::{sort_by_time, Record};

/// The tag of brain's decisions that names the silences that held it back (brain's
/// `decide::SILENCE_TAG`).
pub const SILENCE_TAG: &str = "silence_id";

/// The ids that make up one incident's chain.
#[derive(Debug, Default, Clone)]
struct Chain {
    incident: Uuid,
    events: HashSet<Uuid>,
    decisions: HashSet<Uuid>,
    requests: HashSet<Uuid>,
    approvals: HashSet<Uuid>,
    actions: HashSet<Uuid>,
    commands: HashSet<Uuid>,
    silences: HashSet<Uuid>,
}

impl Chain {
    fn size(&self) -> usize {
        self.events.len()
            + self.decisions.len()
            + self.requests.len()
            + self.approvals.len()
            + self.actions.len()
            + self.commands.len()
            + self.silences.len()
    }

    /// Every id a dead letter may mention to belong to the chain (lowercase text).
    fn mentionable(&self) -> Vec<String> {
        std::iter::once(&self.incident)
            .chain(&self.decisions)
            .chain(&self.requests)
            .chain(&self.approvals)
            .chain(&self.actions)
            .chain(&self.commands)
            .map(Uuid::to_string)
            .collect()
    }

    fn reason_names_action(&self, reason: &str) -> bool {
        let reason = reason.to_ascii_lowercase();
        self.actions
            .iter()
            .any(|action| reason.contains(&action.to_string()))
    }

    /// Adds what `message` links into the chain; true when it belongs to the chain.
    fn link(&mut self, message: &Message) -> bool {
        match message {
            Message::Incident(m) if m.incident_id == self.incident => {
                self.events.extend(m.event_ids.iter().copied());
                true
            }
            Message::Decision(m)
                if m.incident_id == self.incident || self.decisions.contains(&m.decision_id) =>
            {
                self.decisions.insert(m.decision_id);
                // brain names the silences that held it back (comma-separated ids).
                if let Some(ids) = m.tags.get(SILENCE_TAG) {
                    self.silences.extend(
                        ids.split(',')
                            .filter_map(|id| id.trim().parse::<Uuid>().ok()),
                    );
                }
                true
            }
            Message::ApprovalRequest(m)
                if m.incident_id == Some(self.incident)
                    || self.decisions.contains(&m.decision_id)
                    || self.requests.contains(&m.approval_request_id) =>
            {
                self.requests.insert(m.approval_request_id);
                self.decisions.insert(m.decision_id);
                true
            }
            Message::ApprovalDecision(m)
                if self.requests.contains(&m.approval_request_id)
                    || self.approvals.contains(&m.approval_id) =>
            {
                self.approvals.insert(m.approval_id);
                self.actions.extend(m.action_id);
                true
            }
            Message::Approval(m) if self.decisions.contains(&m.decision_id) => {
                self.approvals.insert(m.approval_id);
                true
            }
            Message::Action(m)
                if self.decisions.contains(&m.decision_id)
                    || m.approval_id.is_some_and(|a| self.approvals.contains(&a))
                    || m.parameters.incident_id == Some(self.incident)
                    || self.actions.contains(&m.action_id) =>
            {
                self.actions.insert(m.action_id);
                true
            }
            Message::OpsCommand(m)
                if self.commands.contains(&m.id) || self.reason_names_action(&m.meta.reason) =>
            {
                self.commands.insert(m.id);
                true
            }
            Message::OpsReceipt(m) => self.commands.contains(&m.command_id),
            Message::Outcome(m) => self.actions.contains(&m.action_id),
            Message::Notification(m) => {
                m.incident_id == Some(self.incident)
                    || m.action_id.is_some_and(|a| self.actions.contains(&a))
            }
            Message::IncidentAcknowledgement(m) => {
                m.incident_id == self.incident
                    || m.action_id.is_some_and(|a| self.actions.contains(&a))
            }
            Message::Event(m) => self.events.contains(&m.event_id),
            Message::Silence(m) => self.silences.contains(&m.silence_id),
            _ => false,
        }
    }
}

/// Whether a dead letter's raw payload (or its subject's message, as text) mentions any id.
fn dead_letter_mentions(record: &Record, ids: &[String]) -> bool {
    let Message::DeadLetter(dead) = &record.message else {
        return false;
    };
    let payload = base64::engine::general_purpose::STANDARD
        .decode(dead.payload_base64.as_bytes())
        .map(|bytes| String::from_utf8_lossy(&bytes).to_ascii_lowercase())
        .unwrap_or_default();
    ids.iter().any(|id| payload.contains(id.as_str()))
}

/// The chain of `incident_id` among `records`, in time order (see the module docs for what
/// belongs to it). Records that appear twice (same stream and sequence) are kept once.
pub fn build_trail(incident_id: Uuid, records: &[Record]) -> Vec<&Record> {
    let mut chain = Chain {
        incident: incident_id,
        ..Default::default()
    };
    // Links point both ways in time (an incident names events stored before it), so repeat
    // until the chain stops growing.
    let mut members = vec![false; records.len()];
    loop {
        let before = (chain.size(), members.iter().filter(|m| **m).count());
        for (record, member) in records.iter().zip(members.iter_mut()) {
            if !*member && chain.link(&record.message) {
                *member = true;
            }
        }
        if (chain.size(), members.iter().filter(|m| **m).count()) == before {
            break;
        }
    }
    let mentionable = chain.mentionable();
    let mut seen = HashSet::new();
    let mut trail: Vec<&Record> = records
        .iter()
        .zip(&members)
        .filter(|(record, member)| **member || dead_letter_mentions(record, &mentionable))
        .map(|(record, _)| record)
        .filter(|record| seen.insert((record.stream.clone(), record.sequence)))
        .collect();
    sort_by_time(&mut trail);
    trail
}

/// Every incident id in `records` (for resolving an id prefix).
pub fn incident_ids(records: &[Record]) -> impl Iterator<Item = Uuid> + '_ {
    records.iter().filter_map(|r| match &r.message {
        Message::Incident(m) => Some(m.incident_id),
        _ => None,
    })
}

/// The earliest time that matters for `incident_id`: the start of its first correlation window
/// or its first version, whichever is earlier.
pub fn incident_start(incident_id: Uuid, records: &[Record]) -> Option<time::OffsetDateTime> {
    records
        .iter()
        .filter_map(|r| match &r.message {
            Message::Incident(m) if m.incident_id == incident_id => Some(
                m.correlation_window
                    .start
                    .as_offset_date_time()
                    .min(m.timestamp.as_offset_date_time())
                    .min(r.stored_at),
            ),
            _ => None,
        })
        .min()
}

/// The decision chain of a request: brain's decision behind it (and brain's later decisions on
/// the same incident), the request, its answers, the actions released and their outcomes.
pub fn request_chain<'a>(view: &RequestView<'a>, records: &'a [Record]) -> Vec<&'a Record> {
    let request = view.request;
    let answers: HashSet<Uuid> = view
        .answers
        .iter()
        .filter_map(|r| match &r.message {
            Message::ApprovalDecision(d) => Some(d.approval_id),
            Message::Approval(a) => Some(a.approval_id),
            _ => None,
        })
        .collect();
    let requested_at = request.timestamp.as_offset_date_time();
    let actions: HashSet<Uuid> = records
        .iter()
        .filter_map(|r| match &r.message {
            Message::Action(a)
                if a.decision_id == request.decision_id
                    || a.approval_id.is_some_and(|id| answers.contains(&id)) =>
            {
                Some(a.action_id)
            }
            _ => None,
        })
        .collect();
    let mut chain: Vec<&Record> = records
        .iter()
        .filter(|r| match &r.message {
            Message::Decision(d) => {
                d.decision_id == request.decision_id
                    || (Some(d.incident_id) == request.incident_id
                        && d.timestamp.as_offset_date_time() >= requested_at)
            }
            Message::ApprovalRequest(q) => q.approval_request_id == request.approval_request_id,
            Message::ApprovalDecision(d) => answers.contains(&d.approval_id),
            Message::Approval(a) => answers.contains(&a.approval_id),
            Message::Action(a) => actions.contains(&a.action_id),
            Message::Outcome(o) => actions.contains(&o.action_id),
            _ => false,
        })
        .collect();
    let mut seen = HashSet::new();
    chain.retain(|r| seen.insert((r.stream.clone(), r.sequence)));
    sort_by_time(&mut chain);
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::RawRecord;
    use serde_json::{json, Value};
    use time::OffsetDateTime;

    fn at(seconds: i64) -> String {
        crate::render::format_time(
            OffsetDateTime::from_unix_timestamp(1_771_070_400 + seconds).unwrap(),
        )
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// Records stored in the order given (sequence = position), from JSON.
    fn records(messages: &[(&str, Value)]) -> Vec<Record> {
        messages
            .iter()
            .enumerate()
            .map(|(i, (subject, value))| {
                Record::decode(RawRecord {
                    stream: "ANY".into(),
                    sequence: i as u64 + 1,
                    subject: subject.to_string(),
                    stored_at: OffsetDateTime::from_unix_timestamp(1_771_080_000 + i as i64)
                        .unwrap(),
                    payload: serde_json::to_vec(value).unwrap(),
                    signature: None,
                    trace: None,
                })
                .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    }

    fn incident(incident: u128, t: i64, events: &[u128], state: &str) -> (&'static str, Value) {
        let events: Vec<Uuid> = events.iter().map(|e| id(*e)).collect();
        (
            "orion.incident.v1",
            json!({
                "version": "1.0", "incident_id": id(incident), "timestamp": at(t), "source": "orion-guardian",
                "incident_type": "service_outage", "severity": "high", "event_ids": events,
                "correlation_window": {"start": at(0), "end": at(t)}, "state": state,
            }),
        )
    }

    fn event(event: u128, t: i64) -> (&'static str, Value) {
        (
            "orion.event.v1",
            json!({
                "version": "1.0", "event_id": id(event), "timestamp": at(t), "source": "orion-probe",
                "event_type": "service_down", "severity": "error", "data": {"service_name": "web"},
            }),
        )
    }

    fn decision(decision: u128, incident: u128, t: i64) -> (&'static str, Value) {
        (
            "orion.decision.v1",
            json!({
                "version": "1.0", "decision_id": id(decision), "timestamp": at(t), "source": "orion-brain",
                "incident_id": id(incident), "decision_type": "REQUEST_APPROVAL",
                "safety_classification": "RISKY", "requires_approval": true,
                "reasoning": "restarting web is RISKY",
            }),
        )
    }

    fn request(request: u128, decision: u128, t: i64) -> (&'static str, Value) {
        (
            "orion.approval_request.v1",
            json!({
                "version": "1.0", "approval_request_id": id(request), "timestamp": at(t),
                "source": "orion-brain", "decision_id": id(decision), "action_type": "restart_service",
                "risk_level": "RISKY",
                "requested_action": {"action_type": "restart_service", "parameters": {}},
                "expires_at": at(t + 300),
            }),
        )
    }

    fn approval(approval: u128, request: u128, decision: u128, t: i64) -> (&'static str, Value) {
        (
            "orion.approval_decision.v1",
            json!({
                "version": "1.0", "approval_id": id(approval), "timestamp": at(t),
                "source": "orion-approval-cli", "approval_request_id": id(request),
                "decision_id": id(decision), "decision": "approve", "admin_identity": "alice",
                "reason": "ok", "issued_at": at(t), "expires_at": at(t + 300),
            }),
        )
    }

    fn action(action: u128, decision: u128, t: i64) -> (&'static str, Value) {
        (
            "orion.action.v1",
            json!({
                "version": "1.0", "action_id": id(action), "timestamp": at(t), "source": "orion-brain",
                "decision_id": id(decision), "action_type": "restart_service",
                "safety_classification": "RISKY", "state": "pending",
                "parameters": {"service_name": "web"},
            }),
        )
    }

    fn command(command: u128, reason: String, t: i64) -> (&'static str, Value) {
        (
            "titan.ops.command.v1",
            json!({
                "v": 1, "id": id(command), "ts": at(t), "type": "restart", "target": "web",
                "meta": {"initiator_id": "orion-commander", "reason": reason, "signature": "ab".repeat(32)},
            }),
        )
    }

    fn receipt(receipt: u128, command: u128, t: i64) -> (&'static str, Value) {
        (
            "titan.ops.receipt.v1",
            json!({
                "v": 1, "id": id(receipt), "command_id": id(command), "ts": at(t), "type": "restart",
                "status": "failure", "error": "container web-1 did not stop",
                "meta": {"executor_id": "host", "duration_ms": 12},
            }),
        )
    }

    fn outcome(outcome: u128, action: u128, t: i64) -> (&'static str, Value) {
        (
            "orion.outcome.v1",
            json!({
                "version": "1.0", "outcome_id": id(outcome), "timestamp": at(t),
                "source": "orion-commander", "action_id": id(action), "status": "failed",
                "execution_time_ms": 12, "error": {"code": "ops_failure", "message": "did not stop"},
            }),
        )
    }

    fn acknowledgement(ack: u128, incident: u128, t: i64) -> (&'static str, Value) {
        (
            "orion.incident_acknowledgement.v1",
            json!({
                "version": "1.0", "acknowledgement_id": id(ack), "timestamp": at(t),
                "source": "orion-approval-cli", "incident_id": id(incident), "acknowledged_by": "bob",
            }),
        )
    }

    fn dead_letter(letter: u128, t: i64, payload: &str) -> (&'static str, Value) {
        (
            "platform.dead_letter.v1",
            json!({
                "version": "1.0", "dead_letter_id": id(letter), "timestamp": at(t), "service": "guardian",
                "subject": "orion.incident_acknowledgement.v1",
                "reason": {"code": "schema_violation", "message": "bad"},
                "payload_base64": base64::engine::general_purpose::STANDARD.encode(payload),
            }),
        )
    }

    fn ids(trail: &[&Record]) -> Vec<String> {
        trail
            .iter()
            .map(|r| crate::render::summarize(&r.message).id)
            .collect()
    }

    #[test]
    fn the_chain_is_followed_link_by_link_and_ordered_by_message_time() {
        // Ids: incident 1, events 2-3, decision 10, request 20, approval 30, action 40,
        // command 50, receipt 51, outcome 60, ack 70, dead letters 80-81; noise in the 900s.
        let stored = records(&[
            // Stored out of time order: the incident before its events, the receipt before
            // its command.
            incident(1, 10, &[2, 3], "open"),
            receipt(51, 50, 45),
            outcome(60, 40, 46),
            event(3, 5),
            event(2, 1),
            decision(10, 1, 11),
            request(20, 10, 12),
            approval(30, 20, 10, 20),
            action(40, 10, 21),
            command(
                50,
                format!("orion action {}: restart_service web", id(40)),
                22,
            ),
            acknowledgement(70, 1, 30),
            dead_letter(
                80,
                31,
                &format!(
                    "{{\"incident_id\":\"{}\"}}",
                    id(1).to_string().to_uppercase()
                ),
            ),
            dead_letter(81, 32, &format!("{{\"action_id\":\"{}\"}}", id(40))),
            incident(1, 50, &[2, 3], "acknowledged"),
            // Noise: another incident, its decision and action, an ops command by an operator,
            // a dead letter about something else, an event of no incident.
            incident(900, 10, &[901], "open"),
            event(901, 2),
            event(902, 3),
            decision(910, 900, 11),
            action(940, 910, 21),
            command(950, "operator restart".into(), 22),
            receipt(951, 950, 23),
            dead_letter(980, 31, "{\"incident_id\":\"nothing to do with it\"}"),
        ]);
        let trail = build_trail(id(1), &stored);
        let want: Vec<String> = [2, 3, 1, 10, 20, 30, 40, 50, 70, 80, 81, 51, 60, 1]
            .iter()
            .map(|n| id(*n).to_string())
            .collect();
        assert_eq!(ids(&trail), want);

        // The noise incident has its own chain.
        assert_eq!(
            ids(&build_trail(id(900), &stored)),
            [901, 900, 910, 940]
                .iter()
                .map(|n| id(*n).to_string())
                .collect::<Vec<_>>()
        );
        assert!(build_trail(id(12345), &stored).is_empty());
        assert_eq!(incident_ids(&stored).filter(|i| *i == id(1)).count(), 2);
        assert_eq!(
            incident_start(id(1), &stored).map(crate::render::format_time),
            Some(at(0))
        );
    }

    #[test]
    fn a_request_naming_the_incident_pulls_in_its_decision_and_actions() {
        // Brain's decision is missing from the streams (aged out); the request names the
        // incident, and the action hangs off the request's decision.
        let mut with_incident = request(20, 10, 12);
        with_incident.1["incident_id"] = json!(id(1));
        let stored = records(&[with_incident, action(40, 10, 21), outcome(60, 40, 46)]);
        assert_eq!(
            ids(&build_trail(id(1), &stored)),
            [20, 40, 60]
                .iter()
                .map(|n| id(*n).to_string())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_request_chain_is_its_decisions_answers_actions_and_outcomes() {
        // Request 20 of decision 10 on incident 1, approved by 30; action 40 hangs off the
        // decision, action 41 off the approval; decision 11 is brain's later word on the
        // incident, decision 9 an earlier one (not part of this request's chain).
        let mut with_incident = request(20, 10, 12);
        with_incident.1["incident_id"] = json!(id(1));
        let mut by_approval = action(41, 999, 22);
        by_approval.1["approval_id"] = json!(id(30));
        let mut stored = records(&[
            outcome(61, 41, 47),
            decision(9, 1, 5),
            decision(10, 1, 11),
            with_incident,
            approval(30, 20, 10, 20),
            action(40, 10, 21),
            by_approval,
            outcome(60, 40, 46),
            decision(11, 1, 50),
            // Noise: another incident's decision, action and outcome; another request.
            decision(910, 900, 11),
            action(940, 910, 21),
            outcome(960, 940, 46),
            request(920, 910, 12),
        ]);
        // The same stored message read twice (two reads of one stream) counts once.
        stored.push(stored[2].clone());
        let now = OffsetDateTime::from_unix_timestamp(1_771_070_400 + 100).unwrap();
        let views = crate::approvals::requests(&stored, now);
        let view = views
            .iter()
            .find(|v| v.request.approval_request_id == id(20))
            .unwrap();
        assert_eq!(
            ids(&request_chain(view, &stored)),
            [10, 20, 30, 40, 41, 60, 61, 11]
                .iter()
                .map(|n| id(*n).to_string())
                .collect::<Vec<_>>()
        );
    }

    fn silence(silence: u128, t: i64, state: &str) -> (&'static str, Value) {
        let mut value = json!({
            "version": "1.0", "silence_id": id(silence), "timestamp": at(t),
            "source": "orion-approval-cli", "state": state, "admin_identity": "alice",
            "created_by": "alice", "created_at": at(-100), "reason": "migration",
            "starts_at": at(-100), "ends_at": at(3600), "match": {"target": "web"},
        });
        if state == "lifted" {
            value["lifted_at"] = json!(at(t));
            value["lift_reason"] = json!("done");
        }
        ("orion.silence.v1", value)
    }

    #[test]
    fn the_silences_that_held_brain_back_are_in_the_trail() {
        let (subject, mut held) = decision(20, 1, 5);
        held["decision_type"] = json!("NO_ACTION");
        held["requires_approval"] = json!(false);
        held["tags"] = json!({ SILENCE_TAG: format!("{},{}", id(90), id(91)) });
        let records = records(&[
            silence(90, -100, "active"),
            silence(91, -50, "active"),
            silence(92, -40, "active"),
            incident(1, 4, &[5], "open"),
            (subject, held),
            silence(90, 50, "lifted"),
        ]);
        let trail = build_trail(id(1), &records);
        assert_eq!(
            ids(&trail),
            [90, 91, 1, 20, 90].map(|n| id(n).to_string()),
            "silence 92 held nothing back"
        );
        let line = crate::render::timeline_line(trail[4], None);
        assert!(line.contains("silence lifted"), "{line}");
    }
}
