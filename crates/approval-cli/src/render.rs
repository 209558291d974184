//! How messages look to a person: one line per message (kind, id, the fields that matter),
//! times, durations and tables; and to a script: the `--json` envelope of a record. Pure
//! formatting, no I/O.

use contracts::Message;
use serde_json::{json, Map, Value};
use time::{OffsetDateTime, UtcOffset};

use crate::records::Record;

/// RFC 3339 in UTC with milliseconds: `2026-02-14T12:00:00.042Z`.
pub fn format_time(time: OffsetDateTime) -> String {
    // Total: a time UTC cannot hold (only one built by hand; decode refuses them) is shown in
    // its own offset rather than panicking.
    let time = time.checked_to_offset(UtcOffset::UTC).unwrap_or(time);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time.format(&format)
        .unwrap_or_else(|_| time.unix_timestamp().to_string())
}

/// A short, readable duration: `45s`, `4m 12s`, `2h 05m`, `3d 04h`.
pub fn format_duration(duration: time::Duration) -> String {
    let total = duration.whole_seconds().unsigned_abs();
    let (days, hours, minutes, seconds) = (
        total / 86_400,
        (total % 86_400) / 3600,
        (total % 3600) / 60,
        total % 60,
    );
    if days > 0 {
        format!("{days}d {hours:02}h")
    } else if hours > 0 {
        format!("{hours}h {minutes:02}m")
    } else if minutes > 0 {
        format!("{minutes}m {seconds:02}s")
    } else {
        format!("{seconds}s")
    }
}

/// Cuts `text` to at most `max` characters (on a character boundary), marking the cut with `…`.
pub fn truncate(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The target an action's parameters name: `service_name`, else `device_id`, else nothing.
pub fn target_of(parameters: &Map<String, Value>) -> Option<String> {
    ["service_name", "device_id", "incident_id"]
        .iter()
        .find_map(|key| parameters.get(*key).and_then(Value::as_str))
        .map(str::to_string)
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\n', " "))
}

/// What a message is and says, as shown on one line: kind (`incident open`), its id and the
/// fields an operator needs (state, decision type, reasoning, status, error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub kind: String,
    pub id: String,
    pub details: String,
}

