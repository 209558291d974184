use super::*;
use crate::decide::{autonomy, decide, LimitChange};
use crate::interlock::InterlockState;
use crate::policy::Policy;
use contracts::signing::SigningKey;
use serde_json::json;
use uuid::Uuid;

fn now() -> Timestamp {
    Timestamp(time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap())
}

fn at(s: i64) -> Timestamp {
    Timestamp(now().0 + time::Duration::seconds(s))
}

struct Setup {
    alice: SigningKey,
    policy: Policy,
    record: RequestRecord,
}

fn setup() -> Setup {
    let (alice, _) = SigningKey::generate("alice");
    let text = format!(
        r#"
autonomy_level = "N3"
approval_timeout_s = 300
[[admins]]
identity = "alice"
public_key = "{}"
[[rules]]
name = "scale"
incident_types = ["metric_anomaly"]
action = "scale_service"
safety = "RISKY"
parameters = {{ service_name = "${{tags.service_name}}", replicas = 3 }}
cooldown_s = 600
"#,
        alice.public_key_base64()
    );
    let policy = Policy::parse(&text, "t").unwrap();
    let incident: contracts::Incident = contracts::decode_value(json!({
        "version": "1.0",
        "incident_id": "e725c20a-d5ea-4984-9043-b8e2be93a27c",
        "timestamp": "2026-02-14T12:05:30Z",
        "source": "orion-guardian",
        "incident_type": "metric_anomaly",
        "severity": "high",
        "event_ids": ["8096f5a9-b0e0-4840-b850-a1f442700ab3"],
        "correlation_window": {"start": "2026-02-14T12:04:30Z", "end": "2026-02-14T12:05:30Z"},
        "state": "open",
        "tags": {"service_name": "api"}
    }))
    .unwrap();
    let plan = decide(
        &incident,
        &policy.evaluate(&incident),
        None,
        &autonomy(Level::N3, &InterlockState::armed()),
        &crate::silences::SilenceBook::default(),
        300,
        now(),
    )
    .unwrap();
    let Some(LimitChange::Request { record, .. }) = plan.change else {
        panic!("{plan:?}")
    };
    Setup {
        alice,
        policy,
        record: *record,
    }
}

/// An approval decision for `record`, as approval-cli would publish it.
fn approval(record: &RequestRecord, verdict: &str, admin: &str, issued: i64) -> ApprovalDecision {
    contracts::decode_value(json!({
        "version": "1.0",
        "approval_id": Uuid::new_v4(),
        "timestamp": at(issued).to_string(),
        "source": "orion-approval-cli",
        "approval_request_id": record.request.approval_request_id,
        "decision_id": record.request.decision_id,
        "decision": verdict,
        "admin_identity": admin,
        "reason": "capacity is needed",
        "issued_at": at(issued).to_string(),
        "expires_at": at(issued + 600).to_string(),
    }))
    .unwrap()
}

struct Case<'a> {
    setup: &'a Setup,
    approval: ApprovalDecision,
    signer: Option<&'a SigningKey>,
    limits: Option<LimitState>,
    interlock: InterlockState,
    now: Timestamp,
    record: Option<RequestRecord>,
    stream_sequence: u64,
}

impl<'a> Case<'a> {
    fn new(setup: &'a Setup, approval: ApprovalDecision) -> Self {
        Self {
            setup,
            approval,
            signer: Some(&setup.alice),
            limits: None,
            interlock: InterlockState::armed(),
            now: at(30),
            record: None,
            stream_sequence: 1,
        }
    }

    fn judge(&self) -> Judgement {
        let raw = contracts::to_value(&self.approval).unwrap();
        let signature = self.signer.map(|k| k.sign(&raw));
        let autonomy = autonomy(self.setup.policy.autonomy_level, &self.interlock);
        let record = self.record.as_ref().unwrap_or(&self.setup.record);
        judge(&ApprovalCheck {
            approval: &self.approval,
            raw: &raw,
            signature: signature.as_deref(),
            record,
            stream_sequence: self.stream_sequence,
            keyring: &self.setup.policy.keyring,
            limits: self.limits.as_ref(),
            autonomy: &autonomy,
            now: self.now,
        })
        .unwrap()
    }
}

