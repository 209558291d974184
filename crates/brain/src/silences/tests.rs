use super::*;
use contracts::signing::SigningKey;
use serde_json::json;

pub(crate) fn at(s: i64) -> Timestamp {
    Timestamp(time::OffsetDateTime::from_unix_timestamp(1_800_000_000 + s).unwrap())
}

pub(crate) const ID: &str = "5b0d2c9e-8f1a-4c3b-9e7d-2a4f6b8c0d13";

/// An active silence by `who` from `at(0)` to `at(ends_s)`, matching `criteria`.
pub(crate) fn active(who: &str, ends_s: i64, criteria: Value) -> Value {
    json!({
        "version": "1.0",
        "silence_id": ID,
        "timestamp": at(0).to_string(),
        "source": "orion-approval-cli",
        "state": "active",
        "admin_identity": who,
        "created_by": who,
        "created_at": at(0).to_string(),
        "reason": "database migration",
        "starts_at": at(0).to_string(),
        "ends_at": at(ends_s).to_string(),
        "match": criteria
    })
}

pub(crate) fn lifted(original: &Value, by: &str) -> Value {
    let mut lift = original.clone();
    lift["state"] = json!("lifted");
    lift["admin_identity"] = json!(by);
    lift["lifted_at"] = json!(at(60).to_string());
    lift["lift_reason"] = json!("done early");
    lift
}

pub(crate) struct Admins {
    pub alice: SigningKey,
    pub bob: SigningKey,
    pub keyring: Verifier,
}

pub(crate) fn admins() -> Admins {
    let (alice, _) = SigningKey::generate("alice");
    let (bob, _) = SigningKey::generate("bob");
    let mut keyring = Verifier::default();
    keyring.add("alice", &alice.public_key_base64()).unwrap();
    keyring.add("bob", &bob.public_key_base64()).unwrap();
    Admins {
        alice,
        bob,
        keyring,
    }
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// Applies `message` signed by `key` as stream message `seq`.
pub(crate) fn apply_signed(
    book: &mut SilenceBook,
    seq: u64,
    message: &Value,
    key: &SigningKey,
    keyring: &Verifier,
) -> Applied {
    book.apply(seq, &bytes(message), Some(&key.sign(message)), keyring)
}

/// A book holding one active silence by alice (1 hour, matching `criteria`).
pub(crate) fn book_with(criteria: Value) -> SilenceBook {
    let a = admins();
    let mut book = SilenceBook::default();
    let applied = apply_signed(
        &mut book,
        1,
        &active("alice", 3600, criteria),
        &a.alice,
        &a.keyring,
    );
    assert!(matches!(applied, Applied::Created(_)), "{applied:?}");
    book
}

fn web() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("service_name".to_string(), "web".to_string()),
        ("env".to_string(), "prod".to_string()),
    ])
}

fn subject<'a>(
    target: Option<&'a str>,
    kind: &'a str,
    tags: &'a BTreeMap<String, String>,
) -> Subject<'a> {
    Subject {
        target,
        incident_type: kind,
        tags,
    }
}

