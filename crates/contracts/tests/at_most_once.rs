//! The at-most-once worker driver against a real `nats-server`: commander's identity, its
//! `orion.action.v1` consumer, its claim bucket and its `orion.outcome.v1` results.

mod support;

use support::fixture;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use contracts::bus::{
    serve, Admission, AtMostOnce, Bus, ReadFrom, SubscribeOptions, Subscription, WhenLost,
};
use contracts::local_server::NatsServer;
use contracts::services::{ApprovalCli, Brain, Commander};
use contracts::{Action, Contract, Outcome};
use orion_testkit::wait_for;
use tokio_util::task::TaskTracker;

/// How long a claim may go without renewal before it counts as abandoned, here.
const ACK_WAIT: Duration = Duration::from_millis(600);
/// A bound for waiting on the server, never a pause.
const WITHIN: Duration = Duration::from_secs(10);

fn server() -> NatsServer {
    NatsServer::start_with_auth().expect("start nats-server (install it with `cargo xtask test`)")
}

async fn stack() -> (
    NatsServer,
    Bus<Brain>,
    AtMostOnce<Commander, Outcome>,
    Subscription<Commander, Action>,
) {
    let server = server();
    let admin = server.admin_jetstream().await.expect("admin connects");
    contracts::bus::provision_all(&admin, 1)
        .await
        .expect("provision");
    let brain = Bus::<Brain>::connect(server.bus_config::<Brain>())
        .await
        .expect("brain connects");
    let commander = Bus::<Commander>::connect(server.bus_config::<Commander>())
        .await
        .expect("commander connects");
    let log = commander
        .claim_log::<contracts::buckets::CommanderActions>()
        .await
        .expect("the claim bucket is provisioned");
    let actions = commander
        .subscribe::<Action>(SubscribeOptions::batch(1))
        .await
        .expect("subscribe");
    let once = AtMostOnce::new(commander, log, "test-holder", ACK_WAIT);
    (server, brain, once, actions)
}

fn action(id: u128) -> Action {
    let mut action: Action = fixture("minimal.json");
    action.action_id = uuid::Uuid::from_u128(id);
    action
}

fn outcome_of(action: &Action) -> Outcome {
    let mut outcome: Outcome = fixture("minimal.json");
    outcome.action_id = action.action_id;
    outcome.outcome_id =
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, action.action_id.as_bytes());
    outcome
}

async fn next(actions: &mut Subscription<Commander, Action>) -> contracts::bus::Delivery<Action> {
    tokio::time::timeout(WITHIN, actions.next())
        .await
        .expect("an action is delivered in time")
        .expect("the subscription is open")
        .expect("a valid delivery")
}

/// Stores `action` again under another `Nats-Msg-Id` (so the server's duplicate window does not
/// drop it): a replay of the same action, as an attacker or a second publisher could send it.
async fn replay(server: &NatsServer, action: &Action) {
    let admin = server.admin_jetstream().await.expect("admin connects");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", uuid::Uuid::new_v4().to_string().as_str());
    let payload = contracts::encode(action).expect("a valid action");
    admin
        .publish_with_headers(Action::INFO.subject, headers, payload.into())
        .await
        .expect("publish the replay")
        .await
        .expect("the replay is stored");
}

/// The outcomes of `action_id` stored in the outcome stream.
async fn outcomes_of(server: &NatsServer, action_id: uuid::Uuid) -> usize {
    let reader = Bus::<ApprovalCli>::connect(server.bus_config::<ApprovalCli>())
        .await
        .expect("approval-cli connects");
    let mut outcomes = reader
        .read::<Outcome>(ReadFrom::Start)
        .await
        .expect("read outcomes");
    let stored = outcomes.pending_at_open();
    let mut count = 0;
    for _ in 0..stored {
        let (outcome, _) = tokio::time::timeout(WITHIN, outcomes.next())
            .await
            .expect("a stored outcome is read in time")
            .expect("the reader is open")
            .expect("a valid outcome");
        if outcome.action_id == action_id {
            count += 1;
        }
    }
    count
}

