//! The engine on its own: grouping, windows, thresholds, severities, the state machine,
//! duplicates, bounds and restoring. Every emitted version is checked against the schema.

use contracts::incident_acknowledgement_v1::IncidentAcknowledgementSource;
use contracts::incident_v1::{IncidentIncidentType, IncidentSeverity, IncidentState};
use serde_json::json;

use super::*;
use crate::config::GuardianConfigFile;

const T0: &str = "2026-02-14T12:00:00Z";

fn at(offset_ms: i64) -> OffsetDateTime {
    T0.parse::<Timestamp>().unwrap().0 + time::Duration::milliseconds(offset_ms)
}

fn secs(s: i64) -> i64 {
    s * 1000
}

/// The shipped example rules, with `limits`.
fn engine_with(limits: Limits) -> Engine {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/guardian.toml")).unwrap();
    let file: GuardianConfigFile = toml::from_str(&text).unwrap();
    Engine::new(file.validate().unwrap().rules, limits)
}

fn engine() -> Engine {
    engine_with(Limits::default())
}

fn engine_from(rules: &str, limits: Limits) -> Engine {
    let file: GuardianConfigFile = toml::from_str(rules).unwrap();
    Engine::new(file.validate().unwrap().rules, limits)
}

fn event(id: u128, event_type: &str, data: serde_json::Value, offset_ms: i64) -> Event {
    event_with(id, event_type, "critical", data, offset_ms)
}

fn event_with(
    id: u128,
    event_type: &str,
    severity: &str,
    data: serde_json::Value,
    offset_ms: i64,
) -> Event {
    contracts::decode_value(json!({
        "version": "1.0",
        "event_id": Uuid::from_u128(id),
        "timestamp": Timestamp(at(offset_ms)),
        "source": "orion-watcher",
        "event_type": event_type,
        "severity": severity,
        "data": data,
    }))
    .unwrap()
}

fn down(id: u128, service: &str, offset_ms: i64) -> Event {
    event(
        id,
        "service_down",
        json!({"service_name": service}),
        offset_ms,
    )
}

fn up(id: u128, service: &str, offset_ms: i64) -> Event {
    event_with(
        id,
        "service_up",
        "info",
        json!({"service_name": service}),
        offset_ms,
    )
}

fn metric(id: u128, service: &str, offset_ms: i64) -> Event {
    event_with(
        id,
        "metric_threshold_exceeded",
        "warning",
        json!({"service_name": service, "metric": "cpu", "value": 95}),
        offset_ms,
    )
}

fn ack(id: u128, incident: Uuid, offset_ms: i64) -> IncidentAcknowledgement {
    IncidentAcknowledgement {
        version: contracts::incident_acknowledgement_v1::IncidentAcknowledgementVersion::X10,
        acknowledgement_id: Uuid::from_u128(id),
        timestamp: Timestamp(at(offset_ms)),
        source: IncidentAcknowledgementSource::OrionCommander,
        incident_id: incident,
        action_id: None,
        acknowledged_by: "operator-1".parse().unwrap(),
        note: Some("on it".into()),
        tags: Default::default(),
    }
}

fn checked(incident: &Incident) -> Incident {
    contracts::encode(incident).unwrap_or_else(|e| panic!("an invalid incident: {e}"));
    incident.clone()
}

/// Applies a change as the service does when storing and publishing succeed.
fn apply(engine: &mut Engine, change: Change, now: OffsetDateTime) -> Option<Incident> {
    let emitted = change.emit.as_ref().map(checked);
    remember(engine, &change.forget, now);
    for evicted in engine.commit(change) {
        remember(engine, &evicted.event_ids, now);
    }
    emitted
}

fn remember(engine: &mut Engine, ids: &[Uuid], now: OffsetDateTime) {
    for write in engine.plan_seen_many(ids, now) {
        engine.commit_seen(write);
    }
}

