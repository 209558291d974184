//! Schemas compiled once, with format checks on, and their violations in our error type.

use serde_json::Value;

use crate::{ContractError, ContractInfo, Violation};

/// Longest offending value quoted in an error; longer ones are cut.
const MAX_QUOTED_VALUE: usize = 120;

/// A compiled contract schema.
pub struct Validator {
    info: &'static ContractInfo,
    compiled: jsonschema::Validator,
}

impl Validator {
    /// Compiles the schema embedded in `info`. The schemas are checked by `cargo xtask check`
    /// and by this crate's tests, so a failure here is a build defect, not bad input.
    pub fn compile(info: &'static ContractInfo) -> Self {
        let schema: Value = serde_json::from_str(info.schema)
            .unwrap_or_else(|e| panic!("embedded schema {} is not JSON: {e}", info.schema_path));
        let compiled = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| {
                panic!("embedded schema {} does not compile: {e}", info.schema_path)
            });
        Self { info, compiled }
    }

    /// Checks `value` against the schema; on failure, lists every broken rule.
    pub fn validate(&self, value: &Value) -> Result<(), ContractError> {
        if self.compiled.is_valid(value) {
            return Ok(());
        }
        if let Some(err) = self.version_mismatch(value) {
            return Err(err);
        }
        let violations = self
            .compiled
            .iter_errors(value)
            .map(|e| Violation {
                instance_path: e.instance_path().as_str().to_string(),
                rule: e.kind().keyword().to_string(),
                value: quote(e.instance()),
                message: e.to_string(),
            })
            .collect();
        Err(ContractError::Invalid {
            contract: self.info.name,
            violations,
        })
    }

    /// A message of another major version gets its own error, so a consumer in a version
    /// transition can tell "other version" from "broken message".
    fn version_mismatch(&self, value: &Value) -> Option<ContractError> {
        let found = value.get(self.info.version_field)?;
        let expected: Value = serde_json::from_str(self.info.version_value).ok()?;
        (found != &expected).then(|| ContractError::UnsupportedVersion {
            contract: self.info.name,
            field: self.info.version_field,
            found: found.to_string(),
            expected: self.info.version_value,
        })
    }
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("schema", &self.info.schema_id)
            .finish()
    }
}

fn quote(value: &Value) -> String {
    let text = value.to_string();
    if text.len() <= MAX_QUOTED_VALUE {
        return text;
    }
    let cut = (0..=MAX_QUOTED_VALUE)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}…", &text[..cut])
}
