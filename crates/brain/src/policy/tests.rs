use super::*;
use contracts::target::TargetProblem;

const KEY: &str = "7zWRtRe5IQL9oM3LHBLcU8JmLoqmwNe225WAXZpO/rI=";

fn problems(text: &str) -> Vec<Problem> {
    match Policy::parse(text, "policy.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.problems().to_vec(),
    }
}

/// The single problem of `text`: its line and message.
fn problem(text: &str) -> (usize, String) {
    let found = problems(text);
    assert_eq!(found.len(), 1, "{found:?}");
    (found[0].line, found[0].message.clone())
}

fn incident(incident_type: &str, severity: &str, tags: &[(&str, &str)]) -> Incident {
    let tags: Map<String, Value> = tags
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    contracts::decode_value(serde_json::json!({
        "version": "1.0",
        "incident_id": "e725c20a-d5ea-4984-9043-b8e2be93a27c",
        "timestamp": "2026-02-14T12:05:30Z",
        "source": "orion-guardian",
        "incident_type": incident_type,
        "severity": severity,
        "event_ids": ["8096f5a9-b0e0-4840-b850-a1f442700ab3"],
        "correlation_window": {"start": "2026-02-14T12:04:30Z", "end": "2026-02-14T12:05:30Z"},
        "state": "open",
        "tags": tags
    }))
    .unwrap()
}

#[test]
fn the_shipped_example_is_valid_and_covers_what_it_says() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policy.toml");
    let policy = Policy::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.autonomy_level, Level::N3);
    assert_eq!(policy.approval_timeout_s, 300);
    assert_eq!(policy.admins, vec!["ops-lead@example".to_string()]);
    let rule_for = |t: &str, s: &str, tags: &[(&str, &str)]| match policy
        .evaluate(&incident(t, s, tags))
    {
        Evaluation::Proposal(p) => (p.rule.action.to_string(), p.safety(), p.target.to_string()),
        other => panic!("{t}/{s}: {other:?}"),
    };
    assert_eq!(
        rule_for("service_outage", "high", &[("service_name", "web")]),
        ("restart_service".into(), Safety::Safe, "web".into())
    );
    assert_eq!(
        rule_for("metric_anomaly", "critical", &[("service_name", "api")]),
        ("scale_service".into(), Safety::Risky, "api".into())
    );
    assert_eq!(
        rule_for("edge_device_failure", "high", &[("device_id", "gw-7")]),
        ("stop_edge_device".into(), Safety::Risky, "gw-7".into())
    );
    assert_eq!(
        rule_for("repeated_failures", "low", &[]).0,
        "send_notification"
    );
    assert_eq!(
        rule_for("correlation_detected", "low", &[]),
        (
            "acknowledge_incident".into(),
            Safety::Safe,
            "e725c20a-d5ea-4984-9043-b8e2be93a27c".into()
        )
    );
    // metric_anomaly at low severity: no rule, so the fallback (UNKNOWN).
    let (action, safety, _) = rule_for("metric_anomaly", "low", &[]);
    assert_eq!(
        (action.as_str(), safety),
        ("send_notification", Safety::Unknown)
    );
    assert!(policy.summary().contains("restart-crashed-service (line"));
}