/// Handles an event as the service does when everything succeeds; returns the emitted versions.
fn handle(engine: &mut Engine, event: &Event, now: OffsetDateTime) -> Vec<Incident> {
    if engine.is_duplicate(&event.event_id) {
        engine.note_duplicate();
        return Vec::new();
    }
    let plan = engine.plan_event(event, now);
    if plan.is_duplicate() {
        engine.note_duplicate();
    }
    let mut emitted = Vec::new();
    for step in plan.steps {
        if let Step::Change(change) = step {
            emitted.extend(apply(engine, *change, now));
        }
    }
    if plan.remember {
        remember(engine, &[event.event_id], now);
    }
    emitted
}

/// Handles an event that arrives at its own timestamp.
fn feed(engine: &mut Engine, event: &Event) -> Vec<Incident> {
    let now = event.timestamp.0;
    handle(engine, event, now)
}

fn tick(engine: &mut Engine, now: OffsetDateTime) -> Vec<Incident> {
    let mut emitted = Vec::new();
    for change in engine.plan_expiry(now) {
        emitted.extend(apply(engine, change, now));
    }
    emitted
}

fn one(mut versions: Vec<Incident>) -> Incident {
    assert_eq!(versions.len(), 1, "{versions:#?}");
    versions.remove(0)
}

fn ids(incident: &Incident) -> Vec<u128> {
    incident.event_ids.iter().map(|u| u.as_u128()).collect()
}

fn tag<'a>(incident: &'a Incident, name: &str) -> &'a str {
    incident.tags.get(name).map(String::as_str).unwrap_or("")
}

#[test]
fn threshold_one_opens_an_incident_with_the_first_event() {
    let mut engine = engine();
    let incident = one(feed(&mut engine, &down(1, "payments", 0)));
    assert_eq!(incident.state, IncidentState::Open);
    assert_eq!(incident.incident_type, IncidentIncidentType::ServiceOutage);
    assert_eq!(incident.severity, IncidentSeverity::Critical);
    assert_eq!(ids(&incident), vec![1]);
    assert_eq!(incident.correlation_window.start.0, at(0));
    assert_eq!(incident.correlation_window.end.0, at(0));
    assert_eq!(
        incident.timestamp.0,
        at(0),
        "the version's time is its cause's"
    );
    assert_eq!(incident.incident_id.get_version_num(), 4);
    assert_eq!(
        incident
            .tags
            .clone()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        BTreeMap::from([
            ("rule".to_string(), "service-outage".to_string()),
            ("service_name".to_string(), "payments".to_string())
        ])
    );
    let description = incident.description.unwrap();
    assert!(
        description.contains("service_name=payments") && description.contains("1 event"),
        "{description}"
    );
    assert_eq!(engine.incident_count(), 1);
}

#[test]
fn events_of_two_groups_open_two_incidents() {
    let mut engine = engine();
    let payments = one(feed(&mut engine, &down(1, "payments", 0)));
    let checkout = one(feed(&mut engine, &down(2, "checkout", 10)));
    assert_ne!(payments.incident_id, checkout.incident_id);
    assert_eq!(tag(&payments, "service_name"), "payments");
    assert_eq!(tag(&checkout, "service_name"), "checkout");
    assert_eq!(engine.incident_count(), 2);
}

#[test]
fn growth_re_emits_the_same_incident_with_more_events() {
    let mut engine = engine();
    let first = one(feed(&mut engine, &down(1, "payments", 0)));
    let second = one(feed(&mut engine, &down(2, "payments", secs(20))));
    assert_eq!(second.incident_id, first.incident_id);
    assert_eq!(ids(&second), vec![1, 2]);
    assert_eq!(second.correlation_window.start.0, at(0));
    assert_eq!(second.correlation_window.end.0, at(secs(20)));
    assert_eq!(second.timestamp.0, at(secs(20)));
    assert_eq!(second.state, IncidentState::Open);
    // An event older than the others is listed in timestamp order and widens the window.
    let late = one(feed(&mut engine, &down(3, "payments", -secs(5))));
    assert_eq!(ids(&late), vec![3, 1, 2]);
    assert_eq!(late.correlation_window.start.0, at(-secs(5)));
    assert!(
        late.timestamp > second.timestamp,
        "versions of one incident always move forward"
    );
}

