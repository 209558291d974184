//! The typed bus against a real `nats-server` (started per test on free loopback ports).

mod support;

use support::fixture;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use contracts::bus::{Bus, BusConfig, BusError, Either, ReadFrom, SubscribeOptions, TypedReader};
use contracts::generated::dead_letter_v1::DeadLetterReasonCode;
use contracts::local_server::{NatsCluster, NatsServer, ServerOptions, AUTHORIZATION_CONF};
use contracts::services::*;
use contracts::*;
use orion_testkit::wait_until;
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(700);

fn server() -> NatsServer {
    NatsServer::start_with_auth().expect("start nats-server (install it with `cargo xtask test`)")
}

async fn connect<S: Service>(server: &NatsServer) -> Bus<S> {
    Bus::connect(server.bus_config::<S>())
        .await
        .expect("connect")
}

async fn provision(server: &NatsServer) {
    let admin = async_nats::ConnectOptions::new()
        .user_and_password("admin".into(), server.password("admin").unwrap().into())
        .connect(server.url())
        .await
        .unwrap();
    contracts::bus::provision_all(&async_nats::jetstream::new(admin), 1)
        .await
        .expect("provision");
}

async fn admin_jetstream(server: &NatsServer) -> async_nats::jetstream::Context {
    server.admin_jetstream().await.expect("admin connects")
}

fn event(id: u128) -> Event {
    let mut event: Event = fixture("minimal.json");
    event.event_id = uuid::Uuid::from_u128(id);
    event
}

async fn next_within<S, T>(
    sub: &mut contracts::bus::Subscription<S, T>,
    wait: Duration,
) -> Option<contracts::bus::Delivery<T>> {
    match tokio::time::timeout(wait, sub.next()).await {
        Ok(Some(delivery)) => Some(delivery.expect("delivery")),
        Ok(None) => panic!("subscription ended"),
        Err(_) => None,
    }
}

/// The stream's and its consumers' counters and leaders, to tell a loss from a stalled consumer.
async fn consumer_state(url: &str, stream: &str) -> String {
    let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
    let mut stream = js.get_stream(stream).await.unwrap();
    let info = stream.info().await.unwrap();
    let mut out = format!(
        "stream: {} messages, leader {:?}",
        info.state.messages,
        info.cluster.as_ref().and_then(|c| c.leader.clone())
    );
    let mut names = stream.consumer_names();
    while let Some(Ok(name)) = futures::StreamExt::next(&mut names).await {
        let consumer: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer(&name).await.unwrap();
        let info = consumer.cached_info();
        out += &format!(
            "; consumer {name}: {} pending, {} delivered, leader {:?}",
            info.num_pending,
            info.delivered.stream_sequence,
            info.cluster.as_ref().and_then(|c| c.leader.clone())
        );
    }
    out
}

async fn roundtrip<P, C, T>(server: &NatsServer, fixture_name: &str)
where
    P: Service + Produces<T>,
    C: Service + Consumes<T> + Produces<DeadLetter>,
    T: Contract + PartialEq + std::fmt::Debug + Send + 'static,
{
    let message: T = fixture(fixture_name);
    let producer = connect::<P>(server).await;
    let consumer = connect::<C>(server).await;
    let mut sub = consumer
        .subscribe::<T>(SubscribeOptions::default())
        .await
        .expect("subscribe");
    let published = producer.publish(&message).await.expect("publish");
    assert_eq!(published.stream, T::INFO.stream);
    assert!(!published.duplicate);
    let delivery = next_within(&mut sub, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("{} not delivered", T::INFO.name));
    assert_eq!(
        delivery.message(),
        &message,
        "{} changed on the way",
        T::INFO.name
    );
    assert_eq!(delivery.payload(), encode(&message).unwrap().as_slice());
    assert_eq!(delivery.delivery_attempt(), 1);
    delivery.ack().await.unwrap();
}

/// `T` from `P` to an ordered reader of `R`, unchanged, with its stored bytes.
async fn read_roundtrip<P, R, T>(server: &NatsServer, fixture_name: &str)
where
    P: Service + Produces<T>,
    R: Service + Reads<T>,
    T: Contract + PartialEq + std::fmt::Debug + Send + 'static,
{
    let message: T = fixture(fixture_name);
    let producer = connect::<P>(server).await;
    let reader_bus = connect::<R>(server).await;
    let mut reader = reader_bus
        .read::<T>(ReadFrom::New)
        .await
        .expect("open a reader");
    producer.publish(&message).await.expect("publish");
    let (read, raw) = tokio::time::timeout(Duration::from_secs(5), reader.next())
        .await
        .unwrap_or_else(|_| panic!("{} not read", T::INFO.name))
        .expect("reader open")
        .expect("a valid message");
    assert_eq!(read, message, "{} changed on the way", T::INFO.name);
    assert_eq!(raw.payload.as_ref(), encode(&message).unwrap().as_slice());
    assert_eq!(raw.subject, T::INFO.subject);
}

/// Provisions guardian's event consumer again with `max_deliver` deliveries (and `ack_wait`):
/// provisioning (the admin) sets these, not the service.
async fn guardian_events_deliver_at_most(
    server: &NatsServer,
    max_deliver: i64,
    ack_wait: Option<Duration>,
) {
    let durable = contracts::DURABLE_CONSUMERS
        .iter()
        .find(|c| c.name == "guardian-event-v1")
        .unwrap();
    let defaults: contracts::bus::ConsumerSettings = durable.into();
    let settings = contracts::bus::ConsumerSettings {
        max_deliver,
        ack_wait: ack_wait.unwrap_or(defaults.ack_wait),
        ..defaults
    };
    contracts::bus::provision_consumer(&admin_jetstream(server).await, durable, settings)
        .await
        .unwrap();
}

