use super::*;
use crate::limits::FailureMark;
use crate::policy::Policy;
use crate::silences::SilenceBook;
use serde_json::{json, Map, Value};

const KEY: &str = "7zWRtRe5IQL9oM3LHBLcU8JmLoqmwNe225WAXZpO/rI=";

fn policy(level: &str, fallback: bool) -> Policy {
    let mut text = format!(
        r#"
autonomy_level = "{level}"
approval_timeout_s = 120
[[admins]]
identity = "alice"
public_key = "{KEY}"
[[rules]]
name = "restart"
incident_types = ["service_outage"]
action = "restart_service"
safety = "SAFE"
parameters = {{ service_name = "${{tags.service_name}}" }}
cooldown_s = 300
rate_limit = {{ max = 2, per_s = 3600 }}
[[rules]]
name = "scale"
incident_types = ["metric_anomaly"]
action = "scale_service"
safety = "RISKY"
parameters = {{ service_name = "${{tags.service_name}}", replicas = 3 }}
cooldown_s = 300
"#
    );
    if fallback {
        text.push_str(
            r#"
[fallback]
action = "send_notification"
parameters = { message = "look at ${incident.incident_id}" }
cooldown_s = 60
"#,
        );
    }
    Policy::parse(&text, "t").unwrap()
}

fn incident(incident_type: &str, state: &str) -> Incident {
    contracts::decode_value(json!({
        "version": "1.0",
        "incident_id": "e725c20a-d5ea-4984-9043-b8e2be93a27c",
        "timestamp": "2026-02-14T12:05:30Z",
        "source": "orion-guardian",
        "incident_type": incident_type,
        "severity": "high",
        "event_ids": ["8096f5a9-b0e0-4840-b850-a1f442700ab3"],
        "correlation_window": {"start": "2026-02-14T12:04:30Z", "end": "2026-02-14T12:05:30Z"},
        "state": state,
        "tags": {"service_name": "web", "rule": "outage"}
    }))
    .unwrap()
}

/// The incident type for each safety class under `policy(_, true)`.
fn incident_for(safety: Safety) -> Incident {
    match safety {
        Safety::Safe => incident("service_outage", "open"),
        Safety::Risky => incident("metric_anomaly", "open"),
        Safety::Unknown => incident("repeated_failures", "open"),
    }
}

fn now() -> Timestamp {
    Timestamp(time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap())
}

fn later(s: i64) -> Timestamp {
    Timestamp(now().0 + time::Duration::seconds(s))
}

fn armed_autonomy(level: Level) -> Autonomy {
    autonomy(level, &InterlockState::armed())
}

fn run(
    policy: &Policy,
    incident: &Incident,
    limits: Option<&LimitState>,
    at: Timestamp,
) -> IncidentPlan {
    let evaluation = policy.evaluate(incident);
    decide(
        incident,
        &evaluation,
        limits,
        &autonomy(policy.autonomy_level, &InterlockState::armed()),
        &SilenceBook::default(),
        policy.approval_timeout_s,
        at,
    )
    .unwrap()
}

fn kind(plan: &IncidentPlan) -> &'static str {
    match plan.decision.decision_type.to_string().as_str() {
        "NO_ACTION" => "NO_ACTION",
        "SUGGEST_ACTION" => "SUGGEST_ACTION",
        "EXECUTE_SAFE_ACTION" => "EXECUTE_SAFE_ACTION",
        "REQUEST_APPROVAL" => "REQUEST_APPROVAL",
        other => panic!("{other}"),
    }
}

fn reasoning(plan: &IncidentPlan) -> String {
    plan.decision.reasoning.to_string()
}

