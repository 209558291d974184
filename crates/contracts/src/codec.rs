//! `encode` and `decode`: the only way a message becomes bytes or comes back from them.

use serde_json::Value;

use crate::{Contract, ContractError};

/// Serializes `message` and validates it against its schema; nothing invalid gets out.
pub fn encode<T: Contract>(message: &T) -> Result<Vec<u8>, ContractError> {
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
    let value: Value = serde_json::from_slice(bytes).map_err(|source| ContractError::NotJson {
        contract: T::INFO.name,
        source,
    })?;
    decode_value(value)
}

/// Validates an already parsed value against the schema of `T`, then deserializes it.
pub fn decode_value<T: Contract>(value: Value) -> Result<T, ContractError> {
    T::validator().validate(&value)?;
    serde_json::from_value(value).map_err(|source| ContractError::Type {
        contract: T::INFO.name,
        source,
    })
}
