//! What each subcommand does: read the streams, decide, publish, print.

use std::collections::HashSet;

use async_nats::HeaderMap;
use contracts::approval_decision_v1::ApprovalDecisionDecision;
use contracts::bus::{Bus, BusConfig, BusError};
use contracts::services::ApprovalCli;
use contracts::signing::SIGNATURE_HEADER;
use contracts::{
    ApprovalDecision, Contract, DeadLetter, Event, Incident, IncidentAcknowledgement, Message,
    Notification, OpsCommand, Outcome, Timestamp,
};
use futures::StreamExt;
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::approvals::{self, Answer, RequestView};
use crate::cli::{
    AckArgs, AnswerArgs, Command, ForceArgs, KeygenArgs, ListArgs, ShowArgs, TrailArgs, WatchArgs,
    EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE,
};
use crate::keys;
use crate::records::{decode_all, sort_by_time, Decoded, Record};
use crate::render::{envelope, format_duration, format_time, table, timeline_line, truncate};
use crate::streams::{self, ReadError};
use crate::trail;

/// How far before an incident's first event `trail` starts reading the other streams (clock
/// skew between producers and the server).
const TRAIL_MARGIN: time::Duration = time::Duration::minutes(15);

/// A command that did not succeed: the exit code and what to tell the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_REFUSED,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    pub fn unreachable(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_UNREACHABLE,
            message: message.into(),
        }
    }
}

impl From<ReadError> for Failure {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Timeout { .. } => Self::unreachable(e.to_string()),
            ReadError::NoStream(_) | ReadError::Failed { .. } => Self::refused(e.to_string()),
        }
    }
}

fn bus_failure(e: BusError) -> Failure {
    let text = e.to_string();
    match e {
        BusError::Connect { .. } => Failure::unreachable(text),
        BusError::Config(_) => Failure::usage(text),
        _ if text.to_lowercase().contains("timed out") || text.contains("no responders") => {
            Failure::unreachable(text)
        }
        _ => Failure::refused(text),
    }
}

type CmdResult = Result<(), Failure>;

/// Runs one subcommand.
pub async fn run(command: Command, json: bool) -> CmdResult {
    match command {
        Command::Keygen(args) => keygen(args, json),
        Command::List(args) => list(args, json).await,
        Command::Show(args) => show(args, json).await,
        Command::Approve(args) => {
            answer(args, ApprovalDecisionDecision::Approve, false, false, json).await
        }
        Command::Deny(args) => {
            answer(args, ApprovalDecisionDecision::Deny, false, false, json).await
        }
        Command::Force(ForceArgs {
            answer: args,
            override_cooldown,
            override_circuit_breaker,
        }) => {
            answer(
                args,
                ApprovalDecisionDecision::Force,
                override_cooldown,
                override_circuit_breaker,
                json,
            )
            .await
        }
        Command::Watch(args) => watch(args, json).await,
        Command::Trail(args) => trail_command(args, json).await,
        Command::Ack(args) => ack(args, json).await,
    }
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values serialize")
    );
}

fn note_skipped(decoded: &Decoded) {
    for skipped in &decoded.skipped {
        tracing::debug!(%skipped, "skipped");
    }
    if !decoded.skipped.is_empty() {
        eprintln!(
            "note: {} stored message(s) did not decode and were skipped",
            decoded.skipped.len()
        );
    }
}

async fn connect() -> Result<Bus<ApprovalCli>, Failure> {
    let config = BusConfig::from_env::<ApprovalCli>().map_err(bus_failure)?;
    Bus::<ApprovalCli>::connect(config)
        .await
        .map_err(bus_failure)
}

async fn read(
    bus: &Bus<ApprovalCli>,
    stream: &str,
    since: Option<OffsetDateTime>,
) -> Result<Decoded, Failure> {
    Ok(decode_all(
        streams::read_stream(bus.jetstream(), stream, None, since).await?,
    ))
}

/// Like [`read`], but a stream that does not exist yet simply holds nothing.
async fn read_if_present(
    bus: &Bus<ApprovalCli>,
    stream: &str,
    since: Option<OffsetDateTime>,
) -> Result<Decoded, Failure> {
    match streams::read_stream(bus.jetstream(), stream, None, since).await {
        Ok(raw) => Ok(decode_all(raw)),
        Err(ReadError::NoStream(name)) => {
            tracing::debug!(stream = %name, "stream does not exist; nothing to read");
            Ok(Decoded::default())
        }
        Err(e) => Err(e.into()),
    }
}

