//! Errors of encoding and decoding.

use std::fmt;

/// One broken rule: where, which rule, the offending value, and the validator's explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer to the offending value (`""` is the whole message).
    pub instance_path: String,
    /// The schema keyword that failed (`required`, `format`, `enum`, `pattern`, …), or
    /// [`DATE_TIME_RANGE_RULE`](crate::DATE_TIME_RANGE_RULE) (`date_time_range`) for a
    /// well-formed `date-time` outside [`TIMESTAMP_RANGE`](crate::TIMESTAMP_RANGE).
    pub rule: String,
    /// The offending value, as JSON, shortened if long.
    pub value: String,
    /// The validator's explanation.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.instance_path.is_empty() {
            "/"
        } else {
            &self.instance_path
        };
        write!(
            f,
            "at {at}: {} (rule `{}`, value {})",
            self.message, self.rule, self.value
        )
    }
}

/// Why a message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// The bytes are not JSON.
    #[error("{contract}: payload is not JSON: {source}")]
    NotJson {
        contract: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The message breaks its schema.
    #[error("{contract}: {} rule(s) broken: {}", violations.len(), join(violations))]
    Invalid {
        contract: &'static str,
        violations: Vec<Violation>,
    },
    /// The message carries another major version of the contract.
    #[error("{contract}: unsupported version {found} in field `{field}` (this consumer accepts {expected})")]
    UnsupportedVersion {
        contract: &'static str,
        field: &'static str,
        found: String,
        expected: &'static str,
    },
    /// No contract in the inventory governs this subject.
    #[error("no contract in the inventory for subject `{subject}`")]
    UnknownSubject { subject: String },
    /// The value passed the schema but does not fit the Rust type (or the type could not be
    /// serialized); this points at a gap between the schema and the generated types.
    #[error("{contract}: schema-valid message does not fit the Rust type: {source}")]
    Type {
        contract: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl ContractError {
    /// The broken rules, if the error is a schema violation.
    pub fn violations(&self) -> &[Violation] {
        match self {
            ContractError::Invalid { violations, .. } => violations,
            _ => &[],
        }
    }
}

fn join(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
