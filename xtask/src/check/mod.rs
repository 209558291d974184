//! `cargo xtask check`: the contract governance check.
//!
//! Each submodule checks one thing and adds [`Finding`]s to the [`Report`]; every finding has
//! a stable code, a message, the path it is about and a hint on how to fix it. Errors fail the
//! check; warnings are printed and do not.

mod drift;
mod evolution;
mod inventory_rules;
mod repository;
mod schema_rules;
mod sdk_boundary;
mod versioning;

use std::fmt;

use serde::Serialize;

use crate::contract_set_file::ContractSetFile;
use crate::inventory::{ContractSet, Layout, BASELINE_DIR};

pub use evolution::{classify, Change, Compatibility};

/// Exit code: the contracts are clean.
pub const EXIT_CLEAN: i32 = 0;
/// Exit code: at least one contract violation (an error finding).
pub const EXIT_VIOLATIONS: i32 = 1;
/// Exit code: bad command line (clap's own code for usage errors).
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the check itself could not run (unreadable repository, I/O failure).
pub const EXIT_CANNOT_RUN: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One thing the check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable, machine-readable code, e.g. `SCHEMA_BREAKING_CHANGE`.
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    /// Repository-relative path, with a `#` JSON pointer into the file where useful.
    pub path: String,
    /// How to fix it.
    pub hint: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{severity}[{}] {}: {}\n  hint: {}",
            self.code, self.path, self.message, self.hint
        )
    }
}

/// Everything the check found, in the order the checks ran.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn error(
        &mut self,
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(Severity::Error, code, path, message, hint);
    }

    pub fn warning(
        &mut self,
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(Severity::Warning, code, path, message, hint);
    }

    fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.findings.push(Finding {
            code,
            severity,
            message: message.into(),
            path: path.into(),
            hint: hint.into(),
        });
    }

    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// The codes of the error findings, for tests and scripts.
    pub fn error_codes(&self) -> Vec<&'static str> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| f.code)
            .collect()
    }

    pub fn exit_code(&self) -> i32 {
        if self.errors() > 0 {
            EXIT_VIOLATIONS
        } else {
            EXIT_CLEAN
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.errors() == 0,
            "errors": self.errors(),
            "warnings": self.warnings(),
            "findings": self.findings,
        })
    }
}

/// The released baseline (`schemas/baseline/`): the contract set as last released.
pub struct Baseline {
    pub set: ContractSet,
    pub recorded: ContractSetFile,
}

/// What every check reads.
pub struct Context<'a> {
    pub layout: &'a Layout,
    pub set: &'a ContractSet,
    pub recorded: &'a ContractSetFile,
    pub baseline: Option<&'a Baseline>,
    pub migration_notes: &'a str,
}

pub const MIGRATIONS_FILE: &str = "MIGRATIONS.md";

/// Runs every check against the repository at `layout`.
pub fn run(layout: &Layout) -> anyhow::Result<Report> {
    let mut report = Report::default();
    repository::check(layout, &mut report)?;
    sdk_boundary::check(layout, &mut report)?;

    let set = match layout.load() {
        Ok(set) => set,
        Err(e) => {
            report.error(
                "CONTRACT_SET_UNREADABLE",
                "schemas/",
                format!("{e:#}"),
                "fix the file named above; every other check needs the schemas and inventory",
            );
            return Ok(report);
        }
    };
    let schemas_dir = layout.schemas_dir();
    let recorded = match ContractSetFile::read(&schemas_dir) {
        Ok(recorded) => recorded,
        Err(e) => {
            report.error(
                "CONTRACT_SET_VERSION_MISSING",
                "schemas/contract-set.toml",
                format!("{e:#}"),
                "create schemas/contract-set.toml with `version = \"1.0.0\"` and run `cargo xtask codegen`",
            );
            return Ok(report);
        }
    };
    let baseline = load_baseline(layout, &mut report);
    let migration_notes =
        std::fs::read_to_string(schemas_dir.join(MIGRATIONS_FILE)).unwrap_or_default();
    let context = Context {
        layout,
        set: &set,
        recorded: &recorded,
        baseline: baseline.as_ref(),
        migration_notes: &migration_notes,
    };

    inventory_rules::check(&context, &mut report);
    schema_rules::check(&context, &mut report);
    versioning::check(&context, &mut report);
    evolution::check(&context, &mut report);
    drift::check(&context, &mut report);
    Ok(report)
}

fn load_baseline(layout: &Layout, report: &mut Report) -> Option<Baseline> {
    let dir = layout.schemas_dir().join(BASELINE_DIR);
    if !dir.exists() {
        report.error(
            "BASELINE_MISSING",
            "schemas/baseline/",
            "there is no released baseline to compare the schemas with",
            "run `cargo xtask release` once the contract set is ready to be released",
        );
        return None;
    }
    let loaded = ContractSet::load(&dir).and_then(|set| Ok((set, ContractSetFile::read(&dir)?)));
    match loaded {
        Ok((set, recorded)) => Some(Baseline { set, recorded }),
        Err(e) => {
            report.error(
                "BASELINE_UNREADABLE",
                "schemas/baseline/",
                format!("{e:#}"),
                "restore schemas/baseline/ from the last release (git) or run `cargo xtask release`",
            );
            None
        }
    }
}

/// `schemas/<rel>` as a repository path, with an optional JSON pointer.
pub fn schema_path(rel: &str, pointer: &str) -> String {
    if pointer.is_empty() {
        format!("schemas/{rel}")
    } else {
        format!("schemas/{rel}#{pointer}")
    }
}