fn refused(applied: Applied) -> String {
    match applied {
        Applied::Refused(r) => r.why,
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn a_signed_silence_applies_from_its_start_until_its_end() {
    let book = book_with(json!({"target": "web"}));
    let tags = web();
    let s = subject(Some("web"), "service_outage", &tags);
    assert!(book.matching(&s, at(-1)).is_empty(), "not before it starts");
    assert_eq!(book.matching(&s, at(0)).len(), 1);
    assert_eq!(book.matching(&s, at(3599)).len(), 1);
    assert!(
        book.matching(&s, at(3600)).is_empty(),
        "at ends_at it has expired"
    );
    let entry = book.matching(&s, at(10))[0];
    assert_eq!(entry.created_by, "alice");
    assert_eq!(entry.reason, "database migration");
    assert_eq!(entry.silence_id.to_string(), ID);
}

#[test]
fn every_criterion_given_must_match() {
    let tags = web();
    let book = book_with(json!({
        "target": "web",
        "incident_type": "service_outage",
        "tags": {"env": "prod"}
    }));
    let now = at(10);
    assert_eq!(
        book.matching(&subject(Some("web"), "service_outage", &tags), now)
            .len(),
        1
    );
    assert!(book
        .matching(&subject(Some("api"), "service_outage", &tags), now)
        .is_empty());
    assert!(book
        .matching(&subject(None, "service_outage", &tags), now)
        .is_empty());
    assert!(book
        .matching(&subject(Some("web"), "metric_anomaly", &tags), now)
        .is_empty());
    let staging = BTreeMap::from([("env".to_string(), "staging".to_string())]);
    assert!(book
        .matching(&subject(Some("web"), "service_outage", &staging), now)
        .is_empty());
    let none = BTreeMap::new();
    assert!(book
        .matching(&subject(Some("web"), "service_outage", &none), now)
        .is_empty());

    let by_type = book_with(json!({"incident_type": "service_outage"}));
    assert_eq!(
        by_type
            .matching(&subject(None, "service_outage", &none), now)
            .len(),
        1,
        "an incident-type silence needs no target"
    );
    let by_tag = book_with(json!({"tags": {"service_name": "web"}}));
    assert_eq!(
        by_tag
            .matching(&subject(None, "edge_device_failure", &tags), now)
            .len(),
        1
    );
}

#[test]
fn unsigned_forged_tampered_and_unknown_signer_silences_are_refused() {
    let a = admins();
    let mut book = SilenceBook::default();
    let message = active("alice", 3600, json!({"target": "web"}));

    let why = refused(book.apply(1, &bytes(&message), None, &a.keyring));
    assert!(why.contains("no Orion-Signature"), "{why}");

    // Signed by bob's key while claiming alice.
    let forged = a.bob.sign(&message);
    let why = refused(book.apply(2, &bytes(&message), Some(&forged), &a.keyring));
    assert!(why.contains("forged or altered"), "{why}");

    // Signed by alice, then the window stretched.
    let signature = a.alice.sign(&message);
    let mut tampered = message.clone();
    tampered["ends_at"] = json!(at(7200).to_string());
    let why = refused(book.apply(3, &bytes(&tampered), Some(&signature), &a.keyring));
    assert!(why.contains("forged or altered"), "{why}");

    // A key nobody listed in [[admins]].
    let (mallory, _) = SigningKey::generate("mallory");
    let theirs = active("mallory", 3600, json!({"target": "web"}));
    let why = refused(apply_signed(&mut book, 4, &theirs, &mallory, &a.keyring));
    assert!(why.contains("not an administrator"), "{why}");

    let why = refused(book.apply(5, b"{not json", None, &a.keyring));
    assert!(why.contains("not a valid orion.silence.v1"), "{why}");

    assert_eq!(book.silences().count(), 0);
    assert_eq!(book.refused().count(), 5);
    assert_eq!(book.read_to, 5);
}

#[test]
fn an_active_silence_is_signed_by_its_creator_within_seven_days() {
    let a = admins();
    let mut book = SilenceBook::default();
    let mut other = active("alice", 3600, json!({"target": "web"}));
    other["admin_identity"] = json!("bob");
    let why = refused(apply_signed(&mut book, 1, &other, &a.bob, &a.keyring));
    assert!(why.contains("created by `alice`"), "{why}");

    let week = MAX_WINDOW.whole_seconds();
    let too_long = active("alice", week + 1, json!({"target": "web"}));
    let why = refused(apply_signed(&mut book, 2, &too_long, &a.alice, &a.keyring));
    assert!(why.contains("longer than the maximum of 7 days"), "{why}");

    let backwards = active("alice", -10, json!({"target": "web"}));
    let why = refused(apply_signed(&mut book, 3, &backwards, &a.alice, &a.keyring));
    assert!(why.contains("ends at"), "{why}");

    let exactly = active("alice", week, json!({"target": "web"}));
    assert!(matches!(
        apply_signed(&mut book, 4, &exactly, &a.alice, &a.keyring),
        Applied::Created(_)
    ));
}

#[test]
fn a_lift_is_final_and_only_an_administrator_lifts() {
    let a = admins();
    let mut book = SilenceBook::default();
    let message = active("alice", 3600, json!({"target": "web"}));
    let id: Uuid = ID.parse().unwrap();
    assert_eq!(
        apply_signed(&mut book, 1, &message, &a.alice, &a.keyring),
        Applied::Created(id)
    );
    assert_eq!(
        apply_signed(&mut book, 2, &message, &a.alice, &a.keyring),
        Applied::Unchanged(id),
        "the same silence again changes nothing"
    );
    // Same id, another window: refused.
    let mut changed = message.clone();
    changed["ends_at"] = json!(at(1800).to_string());
    refused(apply_signed(&mut book, 3, &changed, &a.alice, &a.keyring));

    // A lift signed by someone who is not an administrator does nothing.
    let (mallory, _) = SigningKey::generate("mallory");
    refused(apply_signed(
        &mut book,
        4,
        &lifted(&message, "mallory"),
        &mallory,
        &a.keyring,
    ));
    let tags = web();
    let s = subject(Some("web"), "service_outage", &tags);
    assert_eq!(book.matching(&s, at(100)).len(), 1);

    // bob lifts alice's silence.
    assert_eq!(
        apply_signed(&mut book, 5, &lifted(&message, "bob"), &a.bob, &a.keyring),
        Applied::Lifted(id)
    );
    assert!(book.matching(&s, at(100)).is_empty());
    let lift = book.get(id).unwrap().lifted.clone().unwrap();
    assert_eq!(lift.by, "bob");
    assert_eq!(lift.reason, "done early");

    // The active message replayed after the lift: still lifted.
    refused(apply_signed(&mut book, 6, &message, &a.alice, &a.keyring));
    assert!(book.matching(&s, at(100)).is_empty());

    // A lift of a silence brain never held.
    let mut unknown = lifted(&message, "bob");
    unknown["silence_id"] = json!("0c8f1e2d-3b4a-4d5e-8f6a-7b8c9d0e1f21");
    let why = refused(apply_signed(&mut book, 7, &unknown, &a.bob, &a.keyring));
    assert!(why.contains("does not hold"), "{why}");
}

#[test]
fn ended_silences_are_pruned_and_refusals_are_bounded() {
    let mut book = book_with(json!({"target": "web"}));
    book.prune(at(3599));
    assert_eq!(book.silences().count(), 1);
    book.prune(at(3600));
    assert_eq!(book.silences().count(), 0);

    let a = admins();
    for seq in 0..(REFUSALS_KEPT as u64 + 5) {
        book.apply(seq, b"[]", None, &a.keyring);
    }
    assert_eq!(book.refused().count(), REFUSALS_KEPT);
    assert_eq!(book.refused().next().unwrap().stream_sequence, 5);
}
