//! `cargo xtask release`: records the current contract set as the released baseline
//! (`schemas/baseline/`), which `cargo xtask check` compares every later change with.

use anyhow::{bail, Context, Result};

use crate::check;
use crate::contract_set_file::{ContractSetFile, CONTRACT_SET_FILE};
use crate::inventory::{Layout, BASELINE_DIR, INVENTORY_FILE};

/// Findings that a release is allowed to clear: it is what creates or replaces the baseline.
const CLEARED_BY_RELEASE: &[&str] = &["BASELINE_MISSING"];

pub fn run(layout: &Layout) -> Result<String> {
    let report = check::run(layout)?;
    let blocking: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.severity == check::Severity::Error && !CLEARED_BY_RELEASE.contains(&f.code))
        .map(ToString::to_string)
        .collect();
    if !blocking.is_empty() {
        bail!(
            "cannot release while `cargo xtask check` fails:\n{}",
            blocking.join("\n")
        );
    }
    let set = layout.load()?;
    let schemas_dir = layout.schemas_dir();
    let recorded = ContractSetFile::read(&schemas_dir)?;
    let baseline_dir = schemas_dir.join(BASELINE_DIR);
    if let Ok(released) = ContractSetFile::read(&baseline_dir) {
        if released.sha256 == recorded.sha256 {
            bail!(
                "nothing to release: the contracts are identical to release {}",
                released.version
            );
        }
    }
    if baseline_dir.exists() {
        std::fs::remove_dir_all(&baseline_dir)
            .with_context(|| format!("removing {}", baseline_dir.display()))?;
    }
    let mut copies: Vec<String> = set.schemas.iter().map(|s| s.rel_path.clone()).collect();
    copies.push(INVENTORY_FILE.into());
    copies.push(CONTRACT_SET_FILE.into());
    for rel in copies {
        let target = baseline_dir.join(&rel);
        std::fs::create_dir_all(target.parent().expect("files have a parent"))?;
        std::fs::copy(schemas_dir.join(&rel), &target)
            .with_context(|| format!("copying schemas/{rel} into the baseline"))?;
    }
    Ok(recorded.version)
}