/// The next valid message of a reader within `wait`.
async fn read_within<T: Contract>(reader: &mut TypedReader<T>, wait: Duration) -> Option<T> {
    let read = tokio::time::timeout(wait, reader.next()).await.ok()??;
    Some(read.expect("a valid message").0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_contract_round_trips_through_jetstream_with_its_own_identities() {
    let server = server();
    provision(&server).await;
    roundtrip::<EventSource, Guardian, Event>(&server, "full.json").await;
    roundtrip::<Guardian, Brain, Incident>(&server, "full.json").await;
    read_roundtrip::<Brain, ApprovalCli, Decision>(&server, "full.json").await;
    roundtrip::<Brain, Commander, Action>(&server, "full.json").await;
    read_roundtrip::<Brain, ApprovalCli, ApprovalRequest>(&server, "full.json").await;
    roundtrip::<ApprovalCli, Brain, ApprovalDecision>(&server, "full.json").await;
    roundtrip::<ApprovalTelegram, Brain, Approval>(&server, "full.json").await;
    roundtrip::<Commander, Brain, Outcome>(&server, "full.json").await;
    roundtrip::<OpsConsole, OpsWorker, OpsCommand>(&server, "signed_halt_all.json").await;
    read_roundtrip::<OpsWorker, Commander, OpsReceipt>(&server, "success_restart.json").await;
    read_roundtrip::<Guardian, ApprovalCli, DeadLetter>(&server, "full.json").await;
    read_roundtrip::<Commander, ApprovalCli, Notification>(&server, "full.json").await;
    roundtrip::<Commander, Guardian, IncidentAcknowledgement>(&server, "full.json").await;
    read_roundtrip::<ApprovalCli, Brain, Silence>(&server, "all_criteria.json").await;
    assert_eq!(
        CONTRACTS.len(),
        14,
        "a contract was added: add its round trip here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_publish_is_dropped_by_the_server() {
    let server = server();
    provision(&server).await;
    let producer = connect::<EventSource>(&server).await;
    let guardian = connect::<Guardian>(&server).await;
    let mut sub = guardian
        .subscribe::<Event>(SubscribeOptions::default())
        .await
        .unwrap();
    let message = event(1);
    let first = producer.publish(&message).await.unwrap();
    let second = producer.publish(&message).await.unwrap();
    assert!(!first.duplicate);
    assert!(
        second.duplicate,
        "the server should report the second publish as a duplicate"
    );
    assert_eq!(first.message_id, message.event_id.to_string());
    next_within(&mut sub, Duration::from_secs(5))
        .await
        .expect("one delivery")
        .ack()
        .await
        .unwrap();
    assert!(
        next_within(&mut sub, QUIET).await.is_none(),
        "the duplicate was delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_payloads_are_dead_lettered_and_the_consumer_goes_on() {
    let server = server();
    provision(&server).await;
    let js = admin_jetstream(&server).await;
    let garbage = b"{ this is not json".to_vec();
    js.publish("orion.event.v1", garbage.clone().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut wrong = serde_json::to_value(event(2)).unwrap();
    wrong["severity"] = json!("apocalyptic");
    js.publish("orion.event.v1", serde_json::to_vec(&wrong).unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let producer = connect::<EventSource>(&server).await;
    producer.publish(&event(3)).await.unwrap();

    let guardian = connect::<Guardian>(&server).await;
    let mut sub = guardian
        .subscribe::<Event>(SubscribeOptions::default())
        .await
        .unwrap();
    let delivery = next_within(&mut sub, Duration::from_secs(5))
        .await
        .expect("the valid event");
    assert_eq!(delivery.message().event_id, uuid::Uuid::from_u128(3));
    delivery.ack().await.unwrap();

    let cli = connect::<ApprovalCli>(&server).await;
    let mut letters = cli.read::<DeadLetter>(ReadFrom::Start).await.unwrap();
    let first = read_within(&mut letters, Duration::from_secs(5))
        .await
        .expect("dead letter 1");
    let second = read_within(&mut letters, Duration::from_secs(5))
        .await
        .expect("dead letter 2");
    assert_eq!(first.reason.code, DeadLetterReasonCode::NotJson);
    assert_eq!(first.subject.as_str(), "orion.event.v1");
    assert_eq!(first.service.as_str(), "guardian");
    assert_eq!(first.consumer.as_deref(), Some("guardian-event-v1"));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(first.payload_base64.as_str())
        .unwrap();
    assert_eq!(raw, garbage, "the raw payload must be kept exactly");
    assert_eq!(second.reason.code, DeadLetterReasonCode::SchemaViolation);
    assert_eq!(second.reason.instance_path.as_deref(), Some("/severity"));
    assert_eq!(second.reason.rule.as_deref(), Some("enum"));
    assert!(
        second.reason.message.contains("apocalyptic"),
        "{}",
        second.reason.message.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nak_redelivers_and_the_last_attempt_is_dead_lettered() {
    let server = server();
    provision(&server).await;
    let producer = connect::<EventSource>(&server).await;
    producer.publish(&event(10)).await.unwrap();
    // Two deliveries at most: provisioning (the admin) sets it, not the service.
    guardian_events_deliver_at_most(&server, 2, None).await;
    let guardian = connect::<Guardian>(&server).await;
    let mut sub = guardian
        .subscribe::<Event>(SubscribeOptions::default())
        .await
        .unwrap();

    let first = next_within(&mut sub, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (first.delivery_attempt(), first.is_last_attempt()),
        (1, false)
    );
    first
        .nak(Some(Duration::from_millis(100)), "downstream busy")
        .await
        .unwrap();
    let second = next_within(&mut sub, Duration::from_secs(5))
        .await
        .expect("redelivery after nak");
    assert_eq!(second.message().event_id, uuid::Uuid::from_u128(10));
    assert_eq!(
        (second.delivery_attempt(), second.is_last_attempt()),
        (2, true)
    );
    second.nak(None, "downstream still busy").await.unwrap();
    assert!(next_within(&mut sub, QUIET).await.is_none());

    let cli = connect::<ApprovalCli>(&server).await;
    let mut letters = cli.read::<DeadLetter>(ReadFrom::Start).await.unwrap();
    let letter = read_within(&mut letters, Duration::from_secs(5))
        .await
        .expect("exhausted message dead-lettered");
    assert_eq!(letter.reason.code, DeadLetterReasonCode::DeliveryExhausted);
    assert!(letter.reason.message.contains("downstream still busy"));
    assert_eq!(letter.delivery_attempt.map(|n| n.get()), Some(2));
}

/// A process that dies on a message every time it gets it answers nothing: once its deliveries
/// are used up the server stops delivering it, and the next instance dead-letters it from the
/// server's max-deliveries advisory (before, the message was dropped without a trace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_every_delivery_of_which_kills_the_process_is_dead_lettered() {
    let server = server();
    provision(&server).await;
    guardian_events_deliver_at_most(&server, 2, Some(Duration::from_secs(1))).await;
    let producer = connect::<EventSource>(&server).await;
    producer.publish(&event(11)).await.unwrap();

    // Two instances in turn take the message and die with it: nothing settled, the connection
    // gone.
    for attempt in 1..=2 {
        let guardian = connect::<Guardian>(&server).await;
        let mut sub = guardian
            .subscribe::<Event>(SubscribeOptions::default())
            .await
            .unwrap();
        let delivery = next_within(&mut sub, Duration::from_secs(10))
            .await
            .expect("delivered");
        assert_eq!(delivery.delivery_attempt(), attempt);
        drop((delivery, sub));
        guardian.close().await.unwrap();
    }
    // The next instance, pulling, never gets it again; it dead-letters it from the server's
    // advisory.
    let guardian = connect::<Guardian>(&server).await;
    let mut sub = guardian
        .subscribe::<Event>(SubscribeOptions::default())
        .await
        .unwrap();
    let pulling = tokio::spawn(async move { next_within(&mut sub, Duration::from_secs(8)).await });
    let cli = connect::<ApprovalCli>(&server).await;
    let mut letters = cli.read::<DeadLetter>(ReadFrom::Start).await.unwrap();
    let letter = read_within(&mut letters, Duration::from_secs(15))
        .await
        .expect("the exhausted message is dead-lettered");
    assert_eq!(letter.reason.code, DeadLetterReasonCode::DeliveryExhausted);
    assert_eq!(letter.subject.as_str(), "orion.event.v1");
    assert_eq!(letter.consumer.as_deref(), Some("guardian-event-v1"));
    assert_eq!(letter.stream_sequence.map(|n| n.get()), Some(1));
    assert!(
        letter
            .reason
            .message
            .contains("stream ORION_EVENTS at sequence 1"),
        "{}",
        letter.reason.message.as_str()
    );
    assert!(pulling.await.unwrap().is_none(), "delivered a third time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_a_durable_split_the_work_without_handling_twice() {
    let server = server();
    provision(&server).await;
    const COUNT: u128 = 200;
    let options = SubscribeOptions::batch(5);
    let mut subscriptions = Vec::new();
    for _ in 0..2 {
        let bus = connect::<Guardian>(&server).await;
        subscriptions.push(bus.subscribe::<Event>(options.clone()).await.unwrap());
    }
    let producer = connect::<EventSource>(&server).await;
    for id in 1..=COUNT {
        producer.publish(&event(id)).await.unwrap();
    }
    let mut handles = Vec::new();
    for mut sub in subscriptions {
        handles.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(delivery) = next_within(&mut sub, Duration::from_secs(2)).await {
                seen.push(delivery.message().event_id);
                // Slow enough that the other instance gets a share.
                tokio::time::sleep(Duration::from_millis(2)).await;
                delivery.ack().await.unwrap();
            }
            seen
        }));
    }
    let mut all = Vec::new();
    let mut shares = Vec::new();
    for handle in handles {
        let seen = handle.await.unwrap();
        shares.push(seen.len());
        all.extend(seen);
    }
    let unique: BTreeSet<_> = all.iter().collect();
    assert_eq!(
        all.len(),
        COUNT as usize,
        "handled {} messages for {COUNT} published (shares {shares:?})",
        all.len()
    );
    assert_eq!(unique.len(), all.len(), "a message was handled twice");
    assert!(
        shares.iter().all(|n| *n > 0),
        "one instance got nothing: {shares:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_what_the_identity_may_not_publish() {
    // With the generated permissions: guardian may not publish decisions. The typed API does not
    // even compile that, so go around it with the raw JetStream context.
    let server = server();
    provision(&server).await;
    let guardian = connect::<Guardian>(&server).await;
    let decision: Decision = fixture("full.json");
    let attempt = guardian
        .jetstream()
        .publish("orion.decision.v1", encode(&decision).unwrap().into())
        .await;
    let refused = match attempt {
        Err(_) => true,
        Ok(ack) => tokio::time::timeout(Duration::from_secs(10), ack)
            .await
            .map_or(true, |r| r.is_err()),
    };
    assert!(refused, "the server accepted a decision from guardian");
    let js = admin_jetstream(&server).await;
    let mut stream = js.get_stream("ORION_DECISIONS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 0);

    // With a permission removed from the generated config, the typed publish fails with the
    // server's own reason.
    let narrowed = AUTHORIZATION_CONF;
    let guardian_block = narrowed
        .find("user: \"guardian\"")
        .expect("guardian user in the generated config");
    let (head, tail) = narrowed.split_at(guardian_block);
    let tail = tail.replacen("\"orion.incident.v1\", ", "", 1);
    let server = NatsServer::start_with(ServerOptions {
        auth: true,
        authorization: Some(format!("{head}{tail}")),
        ..Default::default()
    })
    .unwrap();
    provision(&server).await;
    let guardian = connect::<Guardian>(&server).await;
    let incident: Incident = fixture("full.json");
    match guardian.publish(&incident).await {
        Err(BusError::PermissionDenied {
            subject,
            user,
            server_message,
            ..
        }) => {
            assert_eq!(
                (subject.as_str(), user.as_str()),
                ("orion.incident.v1", "guardian")
            );
            assert!(
                server_message.contains("orion.incident.v1"),
                "{server_message}"
            );
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_at_connect() {
    let server = server();
    let config = BusConfig::new(server.url()).with_credentials("guardian", "not-the-password");
    match Bus::<Guardian>::connect(config).await {
        Err(e @ BusError::Connect { .. }) => {
            assert_eq!(e.kind(), contracts::bus::BusErrorKind::Refused, "{e}");
            let BusError::Connect { user, source, .. } = e else {
                unreachable!()
            };
            assert_eq!(user, "guardian");
            assert!(!source.is_unreachable(), "{source}");
            assert!(
                source.to_string().to_lowercase().contains("authorization"),
                "{source}"
            );
        }
        Ok(_) => panic!("connected with a wrong password"),
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_publishing_answers_for_each_message_in_order() {
    let server = server();
    provision(&server).await;
    let commander = connect::<Commander>(&server).await;
    let outcome = |n: u128| {
        let mut outcome: Outcome = fixture("full.json");
        outcome.outcome_id = uuid::Uuid::from_u128(n);
        outcome
    };
    let mut outcomes: Vec<Outcome> = (1..=40).map(outcome).collect();
    // One the schema refuses (failed without an error), and a repeat of an earlier id.
    outcomes[10].status = contracts::generated::outcome_v1::OutcomeStatus::Failed;
    outcomes[10].error = None;
    outcomes.push(outcome(3));

    let results = commander.publish_all(&outcomes, 8).await;

    assert_eq!(results.len(), outcomes.len(), "one result per message");
    for (i, (result, sent)) in results.iter().zip(&outcomes).enumerate() {
        match (i, result) {
            (10, Err(BusError::Contract(_))) => {}
            (10, other) => panic!("the invalid outcome was not refused alone: {other:?}"),
            (_, Ok(published)) => {
                assert_eq!(
                    published.message_id,
                    sent.outcome_id.to_string(),
                    "result {i} is not its message's"
                );
                assert_eq!(
                    published.duplicate,
                    i == 40,
                    "only the repeat is a duplicate"
                );
            }
            (_, Err(e)) => panic!("message {i} failed: {e}"),
        }
    }
    let sequences: Vec<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|p| !p.duplicate)
        .map(|p| p.sequence)
        .collect();
    assert!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "stored in the order given: {sequences:?}"
    );
    let reader = connect::<ApprovalCli>(&server).await;
    let stored = reader.read::<Outcome>(ReadFrom::Start).await.unwrap();
    assert_eq!(
        stored.pending_at_open(),
        39,
        "40 valid, one of them repeated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_message_is_not_sent() {
    let server = server();
    provision(&server).await;
    let commander = connect::<Commander>(&server).await;
    let mut outcome: Outcome = fixture("full.json");
    outcome.status = contracts::generated::outcome_v1::OutcomeStatus::Failed;
    outcome.error = None;
    let err = commander.publish(&outcome).await.unwrap_err();
    assert!(matches!(err, BusError::Contract(_)), "{err}");
    assert!(err.to_string().contains("required"), "{err}");
    let js = admin_jetstream(&server).await;
    assert_eq!(
        js.get_stream("ORION_OUTCOMES")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_a_server_restart() {
    let mut server = server();
    provision(&server).await;
    {
        let producer = connect::<EventSource>(&server).await;
        for id in 1..=50 {
            producer.publish(&event(id)).await.unwrap();
        }
    }
    server.restart().expect("restart with the same store");
    let guardian = connect::<Guardian>(&server).await;
    let mut sub = guardian
        .subscribe::<Event>(SubscribeOptions::default())
        .await
        .unwrap();
    let mut ids = BTreeSet::new();
    while let Some(delivery) = next_within(&mut sub, Duration::from_secs(3)).await {
        ids.insert(delivery.message().event_id);
        delivery.ack().await.unwrap();
    }
    assert_eq!(ids.len(), 50, "messages were lost across the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_accepts_both_contracts_during_a_transition() {
    let server = server();
    provision(&server).await;
    let legacy = connect::<ApprovalTelegram>(&server).await;
    let cli = connect::<ApprovalCli>(&server).await;
    let brain = connect::<Brain>(&server).await;
    let mut sub = brain
        .subscribe_either::<Approval, ApprovalDecision>(
            SubscribeOptions::default(),
            SubscribeOptions::default(),
        )
        .await
        .unwrap();
    legacy
        .publish(&fixture::<Approval>("full.json"))
        .await
        .unwrap();
    cli.publish(&fixture::<ApprovalDecision>("full.json"))
        .await
        .unwrap();
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let next = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("delivery")
            .unwrap()
            .unwrap();
        match next {
            Either::First(d) => {
                kinds.push("approval");
                d.ack().await.unwrap();
            }
            Either::Second(d) => {
                kinds.push("approval_decision");
                d.ack().await.unwrap();
            }
        }
    }
    kinds.sort();
    assert_eq!(kinds, ["approval", "approval_decision"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_are_visible_as_nats_micro_services_with_consumer_stats() {
    let server = server();
    provision(&server).await;
    let producer = connect::<EventSource>(&server).await;
    producer.publish(&event(7)).await.unwrap();
    let guardian = connect::<Guardian>(&server).await;
    let mut sub = guardian
        .subscribe::<Event>(SubscribeOptions::default())
        .await
        .unwrap();
    next_within(&mut sub, Duration::from_secs(5))
        .await
        .unwrap()
        .ack()
        .await
        .unwrap();

    let admin = async_nats::ConnectOptions::new()
        .user_and_password("admin".into(), server.password("admin").unwrap().into())
        .connect(server.url())
        .await
        .unwrap();
    let ping = admin
        .request("$SRV.PING.guardian", "".into())
        .await
        .unwrap();
    let ping: Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(ping["name"], "guardian");
    let stats = admin
        .request("$SRV.STATS.guardian", "".into())
        .await
        .unwrap();
    let stats: Value = serde_json::from_slice(&stats.payload).unwrap();
    let endpoint = stats["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "guardian-event-v1")
        .expect("consumer endpoint");
    assert_eq!(endpoint["data"]["received"], 1, "{stats}");
    assert_eq!(endpoint["data"]["acked"], 1, "{stats}");
    let status = admin
        .request("orion.micro.guardian.guardian-event-v1", "".into())
        .await
        .unwrap();
    let status: Value = serde_json::from_slice(&status.payload).unwrap();
    assert_eq!(status["acked"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_keeps_replicated_messages_when_a_node_stops() {
    let mut cluster = NatsCluster::start(3).expect("start a 3-node cluster");
    let urls = cluster.urls();
    let servers: Vec<async_nats::ServerAddr> =
        urls.split(',').map(|u| u.parse().unwrap()).collect();
    let client = async_nats::connect(servers).await.unwrap();
    let js = async_nats::jetstream::new(client);
    // The cluster elects a JetStream meta leader after it reports healthy; retry until then.
    let last_error = std::sync::Mutex::new(None);
    wait_until(
        "provisioned with 3 replicas",
        Duration::from_secs(10),
        || async {
            match contracts::bus::provision_all(&js, 3).await {
                Ok(()) => Some(()),
                Err(e) => {
                    *last_error.lock().unwrap() = Some(e);
                    None
                }
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", last_error.lock().unwrap()));
    let producer = Bus::<EventSource>::connect(BusConfig::new(urls.clone()))
        .await
        .unwrap();
    for id in 1..=20 {
        producer.publish(&event(id)).await.unwrap();
    }
    cluster.nodes[0].stop();
    let guardian = Bus::<Guardian>::connect(BusConfig::new(cluster.nodes[1].url()))
        .await
        .unwrap();
    let mut sub = wait_until(
        "a subscription on the remaining nodes",
        Duration::from_secs(10),
        || async {
            guardian
                .subscribe::<Event>(SubscribeOptions::default())
                .await
                .ok()
        },
    )
    .await
    .unwrap();
    // The stream and the consumer elect new leaders after the node stops, which can take a few
    // seconds before the first delivery: wait for all 20 with a generous bound.
    let mut ids = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ids.len() < 20 && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), sub.next()).await {
            Ok(Some(Ok(delivery))) => {
                ids.insert(delivery.message().event_id);
                delivery.ack().await.unwrap();
            }
            Ok(Some(Err(e))) => eprintln!("delivery during the election: {e}"),
            Ok(None) => panic!("subscription ended"),
            Err(_) => {}
        }
    }
    let state = if ids.len() < 20 {
        consumer_state(&cluster.nodes[1].url(), "ORION_EVENTS").await
    } else {
        String::new()
    };
    assert_eq!(
        ids.len(),
        20,
        "replicated messages lost when a node stopped? {state}"
    );
    assert!(
        next_within(&mut sub, Duration::from_secs(1))
            .await
            .is_none(),
        "a message was delivered twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checked_subscription_hands_invalid_payloads_to_the_caller() {
    use contracts::bus::Incoming;
    let server = server();
    provision(&server).await;
    let js = admin_jetstream(&server).await;
    js.publish(
        "titan.ops.command.v1",
        b"{\"v\":1,\"id\":\"not-a-uuid\"}".to_vec().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    js.publish("titan.ops.command.v1", b"garbage".to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let console = connect::<OpsConsole>(&server).await;
    console
        .publish(&fixture::<OpsCommand>("signed_halt_all.json"))
        .await
        .unwrap();

    let worker = connect::<OpsWorker>(&server).await;
    let mut sub = worker
        .subscribe_checked::<OpsCommand>(SubscribeOptions::default())
        .await
        .unwrap();
    async fn next(
        sub: &mut contracts::bus::CheckedSubscription<OpsWorker, OpsCommand>,
    ) -> Incoming<OpsCommand> {
        tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("message")
            .unwrap()
            .unwrap()
    }
    match next(&mut sub).await {
        Incoming::Invalid(invalid) => {
            assert_eq!(invalid.payload(), b"{\"v\":1,\"id\":\"not-a-uuid\"}");
            assert!(
                invalid.error().to_string().contains("/id"),
                "{}",
                invalid.error()
            );
            invalid.settle().await.unwrap();
        }
        Incoming::Valid(_) => panic!("an invalid command came out as valid"),
    }
    match next(&mut sub).await {
        Incoming::Invalid(invalid) => invalid.reject().await.unwrap(),
        Incoming::Valid(_) => panic!("garbage came out as valid"),
    }
    match next(&mut sub).await {
        Incoming::Valid(delivery) => delivery.ack().await.unwrap(),
        Incoming::Invalid(invalid) => panic!("valid command refused: {}", invalid.error()),
    }
    // Only the rejected one became a dead letter; the settled one was answered by the caller.
    let cli = connect::<ApprovalCli>(&server).await;
    let mut letters = cli.read::<DeadLetter>(ReadFrom::Start).await.unwrap();
    let letter = read_within(&mut letters, Duration::from_secs(5))
        .await
        .expect("one dead letter");
    assert_eq!(letter.reason.code, DeadLetterReasonCode::NotJson);
    assert!(read_within(&mut letters, QUIET).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_creates_nothing_and_refuses_to_run_on_what_is_not_provisioned() {
    let server = server();
    let guardian = connect::<Guardian>(&server).await;
    // Nothing provisioned: it says what is missing and who provisions it.
    let missing = guardian.verify_provisioned().await.unwrap_err();
    let text = missing.to_string();
    assert!(
        matches!(missing, BusError::NotProvisioned { .. }),
        "{missing:?}"
    );
    assert!(text.contains("stream `ORION_EVENTS`"), "{text}");
    assert!(text.contains("cargo xtask provision"), "{text}");
    // Nor can it provision for itself: the server refuses a service's stream create.
    let js = async_nats::jetstream::new(
        async_nats::ConnectOptions::new()
            .user_and_password(
                "guardian".into(),
                server.password("guardian").unwrap().into(),
            )
            .custom_inbox_prefix("_INBOX_guardian")
            .request_timeout(Some(Duration::from_secs(2)))
            .connect(server.url())
            .await
            .unwrap(),
    );
    let own_stream = contracts::STREAMS
        .iter()
        .find(|s| s.name == "ORION_INCIDENTS")
        .unwrap();
    assert!(
        contracts::bus::provision_all(&js, 1).await.is_err(),
        "guardian created streams itself"
    );
    assert!(admin_jetstream(&server)
        .await
        .get_stream(own_stream.name)
        .await
        .is_err());

    // Provisioned, but its durable delivers more than its contract: refused, named.
    provision(&server).await;
    guardian.verify_provisioned().await.unwrap();
    let js = admin_jetstream(&server).await;
    js.get_stream("ORION_EVENTS")
        .await
        .unwrap()
        .delete_consumer("guardian-event-v1")
        .await
        .unwrap();
    js.get_stream("ORION_EVENTS")
        .await
        .unwrap()
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("guardian-event-v1".into()),
            filter_subject: "orion.>".into(),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let wrong = guardian
        .subscribe::<Event>(SubscribeOptions::default())
        .await
        .err()
        .expect("a durable with the wrong filter is refused");
    let text = wrong.to_string();
    assert!(
        text.contains("consumer `guardian-event-v1`") && text.contains("orion.>"),
        "{text}"
    );
}

// --- typed buckets and the interlock's initial record ---

async fn interlock_armed(server: &NatsServer) -> Option<InterlockArmed> {
    let bus = connect::<OpsWorker>(server).await;
    let bucket = bus.bucket::<buckets::OpsInterlock>().await.unwrap();
    bucket.get::<InterlockArmed>().await.unwrap()
}

/// Provisioning writes `armed` (set by provisioning) into a bucket that never held it, and
/// leaves whatever is there alone afterwards: a disarm stays a disarm, and a deleted key stays
/// deleted (disarmed, fail closed) until an operator's signed `arm` writes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_writes_the_interlock_only_when_it_was_never_written() {
    let server = server();
    provision(&server).await;
    let initial = interlock_armed(&server)
        .await
        .expect("provisioning wrote `armed`");
    assert!(initial.armed);
    assert_eq!(initial.set_by.to_string(), "provisioning");
    assert_eq!(initial.command_id, None);

    let worker = connect::<OpsWorker>(&server).await;
    let bucket = worker.bucket::<buckets::OpsInterlock>().await.unwrap();
    let disarm = InterlockArmed::by_command(false, uuid::Uuid::from_u128(7));
    bucket.put(&disarm).await.unwrap();
    provision(&server).await;
    assert_eq!(
        interlock_armed(&server).await,
        Some(disarm),
        "re-provisioning overwrote a disarm"
    );
    assert!(
        !contracts::bus::seed_interlock(&admin_jetstream(&server).await)
            .await
            .unwrap()
    );

    let kv = admin_jetstream(&server)
        .await
        .get_key_value("ops_interlock")
        .await
        .unwrap();
    kv.delete("armed").await.unwrap();
    provision(&server).await;
    assert_eq!(
        interlock_armed(&server).await,
        None,
        "re-provisioning re-armed a deleted record"
    );
}

/// The handle validates what it reads: a record in the layout before contract set 1.1 is
/// `Unreadable` (with the schema violation as its source), a valid one decodes, and a reader
/// (brain) sees what the writer (ops-worker) put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_handles_validate_values_and_serve_readers() {
    let server = server();
    provision(&server).await;
    let kv = admin_jetstream(&server)
        .await
        .get_key_value("ops_interlock")
        .await
        .unwrap();
    kv.put(
        "armed",
        br#"{"armed":true,"command_id":"c1","at":"2026-02-14T12:00:00Z"}"#
            .to_vec()
            .into(),
    )
    .await
    .unwrap();
    let brain = connect::<Brain>(&server).await;
    let bucket = brain.bucket::<buckets::OpsInterlock>().await.unwrap();
    let err = bucket.get::<InterlockArmed>().await.unwrap_err();
    assert_eq!(err.kind(), contracts::bus::BucketErrorKind::Unreadable);
    assert_eq!(err.bucket(), "ops_interlock");
    assert!(std::error::Error::source(&err).is_some());
    assert!(err.to_string().contains("`armed`"), "{err}");

    let worker = connect::<OpsWorker>(&server).await;
    let ceiling = InterlockRiskCeiling::by_command(
        contracts::generated::interlock_risk_ceiling_v1::InterlockRiskCeilingLevel::N2,
        uuid::Uuid::from_u128(9),
    );
    worker
        .bucket::<buckets::OpsInterlock>()
        .await
        .unwrap()
        .put(&ceiling)
        .await
        .unwrap();
    assert_eq!(
        bucket.get::<InterlockRiskCeiling>().await.unwrap(),
        Some(ceiling)
    );
}

// --- at-most-once claims: liveness without comparing clocks, and fencing ---

/// A claim record written by a host whose clock is `skew` off.
async fn claim_with_skewed_clock(
    js: &async_nats::jetstream::Context,
    id: &uuid::Uuid,
    skew: time::Duration,
) -> u64 {
    let at = (time::OffsetDateTime::now_utc() + skew)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let record = json!({"state": "claimed", "worker": "far-away-host", "at": at});
    js.get_key_value("commander_actions")
        .await
        .unwrap()
        .create(id.to_string(), serde_json::to_vec(&record).unwrap().into())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claims_holder_is_judged_by_its_renewals_never_by_the_clock_it_wrote() {
    let server = server();
    provision(&server).await;
    let commander = connect::<Commander>(&server).await;
    let log = contracts::bus::ClaimLog::open(commander.jetstream(), "commander_actions")
        .await
        .unwrap();
    let admin = admin_jetstream(&server).await;
    let stale_after = Duration::from_millis(900);

    // A claim from a host whose clock runs an hour fast, never renewed: abandoned (before, it
    // looked fresh for an hour).
    let fast = uuid::Uuid::new_v4();
    let revision = claim_with_skewed_clock(&admin, &fast, time::Duration::hours(1)).await;
    assert!(log
        .holder_is_gone(&fast, revision, stale_after, || async {})
        .await
        .unwrap());

    // A claim from a host whose clock runs an hour slow, renewed by its live holder: alive
    // (before, it looked abandoned at once).
    let slow = uuid::Uuid::new_v4();
    let revision = claim_with_skewed_clock(&admin, &slow, -time::Duration::hours(1)).await;
    let holder = log.clone();
    let renewing = tokio::spawn(async move {
        let mut revision = revision;
        for _ in 0..10 {
            // The renewal cadence: well inside the 900 ms after which a claim counts as stale.
            tokio::time::sleep(Duration::from_millis(150)).await;
            revision = holder
                .refresh(&slow, "far-away-host", revision)
                .await
                .unwrap();
        }
    });
    assert!(!log
        .holder_is_gone(&slow, revision, stale_after, || async {})
        .await
        .unwrap());
    renewing.await.unwrap();

    // The holder whose claim was taken over must stop: its renewal says so.
    let taken = uuid::Uuid::new_v4();
    let contracts::bus::Claim::New { revision } = log.claim(&taken, "me").await.unwrap() else {
        panic!("a fresh id is new");
    };
    let mut renewal = contracts::bus::Renewal::new(revision, stale_after);
    renewal.renew(&log, &taken, "me").await.unwrap();
    log.finish(&taken, &json!({"interrupted": true}), renewal.revision())
        .await
        .unwrap();
    assert!(matches!(
        renewal.renew(&log, &taken, "me").await,
        Err(contracts::bus::ClaimFenced::TakenOver)
    ));
}

/// A handler that panics on one message: the consumer goes on with the next message, the
/// panicking one is handed back until its deliveries are used up and then dead-lettered as
/// `handler_panicked` with the panic's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_on_one_message_does_not_stop_the_consumer() {
    let server = server();
    provision(&server).await;
    guardian_events_deliver_at_most(&server, 3, None).await;
    let producer = connect::<EventSource>(&server).await;
    producer.publish(&event(66)).await.unwrap();
    producer.publish(&event(67)).await.unwrap();
    let guardian = connect::<Guardian>(&server).await;
    let mut sub = guardian
        .subscribe::<Event>(SubscribeOptions::default())
        .await
        .unwrap();

    let poison = uuid::Uuid::from_u128(66);
    let mut handled = Vec::new();
    let mut panics = Vec::new();
    while let Some(delivery) = next_within(&mut sub, Duration::from_secs(3)).await {
        let attempt = delivery.delivery_attempt();
        let result =
            contracts::bus::isolate(delivery, Duration::from_millis(50), |delivery| async {
                if delivery.message().event_id == poison {
                    panic!("poisoned by event 66");
                }
                handled.push(delivery.message().event_id);
                delivery.ack().await.unwrap();
            })
            .await;
        if let Err(panicked) = result {
            assert!(panicked.message.contains("poisoned"), "{panicked}");
            panics.push(attempt);
        }
    }
    assert_eq!(handled, vec![uuid::Uuid::from_u128(67)]);
    assert_eq!(
        panics,
        vec![1, 2, 3],
        "handed back until its deliveries are used up"
    );

    let cli = connect::<ApprovalCli>(&server).await;
    let mut letters = cli.read::<DeadLetter>(ReadFrom::Start).await.unwrap();
    let letter = read_within(&mut letters, Duration::from_secs(5))
        .await
        .expect("the poison message is dead-lettered");
    assert_eq!(letter.reason.code, DeadLetterReasonCode::HandlerPanicked);
    assert!(
        letter.reason.message.contains("poisoned by event 66"),
        "{:?}",
        letter.reason.message
    );
    assert_eq!(letter.delivery_attempt.map(|n| n.get()), Some(3));
    let payload = base64::engine::general_purpose::STANDARD
        .decode(letter.payload_base64.as_str())
        .unwrap();
    assert_eq!(decode::<Event>(&payload).unwrap().event_id, poison);
    assert!(
        read_within(&mut letters, QUIET).await.is_none(),
        "one dead letter"
    );
}

/// A provisioned server with event `id` published and delivered to guardian's subscription.
async fn one_event_delivered(
    id: u128,
) -> (
    NatsServer,
    contracts::bus::Subscription<Guardian, Event>,
    contracts::bus::Delivery<Event>,
) {
    let server = server();
    provision(&server).await;
    let producer = connect::<EventSource>(&server).await;
    producer.publish(&event(id)).await.unwrap();
    let guardian = connect::<Guardian>(&server).await;
    let mut sub = guardian
        .subscribe::<Event>(SubscribeOptions::default())
        .await
        .unwrap();
    let delivery = next_within(&mut sub, Duration::from_secs(5)).await.unwrap();
    (server, sub, delivery)
}

/// A handler that settled its message and then panicked: nothing is settled twice and no dead
/// letter is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_after_acking_is_not_dead_lettered() {
    let (server, mut sub, delivery) = one_event_delivered(70).await;
    let result = contracts::bus::isolate(delivery, Duration::from_millis(50), |d| async {
        d.ack().await.unwrap();
        panic!("after the ack");
    })
    .await;
    assert!(result.is_err());
    assert!(
        next_within(&mut sub, QUIET).await.is_none(),
        "not redelivered"
    );
    let cli = connect::<ApprovalCli>(&server).await;
    let mut letters = cli.read::<DeadLetter>(ReadFrom::Start).await.unwrap();
    assert!(read_within(&mut letters, QUIET).await.is_none());
}

/// `latest_since` reads the state from a copy that holds a given write: one that has it answers
/// at once, and a read that never reaches it (a replica behind on a cluster; here, a revision the
/// bucket has not reached yet) fails after the bound with an error saying how far behind it was,
/// instead of handing back an older state as if it were current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_read_since_a_write_refuse_an_older_copy() {
    let server = server();
    provision(&server).await;
    let guardian = connect::<Guardian>(&server).await;
    let records = guardian
        .records::<contracts::buckets::GuardianState>()
        .await
        .unwrap();
    records.put("group.a", "1").await.unwrap();
    let written = records.put("group.b", "2").await.unwrap();

    let entries = records
        .latest_since(">", Duration::from_secs(5), written)
        .await
        .expect("the bucket holds the write");
    let keys: BTreeSet<_> = entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, BTreeSet::from(["group.a", "group.b"]));

    let begun = std::time::Instant::now();
    let error = records
        .latest_since(">", Duration::from_millis(600), written + 10)
        .await
        .expect_err("no copy holds that revision");
    assert_eq!(error.kind(), contracts::bus::RecordsErrorKind::Unavailable);
    let text = format!("{error}");
    assert!(
        text.contains(&format!("older than revision {}", written + 10))
            && text.contains(&format!("the newest it had was {written}")),
        "{text}"
    );
    assert!(
        begun.elapsed() >= Duration::from_millis(500),
        "it read again until the bound"
    );
}

/// `ack_unconfirmed` does not wait for the server, yet the ack reaches it: the consumer has
/// nothing pending any more and the message is not delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_ack_settles_the_message_without_a_round_trip() {
    let (server, mut sub, delivery) = one_event_delivered(71).await;
    delivery.ack_unconfirmed().await.unwrap();

    let js = admin_jetstream(&server).await;
    let info = || async {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
            .get_stream("ORION_EVENTS")
            .await
            .unwrap()
            .get_consumer("guardian-event-v1")
            .await
            .unwrap();
        consumer.info().await.unwrap().clone()
    };
    let acked = wait_until(
        "the ack reached the server",
        Duration::from_secs(5),
        || async {
            let info = info().await;
            (info.num_ack_pending == 0 && info.ack_floor.stream_sequence >= 1).then_some(())
        },
    )
    .await;
    if let Err(e) = acked {
        panic!("{e}: {:?}", info().await);
    }
    assert!(
        next_within(&mut sub, QUIET).await.is_none(),
        "not delivered again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_binds_its_partitions_durables_and_must_name_one_it_has() {
    let server = server();
    provision(&server).await;
    let guardian = connect::<Guardian>(&server).await;
    let partitions = <Guardian as Service>::PARTITIONS;
    // Not partitioned: naming a partition is refused. Partitioned: naming none, or one past
    // the last, is refused.
    let refused_options = if partitions == 1 {
        vec![SubscribeOptions::default().in_partition(0)]
    } else {
        vec![
            SubscribeOptions::default(),
            SubscribeOptions::default().in_partition(partitions),
        ]
    };
    for options in refused_options {
        match guardian.subscribe::<Event>(options.clone()).await.err() {
            Some(BusError::Config(text)) => assert!(
                text.contains("orion.event.v1") && text.contains("partition"),
                "{options:?}: {text}"
            ),
            other => panic!("{options:?}: expected a configuration error, got {other:?}"),
        }
    }
    // Every partition's durable gets every event: each partition keeps its own share.
    let producer = connect::<EventSource>(&server).await;
    let event = event(9_001);
    producer.publish(&event).await.unwrap();
    let bindings: Vec<SubscribeOptions> = if partitions == 1 {
        vec![SubscribeOptions::default()]
    } else {
        (0..partitions)
            .map(|p| SubscribeOptions::default().in_partition(p))
            .collect()
    };
    for options in bindings {
        let mut sub = guardian.subscribe::<Event>(options.clone()).await.unwrap();
        let delivery = next_within(&mut sub, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{options:?}: nothing delivered"));
        assert_eq!(delivery.message().event_id, event.event_id);
        delivery.ack().await.unwrap();
    }
}
