use super::report::{differences, effects, Effect, Side};
use super::*;

fn side(decision_type: &str, rule: Option<&str>, target: Option<&str>) -> Side {
    Side {
        decision_type: decision_type.to_string(),
        safety: "SAFE".to_string(),
        rule: rule.map(str::to_string),
        action: rule.map(|_| "restart_service".to_string()),
        target: target.map(str::to_string),
        autonomy_level: Some("N2".to_string()),
    }
}

#[test]
fn effects_say_what_runs_and_what_is_asked() {
    let run = side("EXECUTE_SAFE_ACTION", Some("r"), Some("web"));
    let nothing = side("NO_ACTION", Some("r"), Some("web"));
    let ask = side("REQUEST_APPROVAL", Some("r"), Some("web"));
    assert_eq!(effects(Some(&run), &run), vec![]);
    assert_eq!(
        effects(Some(&run), &nothing),
        vec![Effect::ActionWouldNoLongerRun]
    );
    assert_eq!(effects(Some(&nothing), &run), vec![Effect::ActionWouldRun]);
    assert_eq!(effects(None, &run), vec![Effect::ActionWouldRun]);
    assert_eq!(
        effects(Some(&run), &ask),
        vec![Effect::ActionWouldNoLongerRun, Effect::ApprovalWouldBeAsked]
    );
    // Another target: the old action no longer runs, a new one would.
    let elsewhere = side("EXECUTE_SAFE_ACTION", Some("r"), Some("db"));
    assert_eq!(
        effects(Some(&run), &elsewhere),
        vec![Effect::ActionWouldNoLongerRun, Effect::ActionWouldRun]
    );
    assert_eq!(differences(Some(&run), &elsewhere), vec!["target"]);
    assert_eq!(
        differences(Some(&run), &nothing),
        vec!["decision_type"],
        "the level alone is not a difference"
    );
    assert_eq!(differences(None, &run), vec!["no_recorded_decision"]);
}

#[test]
fn the_ids_of_messages_never_made_get_stable_names() {
    let mut labels = Labels::default();
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    labels.add(a, "action");
    labels.add(b, "request");
    assert_eq!(
        labels.apply(&format!("action {a} ran; request {b} waits; action {a}")),
        "action sim-action-1 ran; request sim-request-1 waits; action sim-action-1"
    );
}

#[test]
fn an_empty_history_changes_nothing() {
    let policy = Policy::parse(
        "autonomy_level = \"N2\"\n[[rules]]\nname = \"r\"\nincident_types = [\"service_outage\"]\naction = \"restart_service\"\nsafety = \"SAFE\"\nparameters = { service_name = \"web\" }\ncooldown_s = 60\n",
        "t",
    )
    .unwrap();
    let report = simulate(&History::default(), &policy, "t").unwrap();
    assert_eq!(report.summary.incidents, 0);
    assert!(report.changes.is_empty());
    assert!(report.to_table().contains("No decision would change."));
}
