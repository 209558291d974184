//! Approval requests and their answers: which requests are pending, how one was settled, and
//! the signed answer an administrator sends. Pure: it works on records already read.

use std::collections::HashSet;

use contracts::approval_decision_v1::{ApprovalDecisionDecision, ApprovalDecisionVersion};
use contracts::{ApprovalDecision, ApprovalRequest, ContractError, Message, Timestamp};
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::records::{sort_by_time, Record};
use crate::render::{envelope, format_duration, format_time};

/// The `source` of everything this tool publishes.
pub const SOURCE: &str = "orion-approval-cli";

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestStatus {
    /// No answer yet and not expired.
    Pending,
    /// No answer, and its `expires_at` has passed.
    Expired,
    /// Answered by an approval decision (the first one counts).
    Answered {
        decision: ApprovalDecisionDecision,
        by: String,
        /// The answer was issued after the request had expired.
        late: bool,
    },
    /// Answered by the deprecated single-message approval (legacy Telegram bot).
    LegacyAnswered { status: String, by: String },
}

impl RequestStatus {
    /// A short word for scripts: pending, expired, approve, deny, force, or `legacy-<status>`.
    pub fn code(&self) -> String {
        match self {
            Self::Pending => "pending".into(),
            Self::Expired => "expired".into(),
            Self::Answered { decision, .. } => decision.to_string(),
            Self::LegacyAnswered { status, .. } => format!("legacy-{status}"),
        }
    }

    /// What a person reads: `pending`, `expired`, `approved by alice`, `denied by bob (late)`.
    pub fn describe(&self) -> String {
        match self {
            Self::Pending => "pending".into(),
            Self::Expired => "expired".into(),
            Self::Answered { decision, by, late } => {
                let verb = match decision {
                    ApprovalDecisionDecision::Approve => "approved",
                    ApprovalDecisionDecision::Deny => "denied",
                    ApprovalDecisionDecision::Force => "forced",
                };
                let late = if *late { " (after expiry)" } else { "" };
                format!("{verb} by {by}{late}")
            }
            Self::LegacyAnswered { status, by } => format!("{status} by {by} (legacy)"),
        }
    }

    pub fn is_pending(&self) -> bool {
        matches!(self, Self::Pending)
    }
}

/// One approval request with everything that answered it.
#[derive(Debug, Clone)]
pub struct RequestView<'a> {
    pub record: &'a Record,
    pub request: &'a ApprovalRequest,
    /// Approval decisions (and legacy approvals) that answer it, in time order.
    pub answers: Vec<&'a Record>,
    pub status: RequestStatus,
}

impl RequestView<'_> {
    /// Time left before the request expires (negative once expired).
    pub fn expires_in(&self, now: OffsetDateTime) -> time::Duration {
        self.request.expires_at.since(Timestamp(now))
    }

    /// `4m 12s` while pending, `expired 3m 05s ago` after, `-` once answered.
    pub fn expires_in_text(&self, now: OffsetDateTime) -> String {
        let left = self.expires_in(now);
        match self.status {
            RequestStatus::Pending => format_duration(left),
            RequestStatus::Expired => format!("expired {} ago", format_duration(left)),
            _ => "-".into(),
        }
    }

    /// The request for scripts: the message as published plus its status.
    pub fn to_json(&self, now: OffsetDateTime) -> Value {
        json!({
            "approval_request_id": self.request.approval_request_id,
            "status": self.status.code(),
            "status_text": self.status.describe(),
            "action_type": self.request.requested_action.action_type,
            "risk_level": self.request.risk_level.to_string(),
            "incident_id": self.request.incident_id,
            "decision_id": self.request.decision_id,
            "expires_at": format_time(self.request.expires_at.as_offset_date_time()),
            "expires_in_s": self.expires_in(now).whole_seconds(),
            "reasoning": self.request.requested_action.reasoning.as_deref(),
            "request": self.record.raw,
            "answers": self.answers.iter().map(|r| envelope(r)).collect::<Vec<_>>(),
        })
    }
}

