//! `unsilence`: the signed lift of a silence, before it ends on its own.

use contracts::bus::Trace;
use contracts::signing::SIGNATURE_HEADER;
use contracts::{Contract, Silence, Timestamp};
use time::OffsetDateTime;

use crate::approvals;
use crate::cli::UnsilenceArgs;
use crate::render::format_time;
use crate::silences::{self, Status};

use super::{
    admin_key, connect, note_skipped, print_json, read_silences, required_identity,
    sign_and_publish, CmdResult, Failure,
};

pub(super) async fn run(args: UnsilenceArgs, json: bool) -> CmdResult {
    let reason = silences::check_reason(args.reason.as_deref())
        .map_err(|e| Failure::usage(e.to_string()))?;
    let identity = required_identity(args.identity)?;
    let key = admin_key(&identity, args.key)?;

    let bus = connect().await?;
    let decoded = read_silences(&bus).await?;
    note_skipped(&decoded);
    let now = OffsetDateTime::now_utc();
    let views = silences::silences(&decoded.records, now);
    let id = approvals::resolve_id(
        "silence",
        &args.id,
        views.iter().map(|v| v.silence.silence_id),
    )
    .map_err(|e| match e {
        approvals::ResolveError::Malformed { .. } => Failure::usage(e.to_string()),
        _ => Failure::refused(format!("{e} in {}", Silence::INFO.stream)),
    })?;
    let view = views
        .iter()
        .find(|v| v.silence.silence_id == id)
        .expect("resolved among these views");
    match &view.status {
        Status::Lifted { .. } => {
            return Err(Failure::refused(format!(
                "silence {id} was already {}. Nothing was sent",
                view.status.describe()
            )))
        }
        Status::Expired => {
            return Err(Failure::refused(format!(
                "silence {id} already ended at {}. Nothing was sent",
                format_time(view.silence.ends_at.as_offset_date_time())
            )))
        }
        Status::Active | Status::Scheduled => {}
    }

    let sent = silences::build_lift(view.silence, &identity, &reason, Timestamp(now))
        .map_err(|e| Failure::usage(format!("the lift would break its contract: {e}")))?;
    let signed = sign_and_publish(bus, &key, &sent, "lift", Trace::new_root()).await?;
    let (signature, published) = (&signed.signature, &signed.published);
    if json {
        print_json(&signed.json(Silence::INFO.subject));
        return Ok(());
    }
    println!(
        "Lifted silence {id} ({} by {}, was to end at {})",
        silences::match_text(&sent.match_),
        sent.created_by.as_str(),
        format_time(sent.ends_at.as_offset_date_time())
    );
    let field = |name: &str, value: String| println!("  {name:<11} {value}");
    field("lifted by", identity);
    field("reason", reason);
    field("signature", format!("{SIGNATURE_HEADER}: {signature}"));
    field(
        "stored",
        format!("{} #{}", published.stream, published.sequence),
    );
    Ok(())
}
