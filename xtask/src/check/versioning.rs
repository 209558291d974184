//! The contract set's semantic version and content hash: the recorded hash matches the
//! schemas, and any change since the released baseline comes with a version bump.

use semver::Version;

use super::{Context, Report};
use crate::contract_set_file::content_hash;

const FILE: &str = "schemas/contract-set.toml";

pub fn check(cx: &Context, report: &mut Report) {
    let hash = match content_hash(cx.set) {
        Ok(hash) => hash,
        Err(e) => {
            report.error(
                "CONTRACT_SET_UNREADABLE",
                FILE,
                format!("cannot hash the contract set: {e:#}"),
                "fix the inventory",
            );
            return;
        }
    };
    if cx.recorded.sha256 != hash {
        report.error(
            "CONTRACT_SET_HASH_STALE",
            format!("{FILE}#sha256"),
            format!(
                "recorded sha256 {} but the schemas and inventory hash to {hash}",
                cx.recorded.sha256
            ),
            "run `cargo xtask codegen`, which records the hash",
        );
    }
    let Ok(version) = Version::parse(&cx.recorded.version) else {
        report.error(
            "CONTRACT_SET_VERSION_INVALID",
            format!("{FILE}#version"),
            format!("{:?} is not a semantic version", cx.recorded.version),
            "use MAJOR.MINOR.PATCH, e.g. 1.2.0",
        );
        return;
    };
    let Some(baseline) = cx.baseline else { return };
    let Ok(released) = Version::parse(&baseline.recorded.version) else {
        report.error(
            "CONTRACT_SET_VERSION_INVALID",
            "schemas/baseline/contract-set.toml#version",
            "the baseline's version is not a semantic version",
            "restore the baseline from the last release",
        );
        return;
    };
    if version < released {
        report.error(
            "CONTRACT_SET_VERSION_REGRESSED",
            format!("{FILE}#version"),
            format!("version {version} is older than the released {released}"),
            "versions only go up",
        );
    }
    if hash != baseline.recorded.sha256 && version <= released {
        report.error(
            "CONTRACT_SET_VERSION_NOT_BUMPED",
            format!("{FILE}#version"),
            format!("the contracts changed since release {released} (hash {hash}) but the version did not"),
            "bump `version` in schemas/contract-set.toml: patch for documentation, minor for additive changes, major when a contract is removed",
        );
    }
    let removed: Vec<&str> = baseline
        .set
        .schemas
        .iter()
        .filter(|old| cx.set.schema(&old.rel_path).is_none())
        .map(|old| old.rel_path.as_str())
        .collect();
    if !removed.is_empty() && version.major == released.major {
        report.error(
            "CONTRACT_SET_MAJOR_NOT_BUMPED",
            format!("{FILE}#version"),
            format!(
                "contracts were removed ({}) but the major version is still {}",
                removed.join(", "),
                version.major
            ),
            "removing a contract breaks its users: bump the contract set's major version",
        );
    }
}