fn required_identity(identity: Option<String>) -> Result<String, Failure> {
    match identity.map(|i| i.trim().to_string()) {
        Some(identity) if !identity.is_empty() => Ok(identity),
        _ => Err(Failure::usage(
            "no admin identity: pass --identity NAME (or set USER)",
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// keygen

fn keygen(args: KeygenArgs, json: bool) -> CmdResult {
    let identity = required_identity(Some(args.identity))?;
    let key = keys::generate_to(&identity, &args.out).map_err(|e| match e {
        keys::KeyFileError::Exists(_) => Failure::refused(e.to_string()),
        _ => Failure::usage(e.to_string()),
    })?;
    let snippet = keys::policy_snippet(&key);
    if json {
        print_json(&json!({
            "identity": identity,
            "public_key": key.public_key_base64(),
            "key_file": args.out.display().to_string(),
            "policy_snippet": snippet,
        }));
    } else {
        println!(
            "Wrote the private key of `{identity}` to {} (mode 0600). Keep it secret.",
            args.out.display()
        );
        println!("Public key: {}", key.public_key_base64());
        println!();
        println!("Add this to brain's policy file so that brain accepts {identity}'s decisions:");
        println!();
        print!("{snippet}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// list and show

async fn read_decisions(bus: &Bus<ApprovalCli>) -> Result<Decoded, Failure> {
    read(bus, ApprovalDecision::INFO.stream, None).await
}

fn action_text(view: &RequestView<'_>) -> String {
    let target = crate::render::target_of(&view.request.requested_action.parameters)
        .map(|t| format!(" {t}"))
        .unwrap_or_default();
    format!("{}{target}", view.request.requested_action.action_type)
}

async fn list(args: ListArgs, json: bool) -> CmdResult {
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

fn find_request<'a>(
    views: &'a [RequestView<'a>],
    id: &str,
) -> Result<&'a RequestView<'a>, Failure> {
    let id = approvals::resolve_id(
        "approval request",
        id,
        views.iter().map(|v| v.request.approval_request_id),
    )
    .map_err(|e| match e {
        approvals::ResolveError::Malformed { .. } => Failure::usage(e.to_string()),
        _ => Failure::refused(format!("{e} in {}", ApprovalDecision::INFO.stream)),
    })?;
    Ok(views
        .iter()
        .find(|v| v.request.approval_request_id == id)
        .expect("resolved among these views"))
}

/// The decision chain of a request: brain's decision behind it (and brain's later decisions on
/// the same incident), the request, its answers, the actions released and their outcomes.
fn request_chain<'a>(view: &RequestView<'a>, records: &'a [Record]) -> Vec<&'a Record> {
    let request = view.request;
    let answers: HashSet<Uuid> = view
        .answers
        .iter()
        .filter_map(|r| match &r.message {
            Message::ApprovalDecision(d) => Some(d.approval_id),
            Message::Approval(a) => Some(a.approval_id),
            _ => None,
        })
        .collect();
    let requested_at = request.timestamp.as_offset_date_time();
    let actions: HashSet<Uuid> = records
        .iter()
        .filter_map(|r| match &r.message {
            Message::Action(a)
                if a.decision_id == request.decision_id
                    || a.approval_id.is_some_and(|id| answers.contains(&id)) =>
            {
                Some(a.action_id)
            }
            _ => None,
        })
        .collect();
    let mut chain: Vec<&Record> = records
        .iter()
        .filter(|r| match &r.message {
            Message::Decision(d) => {
                d.decision_id == request.decision_id
                    || (Some(d.incident_id) == request.incident_id
                        && d.timestamp.as_offset_date_time() >= requested_at)
            }
            Message::ApprovalRequest(q) => q.approval_request_id == request.approval_request_id,
            Message::ApprovalDecision(d) => answers.contains(&d.approval_id),
            Message::Approval(a) => answers.contains(&a.approval_id),
            Message::Action(a) => actions.contains(&a.action_id),
            Message::Outcome(o) => actions.contains(&o.action_id),
            _ => false,
        })
        .collect();
    let mut seen = HashSet::new();
    chain.retain(|r| seen.insert((r.stream.clone(), r.sequence)));
    sort_by_time(&mut chain);
    chain
}

async fn show(args: ShowArgs, json: bool) -> CmdResult {
    let bus = connect().await?;
    let mut decoded = read_decisions(&bus).await?;
    decoded.extend(read_if_present(&bus, Outcome::INFO.stream, None).await?);
    bus.close().await.ok();
    note_skipped(&decoded);
    let now = OffsetDateTime::now_utc();
    let views = approvals::requests(&decoded.records, now);
    let view = find_request(&views, &args.id)?;
    let chain = request_chain(view, &decoded.records);
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
        println!("  {}", timeline_line(record));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// approve, deny, force

async fn answer(
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
    let wire = contracts::to_value(&sent).map_err(|e| {
        Failure::usage(format!(
            "the approval decision would break its contract: {e}"
        ))
    })?;
    let signature = loaded.key.sign(&wire);
    let mut headers = HeaderMap::new();
    headers.insert(SIGNATURE_HEADER, signature.as_str());
    let published = bus
        .publish_with_headers(&sent, headers)
        .await
        .map_err(bus_failure)?;
    bus.close().await.ok();

    if json {
        print_json(&json!({
            "sent": wire,
            "signature": signature,
            "subject": ApprovalDecision::INFO.subject,
            "stream": published.stream,
            "sequence": published.sequence,
        }));
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

// ---------------------------------------------------------------------------------------------
// watch

async fn watch(args: WatchArgs, json: bool) -> CmdResult {
    let mut stream_names = vec![
        ApprovalDecision::INFO.stream,
        Notification::INFO.stream,
        DeadLetter::INFO.stream,
    ];
    if args.everything {
        stream_names.extend([
            Event::INFO.stream,
            Incident::INFO.stream,
            OpsCommand::INFO.stream,
        ]);
    }
    let bus = connect().await?;
    let mut followed = Vec::new();
    let mut names = Vec::new();
    for name in stream_names {
        match streams::follow_stream(bus.jetstream(), name).await {
            Ok(stream) => {
                followed.push(stream);
                names.push(name);
            }
            Err(ReadError::NoStream(name)) => {
                eprintln!("warning: stream {name} does not exist yet; not following it")
            }
            Err(e) => return Err(e.into()),
        }
    }
    if followed.is_empty() {
        return Err(Failure::refused(
            "none of the streams to follow exist (is the platform provisioned?)",
        ));
    }
    eprintln!(
        "watching {} for new messages (Ctrl-C to stop)",
        names.join(", ")
    );
    let mut merged = futures::stream::select_all(followed);
    let shutdown = contracts::runtime::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            next = merged.next() => match next {
                None => break,
                Some(Err(e)) => {
                    bus.close().await.ok();
                    return Err(e.into());
                }
                Some(Ok(raw)) => match Record::decode(raw) {
                    Ok(record) if json => println!(
                        "{}",
                        serde_json::to_string(&envelope(&record)).expect("JSON values serialize")
                    ),
                    Ok(record) => println!("{}", timeline_line(&record)),
                    Err(skipped) => eprintln!("skipped: {skipped}"),
                },
            },
        }
    }
    bus.close().await.ok();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// trail

/// Every stream `trail` reads, other than ORION_INCIDENTS.
const TRAIL_STREAMS: &[&str] = &[
    "ORION_EVENTS",
    "ORION_DECISIONS",
    "ORION_OUTCOMES",
    "TITAN_OPS",
    "PLATFORM_DEAD_LETTERS",
];

async fn trail_command(args: TrailArgs, json: bool) -> CmdResult {
    let bus = connect().await?;
    let mut decoded = read(&bus, Incident::INFO.stream, None).await?;
    let full_id = Uuid::parse_str(args.incident_id.trim()).ok();
    let incident_id = match approvals::resolve_id(
        "incident",
        &args.incident_id,
        trail::incident_ids(&decoded.records),
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
        trail::incident_start(incident_id, &decoded.records).map(|start| start - TRAIL_MARGIN)
    };
    for stream in TRAIL_STREAMS {
        decoded.extend(read_if_present(&bus, stream, since).await?);
    }
    bus.close().await.ok();
    let chain = trail::build_trail(incident_id, &decoded.records);
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
    for record in &chain {
        println!("{}", timeline_line(record));
    }
    println!("-- {footer}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// ack

async fn ack(args: AckArgs, json: bool) -> CmdResult {
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
