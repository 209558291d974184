//! `approve`, `deny` and `force`: the signed approval decision answering a request.

use contracts::approval_decision_v1::ApprovalDecisionDecision;
use contracts::bus::Trace;
use contracts::signing::SIGNATURE_HEADER;
use contracts::{ApprovalDecision, ApprovalRequest, Contract, Message, Timestamp};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::approvals::{self, Answer};
use crate::cli::AnswerArgs;
use crate::keys;
use crate::records::Record;
use crate::render::{format_duration, format_time};

use super::{
    action_text, connect, find_request, note_skipped, print_json, read_decisions,
    required_identity, sign_and_publish, CmdResult, Failure,
};

/// The answer goes out on the request's trace (its `traceparent`), else on its incident's.
fn request_trace(records: &[Record], request: &ApprovalRequest) -> Trace {
    records
        .iter()
        .filter(|r| matches!(&r.message, Message::ApprovalRequest(m) if m.approval_request_id == request.approval_request_id))
        .find_map(|r| r.trace)
        .map(|sender| sender.child())
        .or_else(|| request.incident_id.map(Trace::for_incident))
        .unwrap_or_else(Trace::new_root)
}

pub(super) async fn run(
    args: AnswerArgs,
    decision: ApprovalDecisionDecision,
    override_cooldown: bool,
    override_circuit_breaker: bool,
    json: bool,
) -> CmdResult {
    let reason = approvals::check_reason(args.reason.as_deref()).map_err(Failure::usage)?;
    let identity = required_identity(args.identity)?;
    let key_path = args.key.ok_or_else(|| {
        Failure::usage("no admin key: pass --key FILE or set ORION_ADMIN_KEY_FILE (create one with `approval-cli keygen`)")
    })?;
    let loaded = keys::load(&identity, &key_path).map_err(|e| Failure::usage(e.to_string()))?;
    if let Some(warning) = &loaded.warning {
        eprintln!("warning: {warning}");
    }

    let bus = connect().await?;
    let decoded = read_decisions(&bus).await?;
    note_skipped(&decoded);
    let now = OffsetDateTime::now_utc();
    let views = approvals::requests(&decoded.records, now);
    let view = find_request(&views, &args.id)?;
    approvals::check_answerable(view, now, args.again)
        .map_err(|e| Failure::refused(e.to_string()))?;

    let answer = Answer {
        decision,
        admin_identity: identity,
        reason,
        valid_for: time::Duration::seconds(i64::try_from(args.valid_for).unwrap_or(i64::MAX)),
        override_cooldown,
        override_circuit_breaker,
    };
    let sent = approvals::build_decision(view.request, &answer, Uuid::new_v4(), Timestamp::now())
        .map_err(|e| {
        Failure::usage(format!(
            "the approval decision would break its contract: {e}"
        ))
    })?;
    let trace = request_trace(&decoded.records, view.request);
    let signed = sign_and_publish(bus, &loaded.key, &sent, "approval decision", trace).await?;
    let (signature, published) = (&signed.signature, &signed.published);
    if json {
        print_json(&signed.json(ApprovalDecision::INFO.subject));
        return Ok(());
    }
    let request = view.request;
    println!(
        "Sent {} for approval request {} ({}, {})",
        sent.decision,
        request.approval_request_id,
        action_text(view),
        request.risk_level
    );
    let field = |name: &str, value: String| println!("  {name:<13} {value}");
    field("approval id", sent.approval_id.to_string());
    field("decision id", sent.decision_id.to_string());
    field("admin", sent.admin_identity.clone());
    field("reason", sent.reason.to_string());
    field(
        "issued at",
        format_time(sent.issued_at.as_offset_date_time()),
    );
    field(
        "expires at",
        format!(
            "{} (valid for {})",
            format_time(sent.expires_at.as_offset_date_time()),
            format_duration(answer.valid_for)
        ),
    );
    if decision == ApprovalDecisionDecision::Force {
        let overrides: Vec<&str> = [
            (sent.override_cooldown, "cooldown"),
            (sent.override_circuit_breaker, "circuit breaker"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
        field(
            "overrides",
            if overrides.is_empty() {
                "none".to_string()
            } else {
                overrides.join(", ")
            },
        );
    }
    field("signature", format!("{SIGNATURE_HEADER}: {signature}"));
    field(
        "stored",
        format!("{} #{}", published.stream, published.sequence),
    );
    Ok(())
}
