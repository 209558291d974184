//! How inventory and schema names become Rust identifiers.

use crate::inventory::{ContractEntry, SchemaFile};

/// `guardian` → `Guardian`, `approval-cli` → `ApprovalCli`, `approval_request` → `ApprovalRequest`.
pub fn pascal_case(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            let first = chars
                .next()
                .expect("parts are non-empty")
                .to_ascii_uppercase();
            std::iter::once(first).chain(chars).collect::<String>()
        })
        .collect()
}

/// `titan.ops.command.v1` → `TITAN_OPS_COMMAND_V1`.
pub fn screaming_snake(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
        .map(str::to_ascii_uppercase)
        .collect::<Vec<_>>()
        .join("_")
}

/// The generated module of a contract: `<name>_v<major>`, e.g. `event_v1`.
pub fn module_name(entry: &ContractEntry, schema: &SchemaFile) -> String {
    format!("{}_v{}", entry.name, schema.major_version().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases() {
        assert_eq!(pascal_case("approval-cli"), "ApprovalCli");
        assert_eq!(pascal_case("approval_request"), "ApprovalRequest");
        assert_eq!(pascal_case("OpsCommand"), "OpsCommand");
        assert_eq!(
            screaming_snake("titan.ops.command.v1"),
            "TITAN_OPS_COMMAND_V1"
        );
    }
}