/// Every approval request in `records` (first copy of each id), in time order, with its answers
/// and status as of `now`.
pub fn requests(records: &[Record], now: OffsetDateTime) -> Vec<RequestView<'_>> {
    let mut seen = HashSet::new();
    let mut request_records: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(r.message, Message::ApprovalRequest(_)))
        .collect();
    sort_by_time(&mut request_records);
    let mut answers: Vec<&Record> = records
        .iter()
        .filter(|r| {
            matches!(
                r.message,
                Message::ApprovalDecision(_) | Message::Approval(_)
            )
        })
        .collect();
    sort_by_time(&mut answers);

    request_records
        .into_iter()
        .filter_map(|record| match &record.message {
            Message::ApprovalRequest(request) if seen.insert(request.approval_request_id) => {
                Some((record, request))
            }
            _ => None,
        })
        .map(|(record, request)| {
            let answers: Vec<&Record> = answers
                .iter()
                .copied()
                .filter(|answer| match &answer.message {
                    Message::ApprovalDecision(d) => {
                        d.approval_request_id == request.approval_request_id
                    }
                    Message::Approval(a) => a.decision_id == request.decision_id,
                    _ => false,
                })
                .collect();
            let status = status_of(request, &answers, now);
            RequestView {
                record,
                request,
                answers,
                status,
            }
        })
        .collect()
}

fn status_of(request: &ApprovalRequest, answers: &[&Record], now: OffsetDateTime) -> RequestStatus {
    match answers.first().map(|r| &r.message) {
        Some(Message::ApprovalDecision(d)) => RequestStatus::Answered {
            decision: d.decision,
            by: d.admin_identity.clone(),
            late: d.issued_at > request.expires_at,
        },
        Some(Message::Approval(a)) => RequestStatus::LegacyAnswered {
            status: a.status.to_string(),
            by: a.approved_by.clone(),
        },
        _ if request.expires_at.as_offset_date_time() <= now => RequestStatus::Expired,
        _ => RequestStatus::Pending,
    }
}

/// Why an id typed by an operator does not name exactly one thing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no {what} `{input}`")]
    NotFound { what: &'static str, input: String },
    #[error("`{input}` matches {} {what}s: {}; give more of the id", .matches.len(), .matches.iter().map(Uuid::to_string).collect::<Vec<_>>().join(", "))]
    Ambiguous {
        what: &'static str,
        input: String,
        matches: Vec<Uuid>,
    },
    #[error("`{input}` is neither a UUID nor a prefix of one (at least 4 hex digits)")]
    Malformed { input: String },
}

/// Resolves a full id or a unique prefix (at least 4 characters, like git) among `candidates`.
pub fn resolve_id(
    what: &'static str,
    input: &str,
    candidates: impl IntoIterator<Item = Uuid>,
) -> Result<Uuid, ResolveError> {
    let wanted = input.trim().to_ascii_lowercase();
    let candidates: Vec<Uuid> = {
        let mut seen = HashSet::new();
        candidates
            .into_iter()
            .filter(|id| seen.insert(*id))
            .collect()
    };
    if let Ok(id) = Uuid::parse_str(&wanted) {
        return if candidates.contains(&id) {
            Ok(id)
        } else {
            Err(ResolveError::NotFound {
                what,
                input: input.to_string(),
            })
        };
    }
    if wanted.len() < 4 || !wanted.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(ResolveError::Malformed {
            input: input.to_string(),
        });
    }
    let matches: Vec<Uuid> = candidates
        .into_iter()
        .filter(|id| id.to_string().starts_with(&wanted))
        .collect();
    match matches.as_slice() {
        [] => Err(ResolveError::NotFound {
            what,
            input: input.to_string(),
        }),
        [one] => Ok(*one),
        _ => Err(ResolveError::Ambiguous {
            what,
            input: input.to_string(),
            matches,
        }),
    }
}

/// A reason an administrator typed: trimmed, and refused when empty.
pub fn check_reason(reason: Option<&str>) -> Result<String, &'static str> {
    match reason.map(str::trim) {
        Some(reason) if !reason.is_empty() => Ok(reason.to_string()),
        _ => Err(
            "--reason is mandatory and must not be empty: say why, it goes into the audit trail",
        ),
    }
}

/// What the administrator decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub decision: ApprovalDecisionDecision,
    pub admin_identity: String,
    pub reason: String,
    /// How long the decision stays valid after it is issued.
    pub valid_for: time::Duration,
    /// Force only.
    pub override_cooldown: bool,
    /// Force only.
    pub override_circuit_breaker: bool,
}

