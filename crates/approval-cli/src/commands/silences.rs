//! `silences`: the silences in force and scheduled (`--all`: expired and lifted ones too).

use serde_json::Value;
use time::OffsetDateTime;

use crate::cli::SilencesArgs;
use crate::render::{format_duration, format_time, table, truncate};
use crate::silences::{self, SilenceView, Status};

use super::{connect, note_skipped, print_json, read_silences, CmdResult};

pub(super) async fn run(args: SilencesArgs, json: bool) -> CmdResult {
    let bus = connect().await?;
    let decoded = read_silences(&bus).await?;
    bus.close().await.ok();
    note_skipped(&decoded);
    let now = OffsetDateTime::now_utc();
    let all = silences::silences(&decoded.records, now);
    let mut shown: Vec<&SilenceView<'_>> = all
        .iter()
        .filter(|v| args.all || v.status.is_current())
        .collect();
    if !args.all {
        shown.sort_by_key(|v| v.silence.ends_at);
    }
    if json {
        print_json(&Value::Array(
            shown.iter().map(|v| v.to_json(now)).collect(),
        ));
        return Ok(());
    }
    if shown.is_empty() {
        let ended = all.len();
        if args.all || ended == 0 {
            println!("No silences.");
        } else {
            println!("No silences in force ({ended} expired or lifted: --all shows them).");
        }
        return Ok(());
    }
    let mut out = table(&["ID", "MATCH", "BY", "STATUS", "ENDS", "REASON"]);
    for view in &shown {
        let ends_at = view.silence.ends_at.as_offset_date_time();
        let ends = match &view.status {
            Status::Active | Status::Scheduled => format!(
                "{} (in {})",
                format_time(ends_at),
                format_duration(ends_at - now)
            ),
            _ => format_time(ends_at),
        };
        out.add_row(vec![
            view.silence.silence_id.to_string(),
            silences::match_text(&view.silence.match_),
            view.silence.created_by.to_string(),
            view.status.describe(),
            ends,
            truncate(&view.silence.reason, 60),
        ]);
    }
    println!("{}", out.trim_fmt());
    Ok(())
}