#[test]
fn versions_at_the_same_instant_get_distinct_timestamps() {
    let mut engine = engine();
    let a = one(feed(&mut engine, &down(1, "payments", 0)));
    let b = one(feed(&mut engine, &down(2, "payments", 0)));
    let c = one(feed(&mut engine, &down(3, "payments", 0)));
    assert_eq!(b.timestamp.0, at(1));
    assert_eq!(c.timestamp.0, at(2));
    assert!(a.timestamp < b.timestamp && b.timestamp < c.timestamp);
}

#[test]
fn severity_is_the_highest_event_severity_mapped_and_only_rises() {
    let mut engine = engine();
    let e = |id, severity, offset| {
        event_with(
            id,
            "service_down",
            severity,
            json!({"service_name": "api"}),
            offset,
        )
    };
    assert_eq!(
        one(feed(&mut engine, &e(1, "info", 0))).severity,
        IncidentSeverity::Low
    );
    assert_eq!(
        one(feed(&mut engine, &e(2, "warning", 1))).severity,
        IncidentSeverity::Medium
    );
    assert_eq!(
        one(feed(&mut engine, &e(3, "error", 2))).severity,
        IncidentSeverity::High
    );
    assert_eq!(
        one(feed(&mut engine, &e(4, "info", 3))).severity,
        IncidentSeverity::High
    );
    assert_eq!(
        one(feed(&mut engine, &e(5, "critical", 4))).severity,
        IncidentSeverity::Critical
    );
}

#[test]
fn a_fixed_severity_overrides_the_mapping() {
    let mut engine = engine_from(
        r#"
        [[rules]]
        name = "api"
        group_by = ["data.service_name"]
        window_s = 60
        threshold = 1
        incident_type = "repeated_failures"
        severity = "medium"
        [rules.match]
        event_type = ["external_api_failure"]
        "#,
        Limits::default(),
    );
    let e = event(
        1,
        "external_api_failure",
        json!({"service_name": "stripe"}),
        0,
    );
    assert_eq!(
        one(feed(&mut engine, &e)).severity,
        IncidentSeverity::Medium
    );
}

#[test]
fn a_threshold_counts_events_within_the_sliding_window() {
    let mut engine = engine();
    assert!(feed(&mut engine, &metric(1, "api", 0)).is_empty());
    assert!(feed(&mut engine, &metric(2, "api", secs(30))).is_empty());
    // 90 s: the event at 0 s left the 60 s window; two remain.
    assert!(feed(&mut engine, &metric(3, "api", secs(90))).is_empty());
    // Another service's events do not count for this group.
    assert!(feed(&mut engine, &metric(10, "web", secs(91))).is_empty());
    // A late event (85 s) completes 30 s – 90 s: three events within 60 s, listed by time.
    let opened = one(feed(&mut engine, &metric(4, "api", secs(85))));
    assert_eq!(ids(&opened), vec![2, 4, 3]);
    assert_eq!(opened.incident_type, IncidentIncidentType::MetricAnomaly);
    assert_eq!(opened.severity, IncidentSeverity::Medium);
    assert_eq!(opened.correlation_window.start.0, at(secs(30)));
    assert_eq!(opened.correlation_window.end.0, at(secs(90)));
    assert_eq!(
        opened.timestamp.0,
        at(secs(90)),
        "never before the window's end"
    );
    assert_eq!(tag(&opened, "service_name"), "api");
    assert_eq!(tag(&opened, "metric"), "cpu");
    assert_eq!(tag(&opened, "rule"), "metric-anomaly");
    // Once open, every event joins, window or not.
    let grown = one(feed(&mut engine, &metric(5, "api", secs(400))));
    assert_eq!(grown.incident_id, opened.incident_id);
    assert_eq!(ids(&grown), vec![2, 4, 3, 5]);
}