/// The one-line summary of `message`.
pub fn summarize(message: &Message) -> Summary {
    let mut parts: Vec<String> = Vec::new();
    let (kind, id) = match message {
        Message::Event(m) => {
            parts.push(format!(
                "{} severity={} source={}",
                m.event_type, m.severity, *m.source
            ));
            if let Some(service) = &m.data.service_name {
                parts.push(format!("service={}", **service));
            }
            if let Some(device) = &m.data.device_id {
                parts.push(format!("device={}", **device));
            }
            if let (Some(metric), Some(value)) = (&m.data.metric, m.data.value) {
                let threshold = m
                    .data
                    .threshold
                    .map(|t| format!(" (threshold {t})"))
                    .unwrap_or_default();
                parts.push(format!("{}={value}{threshold}", **metric));
            }
            if let Some(text) = &m.data.message {
                parts.push(quoted(text));
            }
            ("event".to_string(), m.event_id.to_string())
        }
        Message::Incident(m) => {
            parts.push(format!(
                "{} severity={} events={}",
                m.incident_type,
                m.severity,
                m.event_ids.len()
            ));
            if let Some(description) = &m.description {
                parts.push(quoted(description));
            }
            (format!("incident {}", m.state), m.incident_id.to_string())
        }
        Message::Decision(m) => {
            parts.push(format!(
                "safety={} approval={}",
                m.safety_classification,
                if m.requires_approval {
                    "required"
                } else {
                    "no"
                }
            ));
            if let Some(level) = &m.autonomy_level {
                parts.push(format!("autonomy={level}"));
            }
            if let Some(action) = &m.proposed_action {
                let target = target_of(&action.parameters)
                    .map(|t| format!(" {t}"))
                    .unwrap_or_default();
                parts.push(format!("proposes {}{target}", action.action_type));
            }
            parts.push(format!("incident={}", m.incident_id));
            parts.push(quoted(&m.reasoning));
            (
                format!("decision {}", m.decision_type),
                m.decision_id.to_string(),
            )
        }
        Message::ApprovalRequest(m) => {
            let target = target_of(&m.requested_action.parameters)
                .map(|t| format!(" {t}"))
                .unwrap_or_default();
            parts.push(format!(
                "{}{target} risk={} expires={}",
                m.requested_action.action_type,
                m.risk_level,
                format_time(m.expires_at.as_offset_date_time())
            ));
            parts.push(format!("decision={}", m.decision_id));
            if let Some(reasoning) = &m.requested_action.reasoning {
                parts.push(quoted(reasoning));
            }
            (
                "approval request".to_string(),
                m.approval_request_id.to_string(),
            )
        }
        Message::ApprovalDecision(m) => {
            parts.push(format!(
                "by {} for request {} valid until {}",
                m.admin_identity,
                m.approval_request_id,
                format_time(m.expires_at.as_offset_date_time())
            ));
            let overrides: Vec<&str> = [
                (m.override_cooldown, "cooldown"),
                (m.override_circuit_breaker, "circuit-breaker"),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| *name)
            .collect();
            if !overrides.is_empty() {
                parts.push(format!("overrides={}", overrides.join(",")));
            }
            parts.push(format!("via {}", *m.source));
            parts.push(quoted(&m.reason));
            (
                format!("approval {}", m.decision),
                m.approval_id.to_string(),
            )
        }
        Message::Approval(m) => {
            parts.push(format!(
                "by {} for decision {} (legacy, {})",
                m.approved_by, m.decision_id, m.source
            ));
            if let Some(reason) = &m.reason {
                parts.push(quoted(reason));
            }
            (
                format!("legacy approval {}", m.status),
                m.approval_id.to_string(),
            )
        }
        Message::Action(m) => {
            let parameters = serde_json::to_value(&m.parameters)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            let target = target_of(&parameters)
                .map(|t| format!(" {t}"))
                .unwrap_or_default();
            parts.push(format!(
                "{}{target} safety={}",
                m.action_type, m.safety_classification
            ));
            if let Some(replicas) = m.parameters.replicas {
                parts.push(format!("replicas={replicas}"));
            }
            if let Some(approval) = &m.approval_id {
                parts.push(format!("approval={approval}"));
            }
            if m.dry_run {
                parts.push("dry-run".to_string());
            }
            parts.push(format!("decision={}", m.decision_id));
            (format!("action {}", m.state), m.action_id.to_string())
        }
        Message::OpsCommand(m) => {
            let target = if m.target.is_empty() { "-" } else { &m.target };
            parts.push(format!("target={target} by {}", m.meta.initiator_id));
            if !m.params.is_empty() {
                parts.push(Value::Object(m.params.clone()).to_string());
            }
            parts.push(quoted(&m.meta.reason));
            (format!("ops command {}", m.type_), m.id.to_string())
        }
        Message::OpsReceipt(m) => {
            parts.push(format!(
                "{} for command {} in {} ms by {}",
                m.type_, m.command_id, m.meta.duration_ms, m.meta.executor_id
            ));
            if let Some(error) = &m.error {
                parts.push(format!("error: {}", quoted(error)));
            } else if let Some(result) = m.result.as_ref().filter(|r| !r.is_empty()) {
                parts.push(Value::Object(result.clone()).to_string());
            }
            (format!("ops receipt {}", m.status), m.id.to_string())
        }
        Message::Outcome(m) => {
            parts.push(format!(
                "action={} in {} ms",
                m.action_id, m.execution_time_ms
            ));
            if m.rollback_executed {
                parts.push("rolled back".to_string());
            }
            if let Some(error) = &m.error {
                parts.push(format!("error {}: {}", error.code, quoted(&error.message)));
            } else if !m.result.is_empty() {
                parts.push(Value::Object(m.result.clone()).to_string());
            }
            (format!("outcome {}", m.status), m.outcome_id.to_string())
        }
        Message::Notification(m) => {
            if let Some(channel) = &m.channel {
                parts.push(format!("[{}]", **channel));
            }
            if let Some(incident) = &m.incident_id {
                parts.push(format!("incident={incident}"));
            }
            parts.push(quoted(&m.message));
            (
                format!("notification {}", m.severity),
                m.notification_id.to_string(),
            )
        }
        Message::IncidentAcknowledgement(m) => {
            parts.push(format!(
                "incident={} by {} via {}",
                m.incident_id, *m.acknowledged_by, m.source
            ));
            if let Some(note) = &m.note {
                parts.push(quoted(note));
            }
            (
                "acknowledgement".to_string(),
                m.acknowledgement_id.to_string(),
            )
        }
        Message::Silence(m) => {
            parts.push(format!(
                "{} by {}",
                crate::silences::match_text(&m.match_),
                m.admin_identity.as_str()
            ));
            match (&m.lifted_at, &m.lift_reason) {
                (Some(at), Some(why)) => {
                    parts.push(format!(
                        "lifted at {}",
                        format_time(at.as_offset_date_time())
                    ));
                    parts.push(quoted(why));
                }
                _ => {
                    parts.push(format!(
                        "from {} until {}",
                        format_time(m.starts_at.as_offset_date_time()),
                        format_time(m.ends_at.as_offset_date_time())
                    ));
                    parts.push(quoted(&m.reason));
                }
            }
            (format!("silence {}", m.state), m.silence_id.to_string())
        }
        Message::DeadLetter(m) => {
            parts.push(format!(
                "{} rejected a message on {}: {}",
                *m.service,
                *m.subject,
                quoted(&m.reason.message)
            ));
            (
                format!("dead letter {}", m.reason.code),
                m.dead_letter_id.to_string(),
            )
        }
    };
    Summary {
        kind,
        id,
        details: parts.join("  "),
    }
}

