//! `silence`: the signed silence (maintenance window) an administrator asks for.

use contracts::bus::Trace;
use contracts::signing::SIGNATURE_HEADER;
use contracts::{Contract, Silence, Timestamp};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cli::SilenceArgs;
use crate::render::{format_duration, format_time};
use crate::silences::{self, Request};

use super::{
    admin_key, connect, print_json, required_identity, sign_and_publish, CmdResult, Failure,
};

pub(super) async fn run(args: SilenceArgs, json: bool) -> CmdResult {
    let usage = |e: silences::SilenceError| Failure::usage(e.to_string());
    let criteria = silences::criteria(
        args.target.as_deref(),
        args.incident_type.as_deref(),
        &args.tags,
    )
    .map_err(usage)?;
    let reason = silences::check_reason(args.reason.as_deref()).map_err(usage)?;
    let now = OffsetDateTime::now_utc();
    let (starts_at, ends_at) =
        silences::window(args.for_.as_deref(), args.until.as_deref(), now).map_err(usage)?;
    let identity = required_identity(args.identity)?;
    let key = admin_key(&identity, args.key)?;

    let request = Request {
        admin_identity: identity,
        reason,
        starts_at,
        ends_at,
        criteria,
    };
    let sent = silences::build_silence(&request, Uuid::new_v4(), Timestamp(now))
        .map_err(|e| Failure::usage(format!("the silence would break its contract: {e}")))?;
    let bus = connect().await?;
    let signed = sign_and_publish(bus, &key, &sent, "silence", Trace::new_root()).await?;
    let (signature, published) = (&signed.signature, &signed.published);
    if json {
        print_json(&signed.json(Silence::INFO.subject));
        return Ok(());
    }
    println!(
        "Silenced {} until {} (for {})",
        silences::match_text(&sent.match_),
        format_time(sent.ends_at.as_offset_date_time()),
        format_duration(sent.ends_at.as_offset_date_time() - now)
    );
    let field = |name: &str, value: String| println!("  {name:<11} {value}");
    field("silence id", sent.silence_id.to_string());
    field("admin", sent.admin_identity.to_string());
    field("reason", sent.reason.to_string());
    field(
        "starts at",
        format_time(sent.starts_at.as_offset_date_time()),
    );
    field("ends at", format_time(sent.ends_at.as_offset_date_time()));
    field("signature", format!("{SIGNATURE_HEADER}: {signature}"));
    field(
        "stored",
        format!("{} #{}", published.stream, published.sequence),
    );
    println!(
        "brain takes no action on matching incidents until then; end it earlier with `approval-cli unsilence {} --reason …`",
        sent.silence_id
    );
    Ok(())
}
