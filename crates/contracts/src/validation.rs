//! Schemas compiled once, with format checks on, and their violations in our error type.

use serde_json::Value;

use crate::tape::{Document, Tape};
use crate::timestamp::{parse_supported, TimestampError, DATE_TIME_RANGE_RULE};
use crate::{ContractError, ContractInfo, Violation};

/// Longest offending value quoted in an error; longer ones are cut.
const MAX_QUOTED_VALUE: usize = 120;

/// A contract schema compiled twice with the same options: for [`serde_json::Value`] instances
/// (the reference: every error is built from it) and for the codec's flat documents
/// ([`crate::tape`], the fast "is it valid" of `decode` and `encode`).
pub struct Validator {
    info: &'static ContractInfo,
    compiled: jsonschema::Validator,
    on_tape: jsonschema::Validator<Tape>,
}

/// The options of both compilations: formats checked, `date-time` by [`parse_supported`].
fn options<F: jsonschema::json::Json>(
    options: jsonschema::ValidationOptions<'_, std::sync::Arc<dyn jsonschema::Retrieve>, F>,
) -> jsonschema::ValidationOptions<'_, std::sync::Arc<dyn jsonschema::Retrieve>, F> {
    options
        .should_validate_formats(true)
        .with_format("date-time", |text: &str| {
            crate::timestamp::parse_supported(text).is_ok()
        })
}

impl Validator {
    /// Compiles the schema embedded in `info`. The schemas are checked by `cargo xtask check`
    /// and by this crate's tests, so a failure here is a build defect, not bad input.
    pub fn compile(info: &'static ContractInfo) -> Self {
        let schema: Value = serde_json::from_str(info.schema)
            .unwrap_or_else(|e| panic!("embedded schema {} is not JSON: {e}", info.schema_path));
        let fail = |e: jsonschema::ValidationError<'_>| -> ! {
            panic!("embedded schema {} does not compile: {e}", info.schema_path)
        };
        let compiled = options(jsonschema::options())
            .build(&schema)
            .unwrap_or_else(|e| fail(e));
        let on_tape = options(jsonschema::options_for::<Tape>())
            .build(&schema)
            .unwrap_or_else(|e| fail(e));
        Self {
            info,
            compiled,
            on_tape,
        }
    }

    /// Whether the document is valid, as [`Validator::validate`] would say of its `Value`.
    pub(crate) fn is_valid_document(&self, document: &Document<'_>) -> bool {
        self.on_tape.is_valid(document.root())
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
            .map(|e| {
                let mut violation = Violation {
                    instance_path: e.instance_path().as_str().to_string(),
                    rule: e.kind().keyword().to_string(),
                    value: quote(e.instance()),
                    message: e.to_string(),
                };
                if let Some(why) = date_time_out_of_range(e.kind(), e.instance()) {
                    violation.rule = DATE_TIME_RANGE_RULE.to_string();
                    violation.message = why;
                }
                violation
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

/// For a failed `date-time` format check of a well-formed date-time: why it is refused (it is
/// outside [`crate::TIMESTAMP_RANGE`]).
fn date_time_out_of_range(
    kind: &jsonschema::error::ValidationErrorKind,
    instance: &Value,
) -> Option<String> {
    let jsonschema::error::ValidationErrorKind::Format { format } = kind else {
        return None;
    };
    if format != "date-time" {
        return None;
    }
    match parse_supported(instance.as_str()?) {
        Err(error @ TimestampError::OutOfRange(_)) => Some(error.to_string()),
        _ => None,
    }
}

/// Every `date-time` value is checked by [`parse_supported`] (RFC 3339, `T` between date and
/// time, inside [`crate::TIMESTAMP_RANGE`]): the same function [`crate::Timestamp`] parses with,
/// so a value the schema accepts always fits the type.
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