#[test]
fn every_level_and_safety_class() {
    use Safety::*;
    // (level, safety) → decision type, action emitted, request emitted
    let expected: &[(Level, Safety, &str, bool, bool)] = &[
        (Level::N0, Safe, "NO_ACTION", false, false),
        (Level::N0, Risky, "NO_ACTION", false, false),
        (Level::N0, Unknown, "NO_ACTION", false, false),
        (Level::N1, Safe, "SUGGEST_ACTION", false, false),
        (Level::N1, Risky, "SUGGEST_ACTION", false, false),
        (Level::N1, Unknown, "SUGGEST_ACTION", false, false),
        (Level::N2, Safe, "EXECUTE_SAFE_ACTION", true, false),
        (Level::N2, Risky, "NO_ACTION", false, false),
        (Level::N2, Unknown, "NO_ACTION", false, false),
        (Level::N3, Safe, "EXECUTE_SAFE_ACTION", true, false),
        (Level::N3, Risky, "REQUEST_APPROVAL", false, true),
        (Level::N3, Unknown, "REQUEST_APPROVAL", false, true),
    ];
    for (level, safety, decision_type, action, request) in expected {
        let policy = policy(level.as_str(), true);
        let plan = run(&policy, &incident_for(*safety), None, now());
        let case = format!("{level} {safety}: {}", reasoning(&plan));
        assert_eq!(kind(&plan), *decision_type, "{case}");
        assert_eq!(plan.action.is_some(), *action, "{case}");
        assert_eq!(plan.request.is_some(), *request, "{case}");
        let d = &plan.decision;
        assert_eq!(
            d.safety_classification.to_string(),
            safety.as_str(),
            "{case}"
        );
        assert_eq!(
            d.autonomy_level.map(|l| l.to_string()),
            Some(level.to_string())
        );
        assert_eq!(d.requires_approval, *request, "{case}");
        assert_eq!(d.source.to_string(), "orion-brain");
        assert_eq!(d.incident_id, incident_for(*safety).incident_id);
        assert!(d.reasoning.len() >= 10);
        assert!(
            reasoning(&plan).contains(&format!("Level {level}")),
            "the level in force is explained: {case}"
        );
        if *level != Level::N0 {
            assert!(d.proposed_action.is_some(), "{case}");
        }
        if let Some(action) = &plan.action {
            assert_eq!(action.decision_id, d.decision_id);
            assert_eq!(action.state.to_string(), "pending");
            assert_eq!(action.safety_classification.to_string(), "SAFE");
            assert_eq!(
                action.parameters.service_name.as_ref().unwrap().as_str(),
                "web"
            );
            assert!(matches!(plan.change, Some(LimitChange::Action { .. })));
            assert_eq!(d.tags["action_id"], action.action_id.to_string());
        }
        if let Some(request) = &plan.request {
            assert_eq!(request.decision_id, d.decision_id);
            assert_eq!(request.risk_level.to_string(), "RISKY");
            assert_eq!(request.expires_at, later(120));
            assert_eq!(request.incident_id, Some(d.incident_id));
            assert!(request.requested_action.reasoning.is_some());
            assert_eq!(
                request.requested_action.action_type,
                if *safety == Unknown {
                    "send_notification"
                } else {
                    "scale_service"
                }
            );
            match &plan.change {
                Some(LimitChange::Request { record, mark, .. }) => {
                    assert_eq!(record.safety, *safety);
                    assert_eq!(mark.approval_request_id, request.approval_request_id);
                    assert!(record.is_pending());
                }
                other => panic!("{other:?}"),
            }
        }
        if !*action && !*request {
            assert!(plan.change.is_none(), "{case}");
        }
    }
}

#[test]
fn reasoning_says_what_an_operator_needs() {
    let plan = run(
        &policy("N2", true),
        &incident_for(Safety::Risky),
        None,
        now(),
    );
    let text = reasoning(&plan);
    assert!(text.contains("policy rule `scale`"), "{text}");
    assert!(text.contains("scale_service on web"), "{text}");
    assert!(text.contains("blocked at N2"), "{text}");
    assert!(text.contains("need level N3"), "{text}");

    let plan = run(
        &policy("N3", true),
        &incident_for(Safety::Unknown),
        None,
        now(),
    );
    let text = reasoning(&plan);
    assert!(text.contains("No policy rule covers"), "{text}");
    assert!(text.contains("UNKNOWN (treated as RISKY)"), "{text}");
    assert!(text.contains("must approve within 120s"), "{text}");

    let plan = run(
        &policy("N3", true),
        &incident_for(Safety::Safe),
        None,
        now(),
    );
    let text = reasoning(&plan);
    assert!(text.contains("Limits clear (cooldown 300s clear"), "{text}");
    assert!(text.contains("circuit breaker closed"), "{text}");
}

