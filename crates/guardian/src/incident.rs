//! An incident guardian is tracking, and how each of its versions is built. Pure code.
//!
//! Every version is a function of the tracked state and the message that caused it — never of
//! the wall clock — so that a version rebuilt after a crash is byte-for-byte the one that may
//! already have been published, and the bus drops it as a duplicate
//! (`Nats-Msg-Id = incident_id:timestamp:state`).

use std::collections::BTreeMap;

use contracts::event_v1::EventSeverity;
use contracts::incident_v1::{
    IncidentCorrelationWindow, IncidentIncidentType, IncidentSeverity, IncidentSource,
    IncidentState, IncidentVersion,
};
use contracts::{Incident, Timestamp};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::rules::{event_severity_rank, incident_severity};

/// One correlated event as guardian remembers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub event_id: Uuid,
    /// The event's own timestamp (UTC).
    pub at: Timestamp,
    pub severity: EventSeverity,
}

/// Who acknowledged an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledged {
    pub by: String,
    pub note: Option<String>,
    pub acknowledgement_id: Uuid,
}

/// Why an incident was resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// A `resolve_on` event of the same group.
    ByEvent { event_type: String, event_id: Uuid },
    /// No matching event for `after_s` seconds.
    Quiet { after_s: i64 },
}

/// An open or acknowledged incident: its last emitted version and what the next one needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tracked {
    /// The last version emitted (or about to be).
    pub incident: Incident,
    /// Id of the event or acknowledgement that caused that version.
    pub cause: Uuid,
    /// Listed events (`event_ids`), oldest first.
    pub events: Vec<Observed>,
    /// Correlated events beyond the per-incident cap: counted, in the window, not listed.
    pub unlisted: u64,
    /// First and last event timestamps (the correlation window), listed or not.
    pub first: Timestamp,
    pub last: Timestamp,
    /// Highest event severity so far.
    pub highest: EventSeverity,
    /// The rule's fixed incident severity, if it has one.
    pub fixed_severity: Option<IncidentSeverity>,
    /// The readable head of the description ("service_outage of service_name=payments …").
    pub label: String,
    pub acknowledged: Option<Acknowledged>,
}

/// `cause` in UTC, but strictly after the previous version's timestamp: two versions of one
/// incident never share `incident_id:timestamp:state`, so the bus never drops a real change as
/// a duplicate.
///
/// The end of time is a documented clamp, never a panic: a version never goes past
/// [`Timestamp::MAX`] (the last instant the contracts accept). An incident whose last version
/// is at `Timestamp::MAX` gets its next versions at `Timestamp::MAX` too; a change of state
/// (acknowledged, resolved) still has its own message id, a growth in the same state is stored
/// but dropped by the server as a duplicate of the previous version.
pub fn version_timestamp(cause: OffsetDateTime, previous: Option<&Timestamp>) -> Timestamp {
    let cause = Timestamp(cause).to_utc().clamped();
    match previous {
        Some(previous) => {
            let next = previous
                .to_utc()
                .checked_add(time::Duration::milliseconds(1))
                .unwrap_or(Timestamp::MAX);
            cause.max(next)
        }
        None => cause,
    }
}

/// The tags of an incident: each group-by key's last path segment → its value, and `rule`.
pub fn tags(rule: &str, names: &[String], values: &[String]) -> BTreeMap<String, String> {
    let mut tags: BTreeMap<String, String> =
        names.iter().cloned().zip(values.iter().cloned()).collect();
    tags.insert(crate::rules::RULE_TAG.to_string(), rule.to_string());
    tags
}

/// What a new incident is made of.
pub struct Opening<'a> {
    pub incident_type: IncidentIncidentType,
    pub rule: &'a str,
    pub event_types: &'a [String],
    pub tags: BTreeMap<String, String>,
    pub fixed_severity: Option<IncidentSeverity>,
    /// The events that reached the threshold, oldest first.
    pub events: Vec<Observed>,
    pub max_listed: usize,
    /// The event that reached the threshold.
    pub cause: Uuid,
    pub cause_at: OffsetDateTime,
}

impl Tracked {
    /// A new incident (a fresh UUID v4) from the events that reached the threshold.
    pub fn open(opening: Opening<'_>) -> Self {
        let mut events = opening.events;
        let first = events.first().map(|e| e.at).expect("at least one event");
        let last = events
            .iter()
            .map(|e| e.at)
            .max()
            .expect("at least one event");
        let highest = events
            .iter()
            .map(|e| e.severity)
            .max_by_key(|s| event_severity_rank(*s))
            .expect("at least one event");
        let unlisted = events.len().saturating_sub(opening.max_listed) as u64;
        events.truncate(opening.max_listed.max(1));
        let group: Vec<String> = opening
            .tags
            .iter()
            .filter(|(k, _)| k.as_str() != crate::rules::RULE_TAG)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let label = format!(
            "{} of {} (rule {}, {} events)",
            opening.incident_type,
            if group.is_empty() {
                "everything".to_string()
            } else {
                group.join(", ")
            },
            opening.rule,
            opening.event_types.join("/"),
        );
        let timestamp = version_timestamp(opening.cause_at.max(last.0), None);
        let placeholder = Incident {
            version: IncidentVersion::X10,
            incident_id: Uuid::new_v4(),
            timestamp,
            source: IncidentSource::OrionGuardian,
            incident_type: opening.incident_type,
            severity: IncidentSeverity::Low,
            event_ids: Vec::new(),
            correlation_window: IncidentCorrelationWindow {
                start: first,
                end: last,
            },
            state: IncidentState::Open,
            description: None,
            tags: opening.tags,
        };
        let mut tracked = Self {
            incident: placeholder,
            cause: opening.cause,
            events,
            unlisted,
            first,
            last,
            highest,
            fixed_severity: opening.fixed_severity,
            label,
            acknowledged: None,
        };
        tracked.incident = tracked.render(IncidentState::Open, timestamp, None);
        tracked
    }