#[tokio::test]
async fn work_is_done_once_per_id_and_a_replay_gets_the_recorded_result() {
    let (server, brain, once, mut actions) = stack().await;
    let first = action(1);
    brain.publish(&first).await.expect("publish");
    let runs = AtomicUsize::new(0);

    let Admission::Fresh(held) = once.admit(next(&mut actions).await, first.action_id).await else {
        panic!("a new id is claimed here");
    };
    let work = async {
        runs.fetch_add(1, Ordering::SeqCst);
    };
    once.heartbeat(&held, work, |_| WhenLost::Abandon)
        .await
        .expect("the claim holds");
    assert!(
        once.finish(held, &outcome_of(&first)).await,
        "recorded, published and acked"
    );

    replay(&server, &first).await;
    let replayed = next(&mut actions).await;
    assert!(
        matches!(
            once.admit(replayed, first.action_id).await,
            Admission::Settled
        ),
        "a replay is answered from the record"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the work ran once");
    assert_eq!(
        outcomes_of(&server, first.action_id).await,
        1,
        "the result published again is the same message: the server keeps one"
    );
}

#[tokio::test]
async fn a_claim_nobody_renews_is_interrupted_and_one_renewed_is_left_to_its_holder() {
    let (server, brain, once, mut actions) = stack().await;

    // A holder that claimed and stopped (a crash): never renewed.
    let crashed = action(2);
    once.log()
        .claim(&crashed.action_id, "crashed-holder")
        .await
        .expect("claim");
    brain.publish(&crashed).await.expect("publish");
    match once
        .admit(next(&mut actions).await, crashed.action_id)
        .await
    {
        Admission::Interrupted { held, holder, .. } => {
            assert_eq!(holder, "crashed-holder");
            assert!(once.finish(held, &outcome_of(&crashed)).await);
        }
        _ => panic!("a claim never renewed for a whole ack wait is interrupted"),
    }
    assert_eq!(outcomes_of(&server, crashed.action_id).await, 1);

    // A live holder renews its claim: the copy is handed back, nothing is recorded.
    let alive = action(3);
    let contracts::bus::Claim::New { mut revision } = once
        .log()
        .claim(&alive.action_id, "live-holder")
        .await
        .expect("claim")
    else {
        panic!("a new id");
    };
    let log = once.log().clone();
    let renewing = tokio::spawn(async move {
        loop {
            // The renewal cadence: four renewals an ack wait.
            tokio::time::sleep(ACK_WAIT / 4).await;
            revision = log
                .refresh(&alive.action_id, "live-holder", revision)
                .await
                .expect("the live holder renews");
        }
    });
    brain.publish(&alive).await.expect("publish");
    assert!(
        matches!(
            once.admit(next(&mut actions).await, alive.action_id).await,
            Admission::Settled
        ),
        "a renewed claim belongs to its holder"
    );
    renewing.abort();
    assert!(
        matches!(
            once.log().get(&alive.action_id).await.expect("read"),
            Some(contracts::bus::ClaimRecord::Claimed { worker, .. }) if worker == "live-holder"
        ),
        "the live holder's claim is untouched"
    );
    assert_eq!(outcomes_of(&server, alive.action_id).await, 0);
}

#[tokio::test]
async fn a_lost_claim_stops_the_wait_or_refuses_the_result() {
    let (server, brain, once, mut actions) = stack().await;

    // Abandon: the work is left, the message handed back, nothing recorded.
    let taken = action(4);
    brain.publish(&taken).await.expect("publish");
    let Admission::Fresh(held) = once.admit(next(&mut actions).await, taken.action_id).await else {
        panic!("a new id is claimed here");
    };
    let thief = once.log().clone();
    let take_over = async {
        let revision = thief.revision(&taken.action_id).await.unwrap().unwrap();
        thief
            .refresh(&taken.action_id, "other-holder", revision)
            .await
            .unwrap();
        std::future::pending::<()>().await
    };
    let lost = tokio::time::timeout(
        WITHIN,
        once.heartbeat(&held, take_over, |_| WhenLost::Abandon),
    )
    .await
    .expect("a lost claim is seen within a heartbeat");
    let lost = lost.expect_err("the claim was taken over");
    once.hand_back(held, lost).await;

    // Continue: the work finishes, but its result is refused by the claim's new revision.
    let kept = action(5);
    brain.publish(&kept).await.expect("publish");
    let Admission::Fresh(held) = once.admit(next(&mut actions).await, kept.action_id).await else {
        panic!("a new id is claimed here");
    };
    let seen_lost = AtomicUsize::new(0);
    let take_over_then_end = async {
        let revision = thief.revision(&kept.action_id).await.unwrap().unwrap();
        thief
            .refresh(&kept.action_id, "other-holder", revision)
            .await
            .unwrap();
        wait_for("the loss seen", WITHIN, || {
            seen_lost.load(Ordering::SeqCst) > 0
        })
        .await
        .unwrap();
    };
    tokio::time::timeout(
        WITHIN,
        once.heartbeat(&held, take_over_then_end, |_| {
            seen_lost.fetch_add(1, Ordering::SeqCst);
            WhenLost::Continue
        }),
    )
    .await
    .expect("the work ends once the loss is seen")
    .expect("Continue never abandons");
    assert!(
        !once.finish(held, &outcome_of(&kept)).await,
        "a result under a lost claim is not recorded"
    );
    assert_eq!(outcomes_of(&server, taken.action_id).await, 0);
    assert_eq!(outcomes_of(&server, kept.action_id).await, 0);
}

#[tokio::test]
async fn serve_stops_taking_messages_at_shutdown_and_drains_the_work_in_flight() {
    let (_server, brain, once, actions) = stack().await;
    brain.publish(&action(6)).await.expect("publish");
    let finished = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(tokio::sync::Notify::new());
    let tasks = TaskTracker::new();
    let shutdown = {
        let started = started.clone();
        async move { started.notified().await }
    };
    let handled = {
        let finished = finished.clone();
        let tasks = tasks.clone();
        move |delivery: contracts::bus::Delivery<Action>| {
            let finished = finished.clone();
            let started = started.clone();
            tasks.spawn(async move {
                // Shutdown arrives while this work is in flight: work that takes a while.
                started.notify_one();
                tokio::time::sleep(Duration::from_millis(300)).await;
                delivery.ack().await.expect("ack");
                finished.fetch_add(1, Ordering::SeqCst);
            });
            std::future::ready(())
        }
    };
    tokio::time::timeout(WITHIN, serve(actions, shutdown, tasks, WITHIN, handled))
        .await
        .expect("serve returns after the drain");
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "the work in flight ended before serve returned"
    );
    drop(once);
}
