//! The command line: what every subcommand takes, and its `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use contracts::runtime::{ExitStatus, LogArgs};

// The codes are those of every ORION binary (`contracts::runtime::ExitStatus`).
/// Exit code: the command did what was asked.
pub const EXIT_OK: u8 = ExitStatus::Ok.code();
/// Exit code: refused (unknown or expired request, key file exists, …) or not found.
pub const EXIT_REFUSED: u8 = ExitStatus::Failure.code();
/// Exit code: bad arguments (missing or empty --reason, no key, unreadable key file, …).
pub const EXIT_USAGE: u8 = ExitStatus::Usage.code();
/// Exit code: NATS could not be reached (or did not answer in time).
pub const EXIT_UNREACHABLE: u8 = ExitStatus::Unreachable.code();

pub const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  refused or not found (unknown or expired request, already answered, key file exists, …)
  2  usage: bad or missing arguments (e.g. no --reason, no key), unreadable key file
  3  cannot reach NATS (connection refused, login failed, or no answer in time)
The same codes as every ORION binary: README.md, \"Configuration and exit codes\".";

const LONG_ABOUT: &str = "\
The operators' command line for ORION: list the approval requests brain is waiting on, show one,
approve, deny or force it with a mandatory reason (the answer is signed with your Ed25519 admin
key, and brain only accepts answers signed by the administrators in its policy), acknowledge an
incident, follow the platform live, and print the audit trail of an incident from the streams.

Output is a table or readable lines for people; --json gives JSON for scripts on every command.

Connection (environment):
  ORION_NATS_URL                      NATS URL (default nats://localhost:4222)
  ORION_NATS_USER                     NATS user (default approval-cli)
  ORION_NATS_PASSWORD                 its password (or ORION_NATS_PASSWORD_FILE, or
                                      ORION_NATS_PASSWORD_APPROVAL_CLI)
Signing (approve, deny, force, silence, unsilence):
  ORION_ADMIN_KEY_FILE                your admin key, instead of --key (create it with `keygen`)
  USER                                your admin identity, unless --identity is given

Typical use:
  approval-cli keygen --identity alice --out ~/.orion/alice.key   # once; give the snippet to brain
  approval-cli list
  approval-cli show 3f2a                                          # an id or a unique prefix
  approval-cli approve 3f2a --reason \"checked the dashboards\" --key ~/.orion/alice.key
  approval-cli trail 1153cc21
  approval-cli silence --target web --for 2h --reason \"database migration\" --key ~/.orion/alice.key
  approval-cli silences
  approval-cli unsilence 5b0d --reason \"migration done\" --key ~/.orion/alice.key";

/// Approve or deny risky actions, and read the audit trail.
#[derive(Debug, Parser)]
#[command(
    name = "approval-cli",
    version,
    long_about = LONG_ABOUT,
    after_help = EXIT_CODES,
    propagate_version = true
)]
pub struct Cli {
    /// Print JSON for scripts instead of tables and lines for people.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format of diagnostics on stderr (RUST_LOG filters; default warn).
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an Ed25519 admin key and print the entry that lets brain trust it.
    #[command(
        long_about = "Create an Ed25519 admin key for IDENTITY. The private key (a PKCS#8 document, \
base64) is written to FILE with mode 0600; an existing file is never overwritten. Prints the \
public key and the exact [[admins]] entry to add to brain's policy file: brain accepts an \
approval decision only when it is signed by the key listed there for its admin_identity.",
        after_help = EXIT_CODES
    )]
    Keygen(KeygenArgs),
    /// List the approval requests waiting for an answer.
    #[command(
        long_about = "List the approval requests (orion.approval_request.v1, read from the \
ORION_DECISIONS stream) that have no approval decision yet and have not expired, soonest expiry \
first: id, action, risk, incident, time left, brain's reasoning. With --all: every request, with \
its status (pending, expired, approved/denied/forced by whom).",
        after_help = EXIT_CODES
    )]
    List(ListArgs),
    /// Show one approval request in full, with its decision chain.
    #[command(
        long_about = "Show one approval request in full (status, action and parameters, risk, \
incident, expiry, reasoning) and its decision chain: brain's REQUEST_APPROVAL decision, every \
approval decision that answers it, the action it released and that action's outcome. ID is the \
request id or a unique prefix of it (at least 4 characters).",
        after_help = EXIT_CODES
    )]
    Show(ShowArgs),
    /// Approve a request: brain may run the action.
    #[command(long_about = ANSWER_ABOUT, after_help = EXIT_CODES)]
    Approve(AnswerArgs),
    /// Deny a request: brain will not run the action.
    #[command(long_about = ANSWER_ABOUT, after_help = EXIT_CODES)]
    Deny(AnswerArgs),
    /// Approve a request and override safety limits (cooldown, circuit breaker).
    #[command(long_about = FORCE_ABOUT, after_help = EXIT_CODES)]
    Force(ForceArgs),
    /// Follow approval requests, decisions, actions, outcomes, notifications and dead letters live.
    #[command(
        long_about = "Follow the platform live until Ctrl-C: every new approval request, brain \
decision, approval decision, action, outcome, notification (orion.notification.v1) and dead \
letter, and every silence and lift, one readable line each (or one JSON object per line with \
--json). Only messages stored after the start are shown. --everything adds events, incidents, acknowledgements and ops \
commands and receipts.",
        after_help = EXIT_CODES
    )]
    Watch(WatchArgs),
    /// Print the audit trail of one incident: every message of its chain, in time order.
    #[command(
        long_about = "Print the whole chain of one incident from the streams, in time order: every \
version of the incident, its events, brain's decisions, approval requests and their approval \
decisions, actions, the ops commands commander sent for them and their receipts, outcomes, \
notifications, acknowledgements, and dead letters whose payload mentions the incident or any id \
of the chain. One line per message: time, kind, id, and the key fields (state, decision type, \
reasoning, status, error). --json prints a JSON array in the same order, one object per message: \
{time, subject, contract, stream, sequence, stored_at, message} where `message` is the message \
exactly as published. Messages that do not decode are skipped and counted in a footer line \
(on stderr with --json).