/// Why an answer is refused before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("approval request {id} expired at {expired_at} ({ago} ago); brain would refuse a late answer. Nothing was sent")]
    Expired {
        id: Uuid,
        expired_at: String,
        ago: String,
    },
    #[error("approval request {id} was already answered: {status}. Nothing was sent (use --again to send another answer anyway, e.g. if brain rejected the first one)")]
    AlreadyAnswered { id: Uuid, status: String },
}

/// Refuses to answer a request that expired, or one already answered (unless `again`).
pub fn check_answerable(
    view: &RequestView<'_>,
    now: OffsetDateTime,
    again: bool,
) -> Result<(), Refusal> {
    let id = view.request.approval_request_id;
    let expires_at = view.request.expires_at.as_offset_date_time();
    if expires_at <= now {
        return Err(Refusal::Expired {
            id,
            expired_at: format_time(expires_at),
            ago: format_duration(Timestamp(now).since(Timestamp(expires_at))),
        });
    }
    if !again && !view.status.is_pending() {
        return Err(Refusal::AlreadyAnswered {
            id,
            status: view.status.describe(),
        });
    }
    Ok(())
}

/// The approval decision answering `request`, issued at `now` with a fresh `approval_id`,
/// validated against its contract.
pub fn build_decision(
    request: &ApprovalRequest,
    answer: &Answer,
    approval_id: Uuid,
    now: Timestamp,
) -> Result<ApprovalDecision, ContractError> {
    // Saturating: a validity past the supported range ends at its end.
    let expires_at = now.saturating_add(answer.valid_for);
    let decision = ApprovalDecision {
        action_id: None,
        admin_identity: answer.admin_identity.clone(),
        approval_id,
        approval_request_id: request.approval_request_id,
        decision: answer.decision,
        decision_id: request.decision_id,
        expires_at,
        issued_at: now,
        override_circuit_breaker: answer.override_circuit_breaker,
        override_cooldown: answer.override_cooldown,
        reason: contracts::parse_field::<ApprovalDecision, _>(
            "/reason",
            "minLength",
            &answer.reason,
        )?,
        source: contracts::parse_field::<ApprovalDecision, _>("/source", "pattern", SOURCE)?,
        tags: Default::default(),
        timestamp: now,
        version: ApprovalDecisionVersion::X10,
    };
    // typify does not enforce every rule (the override flags only on `force`): the schema does.
    contracts::to_value(&decision)?;
    Ok(decision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::RawRecord;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_771_070_400 + seconds).unwrap()
    }

    fn ts(seconds: i64) -> String {
        crate::render::format_time(at(seconds))
    }

    fn record(sequence: u64, subject: &str, value: Value) -> Record {
        Record::decode(RawRecord {
            stream: "ORION_DECISIONS".into(),
            sequence,
            subject: subject.into(),
            stored_at: at(sequence as i64),
            payload: serde_json::to_vec(&value).unwrap(),
            signature: None,
            trace: None,
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn request(id: u128, decision: u128, time: i64, expires: i64) -> Record {
        record(
            id as u64,
            "orion.approval_request.v1",
            json!({
                "version": "1.0",
                "approval_request_id": Uuid::from_u128(id),
                "timestamp": ts(time),
                "source": "orion-brain",
                "decision_id": Uuid::from_u128(decision),
                "action_type": "restart_service",
                "risk_level": "RISKY",
                "requested_action": {"action_type": "restart_service", "parameters": {"service_name": "web"}, "reasoning": "web is down and restarting it is RISKY"},
                "expires_at": ts(expires),
            }),
        )
    }

    fn answer(sequence: u64, request: u128, decision: u128, verdict: &str, issued: i64) -> Record {
        record(
            sequence,
            "orion.approval_decision.v1",
            json!({
                "version": "1.0",
                "approval_id": Uuid::from_u128(1000 + sequence as u128),
                "timestamp": ts(issued),
                "source": "orion-approval-cli",
                "approval_request_id": Uuid::from_u128(request),
                "decision_id": Uuid::from_u128(decision),
                "decision": verdict,
                "admin_identity": "alice",
                "reason": "checked the dashboards",
                "issued_at": ts(issued),
                "expires_at": ts(issued + 300),
            }),
        )
    }

    #[test]
    fn statuses_pending_expired_answered_and_legacy() {
        let records = vec![
            request(1, 11, 0, 600),
            request(2, 12, 0, 100),
            request(3, 13, 0, 600),
            answer(50, 3, 13, "deny", 60),
            request(4, 14, 0, 600),
            record(
                51,
                "orion.approval.v1",
                json!({
                    "version": "1.0",
                    "approval_id": Uuid::from_u128(77),
                    "timestamp": ts(30),
                    "source": "orion-approval-telegram",
                    "decision_id": Uuid::from_u128(14),
                    "status": "approved",
                    "approved_by": "tg:bob",
                }),
            ),
            request(5, 15, 0, 100),
            answer(52, 5, 15, "approve", 200),
            // A duplicate of request 1 stored later: ignored.
            request(1, 11, 0, 600),
        ];
        let views = requests(&records, at(150));
        let statuses: Vec<(u128, String)> = views
            .iter()
            .map(|v| (v.request.approval_request_id.as_u128(), v.status.describe()))
            .collect();
        assert_eq!(
            statuses,
            vec![
                (1, "pending".to_string()),
                (2, "expired".to_string()),
                (3, "denied by alice".to_string()),
                (4, "approved by tg:bob (legacy)".to_string()),
                (5, "approved by alice (after expiry)".to_string()),
            ]
        );
        assert_eq!(views[0].expires_in_text(at(150)), "7m 30s");
        assert_eq!(views[1].expires_in_text(at(150)), "expired 50s ago");
        assert_eq!(views[2].answers.len(), 1);
    }

    #[test]
    fn answers_are_refused_when_expired_or_already_given() {
        let records = vec![request(1, 11, 0, 600), answer(50, 1, 11, "approve", 10)];
        let views = requests(&records, at(20));
        assert!(matches!(
            check_answerable(&views[0], at(20), false),
            Err(Refusal::AlreadyAnswered { .. })
        ));
        assert_eq!(check_answerable(&views[0], at(20), true), Ok(()));
        let err = check_answerable(&views[0], at(700), true).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn ids_resolve_by_unique_prefix() {
        let a = Uuid::parse_str("a4d426fc-f083-43e6-87e4-475a7048dfe9").unwrap();
        let b = Uuid::parse_str("a4d4ffff-f083-43e6-87e4-475a7048dfe9").unwrap();
        let ids = [a, b];
        assert_eq!(resolve_id("request", &a.to_string(), ids), Ok(a));
        assert_eq!(resolve_id("request", "A4D426", ids), Ok(a));
        assert!(matches!(
            resolve_id("request", "a4d4", ids),
            Err(ResolveError::Ambiguous { .. })
        ));
        assert!(matches!(
            resolve_id("request", "ffff", ids),
            Err(ResolveError::NotFound { .. })
        ));
        assert!(matches!(
            resolve_id("request", "a4", ids),
            Err(ResolveError::Malformed { .. })
        ));
        assert!(matches!(
            resolve_id("request", &Uuid::nil().to_string(), ids),
            Err(ResolveError::NotFound { .. })
        ));
    }

    #[test]
    fn reasons_must_say_something() {
        assert!(check_reason(None).is_err());
        assert!(check_reason(Some("   ")).is_err());
        assert_eq!(check_reason(Some(" ok ")), Ok("ok".to_string()));
    }

    #[test]
    fn decisions_carry_the_request_and_the_flags() {
        let records = [request(1, 11, 0, 600)];
        let Message::ApprovalRequest(req) = &records[0].message else {
            unreachable!()
        };
        let now = Timestamp::from(at(10));
        let force = Answer {
            decision: ApprovalDecisionDecision::Force,
            admin_identity: "alice".into(),
            reason: "site lead agreed".into(),
            valid_for: time::Duration::seconds(120),
            override_cooldown: true,
            override_circuit_breaker: false,
        };
        let decision = build_decision(req, &force, Uuid::from_u128(9), now).unwrap();
        assert_eq!(decision.approval_request_id, Uuid::from_u128(1));
        assert_eq!(decision.decision_id, Uuid::from_u128(11));
        assert_eq!(decision.issued_at, now);
        assert_eq!(decision.expires_at, Timestamp::from(at(130)));
        assert!(decision.override_cooldown && !decision.override_circuit_breaker);
        assert_eq!(&*decision.source, SOURCE);
        // The contract refuses override flags on anything but force.
        let approve = Answer {
            decision: ApprovalDecisionDecision::Approve,
            ..force
        };
        assert!(build_decision(req, &approve, Uuid::from_u128(9), now).is_err());
    }
}
