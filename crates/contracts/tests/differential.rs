//! `decode`'s and `encode`'s fast paths against their definitions, on generated and mutated messages of every
//! contract and key-value value.
//!
//! The definitions: `decode_reference` parses into a `serde_json::Value`, validates it with the
//! runtime-compiled `jsonschema` validator, normalizes whole floats and deserializes with serde;
//! `encode_reference` builds the message's `Value`, validates it and serializes it. The fast
//! paths (`decode_fast`, `encode_fast`, crates/contracts/src/tape.rs) validate a flat document
//! instead, and may only say "valid, and this is the result". Checked for every input:
//! - whatever the fast path accepts, the definition accepts, with an equal message;
//! - whatever the definition accepts, the fast path accepts too (unless the input repeats a key,
//!   where it defers by design), so it is not "correct" by never answering;
//! - `decode` returns exactly what the definition returns, error text included;
//! - `encode`, on every decoded message and on every typed value plain serde makes of an input
//!   (valid or not), writes the definition's bytes or returns its error, and its fast path
//!   answers for every message the definition encodes.
//!
//! Inputs: every fixture (valid messages, and the messages of the invalid fixtures), each put
//! through up to four mutations (a field removed or added, a value replaced by another type,
//! strings and numbers perturbed, formats broken, whole floats, a key repeated) at positions
//! chosen anywhere in the message.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::OnceLock;

use contracts::Contract;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};

/// What one contract's two paths said about one input.
struct Verdict {
    fast_accepted: bool,
    reference_accepted: bool,
}

fn compare<T: Contract + PartialEq + Debug>(bytes: &[u8]) -> Result<Verdict, String> {
    let reference = contracts::decode_reference::<T>(bytes);
    let fast = contracts::decode_fast::<T>(bytes);
    if let Some(fast) = &fast {
        match &reference {
            Ok(message) if message == fast => {}
            Ok(message) => {
                return Err(format!(
                    "{}: the fast path decoded {fast:?}, the definition {message:?}",
                    T::INFO.name
                ))
            }
            Err(e) => {
                return Err(format!(
                    "{}: the fast path accepted what the definition refuses: {e}",
                    T::INFO.name
                ))
            }
        }
    }
    let decoded = contracts::decode::<T>(bytes);
    if !alike(&decoded, &reference) {
        return Err(format!(
            "{}: decode said {decoded:?}, the definition {reference:?}",
            T::INFO.name
        ));
    }
    // Encode, on the decoded message and on whatever plain serde makes of the input (which the
    // schema may refuse: a typed value is not proof of validity).
    let typed = serde_json::from_slice::<T>(bytes).ok();
    for message in reference.as_ref().ok().into_iter().chain(typed.as_ref()) {
        compare_encode(message)?;
    }
    Ok(Verdict {
        fast_accepted: fast.is_some(),
        reference_accepted: reference.is_ok(),
    })
}

/// `encode` and `encode_keyed` against their definitions: the same bytes and key, or the same
/// error.
fn compare_encode<T: Contract + Debug>(message: &T) -> Result<(), String> {
    let reference = contracts::encode_reference(message);
    if let Some(fast) = contracts::encode_fast(message) {
        match &reference {
            Ok(bytes) if *bytes == fast => {}
            other => {
                return Err(format!(
                    "{}: the fast path encoded {:?}, the definition {other:?}",
                    T::INFO.name,
                    String::from_utf8_lossy(&fast)
                ))
            }
        }
    } else if reference.is_ok() {
        return Err(format!(
            "{}: the fast path deferred on a message the definition encodes: {message:?}",
            T::INFO.name
        ));
    }
    let keyed = contracts::encode_keyed_reference(message);
    if let Some(fast) = contracts::encode_keyed_fast(message) {
        if !matches!(&keyed, Ok(reference) if *reference == fast) {
            return Err(format!(
                "{}: the fast path encoded and keyed {fast:?}, the definition {keyed:?}",
                T::INFO.name
            ));
        }
    }
    let keyed_alike = match (&keyed, &reference) {
        (Ok((bytes, key)), Ok(reference)) => {
            bytes == reference
                && *key
                    == contracts::idempotency_key(T::INFO, &contracts::to_value(message).unwrap())
        }
        (Err(a), Err(b)) => a.to_string() == b.to_string(),
        _ => false,
    };
    if !keyed_alike {
        return Err(format!(
            "{}: encode_keyed said {keyed:?}, encode {reference:?}",
            T::INFO.name
        ));
    }
    let encoded = contracts::encode(message);
    if !alike(&encoded, &reference) {
        return Err(format!(
            "{}: encode said {encoded:?}, the definition {reference:?}",
            T::INFO.name
        ));
    }
    Ok(())
}