#[test]
fn resolve_on_resolves_and_a_resolved_incident_is_final() {
    let mut engine = engine();
    let opened = one(feed(&mut engine, &down(1, "payments", 0)));
    // Another service coming up changes nothing.
    assert!(feed(&mut engine, &up(2, "checkout", secs(1))).is_empty());
    let resolved = one(feed(&mut engine, &up(3, "payments", secs(2))));
    assert_eq!(resolved.incident_id, opened.incident_id);
    assert_eq!(resolved.state, IncidentState::Resolved);
    assert_eq!(
        ids(&resolved),
        vec![1],
        "the resolving event is not a symptom"
    );
    assert_eq!(resolved.timestamp.0, at(secs(2)));
    assert!(resolved
        .description
        .unwrap()
        .contains("resolved by service_up"));
    assert_eq!(engine.incident_count(), 0);
    assert_eq!(engine.group_count(), 0);
    // A second service_up finds nothing to resolve.
    assert!(feed(&mut engine, &up(4, "payments", secs(3))).is_empty());
    // The same trouble again is a new incident.
    let again = one(feed(&mut engine, &down(5, "payments", secs(4))));
    assert_ne!(again.incident_id, opened.incident_id);
    assert_eq!(ids(&again), vec![5]);
    assert_eq!(engine.stats().resolved_by_event, 1);
}

#[test]
fn resolve_on_drops_events_counted_below_the_threshold() {
    let mut engine = engine();
    let failure = |id, offset| {
        event_with(
            id,
            "external_api_failure",
            "error",
            json!({"service_name": "stripe"}),
            offset,
        )
    };
    let success = |id, offset| {
        event_with(
            id,
            "external_api_success",
            "info",
            json!({"service_name": "stripe"}),
            offset,
        )
    };
    assert!(feed(&mut engine, &failure(1, 0)).is_empty());
    assert!(feed(&mut engine, &failure(2, 1000)).is_empty());
    assert!(feed(&mut engine, &success(3, 2000)).is_empty());
    assert_eq!(engine.group_count(), 0);
    assert!(feed(&mut engine, &failure(4, 3000)).is_empty());
    assert!(feed(&mut engine, &failure(5, 4000)).is_empty());
    let opened = one(feed(&mut engine, &failure(6, 5000)));
    assert_eq!(ids(&opened), vec![4, 5, 6]);
    assert_eq!(opened.incident_type, IncidentIncidentType::RepeatedFailures);
    assert_eq!(opened.severity, IncidentSeverity::High);
}

#[test]
fn resolve_after_resolves_a_quiet_incident_at_a_deterministic_time() {
    let mut engine = engine();
    assert!(feed(&mut engine, &metric(1, "api", 0)).is_empty());
    assert!(feed(&mut engine, &metric(2, "api", 1)).is_empty());
    let opened = one(feed(&mut engine, &metric(3, "api", 2)));
    assert_eq!(ids(&opened), vec![1, 2, 3]);
    // metric-anomaly resolves after 600 s without a matching event (since the last arrival).
    assert!(tick(&mut engine, at(2 + secs(599))).is_empty());
    let first_plan = engine.plan_expiry(at(2 + secs(700)));
    let second_plan = engine.plan_expiry(at(2 + secs(900)));
    assert_eq!(
        first_plan, second_plan,
        "the resolved version does not depend on when it is noticed"
    );
    let resolved = one(tick(&mut engine, at(2 + secs(700))));
    assert_eq!(resolved.incident_id, opened.incident_id);
    assert_eq!(resolved.state, IncidentState::Resolved);
    assert_eq!(resolved.timestamp.0, at(2 + secs(600)));
    assert!(resolved
        .description
        .unwrap()
        .contains("no matching event for 600 s"));
    assert_eq!(engine.incident_count(), 0);
    assert_eq!(engine.stats().resolved_quietly, 1);
}