#[test]
fn without_a_fallback_an_uncovered_incident_is_unknown_and_nothing_is_proposed() {
    for level in Level::ALL {
        let plan = run(
            &policy(level.as_str(), false),
            &incident_for(Safety::Unknown),
            None,
            now(),
        );
        assert_eq!(kind(&plan), "NO_ACTION", "{level}");
        assert_eq!(plan.decision.safety_classification.to_string(), "UNKNOWN");
        assert!(plan.decision.proposed_action.is_none());
        assert!(
            reasoning(&plan).contains("no [fallback] is configured"),
            "{}",
            reasoning(&plan)
        );
        assert!(reasoning(&plan).contains("add a [[rules]] entry for repeated_failures"));
    }
}

#[test]
fn only_open_incidents_lead_to_actions() {
    for state in ["acknowledged", "resolved"] {
        let plan = run(
            &policy("N3", true),
            &incident("service_outage", state),
            None,
            now(),
        );
        assert_eq!(kind(&plan), "NO_ACTION");
        assert!(plan.action.is_none() && plan.request.is_none() && plan.change.is_none());
        assert!(
            reasoning(&plan).contains(&format!("is {state}: brain acts only on open incidents"))
        );
    }
}

#[test]
fn parameters_that_cannot_render_are_explained() {
    let mut incident = incident("service_outage", "open");
    incident.tags.remove("service_name");
    let plan = run(&policy("N3", true), &incident, None, now());
    assert_eq!(kind(&plan), "NO_ACTION");
    let text = reasoning(&plan);
    assert!(text.contains("no tag `service_name`"), "{text}");
    assert!(text.contains("rule `restart` (line"), "{text}");
}

fn marked(at: Timestamp) -> LimitState {
    let mut state = LimitState::default();
    state.record_action(
        ActionMark {
            action_id: Uuid::from_u128(1),
            at,
            incident_id: Uuid::from_u128(2),
            approval_id: None,
        },
        None,
    );
    state
}

#[test]
fn cooldown_blocks_the_second_action_including_a_re_emitted_incident() {
    let policy = policy("N3", true);
    let first = run(&policy, &incident_for(Safety::Safe), None, now());
    let Some(LimitChange::Action { mark, .. }) = first.change.clone() else {
        panic!("first version acts")
    };
    let mut state = LimitState::default();
    state.record_action(mark, None);
    // guardian re-emits the grown incident 30 s later: same id, new version.
    let plan = run(
        &policy,
        &incident_for(Safety::Safe),
        Some(&state),
        later(30),
    );
    assert_eq!(kind(&plan), "NO_ACTION");
    assert!(plan.action.is_none() && plan.change.is_none());
    let text = reasoning(&plan);
    assert!(
        text.contains("Blocked: cooldown of restart_service on web"),
        "{text}"
    );
    assert!(text.contains("270s of the 300s cooldown remain"), "{text}");
    let plan = run(
        &policy,
        &incident_for(Safety::Safe),
        Some(&state),
        later(300),
    );
    assert_eq!(kind(&plan), "EXECUTE_SAFE_ACTION", "{}", reasoning(&plan));

    // RISKY at N3: the cooldown blocks the request too.
    let plan = run(
        &policy,
        &incident_for(Safety::Risky),
        Some(&marked(now())),
        later(10),
    );
    assert_eq!(kind(&plan), "NO_ACTION");
    assert!(plan.request.is_none());
}

#[test]
fn rate_limit_blocks_with_reasoning() {
    let policy = policy("N2", true);
    let mut state = marked(now());
    state.record_action(
        ActionMark {
            action_id: Uuid::from_u128(3),
            at: later(400),
            incident_id: Uuid::from_u128(4),
            approval_id: None,
        },
        None,
    );
    let plan = run(
        &policy,
        &incident_for(Safety::Safe),
        Some(&state),
        later(1000),
    );
    assert_eq!(kind(&plan), "NO_ACTION");
    let text = reasoning(&plan);
    assert!(
        text.contains("rate limit of restart_service on web: 2 actions in the last 3600s, the limit is 2; the next is allowed in 2600s"),
        "{text}"
    );
}