/// The same value, or errors with the same text.
fn alike<T: PartialEq>(
    a: &Result<T, contracts::ContractError>,
    b: &Result<T, contracts::ContractError>,
) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a.to_string() == b.to_string(),
        _ => false,
    }
}

type Compare = fn(&[u8]) -> Result<Verdict, String>;

/// Every contract and key-value value, by fixture folder.
fn contracts() -> Vec<(&'static str, Compare)> {
    use contracts::*;
    let all: Vec<(&'static str, Compare)> = vec![
        (Event::INFO.name, compare::<Event>),
        (Incident::INFO.name, compare::<Incident>),
        (Decision::INFO.name, compare::<Decision>),
        (Action::INFO.name, compare::<Action>),
        (ApprovalRequest::INFO.name, compare::<ApprovalRequest>),
        (ApprovalDecision::INFO.name, compare::<ApprovalDecision>),
        (Approval::INFO.name, compare::<Approval>),
        (Outcome::INFO.name, compare::<Outcome>),
        (Notification::INFO.name, compare::<Notification>),
        (
            IncidentAcknowledgement::INFO.name,
            compare::<IncidentAcknowledgement>,
        ),
        (OpsCommand::INFO.name, compare::<OpsCommand>),
        (OpsReceipt::INFO.name, compare::<OpsReceipt>),
        (DeadLetter::INFO.name, compare::<DeadLetter>),
        (Silence::INFO.name, compare::<Silence>),
        (InterlockArmed::INFO.name, compare::<InterlockArmed>),
        (
            InterlockRiskCeiling::INFO.name,
            compare::<InterlockRiskCeiling>,
        ),
    ];
    for info in CONTRACTS.iter().chain(KEY_VALUES) {
        assert!(
            all.iter().any(|(name, _)| *name == info.name),
            "{} is not compared",
            info.name
        );
    }
    all
}

/// The messages of `fixtures/<name>/`, read once.
fn seeds(name: &str) -> &'static [Value] {
    static SEEDS: OnceLock<BTreeMap<String, Vec<Value>>> = OnceLock::new();
    &SEEDS.get_or_init(|| {
        contracts()
            .iter()
            .map(|(name, _)| (name.to_string(), read_seeds(name)))
            .collect()
    })[name]
}

/// The messages of `fixtures/<name>/`: valid ones as they are, invalid ones unwrapped.
fn read_seeds(name: &str) -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name);
    let mut seeds = Vec::new();
    for (kind, wrapped) in [("valid", false), ("invalid", true)] {
        let Ok(entries) = std::fs::read_dir(dir.join(kind)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            seeds.push(if wrapped {
                value["message"].clone()
            } else {
                value
            });
        }
    }
    assert!(!seeds.is_empty(), "no fixtures for {name}");
    seeds
}

