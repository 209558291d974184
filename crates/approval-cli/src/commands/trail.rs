//! `trail`: reads every stream an incident's chain may be in, and prints the chain that
//! [`crate::trail`] links.

use contracts::bus::Trace;
use contracts::{Contract, Incident, Message, Silence};
use serde_json::Value;
use uuid::Uuid;

use crate::approvals;
use crate::cli::TrailArgs;
use crate::render::{envelope, timeline_line};

use super::{connect, print_json, read, read_if_present, CmdResult, Failure};

/// How far before an incident's first event `trail` starts reading the other streams (clock
/// skew between producers and the server).
const TRAIL_MARGIN: time::Duration = time::Duration::minutes(15);

/// Every stream `trail` reads, other than ORION_INCIDENTS.
const TRAIL_STREAMS: &[&str] = &[
    "ORION_EVENTS",
    "ORION_DECISIONS",
    "ORION_OUTCOMES",
    "TITAN_OPS",
    "PLATFORM_DEAD_LETTERS",
];

pub(super) async fn run(args: TrailArgs, json: bool) -> CmdResult {
    let bus = connect().await?;
    let mut decoded = read(&bus, Incident::INFO.stream, None).await?;
    let full_id = Uuid::parse_str(args.incident_id.trim()).ok();
    let incident_id = match approvals::resolve_id(
        "incident",
        &args.incident_id,
        crate::trail::incident_ids(&decoded.records),
    ) {
        Ok(id) => id,
        // A full id with no incident on record (aged out, or never correlated): still look
        // for the rest of its chain, in every stream from its start.
        Err(approvals::ResolveError::NotFound { .. }) if full_id.is_some() => {
            full_id.expect("checked by the guard")
        }
        Err(e @ approvals::ResolveError::Malformed { .. }) => {
            return Err(Failure::usage(e.to_string()))
        }
        Err(e) => {
            return Err(Failure::refused(format!(
                "{e} in {}",
                Incident::INFO.stream
            )))
        }
    };
    let since = if args.full_scan {
        None
    } else {
        crate::trail::incident_start(incident_id, &decoded.records)
            .map(|start| start - TRAIL_MARGIN)
    };
    for stream in TRAIL_STREAMS {
        decoded.extend(read_if_present(&bus, stream, since).await?);
    }
    // From its start: a silence that held brain back may have been created days before.
    decoded.extend(read_if_present(&bus, Silence::INFO.stream, None).await?);
    bus.close().await.ok();
    let chain = crate::trail::build_trail(incident_id, &decoded.records);
    let skipped = decoded.skipped.len();
    for skipped in &decoded.skipped {
        tracing::debug!(%skipped, "skipped");
    }
    if chain.is_empty() {
        return Err(Failure::refused(format!(
            "nothing on record for incident {incident_id}"
        )));
    }
    let footer = format!(
        "{} message(s) in the trail; {skipped} stored message(s) did not decode and were skipped",
        chain.len()
    );
    if json {
        print_json(&Value::Array(chain.iter().map(|r| envelope(r)).collect()));
        eprintln!("{footer}");
        return Ok(());
    }
    let latest = chain.iter().rev().find_map(|r| match &r.message {
        Message::Incident(m) if m.incident_id == incident_id => Some(m),
        _ => None,
    });
    match latest {
        Some(incident) => println!(
            "Audit trail of incident {incident_id}: {}, severity {}, now {}",
            incident.incident_type, incident.severity, incident.state
        ),
        None => println!("Audit trail of incident {incident_id} (no incident message on record)"),
    }
    let trace_id = Trace::for_incident(incident_id).trace_id();
    println!("Trace {trace_id} (lines on another trace say so)");
    for record in &chain {
        println!("{}", timeline_line(record, Some(&trace_id)));
    }
    println!("-- {footer}");
    Ok(())
}