#[test]
fn rules_render_templates_and_pick_the_first_that_renders() {
    let text = format!(
        r#"
autonomy_level = "N2"
[[admins]]
identity = "a"
public_key = "{KEY}"
[[rules]]
name = "by-service"
incident_types = ["service_outage"]
action = "restart_service"
safety = "SAFE"
parameters = {{ service_name = "${{tags.service_name}}", note = "for ${{incident.incident_id}} ${{incident.severity}}", labels = {{ kind = "${{incident.incident_type}}" }} }}
cooldown_s = 60
[[rules]]
name = "by-device"
incident_types = ["service_outage"]
action = "restart_edge_device"
safety = "SAFE"
parameters = {{ device_id = "${{tags.device_id}}" }}
cooldown_s = 60
"#
    );
    let policy = Policy::parse(&text, "t").unwrap();
    match policy.evaluate(&incident(
        "service_outage",
        "high",
        &[("service_name", "web")],
    )) {
        Evaluation::Proposal(p) => {
            assert_eq!(p.rule.name, "by-service");
            assert_eq!(p.parameters["service_name"], "web");
            assert_eq!(
                p.parameters["note"],
                "for e725c20a-d5ea-4984-9043-b8e2be93a27c high"
            );
            assert_eq!(p.parameters["labels"]["kind"], "service_outage");
            assert_eq!(p.target, "web");
        }
        other => panic!("{other:?}"),
    }
    match policy.evaluate(&incident(
        "service_outage",
        "high",
        &[("device_id", "gw-1")],
    )) {
        Evaluation::Proposal(p) => {
            assert_eq!(p.rule.name, "by-device");
            assert_eq!(p.target, "gw-1");
            assert_eq!(p.skipped.len(), 1);
            assert!(
                p.skipped[0].contains("no tag `service_name`"),
                "{:?}",
                p.skipped
            );
        }
        other => panic!("{other:?}"),
    }
    match policy.evaluate(&incident("service_outage", "high", &[("rule", "r")])) {
        Evaluation::RenderFailed { rule, failures } => {
            assert_eq!(rule.name, "by-service");
            assert_eq!(failures.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    match policy.evaluate(&incident("metric_anomaly", "high", &[])) {
        Evaluation::NoRule { near_misses } => assert!(near_misses.is_empty()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rendered_target_must_be_canonical_and_a_refusal_ends_the_evaluation() {
    let text = r#"
autonomy_level = "N2"
[[rules]]
name = "restart"
incident_types = ["service_outage"]
action = "restart_service"
safety = "SAFE"
parameters = { service_name = "${tags.service_name}" }
cooldown_s = 60
[[rules]]
name = "notify"
incident_types = ["service_outage"]
action = "send_notification"
safety = "SAFE"
parameters = { message = "outage" }
cooldown_s = 60
[[rules]]
name = "device"
incident_types = ["edge_device_failure"]
action = "restart_edge_device"
safety = "SAFE"
parameters = { device_id = "${tags.device_id}" }
cooldown_s = 60
"#;
    let policy = Policy::parse(text, "t").unwrap();
    let cases = [
        ("service_outage", "service_name", "", TargetProblem::Empty),
        (
            "service_outage",
            "service_name",
            "all",
            TargetProblem::ReservedAll,
        ),
        (
            "service_outage",
            "service_name",
            "web ",
            TargetProblem::SurroundingWhitespace,
        ),
        (
            "edge_device_failure",
            "device_id",
            "GW-7",
            TargetProblem::Uppercase('G'),
        ),
    ];
    for (incident_type, tag, value, problem) in cases {
        match policy.evaluate(&incident(incident_type, "high", &[(tag, value)])) {
            Evaluation::TargetRefused { rule, refusal } => {
                assert_ne!(rule.name, "notify", "later rules are not tried");
                assert_eq!(refusal.parameter(), tag);
                match refusal {
                    TargetRefusal::NotCanonical { error, .. } => {
                        assert_eq!((error.target.as_str(), error.problem), (value, problem))
                    }
                    other => panic!("{value:?}: {other:?}"),
                }
            }
            other => panic!("{value:?}: {other:?}"),
        }
    }
    // Without a service or device the incident id is the target (for the limits).
    match policy.evaluate(&incident("service_outage", "high", &[])) {
        Evaluation::Proposal(p) => {
            assert_eq!(p.rule.name, "notify");
            assert_eq!(p.target, "e725c20a-d5ea-4984-9043-b8e2be93a27c");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn severities_narrow_a_rule_and_near_misses_are_reported() {
    let text = r#"
autonomy_level = "N1"
[[rules]]
name = "only-critical"
incident_types = ["metric_anomaly"]
severities = ["critical"]
action = "scale_service"
safety = "RISKY"
parameters = { service_name = "api", replicas = 2 }
cooldown_s = 60
"#;
    let policy = Policy::parse(text, "t").unwrap();
    assert!(matches!(
        policy.evaluate(&incident("metric_anomaly", "critical", &[])),
        Evaluation::Proposal(_)
    ));
    match policy.evaluate(&incident("metric_anomaly", "low", &[])) {
        Evaluation::NoRule { near_misses } => {
            assert_eq!(
                near_misses,
                vec!["rule `only-critical` covers metric_anomaly only at severity critical"]
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn defaults_apply() {
    let policy = Policy::parse(
        r#"
autonomy_level = "N2"
[[rules]]
name = "r"
incident_types = ["service_outage"]
action = "restart_service"
safety = "SAFE"
parameters = { service_name = "web" }
cooldown_s = 10
"#,
        "t",
    )
    .unwrap();
    assert_eq!(policy.approval_timeout_s, DEFAULT_APPROVAL_TIMEOUT_S);
    assert_eq!(
        policy.rules[0].limits.circuit_breaker,
        BreakerConfig::default()
    );
    assert_eq!(
        policy.rules[0].limits.circuit_breaker,
        BreakerConfig {
            failures: 3,
            within_s: 300,
            open_s: 600
        }
    );
    assert_eq!(policy.rules[0].limits.rate_limit, None);
    assert!(policy.fallback.is_none());
}

const RULE: &str = r#"
[[rules]]
name = "r"
incident_types = ["service_outage"]
action = "restart_service"
safety = "SAFE"
parameters = { service_name = "web" }
cooldown_s = 10
"#;

#[test]
fn syntax_errors_and_unknown_keys_give_the_line() {
    let (line, message) = problem("autonomy_level = \"N2\"\n\n[[rules]\nname = 1\n");
    assert_eq!(line, 3, "{message}");
    let (line, message) = problem(&format!(
        "autonomy_level = \"N2\"\n{RULE}colour = \"red\"\n"
    ));
    assert_eq!(line, 10, "{message}");
    assert!(message.contains("colour"), "{message}");
    let (line, message) = problem("autonomy_level = \"N2\"\napproval_timeout = 10\n");
    assert_eq!(line, 2, "{message}");
    assert!(message.contains("approval_timeout"), "{message}");
    let (line, message) = problem("approval_timeout_s = 10\n");
    assert_eq!(line, 1);
    assert!(message.contains("autonomy_level"), "{message}");
    let (line, message) = problem(&format!(
        "autonomy_level = \"N2\"\n{}",
        RULE.replace("cooldown_s = 10\n", "")
    ));
    assert_eq!(line, 3, "{message}");
    assert!(message.contains("cooldown_s"), "{message}");
}

#[test]
fn semantic_errors_give_the_line_of_the_offending_value() {
    let base = format!("autonomy_level = \"N2\"\n{RULE}");
    // Lines of RULE: 3 [[rules]], 4 name, 5 incident_types, 6 action, 7 safety, 8 parameters,
    // 9 cooldown_s.
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "action = \"restart_service\"",
            "action = \"reboot\"",
            6,
            "unknown action type \"reboot\"",
        ),
        (
            "safety = \"SAFE\"",
            "safety = \"MAYBE\"",
            7,
            "is not SAFE or RISKY",
        ),
        (
            "safety = \"SAFE\"",
            "safety = \"UNKNOWN\"",
            7,
            "is not SAFE or RISKY",
        ),
        (
            "incident_types = [\"service_outage\"]",
            "incident_types = [\"service_outage\", \"meteor_strike\"]",
            5,
            "unknown incident type \"meteor_strike\"",
        ),
        (
            "incident_types = [\"service_outage\"]",
            "incident_types = []",
            5,
            "incident_types is empty",
        ),
        (
            "parameters = { service_name = \"web\" }",
            "parameters = { service_name = \"${tags.service_name\" }",
            8,
            "never closed",
        ),
        (
            "parameters = { service_name = \"web\" }",
            "parameters = { service_name = \"${env.HOME}\" }",
            8,
            "unknown template variable",
        ),
        (
            "parameters = { service_name = \"web\" }",
            "parameters = { service = \"web\" }",
            6,
            "restart_service needs parameters.service_name",
        ),
        (
            "parameters = { service_name = \"web\" }",
            "parameters = { service_name = \"web\", timeout_s = 0 }",
            8,
            "parameters.timeout_s",
        ),
        (
            "cooldown_s = 10",
            "cooldown_s = 0",
            9,
            "cooldown_s = 0 is out of range",
        ),
        ("name = \"r\"", "name = \"\"", 4, "name is empty"),
    ];
    for (from, to, line, needle) in cases {
        assert!(base.contains(from), "{from}");
        let text = base.replace(from, to);
        let (found_line, message) = problem(&text);
        assert_eq!(found_line, *line, "{to}: {message}");
        assert!(message.contains(needle), "{to}: {message}");
        assert!(message.starts_with("rule "), "{message}");
    }
}

#[test]
fn more_semantic_errors() {
    let (line, message) = problem(&format!("autonomy_level = \"N4\"\n{RULE}"));
    assert_eq!(line, 1);
    assert!(message.contains("N4"), "{message}");

    let (line, message) = problem("autonomy_level = \"N3\"\n");
    assert_eq!(line, 1);
    assert!(message.contains("no [[admins]]"), "{message}");

    let (line, message) = problem("autonomy_level = \"N2\"\napproval_timeout_s = 7200\n");
    assert_eq!(line, 2);
    assert!(
        message.contains("at most") || message.contains("between 1 and 3600"),
        "{message}"
    );

    let (line, message) = problem(
        "autonomy_level = \"N2\"\n[[admins]]\nidentity = \"a\"\npublic_key = \"bm90IGEga2V5\"\n",
    );
    assert_eq!(line, 4);
    assert!(message.contains("32 bytes"), "{message}");

    let (line, message) = problem(&format!(
        "autonomy_level = \"N2\"\n[[admins]]\nidentity = \"a\"\npublic_key = \"{KEY}\"\n[[admins]]\nidentity = \"a\"\npublic_key = \"{KEY}\"\n"
    ));
    assert_eq!(line, 6);
    assert!(message.contains("twice"), "{message}");

    let (line, message) = problem(&format!("autonomy_level = \"N2\"\n{RULE}{RULE}"));
    assert_eq!(line, 12);
    assert!(message.contains("used twice"), "{message}");

    let text = format!("autonomy_level = \"N2\"\n{RULE}").replace(
        "parameters = { service_name = \"web\" }",
        "parameters = { service_name = \"web\" }\nseverities = [\"urgent\"]",
    );
    let (line, message) = problem(&text);
    assert_eq!(line, 9);
    assert!(message.contains("unknown severity \"urgent\""), "{message}");

    let text = format!("autonomy_level = \"N2\"\n{RULE}").replace(
        "cooldown_s = 10",
        "cooldown_s = 10\nrate_limit = { max = 0, per_s = 60 }\ncircuit_breaker = { failures = 3, within_s = 0, open_s = 600 }",
    );
    let found = problems(&text);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!((found[0].line, found[1].line), (10, 11));
    assert!(found[0].message.contains("rate_limit.max"));
    assert!(found[1].message.contains("circuit_breaker.within_s"));

    let scale = format!("autonomy_level = \"N2\"\n{RULE}")
        .replace("restart_service", "scale_service")
        .replace(
            "{ service_name = \"web\" }",
            "{ service_name = \"web\", replicas = \"${tags.n}\" }",
        );
    let (line, message) = problem(&scale);
    assert_eq!(line, 8);
    assert!(message.contains("whole number"), "{message}");

    let (line, message) = problem(
        "autonomy_level = \"N2\"\n[fallback]\naction = \"page_everyone\"\nparameters = {}\ncooldown_s = 5\n",
    );
    assert_eq!(line, 3);
    assert!(
        message.starts_with("fallback: unknown action type"),
        "{message}"
    );
    let (line, message) = problem(
        "autonomy_level = \"N2\"\n[fallback]\naction = \"send_notification\"\nsafety = \"SAFE\"\nparameters = {message = \"x\"}\ncooldown_s = 5\n",
    );
    assert_eq!(line, 4, "{message}");
}

#[test]
fn target_lists_and_literal_targets_are_checked_at_load_with_their_line() {
    // Lines: 1 autonomy_level, 2 targets, then RULE: 4 [[rules]] … 9 parameters, 10 cooldown_s.
    let with =
        |targets: &str, rule: &str| format!("autonomy_level = \"N2\"\ntargets = {targets}\n{rule}");
    let own = |targets: &str| {
        RULE.replace(
            "cooldown_s = 10",
            &format!("cooldown_s = 10\ntargets = {targets}"),
        )
    };
    let cases = [
        (
            with(r#"["web", "Web"]"#, RULE),
            2,
            r#"targets: target "Web" is not a canonical name: it contains the uppercase letter 'W'"#,
        ),
        (with(r#"["web", "all"]"#, RULE), 2, "`all` is reserved"),
        (with(r#"["web", "web "]"#, RULE), 2, "leading or trailing whitespace"),
        (with(r#"["web", "web"]"#, RULE), 2, r#"targets: "web" is listed twice"#),
        (with("[]", RULE), 2, "targets is empty: it would refuse every target"),
        (
            with(r#"["api"]"#, RULE),
            9,
            r#"rule `r`: parameters.service_name: "web" is not in `targets` (line 2: api)"#,
        ),
        (
            with(r#"["web"]"#, &own(r#"["web", "API"]"#)),
            11,
            r#"rule `r`: targets: target "API" is not a canonical name"#,
        ),
        (
            format!("autonomy_level = \"N2\"\n{RULE}").replace("\"web\"", "\"all\""),
            8,
            r#"rule `r`: parameters.service_name: target "all" is not a canonical name: `all` is reserved"#,
        ),
        (
            "autonomy_level = \"N2\"\n[fallback]\naction = \"restart_service\"\nparameters = { service_name = \"Web\" }\ncooldown_s = 5\n".to_string(),
            4,
            r#"fallback: parameters.service_name: target "Web" is not a canonical name"#,
        ),
    ];
    for (text, line, needle) in cases {
        let (found_line, message) = problem(&text);
        assert_eq!(found_line, line, "{text}\n{message}");
        assert!(message.contains(needle), "{message}");
    }
    // A rule's own list replaces the policy's.
    let policy = Policy::parse(&with(r#"["api"]"#, &own(r#"["web"]"#)), "t").unwrap();
    assert_eq!(policy.rules[0].targets.as_ref().unwrap().line, 11);
    assert!(
        policy.summary().contains("only on web"),
        "{}",
        policy.summary()
    );
}

#[test]
fn a_target_outside_the_rules_list_is_refused() {
    let text = r#"
autonomy_level = "N2"
targets = ["web", "gw-7"]
[[rules]]
name = "restart"
incident_types = ["service_outage"]
action = "restart_service"
safety = "SAFE"
parameters = { service_name = "${tags.service_name}" }
cooldown_s = 60
[[rules]]
name = "notify"
incident_types = ["repeated_failures"]
action = "send_notification"
safety = "SAFE"
parameters = { message = "again" }
cooldown_s = 60
"#;
    let policy = Policy::parse(text, "t").unwrap();
    match policy.evaluate(&incident(
        "service_outage",
        "high",
        &[("service_name", "api")],
    )) {
        Evaluation::TargetRefused {
            refusal:
                TargetRefusal::NotAllowed {
                    target,
                    allowed,
                    parameter,
                },
            ..
        } => {
            assert_eq!((target.as_str(), parameter), ("api", "service_name"));
            assert_eq!((allowed.list(), allowed.line), ("web, gw-7".to_string(), 3));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        policy.evaluate(&incident("service_outage", "high", &[("service_name", "web")])),
        Evaluation::Proposal(p) if p.target == "web"
    ));
    // The incident id names no service: no list applies to it.
    assert!(matches!(
        policy.evaluate(&incident("repeated_failures", "high", &[])),
        Evaluation::Proposal(_)
    ));
}

#[test]
fn every_problem_is_reported_at_once_in_line_order() {
    let text = format!("autonomy_level = \"N9\"\n{RULE}")
        .replace("safety = \"SAFE\"", "safety = \"SAFE-ish\"")
        .replace("action = \"restart_service\"", "action = \"restart\"");
    let err = Policy::parse(&text, "policy.toml").unwrap_err();
    let lines: Vec<usize> = err.problems().iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![1, 6, 7]);
    let shown = err.to_string();
    assert!(
        shown.starts_with("policy policy.toml is invalid (3 problems):"),
        "{shown}"
    );
    assert!(
        shown.contains("\n  policy.toml:6:10: rule `r`: unknown action type \"restart\""),
        "{shown}"
    );
}
