//! The guardian binary end to end: a real nats-server with the generated permissions, events
//! published as `event-source`, acknowledgements as `commander`, and every incident version read
//! back from the ORION_INCIDENTS stream.

mod support;

use std::time::Duration;

use contracts::incident_v1::{IncidentSeverity, IncidentState};
use orion_testkit::wait_for;
use serde_json::json;
use support::*;

const QUIET: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_duplicate_events_opens_exactly_one_incident() {
    let server = provisioned_server().await;
    let guardian = GuardianProcess::start(&server, TEST_CONFIG).await;
    let producer = Producer::connect(&server).await;
    let mut incidents = Incidents::open(&server).await;

    let down = service_down("payments");
    // The server's duplicate window drops same-id publishes; these copies carry distinct
    // message ids, so all 20 reach guardian.
    producer.publish_copies(&down, 20).await;
    producer.publish(&down).await;
    let incident = incidents.next(&guardian).await;
    assert_eq!(incident.state, IncidentState::Open);
    assert_eq!(ids(&incident), vec![down.event_id]);
    incidents.assert_quiet(QUIET).await;
    wait_until_events_settled(&server, &guardian).await;
    assert!(
        guardian.log_text().contains("duplicate event ignored"),
        "{}",
        guardian.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_two_services_open_two_incidents_with_their_tags() {
    let server = provisioned_server().await;
    let guardian = GuardianProcess::start(&server, TEST_CONFIG).await;
    let producer = Producer::connect(&server).await;
    let mut incidents = Incidents::open(&server).await;

    producer.publish(&service_down("payments")).await;
    producer.publish(&service_down("checkout")).await;
    let first = incidents.next(&guardian).await;
    let second = incidents.next(&guardian).await;
    assert_ne!(first.incident_id, second.incident_id);
    let mut services = vec![tag(&first, "service_name"), tag(&second, "service_name")];
    services.sort();
    assert_eq!(services, ["checkout", "payments"]);
    for incident in [&first, &second] {
        assert_eq!(tag(incident, "rule"), "service-outage");
        assert_eq!(incident.tags.len(), 2, "{:?}", incident.tags);
        assert_eq!(incident.severity, IncidentSeverity::Critical);
        assert_eq!(incident.source.to_string(), "orion-guardian");
    }
    incidents.assert_quiet(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_grows_then_service_up_resolves_it_for_good() {
    let server = provisioned_server().await;
    let guardian = GuardianProcess::start(&server, TEST_CONFIG).await;
    let producer = Producer::connect(&server).await;
    let mut incidents = Incidents::open(&server).await;

    let first_event = service_down("payments");
    producer.publish(&first_event).await;
    let opened = incidents.next(&guardian).await;
    // Time itself is the condition: the next version must carry a later timestamp.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second_event = service_down("payments");
    producer.publish(&second_event).await;
    let grown = incidents.next(&guardian).await;
    assert_eq!(grown.incident_id, opened.incident_id);
    assert_eq!(
        ids(&grown),
        vec![first_event.event_id, second_event.event_id]
    );
    assert_eq!(
        grown.correlation_window.start,
        opened.correlation_window.start
    );
    assert!(grown.correlation_window.end > opened.correlation_window.end);
    assert!(grown.timestamp > opened.timestamp);
    assert_eq!(grown.state, IncidentState::Open);

    producer.publish(&service_up("payments")).await;
    let resolved = incidents.next(&guardian).await;
    assert_eq!(resolved.incident_id, opened.incident_id);
    assert_eq!(resolved.state, IncidentState::Resolved);
    assert_eq!(ids(&resolved), ids(&grown));

    // Resolved is final: the same trouble again is a new incident.
    producer.publish(&service_down("payments")).await;
    let again = incidents.next(&guardian).await;
    assert_ne!(again.incident_id, opened.incident_id);
    assert_eq!(again.state, IncidentState::Open);
    assert_eq!(again.event_ids.len(), 1);
    incidents.assert_quiet(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_metric_events_in_the_window_open_a_metric_anomaly() {
    let server = provisioned_server().await;
    let guardian = GuardianProcess::start(&server, TEST_CONFIG).await;
    let producer = Producer::connect(&server).await;
    let mut incidents = Incidents::open(&server).await;

    let events = [metric("api"), metric("api"), metric("api")];
    producer.publish(&events[0]).await;
    producer.publish(&events[1]).await;
    incidents.assert_quiet(QUIET).await;
    producer.publish(&events[2]).await;
    let opened = incidents.next(&guardian).await;
    assert_eq!(opened.incident_type.to_string(), "metric_anomaly");
    assert_eq!(
        ids(&opened),
        events.iter().map(|e| e.event_id).collect::<Vec<_>>()
    );
    assert_eq!(tag(&opened, "service_name"), "api");
    assert_eq!(tag(&opened, "metric"), "cpu_percent");
    assert_eq!(opened.severity, IncidentSeverity::Medium);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_moves_the_incident_to_acknowledged_and_re_emits_it() {
    let server = provisioned_server().await;
    let guardian = GuardianProcess::start(&server, TEST_CONFIG).await;
    let producer = Producer::connect(&server).await;
    let mut incidents = Incidents::open(&server).await;

    // An acknowledgement of an incident guardian never opened is settled and logged.
    acknowledge(&server, uuid::Uuid::new_v4()).await;

    producer.publish(&service_down("payments")).await;
    let opened = incidents.next(&guardian).await;
    let ack = acknowledge(&server, opened.incident_id).await;
    let acknowledged = incidents.next(&guardian).await;
    assert_eq!(acknowledged.incident_id, opened.incident_id);
    assert_eq!(acknowledged.state, IncidentState::Acknowledged);
    assert_eq!(ids(&acknowledged), ids(&opened));
    assert!(acknowledged.timestamp >= ack.timestamp.max(opened.timestamp));
    assert!(acknowledged
        .description
        .as_deref()
        .unwrap_or_default()
        .contains("acknowledged by orion-commander"));

    // It keeps growing as acknowledged, and a second acknowledgement changes nothing.
    acknowledge(&server, opened.incident_id).await;
    producer.publish(&service_down("payments")).await;
    let grown = incidents.next(&guardian).await;
    assert_eq!(grown.state, IncidentState::Acknowledged);
    assert_eq!(grown.event_ids.len(), 2);
    producer.publish(&service_up("payments")).await;
    let resolved = incidents.next(&guardian).await;
    assert_eq!(resolved.state, IncidentState::Resolved);
    // An acknowledgement of the resolved incident: settled, nothing emitted.
    acknowledge(&server, opened.incident_id).await;
    incidents.assert_quiet(QUIET).await;
    assert!(guardian
        .log_text()
        .contains("does not hold open (another's, unknown or resolved)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_incident_resolves_after_resolve_after_s() {
    let server = provisioned_server().await;
    let guardian = GuardianProcess::start(&server, TEST_CONFIG).await;
    let producer = Producer::connect(&server).await;
    let mut incidents = Incidents::open(&server).await;

    let offline = event(
        "edge_device_offline",
        "error",
        json!({"device_id": "cam-12"}),
    );
    producer.publish(&offline).await;
    let opened = incidents.next(&guardian).await;
    assert_eq!(tag(&opened, "device_id"), "cam-12");
    let resolved = incidents.next(&guardian).await;
    assert_eq!(resolved.incident_id, opened.incident_id);
    assert_eq!(resolved.state, IncidentState::Resolved);
    assert!(resolved
        .description
        .as_deref()
        .unwrap_or_default()
        .contains("no matching event for 1 s"));
    // Its state is gone from the bucket, delete marker included.
    wait_until_events_settled(&server, &guardian).await;
    let keys = live_state_keys(&server).await;
    assert!(keys.iter().all(|k| !k.starts_with("group.")), "{keys:?}");
    assert_eq!(state_stream_messages(&server).await, keys.len() as u64);
}

/// Events of many services, so that their groups fall into every partition.
fn outages(services: &[String]) -> Vec<contracts::Event> {
    services.iter().map(|s| service_down(s)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_partitions_and_the_survivor_takes_over_the_open_incidents() {
    let server = provisioned_server().await;
    let partitions = <contracts::services::Guardian as contracts::Service>::PARTITIONS as usize;
    let mut first = GuardianProcess::start(&server, TEST_CONFIG).await;
    first.wait_holding(partitions).await;
    let second = GuardianProcess::start_another(&server, TEST_CONFIG);
    // The first hands half back, the newcomer takes it: an even share each (with a single
    // partition, the newcomer stands by).
    second.wait_joined().await;
    second.wait_holding(partitions / 2).await;
    first.wait_holding(partitions - partitions / 2).await;

    let producer = Producer::connect(&server).await;
    let mut incidents = Incidents::open(&server).await;
    let services: Vec<String> = (0..12).map(|n| format!("svc-{n}")).collect();
    let before = outages(&services);
    for event in &before {
        producer.publish(event).await;
    }
    let mut opened = std::collections::HashMap::new();
    for _ in &services {
        let incident = incidents.next(&first).await;
        opened.insert(tag(&incident, "service_name").to_owned(), incident);
    }
    assert_eq!(
        opened.len(),
        services.len(),
        "one incident per service: {opened:#?}"
    );
    let logs = [first.log_text(), second.log_text()];
    let handling = if partitions > 1 { 2 } else { 1 };
    assert_eq!(
        logs.iter()
            .filter(|log| log.contains("incident opened"))
            .count(),
        handling,
        "{handling} instance(s) should have handled the groups:\n{}\n---\n{}",
        logs[0],
        logs[1]
    );

    // The first dies: the second takes its partitions over and continues their incidents.
    wait_until_events_settled(&server, &first).await;
    first.kill_9();
    let (mut first, second) = (second, first);
    drop(second);
    first.wait_holding(partitions).await;
    // It holds the lease before it has restored what the lease covers: wait for both.
    wait_logged(&first, "taking over").await;
    wait_logged(&first, "state restored").await;
    let after = outages(&services);
    for event in &after {
        producer.publish(event).await;
    }
    for _ in &services {
        let grown = incidents.next(&first).await;
        let service = tag(&grown, "service_name").to_owned();
        let was = &opened[&service];
        assert_eq!(
            grown.incident_id, was.incident_id,
            "{service}: the same incident"
        );
        assert_eq!(grown.event_ids.len(), 2, "{service}: {grown:#?}");
    }
    incidents.assert_quiet(QUIET).await;

    // A clean stop releases the leases: the next instance does not wait for them to expire.
    let released_before = first.log_text().matches("lease released").count();
    assert_eq!(first.terminate(), Some(0), "{}", first.log_text());
    assert_eq!(
        first.log_text().matches("lease released").count() - released_before,
        partitions,
        "{}",
        first.log_text()
    );
    let next = GuardianProcess::start(&server, TEST_CONFIG).await;
    assert!(!next.log_text().contains("standby"), "{}", next.log_text());
    incidents.assert_quiet(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guardian_whose_lease_was_taken_over_stops_handling_events() {
    let server = provisioned_server().await;
    let mut guardian = GuardianProcess::start(&server, TEST_CONFIG).await;
    let js = admin_jetstream(&server).await;
    let bucket = js.get_key_value("guardian_state").await.unwrap();
    // As a standby would after a partition hid the holder from it for a whole lease.
    bucket
        .put(
            lease_key(0),
            r#"{"holder":"standby-b","ttl_ms":2000}"#.into(),
        )
        .await
        .unwrap();

    let code = guardian.exit_within(Duration::from_secs(10)).await;
    let log = guardian.log_text();
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("taken over by standby-b"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_lease_key_is_taken_again_by_its_holder() {
    let server = provisioned_server().await;
    let guardian = GuardianProcess::start(&server, TEST_CONFIG).await;
    let producer = Producer::connect(&server).await;
    let mut incidents = Incidents::open(&server).await;
    let js = admin_jetstream(&server).await;
    let bucket = js.get_key_value("guardian_state").await.unwrap();

    // Nobody took it over: the holder's next renewal finds the key gone and takes it again.
    bucket.delete(lease_key(0)).await.unwrap();
    wait_for("the lease retaken", Duration::from_secs(5), || {
        guardian
            .log_text()
            .contains("the lease key had been removed; holding it again")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; its log:\n{}", guardian.log_text()));
    let down = service_down("payments");
    producer.publish(&down).await;
    let incident = incidents.next(&guardian).await;
    assert_eq!(ids(&incident), vec![down.event_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_next_event_updates_the_same_incident() {
    let server = provisioned_server().await;
    let mut guardian = GuardianProcess::start(&server, TEST_CONFIG).await;
    let producer = Producer::connect(&server).await;
    let mut incidents = Incidents::open(&server).await;

    let first = service_down("payments");
    producer.publish(&first).await;
    let opened = incidents.next(&guardian).await;
    // Two metric events counted below the threshold survive the restart too.
    let (m1, m2) = (metric("api"), metric("api"));
    producer.publish(&m1).await;
    producer.publish(&m2).await;
    wait_until_events_settled(&server, &guardian).await;

    assert_eq!(guardian.terminate(), Some(0), "{}", guardian.log_text());
    guardian.restart(&server).await;
    assert!(guardian.log_text().contains("state restored"));

    // A copy of the first event after the restart is still a duplicate.
    producer.publish_copies(&first, 1).await;
    let second = service_down("payments");
    producer.publish(&second).await;
    let grown = incidents.next(&guardian).await;
    assert_eq!(
        grown.incident_id, opened.incident_id,
        "no new incident after a restart"
    );
    assert_eq!(ids(&grown), vec![first.event_id, second.event_id]);
    let m3 = metric("api");
    producer.publish(&m3).await;
    let anomaly = incidents.next(&guardian).await;
    assert_eq!(ids(&anomaly), vec![m1.event_id, m2.event_id, m3.event_id]);

    // A crash (SIGKILL) loses nothing either.
    wait_until_events_settled(&server, &guardian).await;
    guardian.kill_9();
    guardian.restart(&server).await;
    let third = service_down("payments");
    producer.publish(&third).await;
    let after_crash = incidents.next(&guardian).await;
    assert_eq!(after_crash.incident_id, opened.incident_id);
    assert_eq!(after_crash.event_ids.len(), 3);
    incidents.assert_quiet(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_distinct_keys_keep_memory_and_the_bucket_bounded() {
    let server = provisioned_server().await;
    let config = format!(
        "[limits]\nmax_groups = 20\nmax_seen_event_ids = 128\n{}",
        TEST_CONFIG
    );
    let guardian = GuardianProcess::start(&server, &config).await;
    let producer = Producer::connect(&server).await;
    let mut incidents = Incidents::open(&server).await;

    for n in 0..300 {
        producer.publish(&metric(&format!("svc-{n}"))).await;
    }
    wait_until_events_settled(&server, &guardian).await;
    let keys = live_state_keys(&server).await;
    let groups = keys.iter().filter(|k| k.starts_with("group.")).count();
    let seen = keys.iter().filter(|k| k.starts_with("seen.")).count();
    assert!(groups <= 20, "{groups} group records: {keys:?}");
    // 128 ids shared by the partitions (chunks of 64): at most two chunks in all, or one each.
    let partitions = <contracts::services::Guardian as contracts::Service>::PARTITIONS as usize;
    assert!(
        seen <= partitions.max(2),
        "{seen} seen chunks (128 ids over {partitions} partitions): {keys:?}"
    );
    assert_eq!(
        state_stream_messages(&server).await,
        keys.len() as u64,
        "deleted keys left markers in the bucket"
    );
    assert!(
        guardian.log_text().contains("limits.max_groups reached"),
        "evictions are logged"
    );
    // Still correlating.
    producer.publish(&service_down("payments")).await;
    let incident = incidents.next(&guardian).await;
    assert_eq!(tag(&incident, "service_name"), "payments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_during_a_burst_neither_lose_events_nor_open_second_incidents() {
    let server = provisioned_server().await;
    // A short ack wait (provisioned by the admin, as an operator would): messages in hand at
    // a crash come back quickly.
    let js = admin_jetstream(&server).await;
    for durable in contracts::DURABLE_CONSUMERS
        .iter()
        .filter(|c| c.service == "guardian")
    {
        let settings = contracts::bus::ConsumerSettings {
            ack_wait: Duration::from_secs(2),
            ..durable.into()
        };
        contracts::bus::provision_consumer(&js, durable, settings)
            .await
            .expect("re-provision with a short ack wait");
    }
    let mut guardian = GuardianProcess::start(&server, TEST_CONFIG).await;
    let producer = Producer::connect(&server).await;
    let mut incidents = Incidents::open(&server).await;

    let services: Vec<String> = (0..5).map(|n| format!("svc-{n}")).collect();
    let events: Vec<_> = (0..40)
        .map(|n| service_down(&services[n % services.len()]))
        .collect();
    let publishing = {
        let events = events.clone();
        tokio::spawn(async move {
            for event in &events {
                producer.publish(event).await;
                // Pacing, not waiting: the kills below must land while events still flow.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    for _ in 0..3 {
        // Pacing: kill -9 at some point in the middle of the stream.
        tokio::time::sleep(Duration::from_millis(90)).await;
        guardian.kill_9();
        guardian.restart(&server).await;
    }
    publishing.await.unwrap();
    wait_until_events_settled(&server, &guardian).await;

    let mut versions = Vec::new();
    while let Some(incident) = incidents.next_within(QUIET).await {
        versions.push(incident);
    }
    for service in &services {
        let mine: Vec<_> = versions
            .iter()
            .filter(|i| tag(i, "service_name") == service)
            .collect();
        let ids: std::collections::BTreeSet<_> = mine.iter().map(|i| i.incident_id).collect();
        assert_eq!(ids.len(), 1, "{service}: one incident, not {ids:?}");
        let expected: std::collections::BTreeSet<_> = events
            .iter()
            .filter(|e| e.data.service_name.as_deref().map(|s| s.as_str()) == Some(service))
            .map(|e| e.event_id)
            .collect();
        let last = mine.last().unwrap();
        let listed: std::collections::BTreeSet<_> = last.event_ids.iter().copied().collect();
        assert_eq!(
            listed, expected,
            "{service}: the last version lists every event"
        );
        assert_eq!(
            last.event_ids.len(),
            expected.len(),
            "{service}: each event once"
        );
        assert!(
            mine.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
            "{service}: versions in order"
        );
    }

    // Phase 2: every service comes back up while guardian crashes again, then copies of old
    // events arrive (as a producer re-sending after the server's duplicate window would).
    let producer = Producer::connect(&server).await;
    let publishing = {
        let services = services.clone();
        let events = events.clone();
        tokio::spawn(async move {
            for service in &services {
                producer.publish(&service_up(service)).await;
                // Pacing: the kills below must land while resolutions still flow.
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            for event in events.iter().step_by(3) {
                producer.publish_copies(event, 1).await;
            }
        })
    };
    for _ in 0..2 {
        // Pacing: kill -9 at some point in the middle of the stream.
        tokio::time::sleep(Duration::from_millis(70)).await;
        guardian.kill_9();
        guardian.restart(&server).await;
    }
    publishing.await.unwrap();
    wait_until_events_settled(&server, &guardian).await;
    let mut after = Vec::new();
    while let Some(incident) = incidents.next_within(QUIET).await {
        after.push(incident);
    }
    for service in &services {
        let mine: Vec<_> = after
            .iter()
            .filter(|i| tag(i, "service_name") == service)
            .collect();
        let resolved: Vec<_> = mine
            .iter()
            .filter(|i| i.state == IncidentState::Resolved)
            .collect();
        assert_eq!(resolved.len(), 1, "{service}: resolved once: {mine:#?}");
        assert!(
            mine.iter().all(|i| i.state == IncidentState::Resolved),
            "{service}: old events must not open a new incident: {mine:#?}"
        );
    }
    let keys = live_state_keys(&server).await;
    assert!(keys.iter().all(|k| !k.starts_with("group.")), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_hands_the_event_back_until_it_can_be_handled() {
    let server = provisioned_server().await;
    // A lease longer than the outage: guardian does not fence itself while the bucket is gone.
    let config = TEST_CONFIG.replace("ttl_s = 2", "ttl_s = 30");
    let guardian = GuardianProcess::start(&server, &config).await;
    let producer = Producer::connect(&server).await;
    let mut incidents = Incidents::open(&server).await;

    // The state bucket disappears: guardian cannot store, so it must not publish or ack.
    let js = admin_jetstream(&server).await;
    js.delete_stream("KV_guardian_state").await.unwrap();
    let down = service_down("payments");
    producer.publish(&down).await;
    incidents.assert_quiet(Duration::from_secs(2)).await;
    assert!(
        guardian.log_text().contains("will be retried"),
        "{}",
        guardian.log_text()
    );

    // It comes back: the retried event opens the incident, once.
    contracts::bus::provision_all(&js, 1).await.unwrap();
    let incident = incidents.next(&guardian).await;
    assert_eq!(ids(&incident), vec![down.event_id]);
    wait_until_events_settled(&server, &guardian).await;
    incidents.assert_quiet(QUIET).await;
    let keys = live_state_keys(&server).await;
    assert_eq!(
        keys.iter().filter(|k| k.starts_with("group.")).count(),
        1,
        "{keys:?}"
    );
}

/// A version is published only once the state that contains it is stored. Before: guardian
/// published a grown incident first and stored the group after; when the store failed (or
/// guardian died in between, as in the chaos run with seed 17660734304768111536), the next event
/// of the group was handled from the older state, and its version dropped an event the
/// published one listed — the redelivered event then opened a second incident once the first
/// was resolved. Here the bucket refuses writes (its largest message made tiny) while the second
/// event is handled, and a third event comes before the second's retry: every version must list
/// everything the one before it listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_publishes_nothing_that_a_later_version_contradicts() {
    let server = provisioned_server().await;
    // A lease longer than the outage, and a retry well after the third event.
    let config = TEST_CONFIG
        .replace("ttl_s = 2", "ttl_s = 60")
        .replace("retry_delay_ms = 200", "retry_delay_ms = 10000");
    let guardian = GuardianProcess::start(&server, &config).await;
    let producer = Producer::connect(&server).await;
    let mut incidents = Incidents::open(&server).await;
    let js = admin_jetstream(&server).await;

    let first = service_down("ledger");
    producer.publish(&first).await;
    let opened = incidents.next(&guardian).await;
    assert_eq!(ids(&opened), vec![first.event_id]);

    let largest_message = |bytes: i32| {
        let js = js.clone();
        async move {
            let mut stream = js.get_stream("KV_guardian_state").await.unwrap();
            let mut config = stream.info().await.unwrap().config.clone();
            config.max_message_size = bytes;
            js.update_stream(config).await.unwrap();
        }
    };
    largest_message(16).await;
    let second = service_down("ledger");
    producer.publish(&second).await;
    wait_logged(&guardian, "will be retried").await;
    largest_message(-1).await;
    let third = service_down("ledger");
    producer.publish(&third).await;

    let mut versions = vec![opened];
    while versions.last().unwrap().event_ids.len() < 3 {
        versions.push(incidents.next(&guardian).await);
    }
    let lists: Vec<Vec<_>> = versions.iter().map(ids).collect();
    for pair in lists.windows(2) {
        assert!(
            pair[0].iter().all(|id| pair[1].contains(id)),
            "a version dropped an event the version before it listed: {lists:?}"
        );
    }
    assert!(
        versions
            .iter()
            .all(|v| v.incident_id == versions[0].incident_id),
        "one incident: {versions:#?}"
    );
    assert_eq!(
        lists[1],
        vec![first.event_id, third.event_id],
        "the third event is handled before the second one's retry (the case under test)"
    );
    incidents.assert_quiet(QUIET).await;
}

/// Waits (bounded) until guardian's log contains `text`.
async fn wait_logged(guardian: &GuardianProcess, text: &str) {
    let what = format!("guardian logged {text:?}");
    wait_for(&what, Duration::from_secs(10), || {
        guardian.log_text().contains(text)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; its log:\n{}", guardian.log_text()));
}

/// Poison events: each edge-of-time timestamp ends as a dead letter naming `/timestamp` and the
/// range rule, guardian keeps running, and the next valid event opens its incident. (Before the
/// range existed, an incident opened at 9999-12-31T23:59:59.999Z panicked guardian on its next
/// version, and `9999-12-31T23:59:59-00:01` panicked it at once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_at_the_edge_of_time_are_dead_lettered_and_guardian_goes_on() {
    let server = provisioned_server().await;
    let mut guardian = GuardianProcess::start(&server, TEST_CONFIG).await;
    let mut incidents = Incidents::open(&server).await;
    let producer = Producer::connect(&server).await;

    for timestamp in EDGE_OF_TIME {
        // Twice in one group: a second version of the first one's incident, if it had one.
        for _ in 0..2 {
            publish_raw(
                &server,
                "orion.event.v1",
                &with_timestamp(&service_down("edge"), timestamp),
            )
            .await;
        }
    }
    let valid = service_down("payments");
    producer.publish(&valid).await;
    let incident = incidents.next(&guardian).await;
    assert_eq!(
        ids(&incident),
        vec![valid.event_id],
        "{}",
        guardian.log_text()
    );
    incidents.assert_quiet(QUIET).await;
    assert_eq!(
        guardian.exit_within(Duration::from_millis(200)).await,
        None,
        "guardian is still running:\n{}",
        guardian.log_text()
    );

    let letters = dead_letters(&server, 2 * EDGE_OF_TIME.len()).await;
    for letter in &letters {
        assert_out_of_range(letter, "/timestamp");
        assert_eq!(letter.service.as_str(), "guardian");
        assert_eq!(letter.subject.as_str(), "orion.event.v1");
    }
}

/// An incident opened at the last supported instant grows and is acknowledged without a panic:
/// its versions stay at the end of the range (the documented clamp).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_at_the_end_of_the_range_takes_further_versions_without_a_panic() {
    let server = provisioned_server().await;
    let mut guardian = GuardianProcess::start(&server, TEST_CONFIG).await;
    let mut incidents = Incidents::open(&server).await;
    let last = "9998-12-31T23:59:59.999Z";
    publish_raw(
        &server,
        "orion.event.v1",
        &with_timestamp(&service_down("late"), last),
    )
    .await;
    let opened = incidents.next(&guardian).await;
    assert_eq!(opened.timestamp.to_string(), last);
    publish_raw(
        &server,
        "orion.event.v1",
        &with_timestamp(&service_down("late"), last),
    )
    .await;
    acknowledge(&server, opened.incident_id).await;
    let mut acknowledged = None;
    while let Some(version) = incidents.next_within(Duration::from_secs(10)).await {
        if version.state == IncidentState::Acknowledged {
            acknowledged = Some(version);
            break;
        }
    }
    let acknowledged =
        acknowledged.unwrap_or_else(|| panic!("no acknowledged version:\n{}", guardian.log_text()));
    assert_eq!(acknowledged.incident_id, opened.incident_id);
    assert_eq!(acknowledged.timestamp.to_string(), last);
    assert_eq!(
        guardian.exit_within(Duration::from_millis(200)).await,
        None,
        "{}",
        guardian.log_text()
    );
}

/// Poison acknowledgements: an edge-of-time acknowledgement is dead-lettered, guardian keeps
/// running and the next valid acknowledgement acknowledges the incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_at_the_edge_of_time_are_dead_lettered_and_guardian_goes_on() {
    let server = provisioned_server().await;
    let mut guardian = GuardianProcess::start(&server, TEST_CONFIG).await;
    let mut incidents = Incidents::open(&server).await;
    let producer = Producer::connect(&server).await;
    producer.publish(&service_down("payments")).await;
    let opened = incidents.next(&guardian).await;

    let template = serde_json::to_value(&contracts::IncidentAcknowledgement {
        version: contracts::incident_acknowledgement_v1::IncidentAcknowledgementVersion::X10,
        acknowledgement_id: uuid::Uuid::new_v4(),
        timestamp: contracts::Timestamp::now(),
        source:
            contracts::incident_acknowledgement_v1::IncidentAcknowledgementSource::OrionCommander,
        incident_id: opened.incident_id,
        action_id: None,
        acknowledged_by: "orion-commander".parse().unwrap(),
        note: None,
        tags: Default::default(),
    })
    .unwrap();
    for timestamp in EDGE_OF_TIME {
        let mut poison = template.clone();
        poison["acknowledgement_id"] = json!(uuid::Uuid::new_v4());
        poison["timestamp"] = json!(timestamp);
        publish_raw(&server, "orion.incident_acknowledgement.v1", &poison).await;
    }
    acknowledge(&server, opened.incident_id).await;
    let acknowledged = incidents.next(&guardian).await;
    assert_eq!(acknowledged.state, IncidentState::Acknowledged);
    assert_eq!(
        guardian.exit_within(Duration::from_millis(200)).await,
        None,
        "{}",
        guardian.log_text()
    );
    let letters = dead_letters(&server, EDGE_OF_TIME.len()).await;
    for letter in &letters {
        assert_out_of_range(letter, "/timestamp");
        assert_eq!(letter.subject.as_str(), "orion.incident_acknowledgement.v1");
    }
}

/// A guardian that stopped after recording an incident's end (its closing record) but before
/// it published the resolved version, or before it cleaned up: the next start publishes that
/// version and finishes the clean-up, and the same trouble afterwards is a new incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_left_half_done_is_finished_by_the_next_start() {
    let server = provisioned_server().await;
    let mut guardian = GuardianProcess::start(&server, TEST_CONFIG).await;
    let producer = Producer::connect(&server).await;
    let mut incidents = Incidents::open(&server).await;

    let down = service_down("ledger");
    producer.publish(&down).await;
    let opened = incidents.next(&guardian).await;
    wait_until_events_settled(&server, &guardian).await;
    guardian.kill_9();

    // What guardian writes right before it publishes the last version of a group.
    let js = admin_jetstream(&server).await;
    let bucket = js.get_key_value("guardian_state").await.unwrap();
    let mut keys = bucket.keys().await.unwrap();
    let mut group_key = None;
    while let Some(key) = futures::StreamExt::next(&mut keys).await {
        let key = key.unwrap();
        if key.contains(".group.") || key.starts_with("group.") {
            group_key = Some(key);
        }
    }
    let group_key = group_key.expect("the open group's record");
    let mut resolved = serde_json::to_value(&opened).unwrap();
    resolved["state"] = serde_json::json!("resolved");
    // The record names its key within the partition (without the `p<index>.` prefix).
    let key_in_partition = match group_key.split_once(".group.") {
        Some((_, id)) => format!("group.{id}"),
        None => group_key.clone(),
    };
    let closing = serde_json::json!({
        "format": 1,
        "closing": { "key": key_in_partition, "version": resolved, "forget": [down.event_id] },
    });
    bucket
        .put(&group_key, serde_json::to_vec(&closing).unwrap().into())
        .await
        .unwrap();

    guardian.restart(&server).await;
    let finished = incidents.next(&guardian).await;
    assert_eq!(finished.incident_id, opened.incident_id);
    assert_eq!(finished.state, IncidentState::Resolved);
    assert!(
        bucket.get(&group_key).await.unwrap().is_none(),
        "the closed group's record is still there"
    );
    // The event it held is remembered: a copy is a duplicate, not a new incident.
    producer.publish_copies(&down, 1).await;
    let again = service_down("ledger");
    producer.publish(&again).await;
    let next = incidents.next(&guardian).await;
    assert_ne!(
        next.incident_id, opened.incident_id,
        "joined the closed incident"
    );
    assert_eq!(ids(&next), vec![again.event_id]);
    incidents.assert_quiet(QUIET).await;
}