/// JSON pointers of every node of `value`, root first.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (key, child) in fields {
                pointers(
                    child,
                    format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// A value of the same type as `old`, perturbed: near-misses of lengths, patterns, formats,
/// bounds and enums.
fn perturbation(pick: u32, old: &Value) -> Value {
    let pick = pick as usize;
    match old {
        Value::String(text) => {
            let half: String = text.chars().take(text.chars().count() / 2).collect();
            let choices = [
                String::new(),
                format!("{text}x"),
                text.to_uppercase(),
                half,
                format!(" {text}"),
                format!("{text}é☃"),
                text.repeat(20),
                text.chars().rev().collect(),
                "not-a-uuid".into(),
                "0b7c6c3e-8f7e-4d39-9d3c-2c0d6f1f7a10".into(),
                "0B7C6C3E-8F7E-4D39-9D3C-2C0D6F1F7A10".into(),
                "2026-02-14T12:00:00Z".into(),
                "2026-02-14T12:00:00.123456+02:00".into(),
                "2026-02-14t12:00:00z".into(),
                "2026-13-01T00:00:00Z".into(),
                "9999-12-31T23:59:59Z".into(),
                "1969-12-31T23:59:59Z".into(),
                "a".repeat(64),
                "critical".into(),
                "restart".into(),
                "all".into(),
                "payments".into(),
            ];
            json!(choices[pick % choices.len()])
        }
        Value::Number(_) => {
            let number = old.as_f64().unwrap_or(0.0);
            let choices = [
                json!(0),
                json!(-1),
                json!(1),
                json!(number.trunc()), // a whole float: `5840.0`
                json!(number + 0.5),
                json!(number + 1.0),
                json!(number - 1.0),
                json!(-number),
                json!(number * 1e6),
                json!(u64::MAX),
                json!(i64::MIN),
                json!(9_007_199_254_740_993.0_f64),
                json!(2),
                json!(4),
                json!(100),
            ];
            choices[pick % choices.len()].clone()
        }
        Value::Bool(b) => json!(!b),
        Value::Array(items) => match pick % 3 {
            0 => json!([]),
            1 => json!([items.first().cloned().unwrap_or(Value::Null)]),
            _ => {
                let mut more = items.clone();
                more.extend(items.iter().cloned());
                Value::Array(more)
            }
        },
        _ => replacement(pick as u32, old),
    }
}

/// A value of any type.
fn replacement(pick: u32, old: &Value) -> Value {
    let choices = [
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(3.0),
        json!(""),
        json!("text"),
        json!([]),
        json!([old.clone()]),
        json!({}),
        json!({ "k": old.clone() }),
    ];
    choices[pick as usize % choices.len()].clone()
}

/// One mutation of `value`, steered by three random numbers.
fn mutate(value: &mut Value, kind: u8, at: u32, pick: u32) {
    let mut all = Vec::new();
    pointers(value, String::new(), &mut all);
    let pointer = all[at as usize % all.len()].clone();
    match kind % 4 {
        // Perturb the node (the root too) within its type.
        0 => {
            let node = value.pointer_mut(&pointer).unwrap();
            *node = perturbation(pick, node);
        }
        // Replace it with a value of any type.
        1 => {
            let node = value.pointer_mut(&pointer).unwrap();
            *node = replacement(pick, node);
        }
        // Remove it from its parent.
        2 => {
            let Some(split) = pointer.rfind('/') else {
                return;
            };
            let (parent, last) = (&pointer[..split], &pointer[split + 1..]);
            match value.pointer_mut(parent).unwrap() {
                Value::Object(fields) => {
                    fields.remove(&last.replace("~1", "/").replace("~0", "~"));
                }
                Value::Array(items) => {
                    items.remove(last.parse::<usize>().unwrap());
                }
                _ => unreachable!(),
            }
        }
        // Add a member next to it, or an element.
        _ => match value.pointer_mut(&pointer).unwrap() {
            Value::Object(fields) => {
                let names = ["extra", "v", "version", "id", "params", "meta", "data"];
                let name = names[pick as usize % names.len()];
                fields.insert(name.to_string(), replacement(pick / 7, &Value::Null));
            }
            Value::Array(items) => {
                let copy = items.first().cloned().unwrap_or(Value::Null);
                items.push(copy);
            }
            other => *other = replacement(pick, other),
        },
    }
}

/// The bytes of `value`; with `repeat` 1 or 2 and an object root, one top-level key written twice
/// (the other occurrence holding another value, before or after the original).
fn bytes(value: &Value, repeat: u8, pick: u32) -> Vec<u8> {
    let text = serde_json::to_string(value).unwrap();
    let Value::Object(fields) = value else {
        return text.into_bytes();
    };
    let Some((key, old)) = fields.iter().nth(pick as usize % fields.len().max(1)) else {
        return text.into_bytes();
    };
    let member = format!(
        "{}:{}",
        serde_json::to_string(key).unwrap(),
        serde_json::to_string(&perturbation(pick, old)).unwrap()
    );
    match repeat {
        0 => text.into_bytes(),
        1 => format!("{{{member},{}", &text[1..]).into_bytes(),
        _ => format!("{},{member}}}", &text[..text.len() - 1]).into_bytes(),
    }
}

fn check(
    contract: usize,
    seed: usize,
    mutations: &[(u8, u32, u32)],
    repeat: u8,
    cut: Option<u32>,
) -> Result<Verdict, String> {
    let all = contracts();
    let (name, compare) = all[contract % all.len()];
    let seeds = seeds(name);
    let mut value = seeds[seed % seeds.len()].clone();
    for &(kind, at, pick) in mutations {
        mutate(&mut value, kind, at, pick);
    }
    let mut input = bytes(&value, repeat, mutations.first().map_or(0, |m| m.2));
    if let Some(cut) = cut {
        input.truncate(cut as usize % (input.len() + 1));
    }
    let verdict =
        compare(&input).map_err(|e| format!("{e}\ninput: {}", String::from_utf8_lossy(&input)))?;
    let may_defer = repeat != 0;
    if verdict.reference_accepted && !verdict.fast_accepted && !may_defer {
        return Err(format!(
            "{name}: the fast path deferred on a message the definition accepts: {}",
            String::from_utf8_lossy(&input)
        ));
    }
    Ok(verdict)
}

#[test]
fn every_fixture_decodes_alike_on_both_paths() {
    for (index, (name, _)) in contracts().iter().enumerate() {
        for seed in 0..seeds(name).len() {
            check(index, seed, &[], 0, None).unwrap();
        }
    }
}

#[test]
fn mutated_messages_decode_alike_on_both_paths() {
    let inputs = (
        0usize..64,
        0usize..1024,
        proptest::collection::vec((any::<u8>(), any::<u32>(), any::<u32>()), 0..3),
        // Repeated keys are rarer than other inputs: most cases keep it at 0.
        prop_oneof![6 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        proptest::option::weighted(0.05, any::<u32>()),
    );
    let mut runner = TestRunner::new(Config {
        cases: 8000,
        failure_persistence: None,
        ..Config::default()
    });
    let (accepted, refused) = (Cell::new(0), Cell::new(0));
    runner
        .run(&inputs, |(contract, seed, mutations, repeat, cut)| {
            let verdict =
                check(contract, seed, &mutations, repeat, cut).map_err(TestCaseError::fail)?;
            let count = if verdict.reference_accepted {
                &accepted
            } else {
                &refused
            };
            count.set(count.get() + 1);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    // Both sides of the line are exercised, not only refusals.
    let (accepted, refused) = (accepted.get(), refused.get());
    assert!(
        accepted > 300 && refused > 300,
        "accepted {accepted}, refused {refused}"
    );
}

#[test]
fn whole_floats_and_repeated_keys_are_decided_by_the_definition() {
    let text = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/outcome/valid/failed_with_error.json"),
    )
    .unwrap();
    let mut message: Map<String, Value> = serde_json::from_slice(&text).unwrap();
    message.insert("execution_time_ms".into(), json!(30001.0));
    let input = serde_json::to_vec(&message).unwrap();
    let fast =
        contracts::decode_fast::<contracts::Outcome>(&input).expect("a whole float is valid");
    assert_eq!(fast.execution_time_ms, 30001);
    // Last wins in a `Value`; the fast path defers to it.
    let text = String::from_utf8(serde_json::to_vec(&message).unwrap()).unwrap();
    let repeated = format!("{{\"execution_time_ms\":\"no\",{}", &text[1..]);
    assert!(contracts::decode_fast::<contracts::Outcome>(repeated.as_bytes()).is_none());
    assert_eq!(
        contracts::decode::<contracts::Outcome>(repeated.as_bytes())
            .unwrap()
            .execution_time_ms,
        30001
    );
}