/// Width of the kind column in timeline lines (the longest kind is
/// `decision EXECUTE_SAFE_ACTION`).
const KIND_WIDTH: usize = 28;

/// One timeline line: `TIME  KIND  ID  DETAILS`, and `[trace …]` unless the message is on the
/// trace `expected` (an event keeps its producer's trace; a message without one says so).
pub fn timeline_line(record: &Record, expected: Option<&str>) -> String {
    let summary = summarize(&record.message);
    let trace = match record.trace.map(|t| t.trace_id()) {
        Some(id) if Some(id.as_str()) == expected => String::new(),
        Some(id) => format!("  [trace {id}]"),
        None => "  [no trace]".to_string(),
    };
    format!(
        "{}  {:<KIND_WIDTH$}  {}  {}{trace}",
        format_time(record.time()),
        summary.kind,
        summary.id,
        summary.details
    )
}

/// The record for scripts (`--json`): where it is stored and the message exactly as published.
pub fn envelope(record: &Record) -> Value {
    let mut envelope = json!({
        "time": format_time(record.time()),
        "subject": record.subject,
        "contract": record.contract(),
        "stream": record.stream,
        "sequence": record.sequence,
        "stored_at": format_time(record.stored_at),
        "message": record.raw,
    });
    if let Some(signature) = &record.signature {
        envelope["signature"] = json!(signature);
    }
    if let Some(trace) = &record.trace {
        envelope["trace_id"] = json!(trace.trace_id());
    }
    envelope
}

/// A table for people: no vertical rules, a rule under the header; wraps to `COLUMNS` when the
/// shell exports it.
pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_style(comfy_table::TableComponent::HeaderLines, '─');
    table.set_style(comfy_table::TableComponent::MiddleHeaderIntersections, '─');
    table.set_style(comfy_table::TableComponent::LeftHeaderIntersection, ' ');
    table.set_style(comfy_table::TableComponent::RightHeaderIntersection, ' ');
    table.set_header(header.to_vec());
    if let Some(width) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
    {
        table.set_width(width);
        table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(time::Duration::seconds(45)), "45s");
        assert_eq!(format_duration(time::Duration::seconds(252)), "4m 12s");
        assert_eq!(format_duration(time::Duration::seconds(7500)), "2h 05m");
        assert_eq!(format_duration(time::Duration::seconds(-252)), "4m 12s");
        assert_eq!(
            format_duration(time::Duration::days(3) + time::Duration::hours(4)),
            "3d 04h"
        );
    }

    #[test]
    fn times_are_utc_with_milliseconds() {
        let time = OffsetDateTime::parse(
            "2026-02-14T13:00:00.042+01:00",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(format_time(time), "2026-02-14T12:00:00.042Z");
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééééééé", 4), "ééé…");
    }
}