#[test]
fn counted_events_are_forgotten_when_their_window_passes() {
    let mut engine = engine();
    assert!(feed(&mut engine, &metric(1, "api", 0)).is_empty());
    assert_eq!(engine.group_count(), 1);
    assert!(tick(&mut engine, at(secs(59))).is_empty());
    assert_eq!(engine.group_count(), 1);
    assert!(tick(&mut engine, at(secs(60))).is_empty());
    assert_eq!(engine.group_count(), 0);
    assert_eq!(engine.stats().pending_expired, 1);
}

#[test]
fn duplicate_events_are_ignored() {
    let mut engine = engine();
    let event = down(1, "payments", 0);
    let opened = one(feed(&mut engine, &event));
    for _ in 0..10 {
        assert!(feed(&mut engine, &event).is_empty());
    }
    assert_eq!(engine.stats().duplicates, 10);
    assert_eq!(
        ids(engine
            .incident(&opened.incident_id)
            .map(|t| &t.incident)
            .unwrap()),
        vec![1]
    );
    // Even without the seen set (evicted, or lost in a crash), the group knows its events:
    // the redelivered cause of the current version is offered for re-publishing.
    let plan = engine.plan_event(&event, at(5));
    assert_eq!(plan.steps.len(), 1);
    match &plan.steps[0] {
        Step::AlreadyApplied { republish, .. } => {
            assert_eq!(republish.as_ref(), Some(&opened))
        }
        other => panic!("{other:?}"),
    }
    // Once the group is gone, the seen set recognises its events.
    one(feed(&mut engine, &up(2, "payments", 10)));
    assert!(engine.is_duplicate(&event.event_id));
    assert!(
        engine.is_duplicate(&Uuid::from_u128(2)),
        "the resolving event too"
    );
    assert!(
        feed(&mut engine, &event).is_empty(),
        "no new incident from an old event"
    );
    assert_eq!(engine.stats().duplicates, 11);
}

#[test]
fn only_events_no_group_keeps_are_remembered_on_their_own() {
    let engine = engine();
    let plan = engine.plan_event(&down(1, "payments", 0), at(0));
    assert!(
        plan.relevant && !plan.remember,
        "the group's record holds it"
    );
    let plan = engine.plan_event(&up(2, "payments", 0), at(0));
    assert!(
        plan.relevant && plan.remember,
        "a resolving event is not held by a group"
    );
}

#[test]
fn events_no_rule_matches_are_not_remembered() {
    let engine = engine();
    let telemetry = event(1, "edge_telemetry", json!({"device_id": "cam"}), 0);
    let plan = engine.plan_event(&telemetry, at(0));
    assert!(!plan.relevant && plan.steps.is_empty());
    let missing = event(2, "service_down", json!({}), 0);
    let plan = engine.plan_event(&missing, at(0));
    assert!(!plan.relevant);
    assert_eq!(
        plan.steps,
        vec![Step::MissingGroupKey {
            rule: "service-outage".into(),
            field: "data.service_name".into()
        }]
    );
}

#[test]
fn planning_changes_nothing_until_committed() {
    let mut engine = engine();
    let opened = one(feed(&mut engine, &down(1, "payments", 0)));
    let grow = down(2, "payments", 10);
    let first = engine.plan_event(&grow, at(10));
    let second = engine.plan_event(&grow, at(10));
    assert_eq!(first, second, "a retried plan rebuilds the same version");
    assert!(!engine.is_duplicate(&grow.event_id));
    assert_eq!(
        ids(&engine.incident(&opened.incident_id).unwrap().incident),
        vec![1]
    );
}

