//! Integration tests of `ops_client::signing`: the SPEC §5 vector, the signed fixtures, every
//! rejection, key rotation, weak secrets, and RFC 8785 canonicalization on tricky input.

use std::path::{Path, PathBuf};

use ops_client::signing::{
    signing_payload, SignatureError, SigningKeys, WeakReason, WeakSecret, MIN_SECRET_BYTES,
};
use serde_json::{json, Value};

/// A second, unrelated secret (never used anywhere but here).
const OTHER_SECRET: &str = "n9Vb2Kq7Zr4Xw1Lm8Pt3Hs6Jd0Fy5Ce";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read_json(relative: &str) -> Value {
    let path = repo_root().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

struct Vector {
    secret: String,
    command: Value,
    signature: String,
}

fn vector() -> Vector {
    let v = read_json("fixtures/ops_signing/vector.json");
    Vector {
        secret: v["secret"].as_str().unwrap().to_owned(),
        command: v["command"].clone(),
        signature: v["signature"].as_str().unwrap().to_owned(),
    }
}

fn test_keys() -> SigningKeys {
    SigningKeys::new(&[vector().secret]).unwrap()
}

fn other_keys() -> SigningKeys {
    SigningKeys::new(&[OTHER_SECRET.to_owned()]).unwrap()
}

/// Every `fixtures/ops_command/valid/*.json`, as (file name, raw parsed value).
fn valid_fixtures() -> Vec<(String, Value)> {
    let dir = repo_root().join("fixtures/ops_command/valid");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            (name, serde_json::from_slice(&bytes).unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn fixture(name: &str) -> Value {
    read_json(&format!("fixtures/ops_command/valid/{name}"))
}

fn payload_text(command: &Value) -> String {
    String::from_utf8(signing_payload(command).unwrap()).unwrap()
}

/// Wraps `fields` into a minimal command object so that it goes through `signing_payload`.
fn with_meta(mut fields: Value) -> Value {
    fields["meta"] = json!({"initiator_id": "i", "reason": "r"});
    fields
}

// ---------------------------------------------------------------------------------------------
// The SPEC vector and the fixtures
// ---------------------------------------------------------------------------------------------

#[test]
fn spec_vector_signs_to_the_expected_hex() {
    let v = vector();
    let keys = test_keys();
    assert_eq!(
        payload_text(&v.command),
        r#"{"id":"00000000-0000-0000-0000-000000000001","meta":{"initiator_id":"operator-1","reason":"test"},"target":"all","ts":"2026-02-14T12:00:00.000Z","type":"halt","v":1}"#
    );
    assert_eq!(keys.sign(&v.command).unwrap(), v.signature);
    assert_eq!(
        v.signature,
        "8fcc63021f7409861b63d4c117fd1100f7b40e39fc800c28750d6c4f6ecc7349"
    );

    let signed = keys.signed(&v.command).unwrap();
    assert_eq!(signed["meta"]["signature"], json!(v.signature));
    assert_eq!(keys.verify(&signed).unwrap(), 0);
    // `signed` changes nothing but meta.signature.
    let mut stripped = signed.clone();
    stripped["meta"]
        .as_object_mut()
        .unwrap()
        .remove("signature");
    assert_eq!(stripped, v.command);
    // ... and the vector is the fixture `signed_halt_all.json`.
    assert_eq!(signed, fixture("signed_halt_all.json"));
}

#[test]
fn every_valid_fixture_verifies_with_the_test_key() {
    let keys = test_keys();
    let fixtures = valid_fixtures();
    assert!(
        fixtures.len() >= 11,
        "expected the signed fixtures, found {}",
        fixtures.len()
    );
    for (name, command) in &fixtures {
        assert_eq!(
            keys.verify(command)
                .unwrap_or_else(|e| panic!("{name}: {e}")),
            0,
            "{name}"
        );
        // Re-signing reproduces the producer's signature byte for byte.
        assert_eq!(
            Value::String(keys.sign(command).unwrap()),
            command["meta"]["signature"],
            "{name}"
        );
        assert!(
            matches!(other_keys().verify(command), Err(SignatureError::Mismatch)),
            "{name} must not verify with another key"
        );
    }
}

#[test]
fn signed_with_another_key_does_not_verify() {
    let v = vector();
    let signed_elsewhere = other_keys().signed(&v.command).unwrap();
    assert!(matches!(
        test_keys().verify(&signed_elsewhere),
        Err(SignatureError::Mismatch)
    ));
    assert_eq!(other_keys().verify(&signed_elsewhere).unwrap(), 0);
}

/// The typed struct normalizes UUID case and drops an empty `params`, so verifying a
/// re-serialized typed command would reject genuine commands: verification must use the raw
/// received value.
#[test]
fn re_serialized_typed_commands_do_not_verify_raw_ones_do() {
    let keys = test_keys();
    for name in ["uppercase_uuid_id.json", "disarm.json"] {
        let bytes =
            std::fs::read(repo_root().join("fixtures/ops_command/valid").join(name)).unwrap();
        let raw: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(keys.verify(&raw).unwrap(), 0, "{name}");
        let typed: contracts::OpsCommand = contracts::decode(&bytes).unwrap();
        let round_tripped = serde_json::to_value(&typed).unwrap();
        assert_ne!(
            round_tripped, raw,
            "{name}: expected the typed round trip to normalize"
        );
        assert!(
            matches!(keys.verify(&round_tripped), Err(SignatureError::Mismatch)),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Rejections
// ---------------------------------------------------------------------------------------------

fn assert_tamper_rejected(name: &str, what: &str, tamper: impl FnOnce(&mut Value)) {
    let keys = test_keys();
    let mut command = fixture(name);
    assert_eq!(keys.verify(&command).unwrap(), 0);
    tamper(&mut command);
    match keys.verify(&command) {
        Err(SignatureError::Mismatch) => {}
        other => panic!("{name}: tampering with {what} must give Mismatch, got {other:?}"),
    }
}

#[test]
fn tampered_fields_are_rejected() {
    let d = "deploy_with_image.json";
    assert_tamper_rejected(d, "id", |c| {
        c["id"] = json!("bb582802-462b-416b-8a25-30ab4c6274d4");
    });
    assert_tamper_rejected(d, "id case", |c| {
        c["id"] = json!("BB582802-462B-416B-8A25-30AB4C6274D3");
    });
    assert_tamper_rejected(d, "ts", |c| c["ts"] = json!("2026-02-14T12:10:01.125Z"));
    assert_tamper_rejected(d, "ts precision", |c| {
        c["ts"] = json!("2026-02-14T12:10:00.1250Z")
    });
    assert_tamper_rejected(d, "type", |c| c["type"] = json!("restart"));
    assert_tamper_rejected(d, "target", |c| c["target"] = json!("all"));
    assert_tamper_rejected(d, "v", |c| c["v"] = json!(2));
    assert_tamper_rejected(d, "params.timeout_s", |c| {
        c["params"]["timeout_s"] = json!(121)
    });
    assert_tamper_rejected(d, "params.image", |c| {
        c["params"]["image"] = json!("registry.local/payments:6.6.6");
    });
    assert_tamper_rejected(d, "a params key added", |c| {
        c["params"]["replicas"] = json!(3)
    });
    assert_tamper_rejected(d, "params number type", |c| {
        c["params"]["timeout_s"] = json!("120");
    });
    assert_tamper_rejected(d, "meta.reason", |c| {
        c["meta"]["reason"] = json!("release 1.4.3")
    });
    assert_tamper_rejected(d, "meta.initiator_id", |c| {
        c["meta"]["initiator_id"] = json!("operator-2");
    });
    assert_tamper_rejected(d, "an unknown top-level field", |c| {
        c["extra"] = json!(true)
    });
    assert_tamper_rejected("signed_halt_all.json", "target", |c| {
        c["target"] = json!("")
    });
}

#[test]
fn params_absent_and_empty_sign_differently() {
    // Signed without params: adding `params: {}` breaks the signature.
    assert_tamper_rejected("arm_without_params.json", "params added as {}", |c| {
        c["params"] = json!({});
    });
    assert_tamper_rejected("signed_halt_all.json", "params added as {}", |c| {
        c["params"] = json!({});
    });
    // Signed with `params: {}`: removing it breaks the signature.
    assert_tamper_rejected("disarm.json", "params removed", |c| {
        c.as_object_mut().unwrap().remove("params");
    });
    assert_tamper_rejected("cancel_all_empty_target.json", "params removed", |c| {
        c.as_object_mut().unwrap().remove("params");
    });

    let without = vector().command;
    let mut with_empty = without.clone();
    with_empty["params"] = json!({});
    assert!(!payload_text(&without).contains("params"));
    assert!(payload_text(&with_empty).contains(r#""params":{}"#));
    assert_ne!(
        test_keys().sign(&without).unwrap(),
        test_keys().sign(&with_empty).unwrap()
    );
}

#[test]
fn uppercase_hex_of_the_correct_signature_is_rejected() {
    let keys = test_keys();
    let mut command = fixture("signed_halt_all.json");
    let upper = command["meta"]["signature"]
        .as_str()
        .unwrap()
        .to_uppercase();
    command["meta"]["signature"] = json!(upper);
    assert!(matches!(
        keys.verify(&command),
        Err(SignatureError::NotLowercaseHex)
    ));

    // A single uppercase digit is enough to refuse it.
    let mut command = fixture("signed_halt_all.json");
    let mixed = command["meta"]["signature"]
        .as_str()
        .unwrap()
        .replacen('f', "F", 1);
    command["meta"]["signature"] = json!(mixed);
    assert!(matches!(
        keys.verify(&command),
        Err(SignatureError::NotLowercaseHex)
    ));
}

#[test]
fn malformed_signatures_are_rejected() {
    let keys = test_keys();
    let good = vector().signature;
    let cases: Vec<(Value, &str)> = vec![
        (json!(format!("0x{good}")), "NotLowercaseHex"),
        (json!(&good[..63]), "NotLowercaseHex"),
        (json!(format!("{good} ")), "NotLowercaseHex"),
        (json!(""), "NotLowercaseHex"),
        (
            json!("j8xjAh90CYYbY9QRF/0RAPe0DjnIAMKHUNbE9uzHNJk="),
            "NotLowercaseHex",
        ),
        (json!(null), "NotAString"),
        (json!(42), "NotAString"),
        (json!("0".repeat(64)), "Mismatch"),
    ];
    for (signature, expected) in cases {
        let mut command = vector().command;
        command["meta"]["signature"] = signature.clone();
        let err = keys.verify(&command).unwrap_err();
        assert_eq!(format!("{err:?}"), expected, "signature {signature}");
    }
}

#[test]
fn missing_signature_meta_or_object_is_rejected() {
    let keys = test_keys();

    let unsigned = vector().command;
    assert!(matches!(
        keys.verify(&unsigned),
        Err(SignatureError::Missing)
    ));

    let mut no_meta = fixture("signed_halt_all.json");
    no_meta.as_object_mut().unwrap().remove("meta");
    assert!(matches!(
        keys.verify(&no_meta),
        Err(SignatureError::MetaMissing)
    ));
    assert!(matches!(
        keys.sign(&no_meta),
        Err(SignatureError::MetaMissing)
    ));
    assert!(matches!(
        signing_payload(&no_meta),
        Err(SignatureError::MetaMissing)
    ));

    let mut null_meta = fixture("signed_halt_all.json");
    null_meta["meta"] = Value::Null;
    assert!(matches!(
        keys.verify(&null_meta),
        Err(SignatureError::MetaNotAnObject)
    ));

    let mut no_reason = fixture("signed_halt_all.json");
    no_reason["meta"].as_object_mut().unwrap().remove("reason");
    assert!(matches!(
        keys.verify(&no_reason),
        Err(SignatureError::MetaFieldMissing("reason"))
    ));
    let mut no_initiator = fixture("signed_halt_all.json");
    no_initiator["meta"]
        .as_object_mut()
        .unwrap()
        .remove("initiator_id");
    assert!(matches!(
        keys.sign(&no_initiator),
        Err(SignatureError::MetaFieldMissing("initiator_id"))
    ));

    for not_object in [json!([1, 2]), json!("halt"), json!(null), json!(1)] {
        assert!(matches!(
            keys.verify(&not_object),
            Err(SignatureError::NotAnObject)
        ));
        assert!(matches!(
            keys.sign(&not_object),
            Err(SignatureError::NotAnObject)
        ));
    }

    // Operator-facing messages say what is wrong.
    assert!(SignatureError::Missing
        .to_string()
        .contains("meta.signature"));
    assert!(SignatureError::NotLowercaseHex
        .to_string()
        .contains("lowercase hex"));
    assert!(SignatureError::Mismatch
        .to_string()
        .contains("does not match"));
}

#[test]
fn extra_meta_keys_do_not_change_the_payload() {
    let keys = test_keys();
    let base = vector().command;
    let mut extended = fixture("signed_halt_all.json");
    extended["meta"]["client"] = json!("ops-console 2.1");
    extended["meta"]["nonce"] = json!({"n": [1, 2, 3]});
    assert_eq!(
        signing_payload(&extended).unwrap(),
        signing_payload(&base).unwrap()
    );
    assert_eq!(keys.verify(&extended).unwrap(), 0);
    // The signature itself is not part of the payload either.
    let mut other_sig = base.clone();
    other_sig["meta"]["signature"] = json!("whatever");
    assert_eq!(
        signing_payload(&other_sig).unwrap(),
        signing_payload(&base).unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// Key rotation
// ---------------------------------------------------------------------------------------------

#[test]
fn key_rotation() {
    let old = vector().secret;
    let new = OTHER_SECRET.to_owned();
    let rotating = SigningKeys::new(&[new.clone(), old.clone()]).unwrap();
    assert_eq!(rotating.len(), 2);

    // Signed with the old key: verifies with [new, old] and reports index 1.
    for (name, command) in valid_fixtures() {
        assert_eq!(rotating.verify(&command).unwrap(), 1, "{name}");
    }
    // Signing uses the first key.
    let command = vector().command;
    let by_rotating = rotating.sign(&command).unwrap();
    assert_eq!(by_rotating, other_keys().sign(&command).unwrap());
    assert_ne!(by_rotating, vector().signature);
    assert_eq!(
        rotating
            .verify(&rotating.signed(&command).unwrap())
            .unwrap(),
        0
    );
    // The old key alone no longer accepts what the new key signs.
    assert!(matches!(
        test_keys().verify(&rotating.signed(&command).unwrap()),
        Err(SignatureError::Mismatch)
    ));
}

// ---------------------------------------------------------------------------------------------
// Weak secrets
// ---------------------------------------------------------------------------------------------

#[test]
fn weak_secrets_are_refused_without_revealing_them() {
    assert!(matches!(SigningKeys::new(&[]), Err(WeakSecret::NoKeys)));
    assert!(WeakSecret::NoKeys.to_string().contains("OPS_SECRET"));

    let good = OTHER_SECRET.to_owned();
    let cases: Vec<(String, WeakReason)> = vec![
        (String::new(), WeakReason::Empty),
        (
            "hunter2".into(),
            WeakReason::TooShort {
                len: 7,
                min: MIN_SECRET_BYTES,
            },
        ),
        (
            "Zq8vN3xK5pL0wR7tY2mB4cF".into(),
            WeakReason::TooShort { len: 23, min: 24 },
        ),
        ("!".repeat(64), WeakReason::RepeatedCharacter),
        ("0".repeat(MIN_SECRET_BYTES), WeakReason::RepeatedCharacter),
        (
            "changeme-changeme-changeme-now".into(),
            WeakReason::Placeholder,
        ),
        (
            "ChangeMe_before_going_to_production".into(),
            WeakReason::Placeholder,
        ),
        (
            "SECRET_KEY_FOR_THE_OPS_WORKER_123".into(),
            WeakReason::Placeholder,
        ),
        ("secret".repeat(5), WeakReason::Placeholder),
        (
            "Password1234567890-ops-worker".into(),
            WeakReason::Placeholder,
        ),
        (
            "${OPS_SECRET:-please-set-this-value}".into(),
            WeakReason::Placeholder,
        ),
        (format!("{good}\n"), WeakReason::SurroundingWhitespace),
        (format!(" {good}"), WeakReason::SurroundingWhitespace),
    ];
    for (secret, reason) in cases {
        for (secrets, index) in [
            (vec![secret.clone()], 0),
            (vec![good.clone(), secret.clone()], 1),
        ] {
            let count = secrets.len();
            let err = SigningKeys::new(&secrets).unwrap_err();
            assert_eq!(
                err,
                WeakSecret::Weak {
                    index,
                    count,
                    reason: reason.clone()
                },
                "secret {secret:?}"
            );
            let message = err.to_string();
            let debug = format!("{err:?}");
            assert!(
                message.contains(&format!("#{} of {count}", index + 1)),
                "message must name the key: {message}"
            );
            if !secret.trim().is_empty() {
                assert!(
                    !message.contains(secret.trim()),
                    "message leaks the secret: {message}"
                );
                assert!(
                    !debug.contains(secret.trim()),
                    "debug leaks the secret: {debug}"
                );
            }
        }
    }
    // The refused key is named even when an earlier one is fine and a later one is weak too.
    let err = SigningKeys::new(&[good.clone(), "short".into(), String::new()]).unwrap_err();
    assert!(
        matches!(
            err,
            WeakSecret::Weak {
                index: 1,
                count: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("#2 of 3"));
}

#[test]
fn accepted_secrets_and_debug_output() {
    let v = vector();
    // The SPEC vector's secret is 31 bytes: accepted.
    assert_eq!(v.secret.len(), 31);
    assert!(v.secret.len() >= MIN_SECRET_BYTES);
    let keys = SigningKeys::new(&[v.secret.clone(), OTHER_SECRET.to_owned()]).unwrap();
    assert_eq!(keys.len(), 2);
    assert!(!keys.is_empty());
    let debug = format!("{keys:?}");
    assert!(
        !debug.contains(&v.secret) && !debug.contains(OTHER_SECRET),
        "{debug}"
    );
    assert!(debug.contains("2"), "{debug}");
    // The key is the UTF-8 text itself: a multi-byte secret works and differs from ASCII ones.
    let unicode = SigningKeys::new(&["clé-secrète-très-longue-€€-42".to_owned()]).unwrap();
    assert_ne!(unicode.sign(&v.command).unwrap(), v.signature);
}

// ---------------------------------------------------------------------------------------------
// RFC 8785 (JCS)
// ---------------------------------------------------------------------------------------------

const RFC8785_INPUT: &str = r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/","literals":[null,true,false]}"#;
const RFC8785_OUTPUT: &str = r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#;

#[test]
fn rfc8785_section_3_2_2_example() {
    let input: Value = serde_json::from_str(RFC8785_INPUT).unwrap();
    // Directly through the crate ...
    assert_eq!(
        serde_json_canonicalizer::to_string(&input).unwrap(),
        RFC8785_OUTPUT
    );
    // ... and through signing_payload (`meta` sorts between "literals" and "numbers").
    let expected = RFC8785_OUTPUT.replacen(
        r#","numbers""#,
        r#","meta":{"initiator_id":"i","reason":"r"},"numbers""#,
        1,
    );
    assert_eq!(payload_text(&with_meta(input)), expected);
}

#[test]
fn rfc8785_utf16_key_ordering() {
    let input = r#"{"params":{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}}"#;
    let value = with_meta(serde_json::from_str(input).unwrap());
    let expected = "{\"meta\":{\"initiator_id\":\"i\",\"reason\":\"r\"},\"params\":{\
        \"\\r\":\"Carriage Return\",\
        \"1\":\"One\",\
        \"\u{80}\":\"Control\",\
        \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\
        \"\u{20ac}\":\"Euro Sign\",\
        \"\u{1f600}\":\"Emoji: Grinning Face\",\
        \"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}}";
    let payload = payload_text(&value);
    assert_eq!(payload, expected);
    // The emoji (U+1F600, UTF-16 D83D DE00) sorts before U+FB33 although its code point is larger.
    assert!(payload.find('\u{1f600}').unwrap() < payload.find('\u{fb33}').unwrap());
}

#[test]
fn key_order_of_the_input_does_not_matter_at_any_level() {
    let a: Value = serde_json::from_str(
        r#"{"v":1,"type":"deploy","params":{"b":{"y":1,"x":{"q":true,"p":null}},"a":[{"k2":2,"k1":1}]},"meta":{"reason":"r","initiator_id":"i"}}"#,
    )
    .unwrap();
    let b: Value = serde_json::from_str(
        r#"{"meta":{"initiator_id":"i","reason":"r"},"params":{"a":[{"k1":1,"k2":2}],"b":{"x":{"p":null,"q":true},"y":1}},"type":"deploy","v":1}"#,
    )
    .unwrap();
    assert_eq!(signing_payload(&a).unwrap(), signing_payload(&b).unwrap());
    assert_eq!(test_keys().sign(&a).unwrap(), test_keys().sign(&b).unwrap());
    assert_eq!(
        payload_text(&a),
        r#"{"meta":{"initiator_id":"i","reason":"r"},"params":{"a":[{"k1":1,"k2":2}],"b":{"x":{"p":null,"q":true},"y":1}},"type":"deploy","v":1}"#
    );
}

#[test]
fn arrays_keep_their_order() {
    let a = with_meta(json!({"params": {"services": ["api", "payments", "worker"]}}));
    let b = with_meta(json!({"params": {"services": ["payments", "api", "worker"]}}));
    assert!(payload_text(&a).contains(r#"["api","payments","worker"]"#));
    assert_ne!(test_keys().sign(&a).unwrap(), test_keys().sign(&b).unwrap());
}

/// Numbers are printed as JavaScript prints the double they denote. The expected texts were
/// checked with node (`JSON.stringify(JSON.parse(input))`).
#[test]
fn numbers_are_printed_as_javascript_prints_them() {
    let cases = [
        ("-0", "0"),
        ("-0.0", "0"),
        ("0.0", "0"),
        ("1.0", "1"),
        ("1E2", "100"),
        ("4.50", "4.5"),
        ("2e-3", "0.002"),
        ("0.1", "0.1"),
        ("0.000001", "0.000001"),
        ("1e-7", "1e-7"),
        ("1e21", "1e+21"),
        ("1E30", "1e+30"),
        ("123456789012345680000", "123456789012345680000"),
        ("333333333.33333329", "333333333.3333333"),
        ("0.000000000000000000000000001", "1e-27"),
        ("5e-324", "5e-324"),
        ("1e-400", "0"),
        ("1.7976931348623157e308", "1.7976931348623157e+308"),
        // Integers beyond 2^53 lose precision exactly as in JavaScript:
        // JSON.stringify(9007199254740993) === "9007199254740992".
        ("9007199254740993", "9007199254740992"),
        ("-9007199254740993", "-9007199254740992"),
        ("18446744073709551615", "18446744073709552000"),
        ("18446744073709551616", "18446744073709552000"),
        ("-9223372036854775808", "-9223372036854776000"),
    ];
    for (input, expected) in cases {
        let value =
            with_meta(serde_json::from_str(&format!(r#"{{"params":{{"n":{input}}}}}"#)).unwrap());
        let payload = payload_text(&value);
        assert_eq!(
            payload,
            format!(
                r#"{{"meta":{{"initiator_id":"i","reason":"r"}},"params":{{"n":{expected}}}}}"#
            ),
            "input {input}"
        );
    }
    // So 9007199254740992 and 9007199254740993 sign identically, as they would in TypeScript.
    let a = with_meta(json!({"params": {"n": 9007199254740992u64}}));
    let b = with_meta(json!({"params": {"n": 9007199254740993u64}}));
    assert_eq!(test_keys().sign(&a).unwrap(), test_keys().sign(&b).unwrap());
}

/// Strings are escaped as `JSON.stringify` does (checked with node): the two-character escapes
/// for \b \t \n \f \r, `\u00xx` (lowercase) for the other controls, `\"` and `\\`; `/`, DEL,
/// U+2028/U+2029 and everything non-ASCII are written as UTF-8.
#[test]
fn strings_are_escaped_as_javascript_does() {
    let input = r#"{"params":{"s":"\u0000\u0001\b\t\n\u000b\f\r\u001f\u007f\u2028\u2029\"\\\/\u00e9\ud83d\ude00"}}"#;
    let value = with_meta(serde_json::from_str(input).unwrap());
    let expected = "{\"meta\":{\"initiator_id\":\"i\",\"reason\":\"r\"},\"params\":{\"s\":\
        \"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f\u{7f}\u{2028}\u{2029}\\\"\\\\/\u{e9}\u{1f600}\"}}";
    assert_eq!(payload_text(&value), expected);
}

/// A tricky command signed the way the TypeScript console does it (node: a JCS canonicalizer
/// over `{...cmd, meta: {initiator_id, reason}}` and `crypto.createHmac('sha256', secret)`),
/// with the HMAC checked again with Python's `hmac` module over the same payload.
#[test]
fn tricky_command_matches_an_independent_implementation() {
    let raw = r#"{"v":1,"id":"AbCdEf00-0000-4000-8000-000000000001","ts":"2026-02-14T12:00:00.5Z","type":"deploy","target":"payments","params":{"zeta":{"b":[3,1,2],"a":-0},"\u00e9":"caf\u00e9 \u20ac \ud83d\ude00","\ufb33":1,"\ud83d\ude00":2,"big":9007199254740993,"f":4.50,"e":1E30,"ctl":"tab\tnl\n\u001f/"},"meta":{"reason":"release \"2\" \\ ok","initiator_id":"op\u00e9rateur","signature":"08188c2b1484ca7b310d6505a0ebeeb1b7b9d4443f64ab05b26a96dfb47e1b18"}}"#;
    let command: Value = serde_json::from_str(raw).unwrap();
    let expected_payload = "{\"id\":\"AbCdEf00-0000-4000-8000-000000000001\",\
        \"meta\":{\"initiator_id\":\"op\u{e9}rateur\",\"reason\":\"release \\\"2\\\" \\\\ ok\"},\
        \"params\":{\"big\":9007199254740992,\"ctl\":\"tab\\tnl\\n\\u001f/\",\"e\":1e+30,\"f\":4.5,\
        \"zeta\":{\"a\":0,\"b\":[3,1,2]},\"\u{e9}\":\"caf\u{e9} \u{20ac} \u{1f600}\",\"\u{1f600}\":2,\"\u{fb33}\":1},\
        \"target\":\"payments\",\"ts\":\"2026-02-14T12:00:00.5Z\",\"type\":\"deploy\",\"v\":1}";
    assert_eq!(payload_text(&command), expected_payload);
    let keys = test_keys();
    assert_eq!(
        keys.sign(&command).unwrap(),
        "08188c2b1484ca7b310d6505a0ebeeb1b7b9d4443f64ab05b26a96dfb47e1b18"
    );
    assert_eq!(keys.verify(&command).unwrap(), 0);
}

/// Where parsing differs from JavaScript, the command is refused rather than signed
/// differently: a lone surrogate escape and a number beyond the range of a double (which
/// `JSON.parse` turns into `Infinity`, printed as `null`) do not parse. Duplicate keys keep the
/// last value, as `JSON.parse` does, so they canonicalize as in TypeScript.
#[test]
fn parsing_edge_cases_match_javascript_or_fail_closed() {
    assert!(serde_json::from_str::<Value>(r#"{"s":"\ud800"}"#).is_err());
    assert!(serde_json::from_str::<Value>(r#"{"n":1e400}"#).is_err());
    let duplicated: Value = serde_json::from_str(
        r#"{"params":{"a":1,"a":2},"meta":{"initiator_id":"x","initiator_id":"i","reason":"r"}}"#,
    )
    .unwrap();
    assert_eq!(
        payload_text(&duplicated),
        r#"{"meta":{"initiator_id":"i","reason":"r"},"params":{"a":2}}"#
    );
}
