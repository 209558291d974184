//! `show`: one approval request in full, with its decision chain.

use contracts::{Contract, Outcome};
use serde_json::Value;
use time::OffsetDateTime;

use crate::approvals;
use crate::cli::ShowArgs;
use crate::render::{envelope, format_time, timeline_line};
use crate::trail;

use super::{
    action_text, connect, find_request, note_skipped, print_json, read_decisions, read_if_present,
    CmdResult,
};

pub(super) async fn run(args: ShowArgs, json: bool) -> CmdResult {
    let bus = connect().await?;
    let mut decoded = read_decisions(&bus).await?;
    decoded.extend(read_if_present(&bus, Outcome::INFO.stream, None).await?);
    bus.close().await.ok();
    note_skipped(&decoded);
    let now = OffsetDateTime::now_utc();
    let views = approvals::requests(&decoded.records, now);
    let view = find_request(&views, &args.id)?;
    let chain = trail::request_chain(view, &decoded.records);
    if json {
        let mut value = view.to_json(now);
        value["chain"] = Value::Array(chain.iter().map(|r| envelope(r)).collect());
        print_json(&value);
        return Ok(());
    }
    let request = view.request;
    let status = match view.status {
        approvals::RequestStatus::Pending => {
            format!("pending, expires in {}", view.expires_in_text(now))
        }
        _ => view.status.describe(),
    };
    println!(
        "Approval request {}  [{status}]",
        request.approval_request_id
    );
    let field = |name: &str, value: String| println!("  {name:<12} {value}");
    field(
        "requested",
        format!(
            "{} by {}",
            format_time(request.timestamp.as_offset_date_time()),
            request.source
        ),
    );
    field("action", action_text(view));
    field(
        "parameters",
        Value::Object(request.requested_action.parameters.clone()).to_string(),
    );
    field("risk", request.risk_level.to_string());
    field(
        "incident",
        request
            .incident_id
            .map(|i| i.to_string())
            .unwrap_or_else(|| "-".into()),
    );
    field("decision", request.decision_id.to_string());
    field(
        "expires at",
        format_time(request.expires_at.as_offset_date_time()),
    );
    field(
        "reasoning",
        request
            .requested_action
            .reasoning
            .as_deref()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into()),
    );
    if !request.tags.is_empty() {
        let mut tags: Vec<String> = request
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        tags.sort();
        field("tags", tags.join(", "));
    }
    println!();
    println!("Decision chain:");
    for record in chain {
        println!("  {}", timeline_line(record, None));
    }
    Ok(())
}
