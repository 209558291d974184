//! Ops command signatures as ops-worker checks them: the received bytes parsed as JSON, the
//! signing payload canonicalized (RFC 8785), and the signature verified against a fixed test
//! key. Never panics; a command signed with the key verifies; the canonical payload is a fixed
//! point (canonicalizing its own parse gives the same bytes).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use ops_client::signing::{signing_payload, SigningKeys};
use serde_json::Value;

/// The SPEC §5 test vector's key (fixtures/ops_signing/vector.json): a test key, not a secret.
static KEYS: LazyLock<SigningKeys> = LazyLock::new(|| {
    SigningKeys::new(&["test-ops-secret-32chars!!!!!!!!".to_string()]).expect("the test key")
});

fuzz_target!(|data: &[u8]| {
    let Ok(command) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = KEYS.verify(&command);
    let Ok(payload) = signing_payload(&command) else {
        return;
    };
    let reparsed: Value = serde_json::from_slice(&payload).expect("a canonical payload is JSON");
    let again = serde_json_canonicalizer::to_vec(&reparsed).expect("canonicalizes again");
    assert_eq!(payload, again, "canonicalization is not idempotent");
    if let Ok(signed) = KEYS.signed(&command) {
        assert_eq!(
            KEYS.verify(&signed).ok(),
            Some(0),
            "a command signed with the key does not verify"
        );
    }
});
