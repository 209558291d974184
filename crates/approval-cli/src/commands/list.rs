//! `list`: the pending approval requests (`--all`: answered and expired ones too).

use serde_json::Value;
use time::OffsetDateTime;

use crate::approvals::{self, RequestView};
use crate::cli::ListArgs;
use crate::render::{table, truncate};

use super::{action_text, connect, note_skipped, print_json, read_decisions, CmdResult};

pub(super) async fn run(args: ListArgs, json: bool) -> CmdResult {
    let bus = connect().await?;
    let decoded = read_decisions(&bus).await?;
    bus.close().await.ok();
    note_skipped(&decoded);
    let now = OffsetDateTime::now_utc();
    let all = approvals::requests(&decoded.records, now);
    let mut shown: Vec<&RequestView<'_>> = all
        .iter()
        .filter(|v| args.all || v.status.is_pending())
        .collect();
    if !args.all {
        shown.sort_by_key(|v| v.request.expires_at);
    }
    if json {
        print_json(&Value::Array(
            shown.iter().map(|v| v.to_json(now)).collect(),
        ));
        return Ok(());
    }
    if shown.is_empty() {
        let settled = all.len();
        if args.all || settled == 0 {
            println!("No approval requests.");
        } else {
            println!(
                "No pending approval requests ({settled} answered or expired: --all shows them)."
            );
        }
        return Ok(());
    }
    let mut header = vec!["ID", "ACTION", "RISK", "INCIDENT", "EXPIRES IN"];
    if args.all {
        header.push("STATUS");
    }
    header.push("REASONING");
    let mut out = table(&header);
    for view in &shown {
        let mut row = vec![
            view.request.approval_request_id.to_string(),
            action_text(view),
            view.request.risk_level.to_string(),
            view.request
                .incident_id
                .map(|i| i.to_string()[..8].to_string())
                .unwrap_or_else(|| "-".into()),
            view.expires_in_text(now),
        ];
        if args.all {
            row.push(view.status.describe());
        }
        row.push(truncate(
            view.request
                .requested_action
                .reasoning
                .as_deref()
                .map(|r| r.as_str())
                .unwrap_or("-"),
            60,
        ));
        out.add_row(row);
    }
    println!("{}", out.trim_fmt());
    Ok(())
}
