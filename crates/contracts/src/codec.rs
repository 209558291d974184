//! `encode` and `decode`: the only way a message becomes bytes or comes back from them.
//!
//! Each has two paths with one meaning. The reference path is the definition: `decode` parses
//! the bytes into a [`Value`], validates it with the compiled schema, normalizes whole floats
//! ([`integral_floats_to_integers`]) and deserializes the type from it; `encode` builds the
//! message's `Value`, validates it and serializes it. The fast path does the same work on a flat
//! document ([`crate::tape`]) instead of a `Value` (for `decode` borrowing its strings from the
//! bytes), and may only answer "valid, and here is the result": whenever it cannot (the message
//! is invalid, does not fit the type, repeats a key, which a `Value` resolves last-wins, or, for
//! `encode`, serializes its keys in another order than a `Value` would write them), the
//! reference path runs and its answer, error text included, is the one returned. So what is
//! accepted, what is refused, every error and every encoded byte are the reference path's;
//! `tests/differential.rs` checks that the fast paths agree with it on generated and mutated
//! messages of every contract.

use serde_json::{Number, Value};

use crate::tape::Document;
use crate::{Contract, ContractError, ContractInfo};

/// Serializes `message` and validates it against its schema; nothing invalid gets out.
pub fn encode<T: Contract>(message: &T) -> Result<Vec<u8>, ContractError> {
    if let Some(bytes) = encode_fast(message) {
        return Ok(bytes);
    }
    encode_reference(message)
}

/// The fast path of [`encode`]: the message's flat document validated, then the message
/// serialized directly, which writes the reference path's bytes exactly when every object's
/// keys come in the order a `Value` keeps them (checked while the document is built), or else
/// the document written in that order. `None` when the reference path must decide.
#[doc(hidden)]
pub fn encode_fast<T: Contract>(message: &T) -> Option<Vec<u8>> {
    let (document, in_order) = valid_document(message)?;
    write_fast(message, &document, in_order)
}

fn valid_document<T: Contract>(message: &T) -> Option<(Document<'static>, bool)> {
    let (document, in_order) = Document::of(message).ok()?;
    (document.mirrors_value() && T::validator().is_valid_document(&document))
        .then_some((document, in_order))
}

fn write_fast<T: Contract>(
    message: &T,
    document: &Document<'_>,
    in_order: bool,
) -> Option<Vec<u8>> {
    if in_order {
        serde_json::to_vec(message).ok()
    } else {
        serde_json::to_vec(&document.in_value_order()).ok()
    }
}

/// [`encode`], and the message's [`idempotency_key`] (its `Nats-Msg-Id`), read from the same
/// validated document on the fast path instead of from a `Value` built for it.
pub fn encode_keyed<T: Contract>(message: &T) -> Result<(Vec<u8>, String), ContractError> {
    if let Some(keyed) = encode_keyed_fast(message) {
        return Ok(keyed);
    }
    encode_keyed_reference(message)
}

/// The fast path of [`encode_keyed`] (as [`encode_fast`]).
#[doc(hidden)]
pub fn encode_keyed_fast<T: Contract>(message: &T) -> Option<(Vec<u8>, String)> {
    let (document, in_order) = valid_document(message)?;
    let key = join_key(
        T::INFO
            .idempotency_key
            .iter()
            .map(|field| document.member(field).map(std::borrow::Cow::Owned)),
    );
    Some((write_fast(message, &document, in_order)?, key))
}

/// [`encode_keyed`] by its definition: the message's `Value`, validated, its key read from
/// it, then serialized.
#[doc(hidden)]
pub fn encode_keyed_reference<T: Contract>(
    message: &T,
) -> Result<(Vec<u8>, String), ContractError> {
    let value = to_value(message)?;
    let key = idempotency_key(T::INFO, &value);
    let bytes = serde_json::to_vec(&value).map_err(|source| ContractError::Type {
        contract: T::INFO.name,
        source,
    })?;
    Ok((bytes, key))
}

/// The values of the contract's idempotency-key fields, joined with `:` (strings as they are,
/// other values as JSON, a missing field as nothing). This is the `Nats-Msg-Id` of the message.
pub fn idempotency_key(info: &ContractInfo, message: &Value) -> String {
    join_key(
        info.idempotency_key
            .iter()
            .map(|field| message.get(field).map(std::borrow::Cow::Borrowed)),
    )
}