By default streams other than ORION_INCIDENTS are read from a little before the incident began; \
--full-scan reads them from their start. INCIDENT_ID is the id or a unique prefix of it.",
        after_help = EXIT_CODES
    )]
    Trail(TrailArgs),
    /// Acknowledge an incident (guardian moves it to `acknowledged`).
    #[command(
        long_about = "Acknowledge an incident as an operator: publishes an \
orion.incident_acknowledgement.v1 (source orion-approval-cli, acknowledged_by = --identity, \
note = --reason); guardian moves the incident to `acknowledged` and re-emits it. Refused when the \
incident is unknown or no longer open. INCIDENT_ID is the id or a unique prefix of it.",
        after_help = EXIT_CODES
    )]
    Ack(AckArgs),
    /// Silence automation (a maintenance window): brain takes no action on what matches.
    #[command(long_about = SILENCE_ABOUT, after_help = EXIT_CODES)]
    Silence(SilenceArgs),
    /// List the silences in force (and scheduled); --all adds expired and lifted ones.
    #[command(
        long_about = "List the silences (orion.silence.v1, read from the ORION_SILENCES stream) \
that are in force or scheduled, the one ending soonest first: id, what it matches, who created \
it, when it ends, the reason. With --all: every silence still in the stream (newest first), with \
its status (active, scheduled, expired, lifted by whom). The list shows what was published; \
brain applies only silences signed by an administrator of its policy.",
        after_help = EXIT_CODES
    )]
    Silences(SilencesArgs),
    /// Lift a silence before it ends: brain acts again on what it matched.
    #[command(
        long_about = "Lift a silence early: publishes the same silence_id again with state \
`lifted`, lifted_at = now, lift_reason = --reason, admin_identity = --identity, signed with your \
admin key like `silence`. Refused when the silence is unknown, already lifted or already ended. \
ID is the silence id or a unique prefix of it.",
        after_help = EXIT_CODES
    )]
    Unsilence(UnsilenceArgs),
}

const SILENCE_ABOUT: &str = "\
Silence automation for a bounded time: while the silence is in force brain decides NO_ACTION for
every open incident it matches, with reasoning that names the silence, its author, its end and
its reason. Match with --target (the service or device brain's policy would act on),
--incident-type and/or --tag KEY=VALUE (repeatable); every criterion given must match. The window
starts now and ends after --for (e.g. 90m, 2h, 1d) or at --until (RFC 3339); at most 7 days, and
the end must be in the future. A silence ends on its own; `unsilence` ends it earlier.

Builds an orion.silence.v1 (new silence_id, state active, created_by = admin_identity =
--identity, source orion-approval-cli), signs the JSON exactly as published with your Ed25519
admin key (the key of `approve`), and publishes it with the signature in the Orion-Signature
header. brain applies it only if the signature verifies against an administrator of its policy.";

const ANSWER_ABOUT: &str = "\
Answer an approval request. Builds an orion.approval_decision.v1 (new approval_id, issued now,
expires_at = now + --valid-for, admin_identity = --identity, source orion-approval-cli), signs the
JSON exactly as published with your Ed25519 key, and publishes it with the signature in the
Orion-Signature header. Prints what was sent.