#[test]
fn an_open_breaker_blocks_with_reasoning() {
    let policy = policy("N2", true);
    let mut state = LimitState::default();
    for i in 0..3u128 {
        state.record_failure(FailureMark {
            action_id: Uuid::from_u128(i),
            outcome_id: Uuid::from_u128(100 + i),
            at: later(i as i64 * 10),
            status: "failed".into(),
        });
    }
    let plan = run(
        &policy,
        &incident_for(Safety::Safe),
        Some(&state),
        later(100),
    );
    assert_eq!(kind(&plan), "NO_ACTION");
    let text = reasoning(&plan);
    assert!(
        text.contains("circuit breaker of restart_service on web is open"),
        "{text}"
    );
    assert!(text.contains("(520s remaining)"), "{text}");
    let plan = run(
        &policy,
        &incident_for(Safety::Safe),
        Some(&state),
        later(700),
    );
    assert_eq!(kind(&plan), "EXECUTE_SAFE_ACTION");
}

#[test]
fn a_waiting_request_blocks_a_second_request_for_the_same_target() {
    let policy = policy("N3", true);
    let first = run(&policy, &incident_for(Safety::Risky), None, now());
    let Some(LimitChange::Request { mark, .. }) = first.change.clone() else {
        panic!("{first:?}")
    };
    let mut state = LimitState::default();
    state.open_request(mark.clone());
    let plan = run(
        &policy,
        &incident_for(Safety::Risky),
        Some(&state),
        later(20),
    );
    assert_eq!(kind(&plan), "NO_ACTION");
    assert!(plan.request.is_none());
    assert!(reasoning(&plan).contains(&format!(
        "approval request {} for scale_service on web",
        mark.approval_request_id
    )));
    // Once it has expired, a new version may ask again.
    let plan = run(
        &policy,
        &incident_for(Safety::Risky),
        Some(&state),
        later(121),
    );
    assert_eq!(kind(&plan), "REQUEST_APPROVAL");
}

#[test]
fn n1_suggests_even_inside_a_cooldown_and_says_so() {
    let plan = run(
        &policy("N1", true),
        &incident_for(Safety::Safe),
        Some(&marked(now())),
        later(5),
    );
    assert_eq!(kind(&plan), "SUGGEST_ACTION");
    let text = reasoning(&plan);
    assert!(text.contains("by hand"), "{text}");
    assert!(
        text.contains("Note: cooldown of restart_service on web"),
        "{text}"
    );
    let proposed = plan.decision.proposed_action.unwrap();
    assert_eq!(proposed.action_type, "restart_service");
    assert_eq!(proposed.parameters["service_name"], "web");
}