fn refused(j: Judgement) -> String {
    match j {
        Judgement::Refuse { decision, .. } => {
            assert_eq!(decision.decision_type.to_string(), "NO_ACTION");
            assert_eq!(decision.tags["approval_request_id"].len(), 36);
            assert!(decision.tags.contains_key("approval_id"));
            decision.reasoning.to_string()
        }
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn a_signed_approval_in_time_emits_the_action() {
    let s = setup();
    let a = approval(&s.record, "approve", "alice", 20);
    match Case::new(&s, a.clone()).judge() {
        Judgement::Execute {
            action,
            settlement,
            mark,
        } => {
            assert_eq!(action.approval_id, Some(a.approval_id));
            assert_eq!(action.decision_id, s.record.request.decision_id);
            assert_eq!(action.action_type.to_string(), "scale_service");
            assert_eq!(action.safety_classification.to_string(), "RISKY");
            assert_eq!(action.state.to_string(), "pending");
            assert_eq!(action.parameters.replicas, Some(3));
            assert_eq!(action.tags["approved_by"], "alice");
            assert_eq!(mark.action_id, action.action_id);
            assert!(matches!(
                settlement,
                Settlement::Approved { forced: false, ref by, .. } if by == "alice"
            ));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn forged_unsigned_and_unknown_admin_decisions_never_run() {
    let s = setup();
    let (mallory, _) = SigningKey::generate("alice");
    let mut case = Case::new(&s, approval(&s.record, "approve", "alice", 20));
    case.signer = Some(&mallory);
    let text = refused(case.judge());
    assert!(
        text.contains("does not verify against `alice`'s public key: forged or altered"),
        "{text}"
    );
    assert!(text.ends_with("Nothing runs."), "{text}");

    case.signer = None;
    assert!(refused(case.judge()).contains("carries no Orion-Signature header"));

    let (bob, _) = SigningKey::generate("bob");
    let mut case = Case::new(&s, approval(&s.record, "approve", "bob", 20));
    case.signer = Some(&bob);
    assert!(refused(case.judge()).contains("`bob` is not an administrator of this policy"));
}

#[test]
fn a_decision_altered_after_signing_is_refused() {
    let s = setup();
    let a = approval(&s.record, "deny", "alice", 20);
    let raw = contracts::to_value(&a).unwrap();
    let signature = s.alice.sign(&raw);
    let mut forced = a.clone();
    forced.decision = ApprovalDecisionDecision::Approve;
    let raw_forced = contracts::to_value(&forced).unwrap();
    let autonomy = autonomy(Level::N3, &InterlockState::armed());
    let j = judge(&ApprovalCheck {
        approval: &forced,
        raw: &raw_forced,
        signature: Some(&signature),
        record: &s.record,
        stream_sequence: 1,
        keyring: &s.policy.keyring,
        limits: None,
        autonomy: &autonomy,
        now: at(30),
    })
    .unwrap();
    assert!(refused(j).contains("forged or altered"));
}

#[test]
fn late_expired_and_mismatched_decisions_are_refused() {
    let s = setup();
    // Issued after the request's expiry (300 s).
    let mut case = Case::new(&s, approval(&s.record, "approve", "alice", 301));
    case.now = at(302);
    let text = refused(case.judge());
    assert!(text.contains("after the request expired at"), "{text}");
    assert!(text.contains("too late"), "{text}");

    // Issued in time, but the decision's own validity has passed.
    let mut case = Case::new(&s, approval(&s.record, "approve", "alice", 20));
    case.now = at(621);
    assert!(refused(case.judge()).contains("the approval decision itself expired"));

    // Issued in time and still valid although the request has expired since: it counts.
    let mut case = Case::new(&s, approval(&s.record, "approve", "alice", 290));
    case.now = at(310);
    assert!(matches!(case.judge(), Judgement::Execute { .. }));

    let mut other = approval(&s.record, "approve", "alice", 20);
    other.decision_id = Uuid::new_v4();
    assert!(refused(Case::new(&s, other).judge()).contains("but the request belongs to decision"));
}

#[test]
fn a_settled_request_is_never_settled_again() {
    let s = setup();
    let mut settled = s.record.clone();
    settled.settlement = Some(Settlement::Denied {
        approval_id: Uuid::from_u128(1),
        by: "alice".into(),
        reason: "no".into(),
        at: at(10),
    });
    let mut case = Case::new(&s, approval(&s.record, "approve", "alice", 20));
    case.record = Some(settled);
    let text = refused(case.judge());
    assert!(text.contains("already settled: denied by alice"), "{text}");
    assert!(text.contains("each request is settled once"), "{text}");
}

#[test]
fn deny_settles_with_a_decision_saying_who_and_why() {
    let s = setup();
    let a = approval(&s.record, "deny", "alice", 20);
    match Case::new(&s, a.clone()).judge() {
        Judgement::Deny {
            decision,
            settlement,
            denial,
        } => {
            assert_eq!(decision.decision_type.to_string(), "NO_ACTION");
            let text = decision.reasoning.to_string();
            assert!(text.contains("denied by alice"), "{text}");
            assert!(text.contains("capacity is needed"), "{text}");
            assert_eq!(decision.incident_id, s.record.incident_id());
            assert_eq!(decision.tags["approval_id"], a.approval_id.to_string());
            assert!(matches!(settlement, Settlement::Denied { .. }));
            assert_eq!(denial.by, "alice");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn approvals_need_n3_in_force_now() {
    let s = setup();
    let mut case = Case::new(&s, approval(&s.record, "force", "alice", 20));
    case.interlock = InterlockState::disarmed("disarmed by ops command c9");
    let text = refused(case.judge());
    assert!(text.contains("the ops interlock is disarmed"), "{text}");
    assert!(text.contains("stays pending until"), "{text}");
    case.interlock = InterlockState::armed().with_ceiling(Level::N2, "set by ops command c8");
    assert!(refused(case.judge()).contains("ops risk ceiling is N2"));
}

fn cooling_and_broken() -> LimitState {
    let mut state = LimitState::default();
    state.record_action(
        ActionMark {
            action_id: Uuid::from_u128(1),
            at: at(0),
            incident_id: Uuid::from_u128(2),
            approval_id: None,
        },
        None,
    );
    for i in 0..3u128 {
        state.record_failure(FailureMark {
            action_id: Uuid::from_u128(10 + i),
            outcome_id: Uuid::from_u128(20 + i),
            at: at(i as i64),
            status: "failed".into(),
        });
    }
    state
}

#[test]
fn force_overrides_cooldown_and_breaker_only_when_told() {
    let s = setup();
    let mut case = Case::new(&s, approval(&s.record, "approve", "alice", 20));
    case.limits = Some(cooling_and_broken());
    let text = refused(case.judge());
    assert!(text.contains("cooldown of scale_service on api"), "{text}");
    assert!(
        text.contains("circuit breaker of scale_service on api is open"),
        "{text}"
    );
    assert!(
        text.contains("send `force` with override_cooldown and override_circuit_breaker"),
        "{text}"
    );

    let mut forced = approval(&s.record, "force", "alice", 20);
    forced.override_cooldown = true;
    case.approval = forced.clone();
    let text = refused(case.judge());
    assert!(
        !text.contains("cooldown of"),
        "the cooldown was overridden: {text}"
    );
    assert!(text.contains("override_circuit_breaker"), "{text}");

    forced.override_circuit_breaker = true;
    case.approval = forced;
    match case.judge() {
        Judgement::Execute {
            action, settlement, ..
        } => {
            assert!(matches!(
                settlement,
                Settlement::Approved { forced: true, .. }
            ));
            assert!(action.tags["overrode"].contains("cooldown"));
            assert!(action.tags["overrode"].contains("circuit breaker"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unanswered_requests_expire_with_a_decision() {
    let s = setup();
    let autonomy = autonomy(Level::N3, &InterlockState::armed());
    let (decision, settlement) = expire(&s.record, &autonomy, at(301)).unwrap();
    assert_eq!(decision.decision_type.to_string(), "NO_ACTION");
    let text = decision.reasoning.to_string();
    assert!(text.contains("approval request expired"), "{text}");
    assert!(
        text.contains("with no decision from an administrator"),
        "{text}"
    );
    assert_eq!(
        decision.tags["approval_request_id"],
        s.record.request.approval_request_id.to_string()
    );
    assert!(!decision.tags.contains_key("approval_id"));
    assert!(
        matches!(settlement, Settlement::Expired { decision_id, .. } if decision_id == decision.decision_id)
    );
}

#[test]
fn legacy_unsigned_approvals_are_refused_with_the_migration_path() {
    let s = setup();
    let legacy: Approval = contracts::decode_value(json!({
        "version": "1.0",
        "approval_id": Uuid::new_v4(),
        "timestamp": at(10).to_string(),
        "source": "orion-approval-telegram",
        "decision_id": s.record.request.decision_id,
        "status": "approved",
        "approved_by": "bob"
    }))
    .unwrap();
    let autonomy = autonomy(Level::N3, &InterlockState::armed());
    let decision = refuse_legacy(&legacy, &s.record, &autonomy, at(11)).unwrap();
    assert_eq!(decision.decision_type.to_string(), "NO_ACTION");
    let text = decision.reasoning.to_string();
    assert!(
        text.contains("approvals must be signed orion.approval_decision.v1"),
        "{text}"
    );
    assert!(text.contains("approved by bob"), "{text}");
    assert!(text.contains("stays pending"), "{text}");
}

#[test]
fn failed_and_rolled_back_outcomes_count_for_the_breaker() {
    let outcome = |status: &str| -> Outcome {
        let mut value = json!({
            "version": "1.0",
            "outcome_id": Uuid::new_v4(),
            "timestamp": at(5).to_string(),
            "source": "orion-commander",
            "action_id": Uuid::from_u128(7),
            "status": status,
            "execution_time_ms": 12
        });
        if status == "failed" {
            value["error"] = json!({"code": "docker", "message": "boom"});
        }
        contracts::decode_value(value).unwrap()
    };
    assert_eq!(failure_of(&outcome("succeeded")), None);
    assert_eq!(failure_of(&outcome("failed")).unwrap().status, "failed");
    let mark = failure_of(&outcome("rolled_back")).unwrap();
    assert_eq!(
        (mark.status.as_str(), mark.action_id, mark.at),
        ("rolled_back", Uuid::from_u128(7), at(5))
    );
}

#[test]
fn a_refused_decision_is_answered_once_and_its_replay_never_counts() {
    let s = setup();
    let a = approval(&s.record, "approve", "alice", 20);
    let mut case = Case::new(&s, a.clone());
    // Refused while disarmed; signed, so brain remembers the refusal.
    case.interlock = InterlockState::disarmed("ops command cmd-1");
    assert!(matches!(
        case.judge(),
        Judgement::Refuse {
            authentic: true,
            ..
        }
    ));
    let mut record = s.record.clone();
    record.refused.push(crate::records::RefusedAnswer {
        approval_id: a.approval_id,
        stream_sequence: 1,
        at: at(25),
    });
    // Re-armed: the same decision replayed in another stream message still runs nothing.
    case.interlock = InterlockState::armed();
    case.record = Some(record);
    case.stream_sequence = 7;
    let text = refused(case.judge());
    assert!(text.contains("refused this same decision"), "{text}");
    assert!(text.contains("a replay changes nothing"), "{text}");
    // A redelivery of the message it was refused in is judged again (it changed nothing yet).
    case.stream_sequence = 1;
    assert!(matches!(case.judge(), Judgement::Execute { .. }));
    // A forged decision is not remembered (it proves nothing about the administrator).
    let (mallory, _) = SigningKey::generate("alice");
    case.signer = Some(&mallory);
    assert!(matches!(
        case.judge(),
        Judgement::Refuse {
            authentic: false,
            ..
        }
    ));
}