    /// The incident with `event` added: listed in timestamp order (or counted past the cap),
    /// window and severity widened, same state.
    pub fn grow(&self, event: Observed, max_listed: usize) -> Self {
        let mut next = self.clone();
        let cause_at = event.at.0;
        next.cause = event.event_id;
        next.first = next.first.min(event.at);
        next.last = next.last.max(event.at);
        if event_severity_rank(event.severity) > event_severity_rank(next.highest) {
            next.highest = event.severity;
        }
        if next.events.len() < max_listed.max(1) {
            let position = next.events.partition_point(|e| e.at <= event.at);
            next.events.insert(position, event);
        } else {
            next.unlisted += 1;
        }
        let timestamp = version_timestamp(cause_at, Some(&self.incident.timestamp));
        next.incident = next.render(self.incident.state, timestamp, None);
        next
    }

    /// The acknowledged version.
    pub fn acknowledge(&self, ack: Acknowledged, at: OffsetDateTime) -> Self {
        let mut next = self.clone();
        next.cause = ack.acknowledgement_id;
        next.acknowledged = Some(ack);
        let timestamp = version_timestamp(at, Some(&self.incident.timestamp));
        next.incident = next.render(IncidentState::Acknowledged, timestamp, None);
        next
    }

    /// The final, resolved version.
    pub fn resolve(&self, resolution: &Resolution, at: OffsetDateTime) -> Incident {
        let timestamp = version_timestamp(at, Some(&self.incident.timestamp));
        self.render(IncidentState::Resolved, timestamp, Some(resolution))
    }

    fn severity(&self) -> IncidentSeverity {
        self.fixed_severity
            .unwrap_or_else(|| incident_severity(self.highest))
    }

    fn render(
        &self,
        state: IncidentState,
        timestamp: Timestamp,
        resolution: Option<&Resolution>,
    ) -> Incident {
        let mut incident = self.incident.clone();
        incident.state = state;
        incident.timestamp = timestamp;
        incident.severity = self.severity();
        incident.event_ids = self.events.iter().map(|e| e.event_id).collect();
        incident.correlation_window = IncidentCorrelationWindow {
            start: self.first,
            end: self.last,
        };
        incident.description = Some(self.describe(resolution));
        incident
    }

    fn describe(&self, resolution: Option<&Resolution>) -> String {
        let count = self.events.len() as u64 + self.unlisted;
        let mut text = format!(
            "{}: {count} event{} from {} to {}",
            self.label,
            if count == 1 { "" } else { "s" },
            self.first,
            self.last
        );
        if self.unlisted > 0 {
            text.push_str(&format!(
                " (the first {} listed, {} more counted)",
                self.events.len(),
                self.unlisted
            ));
        }
        if let Some(ack) = &self.acknowledged {
            text.push_str(&format!("; acknowledged by {}", ack.by));
            if let Some(note) = ack.note.as_deref().filter(|n| !n.is_empty()) {
                text.push_str(&format!(" ({note})"));
            }
        }
        match resolution {
            Some(Resolution::ByEvent {
                event_type,
                event_id,
            }) => text.push_str(&format!("; resolved by {event_type} event {event_id}")),
            Some(Resolution::Quiet { after_s }) => {
                text.push_str(&format!("; resolved: no matching event for {after_s} s"))
            }
            None => {}
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn version_timestamps_follow_the_cause_and_always_advance() {
        let cause = ts("2026-02-14T12:00:00+02:00");
        assert_eq!(
            version_timestamp(cause.0, None).to_string(),
            "2026-02-14T10:00:00Z"
        );
        let previous = ts("2026-02-14T10:00:05Z");
        assert_eq!(
            version_timestamp(cause.0, Some(&previous)).to_string(),
            "2026-02-14T10:00:05.001Z"
        );
        let later = ts("2026-02-14T10:01:00Z");
        assert_eq!(version_timestamp(later.0, Some(&previous)), later);
    }

    #[test]
    fn a_version_after_one_at_the_end_of_time_stays_at_the_end_of_time() {
        let last = ts("9998-12-31T23:59:59.999Z");
        assert_eq!(last, Timestamp::MAX);
        let cause = ts("2026-02-14T12:00:00Z");
        assert_eq!(version_timestamp(cause.0, Some(&last)), Timestamp::MAX);
        assert_eq!(version_timestamp(last.0, Some(&last)), Timestamp::MAX);
        // A value built by hand beyond the range (decode refuses it) is clamped, no panic.
        let beyond = time::OffsetDateTime::parse(
            "9999-12-31T23:59:59-00:01",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(version_timestamp(beyond, None), Timestamp::MAX);
        assert_eq!(
            version_timestamp(cause.0, Some(&Timestamp(beyond))),
            Timestamp::MAX
        );
    }

    #[test]
    fn tags_are_last_segments_and_the_rule() {
        let tags = tags("outage", &["service_name".into()], &["payments".into()]);
        assert_eq!(
            tags.into_iter().collect::<Vec<_>>(),
            vec![
                ("rule".to_string(), "outage".to_string()),
                ("service_name".to_string(), "payments".to_string())
            ]
        );
    }
}