#[test]
fn the_interlock_lowers_the_level_live() {
    let policy = policy("N3", true);
    let incident = incident_for(Safety::Safe);
    let evaluation = policy.evaluate(&incident);
    let decide_with = |interlock: &InterlockState| {
        let autonomy = autonomy(policy.autonomy_level, interlock);
        decide(
            &incident,
            &evaluation,
            None,
            &autonomy,
            &SilenceBook::default(),
            120,
            now(),
        )
        .unwrap()
    };
    let disarmed = decide_with(&InterlockState::disarmed("disarmed by ops command c1"));
    assert_eq!(kind(&disarmed), "NO_ACTION");
    assert_eq!(disarmed.decision.autonomy_level.unwrap().to_string(), "N0");
    assert!(
        reasoning(&disarmed).contains("the ops interlock is disarmed (disarmed by ops command c1)")
    );

    let capped =
        decide_with(&InterlockState::armed().with_ceiling(Level::N1, "set by ops command c2"));
    assert_eq!(kind(&capped), "SUGGEST_ACTION");
    assert_eq!(capped.decision.autonomy_level.unwrap().to_string(), "N1");
    assert!(
        reasoning(&capped)
            .contains("the policy says N3 but the ops risk ceiling is N1 (set by ops command c2)"),
        "{}",
        reasoning(&capped)
    );

    let high_ceiling = decide_with(&InterlockState::armed().with_ceiling(Level::N3, "x"));
    assert_eq!(kind(&high_ceiling), "EXECUTE_SAFE_ACTION");

    let missing = decide_with(&InterlockState::missing());
    assert_eq!(kind(&missing), "NO_ACTION");
    assert_eq!(missing.decision.autonomy_level.unwrap().to_string(), "N0");
    assert!(
        reasoning(&missing).contains("no `armed` record")
            && reasoning(&missing).contains("fail closed"),
        "{}",
        reasoning(&missing)
    );

    let unreadable = decide_with(&InterlockState::unreadable("bucket missing"));
    assert_eq!(kind(&unreadable), "NO_ACTION");
    assert!(reasoning(&unreadable).contains("cannot be read (bucket missing)"));
    assert_eq!(armed_autonomy(Level::N2).effective, Level::N2);
}

#[test]
fn parameters_that_break_the_action_contract_never_become_an_action() {
    let text = r#"
autonomy_level = "N2"
[[rules]]
name = "bad-incident-id"
incident_types = ["service_outage"]
action = "acknowledge_incident"
safety = "SAFE"
parameters = { incident_id = "${tags.service_name}" }
cooldown_s = 10
"#;
    let policy = Policy::parse(text, "t").unwrap();
    let plan = run(&policy, &incident_for(Safety::Safe), None, now());
    assert_eq!(kind(&plan), "NO_ACTION");
    assert!(plan.action.is_none() && plan.change.is_none());
    let text = reasoning(&plan);
    assert!(text.contains("break the action contract"), "{text}");
    let params: &Map<String, Value> = &plan.decision.proposed_action.unwrap().parameters;
    assert_eq!(params["incident_id"], "web");
}

#[test]
fn a_target_that_is_not_canonical_is_refused_at_every_level_before_limits() {
    for level in ["N1", "N2", "N3"] {
        let policy = policy(level, true);
        for (incident_type, name) in [("service_outage", "all"), ("metric_anomaly", "web ")] {
            let mut incident = incident(incident_type, "open");
            incident
                .tags
                .insert("service_name".into(), name.to_string());
            let plan = run(&policy, &incident, None, now());
            let text = reasoning(&plan);
            assert_eq!(kind(&plan), "NO_ACTION", "{level} {name:?}: {text}");
            assert!(plan.action.is_none() && plan.request.is_none());
            assert!(plan.change.is_none(), "a refusal records nothing");
            assert!(plan.decision.proposed_action.is_none(), "nothing suggested");
            assert!(
                text.contains(&format!("target {name:?} is not a canonical name")),
                "{text}"
            );
            assert!(text.contains("parameters.service_name"), "{text}");
            assert!(text.contains("policy rule `"), "{text}");
        }
    }
}

#[test]
fn a_target_the_policy_does_not_list_is_refused_saying_where_the_list_is() {
    let text = r#"
autonomy_level = "N2"
targets = ["web"]
[[rules]]
name = "restart"
incident_types = ["service_outage"]
action = "restart_service"
safety = "SAFE"
parameters = { service_name = "${tags.service_name}" }
cooldown_s = 300
"#;
    let policy = Policy::parse(text, "t").unwrap();
    let mut incident = incident("service_outage", "open");
    incident
        .tags
        .insert("service_name".into(), "billing".to_string());
    let plan = run(&policy, &incident, None, now());
    let text = reasoning(&plan);
    assert_eq!(kind(&plan), "NO_ACTION", "{text}");
    assert!(plan.action.is_none() && plan.change.is_none());
    assert!(
        text.contains(
            r#"target "billing" is not one the policy allows here (`targets` at line 3: web)"#
        ),
        "{text}"
    );
    assert!(text.contains("add it to that `targets` list"), "{text}");
}