fn join_key<'v>(fields: impl Iterator<Item = Option<std::borrow::Cow<'v, Value>>>) -> String {
    fields
        .map(|field| match field.as_deref() {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        })
        .collect::<Vec<_>>()
        .join(":")
}

/// [`encode`] by its definition: the message's `Value`, validated, then serialized.
#[doc(hidden)]
pub fn encode_reference<T: Contract>(message: &T) -> Result<Vec<u8>, ContractError> {
    let value = to_value(message)?;
    serde_json::to_vec(&value).map_err(|source| ContractError::Type {
        contract: T::INFO.name,
        source,
    })
}

/// Serializes `message` to a JSON value and validates it.
pub fn to_value<T: Contract>(message: &T) -> Result<Value, ContractError> {
    let value = serde_json::to_value(message).map_err(|source| ContractError::Type {
        contract: T::INFO.name,
        source,
    })?;
    T::validator().validate(&value)?;
    Ok(value)
}

/// Parses `bytes`, validates them against the schema of `T`, then deserializes.
pub fn decode<T: Contract>(bytes: &[u8]) -> Result<T, ContractError> {
    if let Some(message) = decode_fast(bytes) {
        return Ok(message);
    }
    decode_reference(bytes)
}

/// The fast path of [`decode`]: the bytes parsed once into a flat document, validated, and the
/// type read from it. `None` when the reference path must decide.
#[doc(hidden)]
pub fn decode_fast<T: Contract>(bytes: &[u8]) -> Option<T> {
    let document = Document::parse(bytes).ok()?;
    if !document.mirrors_value() || !T::validator().is_valid_document(&document) {
        return None;
    }
    document.deserialize().ok()
}

/// [`decode`] by its definition: parse into a `Value`, validate, normalize, deserialize.
#[doc(hidden)]
pub fn decode_reference<T: Contract>(bytes: &[u8]) -> Result<T, ContractError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|source| ContractError::NotJson {
        contract: T::INFO.name,
        source,
    })?;
    decode_value(value)
}

/// Validates an already parsed value against the schema of `T`, then deserializes it.
pub fn decode_value<T: Contract>(mut value: Value) -> Result<T, ContractError> {
    T::validator().validate(&value)?;
    integral_floats_to_integers(&mut value);
    serde_json::from_value(value).map_err(|source| ContractError::Type {
        contract: T::INFO.name,
        source,
    })
}

/// [`decode_value`]'s normalization, for code that builds a field of a generated type from open
/// JSON the same way. JSON Schema counts `5840.0` as an integer, so producers in languages without an integer type
/// send it and the schema accepts it; serde's integer types do not. Every float with no fractional
/// part that an `f64` holds exactly becomes an integer, which `f64` fields accept as well.
pub fn integral_floats_to_integers(value: &mut Value) {
    match value {
        Value::Number(number) if number.is_f64() => *number = integral(number),
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

/// One number as [`integral_floats_to_integers`] leaves it (shared with the fast path, so the
/// two cannot drift apart).
pub(crate) fn integral(number: &Number) -> Number {
    const EXACT_IN_F64: f64 = 9_007_199_254_740_992.0; // 2^53
    match number.as_f64() {
        Some(float) if number.is_f64() && float.fract() == 0.0 && float.abs() <= EXACT_IN_F64 => {
            if float >= 0.0 {
                Number::from(float as u64)
            } else {
                Number::from(float as i64)
            }
        }
        _ => number.clone(),
    }
}

/// A field of a generated type parsed from text, for code that builds a message of contract `T`
/// as a struct literal: text the type refuses is reported as the schema validation reports it (a
/// violation of `rule` at `path`), so callers see one kind of error whichever check refused it.
pub fn parse_field<T: Contract, F>(path: &str, rule: &str, text: &str) -> Result<F, ContractError>
where
    F: std::str::FromStr,
    F::Err: std::fmt::Display,
{
    text.parse().map_err(|e: F::Err| ContractError::Invalid {
        contract: T::INFO.name,
        violations: vec![crate::Violation {
            instance_path: path.to_string(),
            rule: rule.to_string(),
            value: Value::String(text.to_string()).to_string(),
            message: format!("{text:?}: {e}"),
        }],
    })
}
