//! `brain simulate`: golden tests on a recorded history.
//!
//! `tests/data/history.jsonl` holds what the platform recorded under
//! `tests/data/recorded-policy.toml` (incidents, brain's decisions, commander's outcomes; valid
//! contract messages); `tests/data/proposed-policy.toml` is the change tried on it. The same report
//! comes out of the pure core and out of the binary run against a real nats-server holding that
//! history, and the binary leaves every stream as it found it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use brain::messages::{action_type, ActionDraft};
use brain::simulate::{simulate, History, Recorded, Replay};
use brain::Policy;
use contracts::services::{self, Commander, Guardian};
use contracts::{Decision, Incident, Outcome, Timestamp};
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

const BRAIN: &str = env!("CARGO_BIN_EXE_brain");

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn policy(name: &str) -> Policy {
    Policy::load(&data(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn history() -> History {
    History::from_jsonl(&std::fs::read_to_string(data("history.jsonl")).unwrap())
        .unwrap_or_else(|e| panic!("history.jsonl: {e}"))
}

#[test]
fn the_policy_that_recorded_the_history_changes_nothing() {
    let report = simulate(&history(), &policy("recorded-policy.toml"), "recorded").unwrap();
    assert_eq!(report.summary.incidents, 10);
    assert!(report.changes.is_empty(), "{}", report.to_table());
    assert_eq!(report.summary.unchanged, 10);
    // The failed restarts of db were replayed into its breaker, which then blocked the third;
    // the approved scale-up of api started its cooldown, which blocked the second anomaly.
    assert_eq!(report.summary.outcomes_replayed, 5);
    assert_eq!(report.summary.approvals_replayed, 1);
}

#[test]
fn a_changed_policy_shows_what_would_change() {
    let report = simulate(
        &history(),
        &policy("proposed-policy.toml"),
        "proposed-policy.toml",
    )
    .unwrap();
    let s = &report.summary;
    assert_eq!(
        (s.unchanged, s.changed, s.without_recorded_decision),
        // The second anomaly on api stays blocked (by the cooldown of the first scale-up,
        // which now runs at once), but as SAFE: a change of class only.
        (6, 4, 0)
    );
    assert_eq!(
        (
            s.actions_would_run,
            s.actions_would_no_longer_run,
            s.approvals_would_be_asked,
            s.approvals_no_longer_asked
        ),
        (2, 1, 0, 1)
    );
    // db's third outage stays blocked: the recorded failures of the same restarts count.
    assert_eq!((s.outcomes_replayed, s.outcomes_not_replayed), (3, 2));
    // Scaling api is SAFE now: nobody is asked, so the recorded approval has nothing to answer.
    assert_eq!((s.approvals_replayed, s.approvals_not_replayed), (0, 1));
    insta::assert_snapshot!("table", report.to_table());
    insta::assert_json_snapshot!("json", serde_json::to_value(&report).unwrap());
}

#[test]
fn decisions_for_versions_before_the_window_are_not_joined_to_later_ones() {
    let full = history();
    // From incident seq 5 on, with every decision still there: the answers of the versions
    // before the window (incident A's first two) must not be taken for its later version.
    let window = History {
        incidents: full.incidents[4..].to_vec(),
        ..full.clone()
    };
    let cases = window.cases();
    assert_eq!(cases.len(), 6);
    for case in &cases {
        let recorded = case.recorded.expect("every version has its answer");
        assert_eq!(
            recorded.message.incident_id,
            case.incident.message.incident_id
        );
        assert!(recorded.message.timestamp >= case.incident.message.timestamp);
    }
    let resolved = cases.last().unwrap();
    assert_eq!(resolved.incident.message.state.to_string(), "resolved");
    assert_eq!(
        resolved.recorded.unwrap().message.decision_type.to_string(),
        "NO_ACTION"
    );
}

// ---- the binary against a real server --------------------------------------------------

/// Publishes history.jsonl as the platform recorded it, each message as its producer.
async fn publish_history(server: &contracts::local_server::NatsServer) {
    let history = history();
    let guardian = connect::<Guardian>(server).await;
    let brain = connect::<services::Brain>(server).await;
    let commander = connect::<Commander>(server).await;
    for incident in &history.incidents {
        guardian.publish(&incident.message).await.unwrap();
    }
    for decision in &history.decisions {
        brain.publish(&decision.message).await.unwrap();
    }
    for action in &history.actions {
        brain.publish(&action.message).await.unwrap();
    }
    for outcome in &history.outcomes {
        commander.publish(&outcome.message).await.unwrap();
    }
}

/// Messages in each stream brain could touch, and in each durable's backlog.
async fn counts(server: &contracts::local_server::NatsServer) -> Vec<(String, u64)> {
    let js = admin_jetstream(server).await;
    let mut counts = Vec::new();
    for name in [
        "ORION_INCIDENTS",
        "ORION_DECISIONS",
        "ORION_OUTCOMES",
        "PLATFORM_DEAD_LETTERS",
    ] {
        let mut stream = js.get_stream(name).await.unwrap();
        let info = stream.info().await.unwrap();
        counts.push((name.to_string(), info.state.messages));
        for consumer in ["brain-incident-v1", "brain-outcome-v1"] {
            if let Ok(mut c) = stream
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(consumer)
                .await
            {
                let info = c.info().await.unwrap();
                counts.push((
                    format!("{name}/{consumer} pending"),
                    info.num_pending + info.num_ack_pending as u64,
                ));
            }
        }
    }
    counts
}

fn run_simulate(server: &contracts::local_server::NatsServer, args: &[&str]) -> Output {
    Command::new(BRAIN)
        .arg("simulate")
        .args(args)
        // Relative to the data directory, so the report names the policy as the pure test does.
        .current_dir(data(""))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ORION_NATS_URL", server.url())
        .env(
            "ORION_NATS_PASSWORD_BRAIN",
            server.password("brain").unwrap(),
        )
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "brain simulate failed ({:?}): {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reports_the_same_from_the_streams_and_publishes_nothing() {
    let server = provisioned_server().await;
    publish_history(&server).await;
    let before = counts(&server).await;

    let table = stdout(&run_simulate(
        &server,
        &["--policy", "proposed-policy.toml"],
    ));
    insta::assert_snapshot!("table", table.trim_end());
    let json = stdout(&run_simulate(
        &server,
        &["--policy", "proposed-policy.toml", "--json"],
    ));
    let json: Value = serde_json::from_str(&json).unwrap();
    insta::assert_json_snapshot!("json", json);

    assert_eq!(
        counts(&server).await,
        before,
        "a simulation publishes nothing and takes nothing from the durables"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_seq_and_since_choose_the_incidents_replayed() {
    let server = provisioned_server().await;
    publish_history(&server).await;
    let report = |args: &[&str]| -> Value {
        let mut all = vec!["--policy", "proposed-policy.toml", "--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&stdout(&run_simulate(&server, &all))).unwrap()
    };

    let from_5 = report(&["--from-seq", "5"]);
    assert_eq!(from_5["window"]["incidents"], 6);
    assert_eq!(from_5["window"]["first_sequence"], 5);
    assert_eq!(from_5["window"]["last_sequence"], 10);
    assert_eq!(from_5["summary"]["without_recorded_decision"], 0);
    // The limits start empty at the window: db's first failure (seq 4) is not in it, so its
    // breaker does not open and the outage at seq 6 would restart db again.
    let changes = from_5["changes"].as_array().unwrap();
    let seq6 = changes
        .iter()
        .find(|c| c["incident_sequence"] == 6)
        .expect("seq 6 changes when the window starts at seq 5");
    assert_eq!(seq6["effects"], json!(["action_would_run"]));

    let recent = report(&["--since", "1h"]);
    assert_eq!(recent["window"]["incidents"], 10, "stored just now");
    assert_eq!(recent["summary"], report(&[])["summary"]);

    let beyond = report(&["--from-seq", "100"]);
    assert_eq!(beyond["window"]["incidents"], 0);
    assert_eq!(beyond["changes"], json!([]));

    let both = run_simulate(
        &server,
        &[
            "--policy",
            "proposed-policy.toml",
            "--since",
            "1h",
            "--from-seq",
            "1",
        ],
    );
    assert_eq!(
        both.status.code(),
        Some(2),
        "--since or --from-seq, not both"
    );
}

#[test]
fn a_bad_policy_exits_2_naming_the_line_before_connecting() {
    let output = Command::new(BRAIN)
        .args(["simulate", "--policy", "bad-policy.toml"])
        .current_dir(data(""))
        .env_clear()
        // Nothing listens here: the policy is refused before any connection is tried.
        .env("ORION_NATS_URL", "nats://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("policy refused")
            && stderr.contains("bad-policy.toml:6:10")
            && stderr.contains("unknown action type \"restart_everything\""),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());

    let output = Command::new(BRAIN)
        .args([
            "simulate",
            "--policy",
            "proposed-policy.toml",
            "--since",
            "24x",
        ])
        .current_dir(data(""))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn an_unreachable_server_exits_3() {
    let output = Command::new(BRAIN)
        .args(["simulate", "--policy", "proposed-policy.toml"])
        .current_dir(data(""))
        .env_clear()
        .env("ORION_NATS_URL", "nats://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("connecting to NATS"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn simulate_is_in_the_help() {
    let output = Command::new(BRAIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("brain simulate --policy NEW.toml"), "{help}");
    assert!(help.contains("never publishes"), "{help}");
}

// ---- the fixture ---------------------------------------------------------------------------

const T0: &str = "2026-11-30T10:00:00Z";

fn at(seconds: i64) -> Timestamp {
    let t0: Timestamp = serde_json::from_value(json!(T0)).unwrap();
    Timestamp(t0.0 + time::Duration::seconds(seconds))
}

fn id(n: u128) -> Uuid {
    // Fixed, valid v4-shaped ids, so the fixture reads the same every time it is regenerated.
    // `5e1f000n-…`: the number first, so the table's short ids tell incidents apart.
    Uuid::from_u128(((0x5e1f_0000 + n) << 96) | (0x4000 << 64) | (0x8000 << 48) | n)
}

fn fixture_incident(
    n: u128,
    seconds: i64,
    incident_type: &str,
    severity: &str,
    state: &str,
    tags: Value,
    events: u128,
) -> Incident {
    let events: Vec<Uuid> = (0..events).map(|e| id(0x1000 + n * 16 + e)).collect();
    contracts::decode_value(json!({
        "version": "1.0",
        "incident_id": id(n),
        "timestamp": at(seconds).to_string(),
        "source": "orion-guardian",
        "incident_type": incident_type,
        "severity": severity,
        "event_ids": events,
        "correlation_window": {"start": at(seconds - 60).to_string(), "end": at(seconds).to_string()},
        "state": state,
        "tags": tags
    }))
    .unwrap()
}

/// Rewrites `tests/data/history.jsonl`: the incidents below, decided by brain's own code under
/// `recorded-policy.toml` (as the service would have), and the outcomes commander reported.
#[test]
#[ignore = "regenerates the fixture; run by hand after changing the scenario"]
fn regenerate_the_recorded_history() {
    let web = json!({"service_name": "web"});
    let db = json!({"service_name": "db"});
    // (incident, the outcome of its action if one runs — or of the action an administrator
    // approves a minute after its request — : status, seconds after the action)
    let script: Vec<(Incident, Option<(&str, i64)>)> = vec![
        (
            fixture_incident(1, 0, "service_outage", "critical", "open", web.clone(), 1),
            Some(("succeeded", 20)),
        ),
        (
            fixture_incident(1, 60, "service_outage", "critical", "open", web.clone(), 2),
            None,
        ),
        (
            fixture_incident(2, 300, "service_outage", "high", "open", web.clone(), 1),
            Some(("succeeded", 20)),
        ),
        (
            fixture_incident(3, 400, "service_outage", "critical", "open", db.clone(), 1),
            Some(("failed", 30)),
        ),
        (
            fixture_incident(4, 1100, "service_outage", "critical", "open", db.clone(), 1),
            Some(("failed", 30)),
        ),
        (
            fixture_incident(5, 1800, "service_outage", "critical", "open", db.clone(), 1),
            Some(("succeeded", 30)),
        ),
        (
            fixture_incident(
                6,
                2000,
                "metric_anomaly",
                "high",
                "open",
                json!({"service_name": "api"}),
                1,
            ),
            Some(("succeeded", 40)),
        ),
        (
            fixture_incident(
                7,
                2100,
                "repeated_failures",
                "medium",
                "open",
                json!({"service_name": "worker"}),
                1,
            ),
            Some(("succeeded", 15)),
        ),
        (
            fixture_incident(
                8,
                2150,
                "metric_anomaly",
                "critical",
                "open",
                json!({"service_name": "api"}),
                1,
            ),
            None,
        ),
        (
            fixture_incident(1, 2200, "service_outage", "critical", "resolved", web, 2),
            None,
        ),
    ];
    let recorded = policy("recorded-policy.toml");
    let mut replay = Replay::new(&recorded, &brain::interlock::InterlockState::armed());
    let mut lines: Vec<(Timestamp, Value)> = Vec::new();
    // What happens later, in time order before each incident: outcomes and approvals.
    let mut due: Vec<(Timestamp, Later)> = Vec::new();
    for (n, (incident, then)) in script.into_iter().enumerate() {
        due.sort_by_key(|(at, _)| *at);
        let (now, later): (Vec<_>, Vec<_>) = due
            .into_iter()
            .partition(|(at, _)| *at <= incident.timestamp);
        due = later;
        for (_, happened) in now {
            match happened {
                Later::Outcome(outcome) => {
                    replay.outcome(outcome.action_id, &outcome);
                }
                Later::Approved(request_id, action) => {
                    replay
                        .approved(request_id, &action)
                        .expect("a waiting request");
                }
            }
        }
        let plan = replay.incident(&incident, incident.timestamp).unwrap();
        lines.push((incident.timestamp, line("orion.incident.v1", &incident)));
        lines.push((
            plan.decision.timestamp,
            line("orion.decision.v1", &plan.decision),
        ));
        let Some((status, after)) = then else {
            continue;
        };
        let n = n as u128;
        let action = match (&plan.action, &plan.request) {
            (Some(action), _) => {
                lines.push((action.timestamp, line("orion.action.v1", action)));
                action.clone()
            }
            // An administrator approves a minute later; brain emits the action then.
            (None, Some(request)) => {
                let approved_at = Timestamp(incident.timestamp.0 + time::Duration::seconds(60));
                let action = ActionDraft {
                    decision_id: request.decision_id,
                    action_type: action_type(&request.requested_action.action_type).unwrap(),
                    safety: brain::Safety::Risky,
                    parameters: &request.requested_action.parameters,
                    approval_id: Some(id(0x3000 + n)),
                    tags: [
                        ("policy_rule", "scale-on-metric-anomaly".to_string()),
                        ("target", "api".to_string()),
                        ("incident_id", incident.incident_id.to_string()),
                        (
                            "approval_request_id",
                            request.approval_request_id.to_string(),
                        ),
                        ("approved_by", "ops-lead@example".to_string()),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                }
                .build(approved_at)
                .unwrap();
                lines.push((approved_at, line("orion.action.v1", &action)));
                due.push((
                    approved_at,
                    Later::Approved(request.approval_request_id, action.clone()),
                ));
                action
            }
            (None, None) => continue,
        };
        let mut value = json!({
            "version": "1.0",
            "outcome_id": id(0x2000 + n),
            "timestamp": Timestamp(action.timestamp.0 + time::Duration::seconds(after)).to_string(),
            "source": "orion-commander",
            "action_id": action.action_id,
            "status": status,
            "execution_time_ms": 1200
        });
        if status == "failed" {
            value["error"] = json!({"code": "container_exited", "message": "exited with 1"});
        }
        let outcome: Outcome = contracts::decode_value(value).unwrap();
        lines.push((outcome.timestamp, line("orion.outcome.v1", &outcome)));
        due.push((outcome.timestamp, Later::Outcome(outcome)));
    }
    // Stable: by time, then as made.
    lines.sort_by_key(|(at, _)| *at);
    let text: String = lines
        .iter()
        .map(|(_, value)| serde_json::to_string(value).unwrap() + "\n")
        .collect();
    std::fs::write(data("history.jsonl"), text).unwrap();
    // What was written reads back.
    let back = history();
    assert_eq!(back.incidents.len(), 10);
    let _: (&Recorded<Decision>, &Recorded<Outcome>) = (&back.decisions[0], &back.outcomes[0]);
}

/// Something the generator's history holds for later.
enum Later {
    Outcome(Outcome),
    Approved(Uuid, contracts::Action),
}

fn line<T: contracts::Contract>(subject: &str, message: &T) -> Value {
    json!({"subject": subject, "message": contracts::to_value(message).unwrap()})
}
