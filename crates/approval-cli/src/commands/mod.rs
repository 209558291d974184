//! The subcommands, one module each (named as on the command line); what they share is
//! here: connecting, reading streams, failures and their exit codes, printing JSON.

mod ack;
mod answer;
mod keygen;
mod list;
mod show;
mod silence;
mod silences;
mod trail;
mod unsilence;
mod watch;

use contracts::approval_decision_v1::ApprovalDecisionDecision;
use contracts::bus::{in_trace, Bus, BusConfig, BusError, BusErrorKind, Trace};
use contracts::services::ApprovalCli;
use contracts::signing::SIGNATURE_HEADER;
use contracts::{ApprovalDecision, Contract};
use serde_json::Value;
use time::OffsetDateTime;

use crate::approvals::{self, RequestView};
use crate::cli::{Command, ForceArgs, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE};
use crate::records::{decode_all, Decoded};
use crate::streams::{self, ReadError};

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
    match e.kind() {
        BusErrorKind::Unreachable => Failure::unreachable(e.to_string()),
        BusErrorKind::Config => Failure::usage(e.to_string()),
        _ => Failure::refused(e.to_string()),
    }
}

type CmdResult = Result<(), Failure>;

/// A message signed with an admin key and stored.
struct SignedAndSent {
    /// The message as published (what the signature covers).
    wire: Value,
    signature: String,
    published: contracts::bus::Published,
}

impl SignedAndSent {
    /// What `--json` prints for it.
    fn json(&self, subject: &str) -> Value {
        serde_json::json!({
            "sent": self.wire,
            "signature": self.signature,
            "subject": subject,
            "stream": self.published.stream,
            "sequence": self.published.sequence,
        })
    }
}

/// Signs `message` (`what` names it in errors) over its wire form with `key`, publishes it
/// with the signature in `Orion-Signature` on `trace`, and closes the connection.
async fn sign_and_publish<T: Contract>(
    bus: Bus<ApprovalCli>,
    key: &contracts::signing::SigningKey,
    message: &T,
    what: &str,
    trace: Trace,
) -> Result<SignedAndSent, Failure>
where
    ApprovalCli: contracts::Produces<T>,
{
    let wire = contracts::to_value(message)
        .map_err(|e| Failure::usage(format!("the {what} would break its contract: {e}")))?;
    let signature = key.sign(&wire);
    let published = in_trace(
        trace,
        bus.publish_with_header(message, SIGNATURE_HEADER, &signature),
    )
    .await
    .map_err(bus_failure)?;
    bus.close().await.ok();
    Ok(SignedAndSent {
        wire,
        signature,
        published,
    })
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
    Ok(decode_all(streams::read_stream(bus, stream, since).await?))
}

/// Like [`read`], but a stream that does not exist yet simply holds nothing.
async fn read_if_present(
    bus: &Bus<ApprovalCli>,
    stream: &str,
    since: Option<OffsetDateTime>,
) -> Result<Decoded, Failure> {
    match streams::read_stream(bus, stream, since).await {
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

/// Runs one subcommand.
pub async fn run(command: Command, json: bool) -> CmdResult {
    match command {
        Command::Keygen(args) => keygen::run(args, json),
        Command::List(args) => list::run(args, json).await,
        Command::Show(args) => show::run(args, json).await,
        Command::Approve(args) => {
            answer::run(args, ApprovalDecisionDecision::Approve, false, false, json).await
        }
        Command::Deny(args) => {
            answer::run(args, ApprovalDecisionDecision::Deny, false, false, json).await
        }
        Command::Force(ForceArgs {
            answer: args,
            override_cooldown,
            override_circuit_breaker,
        }) => {
            answer::run(
                args,
                ApprovalDecisionDecision::Force,
                override_cooldown,
                override_circuit_breaker,
                json,
            )
            .await
        }
        Command::Watch(args) => watch::run(args, json).await,
        Command::Trail(args) => trail::run(args, json).await,
        Command::Ack(args) => ack::run(args, json).await,
        Command::Silence(args) => silence::run(args, json).await,
        Command::Silences(args) => silences::run(args, json).await,
        Command::Unsilence(args) => unsilence::run(args, json).await,
    }
}

/// The admin key named by `--key` (or `ORION_ADMIN_KEY_FILE`) for `identity`; a usage error
/// when there is none or it cannot be read.
fn admin_key(
    identity: &str,
    key: Option<std::path::PathBuf>,
) -> Result<contracts::signing::SigningKey, Failure> {
    let path = key.ok_or_else(|| {
        Failure::usage("no admin key: pass --key FILE or set ORION_ADMIN_KEY_FILE (create one with `approval-cli keygen`)")
    })?;
    let loaded = crate::keys::load(identity, &path).map_err(|e| Failure::usage(e.to_string()))?;
    if let Some(warning) = &loaded.warning {
        eprintln!("warning: {warning}");
    }
    Ok(loaded.key)
}

/// Every silence message in ORION_SILENCES (none when the stream does not exist yet).
async fn read_silences(bus: &Bus<ApprovalCli>) -> Result<Decoded, Failure> {
    read_if_present(bus, contracts::Silence::INFO.stream, None).await
}

/// The stream of requests and answers (`list`, `show` and `answer` start from it).
async fn read_decisions(bus: &Bus<ApprovalCli>) -> Result<Decoded, Failure> {
    read(bus, ApprovalDecision::INFO.stream, None).await
}

/// `restart_service web`: the requested action and its target, as tables and lines show it.
fn action_text(view: &RequestView<'_>) -> String {
    let target = crate::render::target_of(&view.request.requested_action.parameters)
        .map(|t| format!(" {t}"))
        .unwrap_or_default();
    format!("{}{target}", view.request.requested_action.action_type)
}

/// The request an operator's id (or unique prefix) names: a usage error when malformed,
/// refused when it names none or several.
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
