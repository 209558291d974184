//! `ack`: an operator acknowledges an incident (guardian moves it to `acknowledged`).

use contracts::generated::incident_acknowledgement_v1::{
    IncidentAcknowledgementSource, IncidentAcknowledgementVersion,
};
use contracts::generated::incident_v1::IncidentState;
use contracts::{Contract, ContractError, Incident, IncidentAcknowledgement, Message, Timestamp};
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
    let decoded = decode_all(streams::read_subject::<Incident>(&bus).await?);
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
        if latest.state != IncidentState::Open {
            return Err(Failure::refused(format!(
                "incident {incident_id} is already {}; nothing was sent",
                latest.state
            )));
        }
    }
    let acknowledgement = acknowledgement(
        incident_id,
        &identity,
        reason,
        Uuid::new_v4(),
        Timestamp::now(),
    )
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

/// The acknowledgement of `incident_id` by `identity`, validated against its contract.
fn acknowledgement(
    incident_id: Uuid,
    identity: &str,
    reason: String,
    acknowledgement_id: Uuid,
    now: Timestamp,
) -> Result<IncidentAcknowledgement, ContractError> {
    let acknowledgement = IncidentAcknowledgement {
        acknowledged_by: contracts::parse_field::<IncidentAcknowledgement, _>(
            "/acknowledged_by",
            "minLength",
            identity,
        )?,
        acknowledgement_id,
        action_id: None,
        incident_id,
        note: Some(reason),
        source: IncidentAcknowledgementSource::OrionApprovalCli,
        tags: Default::default(),
        timestamp: now,
        version: IncidentAcknowledgementVersion::X10,
    };
    contracts::to_value(&acknowledgement)?;
    Ok(acknowledgement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acknowledgement_is_the_contract_s_and_refuses_what_breaks_it() {
        let (incident, id, now) = (Uuid::from_u128(1), Uuid::from_u128(2), Timestamp::now());
        let sent = acknowledgement(incident, "bob", "on it".into(), id, now).unwrap();
        let wire = contracts::to_value(&sent).unwrap();
        assert_eq!(wire["source"], "orion-approval-cli");
        assert_eq!(wire["note"], "on it");
        assert_eq!(
            contracts::decode_value::<IncidentAcknowledgement>(wire).unwrap(),
            sent
        );
        let refused = acknowledgement(incident, "", "on it".into(), id, now).unwrap_err();
        assert_eq!(refused.violations()[0].instance_path, "/acknowledged_by");
    }
}
