//! brain's state store on a real nats-server: a limit change that starts from the value brain
//! decided on (no second read) or from the limits it remembers still loses to any write made
//! since, and leaves nothing behind.

mod support;

use brain::limits::ActionMark;
use brain::policy::LimitKey;
use brain::state::{Expect, Mutation, StateError, StateStore};
use contracts::services;
use contracts::Timestamp;
use support::*;
use uuid::Uuid;

fn record_action(key: &LimitKey, expect: Expect) -> (Mutation, Uuid) {
    let action_id = Uuid::new_v4();
    let mutation = Mutation::RecordAction {
        key: key.clone(),
        mark: ActionMark {
            action_id,
            at: Timestamp::now(),
            incident_id: Uuid::new_v4(),
            approval_id: None,
        },
        answers_request: None,
        expect,
    };
    (mutation, action_id)
}

/// brain's state store, as one brain instance opens it.
async fn open_store(server: &contracts::local_server::NatsServer) -> StateStore {
    StateStore::open(&connect::<services::Brain>(server).await)
        .await
        .expect("the brain_state bucket opens")
}

fn actions(state: &brain::state::Versioned<brain::limits::LimitState>) -> Vec<Uuid> {
    let Some(state) = &state.value else {
        return Vec::new();
    };
    state.actions.iter().map(|mark| mark.action_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_change_from_the_value_decided_on_loses_to_a_write_since_and_leaves_no_record() {
    let server = provisioned_server().await;
    let store = open_store(&server).await;
    let key = LimitKey {
        action_type: "restart_service".into(),
        target: "web".into(),
    };

    // Two decisions read the same (absent) state; the first to write wins.
    let decided_on = store.limits(&key).await.unwrap();
    let (first, first_id) = record_action(&key, decided_on.expect());
    let (second, second_id) = record_action(&key, decided_on.expect());
    store
        .apply(&first, true, Some(decided_on.clone()))
        .await
        .expect("the first decision's change applies");
    let lost = store.apply(&second, true, Some(decided_on.clone())).await;
    assert!(
        matches!(lost, Err(StateError::Conflict { .. })),
        "a change computed from a value written over since must conflict, got {lost:?}"
    );
    assert_eq!(actions(&store.limits(&key).await.unwrap()), vec![first_id]);
    assert!(store.action(first_id).await.unwrap().is_some());
    assert!(
        store.action(second_id).await.unwrap().is_none(),
        "the losing decision's action record was written with its limits and must be removed"
    );

    // Without an expectation, a stale starting value only costs a second read.
    let (third, third_id) = record_action(&key, Expect::Any);
    store
        .apply(&third, true, Some(decided_on))
        .await
        .expect("an unconditional change applies from a stale value");
    assert_eq!(
        actions(&store.limits(&key).await.unwrap()),
        vec![first_id, third_id]
    );
    assert!(store.action(third_id).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_remembered_from_the_last_write_lose_to_another_instances_write_and_are_forgotten() {
    let server = provisioned_server().await;
    let this = open_store(&server).await;
    let other = open_store(&server).await;
    let key = LimitKey {
        action_type: "restart_service".into(),
        target: "api".into(),
    };
    assert!(this.last_limits(&key).is_none(), "nothing seen yet");

    // What this instance writes is what it remembers, revision included.
    let decided_on = this.limits(&key).await.unwrap();
    let (first, first_id) = record_action(&key, decided_on.expect());
    this.apply(&first, true, Some(decided_on)).await.unwrap();
    let remembered = this.last_limits(&key).expect("a write is remembered");
    let stored = other.limits(&key).await.unwrap();
    assert_eq!(remembered.revision, stored.revision);
    assert_eq!(actions(&remembered), vec![first_id]);

    // Another instance acts on the same key: the memory is now stale, and a decision started
    // from it must not be stored.
    let (theirs, theirs_id) = record_action(&key, Expect::Any);
    other.apply(&theirs, true, None).await.unwrap();
    let (stale, stale_id) = record_action(&key, remembered.expect());
    let lost = this.apply(&stale, true, Some(remembered)).await;
    assert!(
        matches!(lost, Err(StateError::Conflict { .. })),
        "a change started from remembered limits written over since must conflict, got {lost:?}"
    );
    assert!(this.action(stale_id).await.unwrap().is_none());
    assert!(
        this.last_limits(&key).is_none(),
        "after a conflict the next decision must read the key again"
    );
    assert_eq!(
        actions(&this.limits(&key).await.unwrap()),
        vec![first_id, theirs_id]
    );
    assert_eq!(
        this.last_limits(&key).map(|l| actions(&l)),
        Some(vec![first_id, theirs_id]),
        "a read is remembered too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_created_after_the_start_is_taken_as_absent_until_a_write_says_otherwise() {
    let server = provisioned_server().await;
    let other = open_store(&server).await;
    let old = LimitKey {
        action_type: "restart_service".into(),
        target: "old".into(),
    };
    let new = LimitKey {
        action_type: "restart_service".into(),
        target: "new".into(),
    };
    let (before_start, _) = record_action(&old, Expect::Any);
    other.apply(&before_start, true, None).await.unwrap();

    let this = open_store(&server).await;
    this.learn_limit_keys().await.unwrap();
    assert!(
        this.last_limits(&old).is_none(),
        "a key stored before the start must be read"
    );
    let assumed = this
        .last_limits(&new)
        .expect("a key absent at the start is taken as absent");
    assert!(assumed.value.is_none() && assumed.revision.is_none());

    // Another instance creates it: a decision from "absent" loses and the key is read next.
    let (theirs, theirs_id) = record_action(&new, Expect::Any);
    other.apply(&theirs, true, None).await.unwrap();
    let (stale, stale_id) = record_action(&new, assumed.expect());
    let lost = this.apply(&stale, true, Some(assumed)).await;
    assert!(
        matches!(lost, Err(StateError::Conflict { .. })),
        "a change from an assumed absence must conflict with a key created since, got {lost:?}"
    );
    assert!(this.action(stale_id).await.unwrap().is_none());
    assert!(this.last_limits(&new).is_none());
    assert_eq!(actions(&this.limits(&new).await.unwrap()), vec![theirs_id]);
}
