//! `ack`: an operator acknowledges an incident (guardian moves it to `acknowledged`).

use contracts::{Contract, Incident, IncidentAcknowledgement, Message, Timestamp};
use serde_json::json;
use uuid::Uuid;

use crate::approvals;
use crate::cli::AckArgs;
use crate::records::{decode_all, sort_by_time, Record};
use crate::streams;
use crate::trail;

use super::{bus_failure, connect, print_json, required_identity, CmdResult, Failure};

pub(super) async fn run(args: AckArgs, json: bool) -> CmdResult {
    let reason = approvals::check_reason(args.reason.as_deref()).map_err(Failure::usage)?;
    let identity = required_identity(args.identity)?;
    let bus = connect().await?;
    let decoded = decode_all(
        streams::read_stream(
            bus.jetstream(),
            Incident::INFO.stream,
            Some(Incident::INFO.subject),
            None,
        )
        .await?,
    );
    let incident_id = approvals::resolve_id(
        "incident",
        &args.incident_id,
        trail::incident_ids(&decoded.records),
    )
    .map_err(|e| match e {
        approvals::ResolveError::Malformed { .. } => Failure::usage(e.to_string()),
        _ => Failure::refused(format!("{e} in {}", Incident::INFO.stream)),
    })?;
    let mut versions: Vec<&Record> = decoded
        .records
        .iter()
        .filter(|r| matches!(&r.message, Message::Incident(m) if m.incident_id == incident_id))
        .collect();
    sort_by_time(&mut versions);
    if let Some(Message::Incident(latest)) = versions.last().map(|r| &r.message) {
        let state = latest.state.to_string();
        if state != "open" {
            return Err(Failure::refused(format!(
                "incident {incident_id} is already {state}; nothing was sent"
            )));
        }
    }
    let acknowledgement: IncidentAcknowledgement = contracts::decode_value(json!({
        "version": "1.0",
        "acknowledgement_id": Uuid::new_v4(),
        "timestamp": Timestamp::now(),
        "source": approvals::SOURCE,
        "incident_id": incident_id,
        "acknowledged_by": identity,
        "note": reason,
    }))
    .map_err(|e| Failure::usage(format!("the acknowledgement would break its contract: {e}")))?;
    let published = bus.publish(&acknowledgement).await.map_err(bus_failure)?;
    bus.close().await.ok();
    let wire = contracts::to_value(&acknowledgement).expect("validated above");
    if json {
        print_json(&json!({
            "sent": wire,
            "subject": IncidentAcknowledgement::INFO.subject,
            "stream": published.stream,
            "sequence": published.sequence,
        }));
    } else {
        println!(
            "Sent acknowledgement {} of incident {incident_id} by {} (stored {} #{}); guardian moves it to `acknowledged`.",
            acknowledgement.acknowledgement_id,
            *acknowledgement.acknowledged_by,
            published.stream,
            published.sequence
        );
    }
    Ok(())
}