#[test]
fn acknowledgements_move_open_to_acknowledged_once() {
    let mut engine = engine();
    let opened = one(feed(&mut engine, &down(1, "payments", 0)));
    let ack1 = ack(100, opened.incident_id, secs(30));
    let AckPlan::Change(change) = engine.plan_acknowledgement(&ack1) else {
        panic!("an open incident is acknowledged")
    };
    let acknowledged = checked(change.emit.as_ref().unwrap());
    engine.commit(*change);
    assert_eq!(acknowledged.incident_id, opened.incident_id);
    assert_eq!(acknowledged.state, IncidentState::Acknowledged);
    assert_eq!(acknowledged.timestamp.0, at(secs(30)));
    assert_eq!(ids(&acknowledged), vec![1]);
    assert!(acknowledged
        .description
        .unwrap()
        .contains("acknowledged by operator-1 (on it)"));
    // The same acknowledgement again (a redelivery) offers its version for re-publishing.
    assert!(matches!(
        engine.plan_acknowledgement(&ack1),
        AckPlan::AlreadyApplied { .. }
    ));
    // Another acknowledgement changes nothing.
    assert_eq!(
        engine.plan_acknowledgement(&ack(101, opened.incident_id, secs(31))),
        AckPlan::AlreadyAcknowledged
    );
    // Unknown incidents.
    assert_eq!(
        engine.plan_acknowledgement(&ack(102, Uuid::from_u128(999), 0)),
        AckPlan::Unknown
    );
    // An acknowledged incident still grows, and stays acknowledged.
    let grown = one(feed(&mut engine, &down(2, "payments", secs(40))));
    assert_eq!(grown.state, IncidentState::Acknowledged);
    assert_eq!(ids(&grown), vec![1, 2]);
    // acknowledged → resolved; afterwards acknowledgements find nothing.
    let resolved = one(feed(&mut engine, &up(3, "payments", secs(50))));
    assert_eq!(resolved.state, IncidentState::Resolved);
    assert_eq!(
        engine.plan_acknowledgement(&ack(103, opened.incident_id, secs(60))),
        AckPlan::Unknown
    );
}

#[test]
fn an_acknowledgement_older_than_the_last_version_still_moves_time_forward() {
    let mut engine = engine();
    let opened = one(feed(&mut engine, &down(1, "payments", secs(10))));
    let AckPlan::Change(change) = engine.plan_acknowledgement(&ack(100, opened.incident_id, 0))
    else {
        panic!()
    };
    assert_eq!(change.emit.unwrap().timestamp.0, at(secs(10) + 1));
}

#[test]
fn many_distinct_keys_stay_within_max_groups() {
    let limits = Limits {
        max_groups: 50,
        max_seen_event_ids: 1000,
        ..Limits::default()
    };
    let mut engine = engine_with(limits);
    // An open incident, then a flood of distinct services below the metric threshold.
    let outage = one(feed(&mut engine, &down(1, "payments", 0)));
    for n in 0..10_000u128 {
        feed(&mut engine, &metric(1000 + n, &format!("svc-{n}"), 1));
        assert!(engine.group_count() <= 50);
        assert!(engine.seen().len() <= 1000 + crate::seen::CHUNK_SIZE);
    }
    let stats = engine.stats();
    assert_eq!(stats.groups_evicted, 10_000 + 1 - 50);
    assert_eq!(
        stats.incidents_evicted, 0,
        "groups below their threshold are forgotten before incidents"
    );
    assert!(engine.incident(&outage.incident_id).is_some());
    assert!(
        engine.seen().evicted() > 0,
        "ids of forgotten groups go to the bounded seen set"
    );
    assert!(!engine.is_duplicate(&Uuid::from_u128(1000)));
    assert!(engine.is_duplicate(&Uuid::from_u128(1000 + 9_000)));
    assert!(engine
        .plan_event(&metric(1000 + 9_999, "svc-9999", 1), at(1))
        .is_duplicate());

    // With only incidents, the least recently updated incident goes.
    let mut engine = engine_with(Limits {
        max_groups: 3,
        ..Limits::default()
    });
    let first = one(feed(&mut engine, &down(1, "a", 0)));
    one(feed(&mut engine, &down(2, "b", 1)));
    one(feed(&mut engine, &down(3, "c", 2)));
    one(feed(&mut engine, &down(4, "a", 3))); // a is now the most recently updated
    let plan = engine.plan_event(&down(5, "d", 4), at(4));
    let Step::Change(change) = plan.steps.into_iter().next().unwrap() else {
        panic!()
    };
    let evicted = engine.commit(*change);
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].key.values, vec!["b".to_string()]);
    assert!(evicted[0].incident_id.is_some());
    assert!(engine.incident(&first.incident_id).is_some());
    assert_eq!(engine.stats().incidents_evicted, 1);
}

