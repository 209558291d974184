//! `schemas/contract-set.toml`: the contract set's semantic version (edited by people) and its
//! content hash (recorded by `cargo xtask codegen`).

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::inventory::{ContractSet, Layout};

pub const CONTRACT_SET_FILE: &str = "contract-set.toml";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContractSetFile {
    /// Semantic version of the whole contract set; bump it whenever the hash changes.
    pub version: String,
    /// sha256 over the canonical form of the schemas and the inventory.
    pub sha256: String,
}

impl ContractSetFile {
    pub fn read(schemas_dir: &Path) -> Result<Self> {
        let path = schemas_dir.join(CONTRACT_SET_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Recomputes the hash of `set` and writes it into `schemas/contract-set.toml`, keeping
    /// the version a person chose.
    pub fn record_hash(layout: &Layout, set: &ContractSet) -> Result<Self> {
        let schemas_dir = layout.schemas_dir();
        let mut file = Self::read(&schemas_dir)?;
        let sha256 = content_hash(set)?;
        if file.sha256 != sha256 {
            file.sha256 = sha256;
            let text = format!(
                "# The contract set's semantic version and content hash.\n\
                 # `version` is yours to bump (cargo xtask check says when); `sha256` is written by\n\
                 # `cargo xtask codegen`.\n{}",
                toml::to_string(&file)?
            );
            let path = schemas_dir.join(CONTRACT_SET_FILE);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(file)
    }
}

/// sha256 (lowercase hex) of the RFC 8785 canonical JSON of
/// `{"inventory": <inventory.toml as JSON>, "schemas": {<path>: <schema>}}`.
/// Comments and formatting do not change it; any change to a schema or the inventory does.
pub fn content_hash(set: &ContractSet) -> Result<String> {
    let inventory: toml::Value = toml::from_str(&set.inventory_text)?;
    let schemas: serde_json::Map<String, serde_json::Value> = set
        .schemas
        .iter()
        .map(|s| (s.rel_path.clone(), s.json.clone()))
        .collect();
    let canonical = serde_json_canonicalizer::to_vec(&serde_json::json!({
        "inventory": serde_json::to_value(inventory)?,
        "schemas": schemas,
    }))?;
    Ok(hex::encode(Sha256::digest(&canonical)))
}