Refused before anything is sent when the request is unknown, has expired, or already has an
answer (--again sends one anyway). ID is the request id or a unique prefix of it.";

const FORCE_ABOUT: &str = "\
Approve a request and override brain's safety limits: --override-cooldown runs the action even
inside its cooldown, --override-circuit-breaker even when the circuit breaker is open. Otherwise
exactly like `approve`: signed, with a mandatory reason, refused for unknown or expired requests.";

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The administrator identity the key belongs to (brain's admin_identity), e.g. alice.
    #[arg(long)]
    pub identity: String,
    /// Where to write the private key (mode 0600; never overwritten).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Include answered and expired requests, with their status.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The approval request id, or a unique prefix of it.
    pub id: String,
}

#[derive(Debug, Args)]
pub struct AnswerArgs {
    /// The approval request id, or a unique prefix of it.
    pub id: String,
    /// Why you decide this (mandatory, non-empty; it goes into the audit trail).
    #[arg(long)]
    pub reason: Option<String>,
    /// Your admin identity, as listed in brain's policy.
    #[arg(long, env = "USER", value_name = "NAME")]
    pub identity: Option<String>,
    /// Your admin key file (from `keygen`).
    #[arg(long, env = "ORION_ADMIN_KEY_FILE", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// How long the decision stays valid, in seconds (expires_at = issued_at + SECS; 1 to 86400).
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub valid_for: u64,
    /// Send an answer even though the request already has one (e.g. brain rejected the first).
    #[arg(long)]
    pub again: bool,
}

#[derive(Debug, Args)]
pub struct ForceArgs {
    #[command(flatten)]
    pub answer: AnswerArgs,
    /// Run even inside the action's cooldown.
    #[arg(long)]
    pub override_cooldown: bool,
    /// Run even when the circuit breaker is open.
    #[arg(long)]
    pub override_circuit_breaker: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Also follow events, incidents, acknowledgements and ops commands and receipts.
    #[arg(long)]
    pub everything: bool,
}

#[derive(Debug, Args)]
pub struct TrailArgs {
    /// The incident id, or a unique prefix of it.
    pub incident_id: String,
    /// Read every stream from its start instead of from shortly before the incident began.
    #[arg(long)]
    pub full_scan: bool,
}

#[derive(Debug, Args)]
pub struct AckArgs {
    /// The incident id, or a unique prefix of it.
    pub incident_id: String,
    /// Why (mandatory, non-empty; becomes the acknowledgement's note).
    #[arg(long)]
    pub reason: Option<String>,
    /// Who acknowledges.
    #[arg(long, env = "USER", value_name = "NAME")]
    pub identity: Option<String>,
}

#[derive(Debug, Args)]
pub struct SilenceArgs {
    /// Silence incidents whose action would target this service or device (canonical name).
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Silence incidents of this type (service_outage, edge_device_failure, metric_anomaly,
    /// repeated_failures, correlation_detected).
    #[arg(long, value_name = "TYPE")]
    pub incident_type: Option<String>,
    /// Silence incidents carrying this tag with this value (repeatable: all must match).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// How long, from now: e.g. 90m, 2h, 1d, 1h30m (at most 7d).
    #[arg(long = "for", value_name = "DURATION")]
    pub for_: Option<String>,
    /// Until when (RFC 3339, e.g. 2026-02-14T18:00:00Z; at most 7 days from now).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Why (mandatory, non-empty, at most 500 characters; brain's decisions quote it).
    #[arg(long)]
    pub reason: Option<String>,
    /// Your admin identity, as listed in brain's policy.
    #[arg(long, env = "USER", value_name = "NAME")]
    pub identity: Option<String>,
    /// Your admin key file (from `keygen`).
    #[arg(long, env = "ORION_ADMIN_KEY_FILE", value_name = "FILE")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SilencesArgs {
    /// Include expired and lifted silences, with their status.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct UnsilenceArgs {
    /// The silence id, or a unique prefix of it.
    pub id: String,
    /// Why it ends early (mandatory, non-empty, at most 500 characters).
    #[arg(long)]
    pub reason: Option<String>,
    /// Your admin identity, as listed in brain's policy.
    #[arg(long, env = "USER", value_name = "NAME")]
    pub identity: Option<String>,
    /// Your admin key file (from `keygen`).
    #[arg(long, env = "ORION_ADMIN_KEY_FILE", value_name = "FILE")]
    pub key: Option<PathBuf>,
}