#[test]
fn an_incident_lists_at_most_the_configured_number_of_events() {
    let mut engine = engine_with(Limits {
        max_event_ids_per_incident: 3,
        ..Limits::default()
    });
    let mut last = None;
    for n in 0..5 {
        last = Some(one(feed(
            &mut engine,
            &down(n + 1, "payments", secs(n as i64)),
        )));
    }
    let last = last.unwrap();
    assert_eq!(ids(&last), vec![1, 2, 3]);
    // The unlisted events are remembered in the seen set (no record holds them).
    assert!(engine.is_duplicate(&Uuid::from_u128(4)) && engine.is_duplicate(&Uuid::from_u128(5)));
    assert!(
        !engine.is_duplicate(&Uuid::from_u128(1)),
        "listed events are held by the group"
    );
    assert_eq!(last.correlation_window.end.0, at(secs(4)));
    let description = last.description.unwrap();
    assert!(
        description.contains("5 events") && description.contains("2 more"),
        "{description}"
    );
}

#[test]
fn a_restored_engine_continues_the_same_incidents() {
    let mut engine = engine();
    let opened = one(feed(&mut engine, &down(1, "payments", 0)));
    feed(&mut engine, &metric(2, "api", 0));
    let groups: Vec<Group> = engine.groups().cloned().collect();
    // A resolving event with nothing to resolve is remembered in the seen set.
    assert!(feed(&mut engine, &up(6, "checkout", 0)).is_empty());
    let chunks: Vec<(String, SeenChunk)> = {
        let write = engine.plan_seen(Uuid::from_u128(77), at(0));
        // The chunk the set would write now holds every id remembered so far (and 77).
        vec![(write.key.clone(), write.chunk)]
    };
    let mut restored = super::Engine::new(engine.rules().to_vec(), engine.limits());
    let report = restored.restore(groups, chunks, at(10));
    assert_eq!((report.groups, report.incidents), (2, 1));
    assert!(report.orphans.is_empty() && report.evicted.is_empty());
    assert!(restored.is_duplicate(&Uuid::from_u128(6)));
    assert!(restored
        .plan_event(&down(1, "payments", 0), at(10))
        .is_duplicate());
    let grown = one(feed(&mut restored, &down(3, "payments", secs(5))));
    assert_eq!(grown.incident_id, opened.incident_id);
    assert_eq!(ids(&grown), vec![1, 3]);
    // The counted metric event still counts.
    feed(&mut restored, &metric(4, "api", 1));
    let metric_incident = one(feed(&mut restored, &metric(5, "api", 2)));
    assert_eq!(ids(&metric_incident), vec![2, 4, 5]);

    // A stored group of a rule that is gone is kept for acknowledgements.
    let mut fewer = engine_from(
        r#"
        [[rules]]
        name = "other"
        window_s = 60
        threshold = 1
        incident_type = "service_outage"
        [rules.match]
        event_type = ["service_down"]
        "#,
        Limits::default(),
    );
    let report = fewer.restore(engine.groups().cloned().collect(), Vec::new(), at(10));
    assert_eq!(report.orphans.len(), 2);
    assert!(matches!(
        fewer.plan_acknowledgement(&ack(9, opened.incident_id, 0)),
        AckPlan::Change(_)
    ));
    assert!(
        fewer
            .plan_expiry(at(secs(100_000)))
            .iter()
            .all(|c| c.kind == ChangeKind::Expired),
        "an orphaned incident never resolves by time; orphaned counted events expire"
    );
}