// ---- silences ---------------------------------------------------------------------------------

fn run_silenced(
    policy: &Policy,
    incident: &Incident,
    book: &SilenceBook,
    at: Timestamp,
) -> IncidentPlan {
    decide(
        incident,
        &policy.evaluate(incident),
        None,
        &armed_autonomy(policy.autonomy_level),
        book,
        policy.approval_timeout_s,
        at,
    )
    .unwrap()
}

#[test]
fn a_silence_on_the_target_means_no_action_naming_it() {
    use crate::silences::tests::{book_with, ID};
    let policy = policy("N3", true);
    let book = book_with(json!({"target": "web"}));
    let plan = run_silenced(&policy, &incident_for(Safety::Safe), &book, later(60));
    assert_eq!(kind(&plan), "NO_ACTION");
    assert!(plan.action.is_none() && plan.request.is_none() && plan.change.is_none());
    let text = reasoning(&plan);
    for needle in [
        format!("silence {ID} by alice until "),
        "\"database migration\"".to_string(),
        "target web".to_string(),
        "policy rule `restart`".to_string(),
        format!("approval-cli unsilence {ID}"),
    ] {
        assert!(text.contains(&needle), "{needle:?} not in {text}");
    }
    let ends = crate::silences::tests::at(3600).to_string();
    assert!(text.contains(&ends), "the end {ends} is named: {text}");
    assert_eq!(
        plan.decision.tags.get(SILENCE_TAG).map(String::as_str),
        Some(ID)
    );
    assert_eq!(
        plan.decision.proposed_action.as_ref().unwrap().action_type,
        "restart_service",
        "what would have run is still recorded"
    );

    // RISKY at N3 asks no approval while silenced either.
    let book = book_with(json!({"incident_type": "metric_anomaly"}));
    let plan = run_silenced(&policy, &incident_for(Safety::Risky), &book, later(60));
    assert_eq!(kind(&plan), "NO_ACTION");
    assert!(plan.request.is_none());
}

#[test]
fn a_silence_expires_on_its_own_and_only_silences_what_it_matches() {
    use crate::silences::tests::book_with;
    let policy = policy("N3", true);
    let incident = incident_for(Safety::Safe);
    let book = book_with(json!({"target": "web"}));
    // At ends_at (one hour after the start) the silence no longer applies.
    let plan = run_silenced(&policy, &incident, &book, later(3600));
    assert_eq!(kind(&plan), "EXECUTE_SAFE_ACTION");
    assert!(!plan.decision.tags.contains_key(SILENCE_TAG));

    for criteria in [
        json!({"target": "api"}),
        json!({"incident_type": "metric_anomaly"}),
        json!({"tags": {"service_name": "web", "env": "prod"}}),
        json!({"target": "web", "incident_type": "edge_device_failure"}),
    ] {
        let book = book_with(criteria.clone());
        let plan = run_silenced(&policy, &incident, &book, later(60));
        assert_eq!(kind(&plan), "EXECUTE_SAFE_ACTION", "{criteria}");
    }
    // Tags are matched against the incident's own tags.
    let book = book_with(json!({"tags": {"rule": "outage"}}));
    assert_eq!(
        kind(&run_silenced(&policy, &incident, &book, later(60))),
        "NO_ACTION"
    );
}

#[test]
fn a_lifted_silence_no_longer_applies() {
    use crate::silences::tests::{active, admins, apply_signed, lifted};
    let policy = policy("N3", true);
    let a = admins();
    let mut book = SilenceBook::default();
    let message = active("alice", 3600, json!({"target": "web"}));
    apply_signed(&mut book, 1, &message, &a.alice, &a.keyring);
    let incident = incident_for(Safety::Safe);
    assert_eq!(
        kind(&run_silenced(&policy, &incident, &book, later(60))),
        "NO_ACTION"
    );
    apply_signed(&mut book, 2, &lifted(&message, "bob"), &a.bob, &a.keyring);
    assert_eq!(
        kind(&run_silenced(&policy, &incident, &book, later(60))),
        "EXECUTE_SAFE_ACTION"
    );
}
