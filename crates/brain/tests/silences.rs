//! Signed silences end to end on a real nats-server with the generated permissions: a silence
//! an administrator signed holds brain back on what it matches, until it is lifted or ends;
//! unsigned, forged and tampered silences never apply; silences stored before brain started
//! apply to the first incident it takes up.

mod support;

use contracts::signing::SigningKey;
use contracts::Timestamp;
use serde_json::json;
use support::*;

fn kind(decision: &contracts::Decision) -> String {
    decision.decision_type.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_silence_holds_brain_back_on_its_target_until_it_is_lifted() {
    let server = provisioned_server().await;
    let (alice, _) = SigningKey::generate("alice");
    let (bob, _) = SigningKey::generate("bob");
    let text = policy("N3", &[&alice, &bob], 300, "");

    // Stored before brain starts: brain reads it before it takes up any incident.
    let web = silence("alice", json!({"target": "web"}), 3600);
    publish_signed_silence(&server, &web, &alice).await;
    let mut brain = RunningBrain::start(&server, &text).await;
    assert!(
        brain.silences.borrow().get(web.silence_id).is_some(),
        "brain started without the silence stored before it"
    );
    let mut seen = Observer::new(&server).await;

    let outage = incident("service_outage", "high", &[("service_name", "web")]);
    publish_incident(&server, &outage).await;
    let decision = seen.decision().await;
    let why = reasoning(&decision);
    assert_eq!(kind(&decision), "NO_ACTION", "{why}");
    assert_eq!(decision.incident_id, outage.incident_id);
    for needle in [
        format!("silence {} by alice until {}", web.silence_id, web.ends_at),
        "\"database migration in test\"".to_string(),
        format!("approval-cli unsilence {}", web.silence_id),
    ] {
        assert!(why.contains(&needle), "{needle:?} not in {why}");
    }
    assert_eq!(decision.tags["silence_id"], web.silence_id.to_string());
    seen.no_action().await;

    // Another target is not silenced.
    let api = incident("service_outage", "high", &[("service_name", "api")]);
    publish_incident(&server, &api).await;
    let decision = seen.decision().await;
    assert_eq!(
        kind(&decision),
        "EXECUTE_SAFE_ACTION",
        "{}",
        reasoning(&decision)
    );
    let action = seen.action().await;
    assert_eq!(
        action.parameters.service_name.as_ref().unwrap().as_str(),
        "api"
    );

    // bob lifts alice's silence: the next incident on web acts again.
    let lifted = lift(&web, "bob");
    publish_signed_silence(&server, &lifted, &bob).await;
    let id = web.silence_id;
    brain
        .wait_silences(|b| b.get(id).is_some_and(|s| s.lifted.is_some()))
        .await;
    let again = incident("service_outage", "high", &[("service_name", "web")]);
    publish_incident(&server, &again).await;
    let decision = seen.decision().await;
    assert_eq!(
        kind(&decision),
        "EXECUTE_SAFE_ACTION",
        "{}",
        reasoning(&decision)
    );
    assert_eq!(decision.incident_id, again.incident_id);
    let action = seen.action().await;
    assert_eq!(
        action.parameters.service_name.as_ref().unwrap().as_str(),
        "web"
    );

    // A restarted brain reads the lift too: the silence stays lifted.
    brain.stop().await;
    let brain = RunningBrain::start(&server, &text).await;
    assert!(brain
        .silences
        .borrow()
        .get(id)
        .is_some_and(|s| s.lifted.as_ref().is_some_and(|l| l.by == "bob")));
    seen.quiet().await;
    brain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_ends_on_its_own() {
    let server = provisioned_server().await;
    let (alice, _) = SigningKey::generate("alice");
    let mut brain = RunningBrain::start(&server, &policy("N3", &[&alice], 300, "")).await;
    let mut seen = Observer::new(&server).await;

    // An incident-type silence for a few seconds.
    let short = silence("alice", json!({"incident_type": "service_outage"}), 3);
    publish_signed_silence(&server, &short, &alice).await;
    let id = short.silence_id;
    brain.wait_silences(|b| b.get(id).is_some()).await;
    publish_incident(
        &server,
        &incident("service_outage", "high", &[("service_name", "web")]),
    )
    .await;
    let decision = seen.decision().await;
    assert_eq!(kind(&decision), "NO_ACTION", "{}", reasoning(&decision));
    assert!(reasoning(&decision).contains(&id.to_string()));

    // Time itself is the condition: wait for its end (a deadline, not a guess), then the next
    // incident acts.
    let left = short.ends_at.0 - Timestamp::now().0;
    if left.is_positive() {
        tokio::time::sleep(left.unsigned_abs() + std::time::Duration::from_millis(50)).await;
    }
    publish_incident(
        &server,
        &incident("service_outage", "high", &[("service_name", "web")]),
    )
    .await;
    let decision = seen.decision().await;
    assert_eq!(
        kind(&decision),
        "EXECUTE_SAFE_ACTION",
        "{}",
        reasoning(&decision)
    );
    seen.action().await;
    brain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_forged_and_tampered_silences_are_never_applied() {
    let server = provisioned_server().await;
    let (alice, _) = SigningKey::generate("alice");
    let (mallory, _) = SigningKey::generate("mallory");
    let mut brain = RunningBrain::start(&server, &policy("N3", &[&alice], 300, "")).await;
    let mut seen = Observer::new(&server).await;
    let criteria = json!({"target": "web"});

    // Unsigned.
    publish_silence(&server, &silence("alice", criteria.clone(), 3600), None).await;
    // Signed by a key that is not an administrator's, in its own name…
    let theirs = silence("mallory", criteria.clone(), 3600);
    publish_signed_silence(&server, &theirs, &mallory).await;
    // … and in alice's name.
    publish_signed_silence(&server, &silence("alice", criteria.clone(), 3600), &mallory).await;
    // Signed by alice for `api`, then altered to silence `web`.
    let genuine = silence("alice", json!({"target": "api"}), 3600);
    let signature = alice.sign(&contracts::to_value(&genuine).unwrap());
    let mut tampered = genuine.clone();
    tampered.match_.target = Some("web".parse().unwrap());
    publish_silence(&server, &tampered, Some(signature)).await;
    // Longer than 7 days, signed by alice.
    let too_long = silence("alice", criteria.clone(), 8 * 86_400);
    publish_signed_silence(&server, &too_long, &alice).await;

    brain.wait_silences(|b| b.refused().count() == 5).await;
    let book = brain.silences.borrow().clone();
    assert_eq!(book.silences().count(), 0, "{book:?}");
    let reasons: Vec<String> = book.refused().map(|r| r.why.clone()).collect();
    for (i, needle) in [
        "no Orion-Signature",
        "`mallory` is not an administrator",
        "forged or altered",
        "forged or altered",
        "longer than the maximum of 7 days",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            reasons[i].contains(needle),
            "{i}: {needle:?} not in {reasons:?}"
        );
    }

    // brain still runs, and acts on web.
    publish_incident(
        &server,
        &incident("service_outage", "high", &[("service_name", "web")]),
    )
    .await;
    let decision = seen.decision().await;
    assert_eq!(
        kind(&decision),
        "EXECUTE_SAFE_ACTION",
        "{}",
        reasoning(&decision)
    );
    seen.action().await;

    // A non-admin cannot lift a genuine silence either.
    let real = silence("alice", json!({"target": "db"}), 3600);
    publish_signed_silence(&server, &real, &alice).await;
    publish_signed_silence(&server, &lift(&real, "mallory"), &mallory).await;
    brain.wait_silences(|b| b.refused().count() == 6).await;
    assert!(brain
        .silences
        .borrow()
        .get(real.silence_id)
        .is_some_and(|s| s.lifted.is_none()));
    brain.stop().await;
}