#[test]
fn restoring_more_groups_than_allowed_evicts_the_oldest() {
    let mut engine = engine();
    for n in 0..10u128 {
        feed(
            &mut engine,
            &metric(n + 1, &format!("svc-{n}"), secs(n as i64)),
        );
    }
    let mut smaller = super::Engine::new(
        engine.rules().to_vec(),
        Limits {
            max_groups: 4,
            ..Limits::default()
        },
    );
    let report = smaller.restore(engine.groups().cloned().collect(), Vec::new(), at(0));
    assert_eq!(report.evicted.len(), 6);
    assert_eq!(smaller.group_count(), 4);
    let kept: Vec<String> = smaller.groups().map(|g| g.key.values[0].clone()).collect();
    assert!(kept.contains(&"svc-9".to_string()) && !kept.contains(&"svc-0".to_string()));
}

#[test]
fn group_storage_keys_are_stable_and_safe() {
    let key = GroupKey {
        rule: "r".into(),
        values: vec!["a b/c*>".into()],
    };
    assert_eq!(key.storage_key(), key.clone().storage_key());
    assert!(key.storage_key().starts_with("group."));
    assert!(key
        .storage_key()
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    let other = GroupKey {
        rule: "r".into(),
        values: vec!["a".into(), "b".into()],
    };
    assert_ne!(other.storage_key(), key.storage_key());
}

#[test]
fn a_rule_with_several_event_sources_and_data_filters() {
    let mut engine = engine_from(
        r#"
        [[rules]]
        name = "prod-edge"
        group_by = ["data.device_id"]
        window_s = 60
        threshold = 2
        incident_type = "edge_device_failure"
        resolve_on = ["edge_device_online"]
        [rules.match]
        event_type = ["edge_device_offline", "edge_telemetry"]
        source = ["orion-edge-*"]
        data.site = "plant-1"
        "#,
        Limits::default(),
    );
    let e = |id, t: &str, source: &str, site: &str, offset| -> Event {
        contracts::decode_value(json!({
            "version": "1.0", "event_id": Uuid::from_u128(id), "timestamp": Timestamp(at(offset)),
            "source": source, "event_type": t, "severity": "error",
            "data": {"device_id": "cam-1", "site": site}
        }))
        .unwrap()
    };
    assert!(feed(
        &mut engine,
        &e(1, "edge_device_offline", "orion-edge-gw", "plant-1", 0)
    )
    .is_empty());
    assert!(feed(
        &mut engine,
        &e(2, "edge_device_offline", "orion-watcher", "plant-1", 1)
    )
    .is_empty());
    assert!(feed(
        &mut engine,
        &e(3, "edge_telemetry", "orion-edge-gw", "plant-2", 2)
    )
    .is_empty());
    let opened = one(feed(
        &mut engine,
        &e(4, "edge_telemetry", "orion-edge-gw", "plant-1", 3),
    ));
    assert_eq!(ids(&opened), vec![1, 4]);
    assert_eq!(tag(&opened, "device_id"), "cam-1");
    let resolved = one(feed(
        &mut engine,
        &e(5, "edge_device_online", "orion-edge-gw", "elsewhere", 4),
    ));
    assert_eq!(resolved.state, IncidentState::Resolved);
}
