//! A temporary copy of the parts of the repository that `cargo xtask check` reads.

use std::path::{Path, PathBuf};

use serde_json::Value;
use xtask::check::Report;
use xtask::inventory::Layout;

const COPIED: &[&str] = &[
    "schemas",
    "crates/contracts/src/generated",
    "docs",
    "deploy",
];

pub struct Checkout {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Checkout {
    /// A copy of the committed repository, exactly as it is.
    pub fn as_committed() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let root = dir.path().join("repo");
        let source = Layout::of_this_checkout().root;
        for rel in COPIED {
            copy_dir(&source.join(rel), &root.join(rel));
        }
        Self { _dir: dir, root }
    }

    /// A copy whose current contract set is also the released baseline, so that every test
    /// starts from "just released" whatever the committed version is.
    pub fn new() -> Self {
        let checkout = Self::as_committed();
        let baseline =
            xtask::contract_set_file::ContractSetFile::read(&checkout.path("schemas/baseline"))
                .unwrap();
        let current =
            xtask::contract_set_file::ContractSetFile::read(&checkout.path("schemas")).unwrap();
        if baseline.sha256 != current.sha256 {
            xtask::release::run(&checkout.layout()).expect("release the committed contract set");
        }
        checkout
    }

    /// The released version.
    pub fn released_version(&self) -> semver::Version {
        let baseline =
            xtask::contract_set_file::ContractSetFile::read(&self.path("schemas/baseline"))
                .unwrap();
        semver::Version::parse(&baseline.version).unwrap()
    }

    /// Sets the contract-set version to the released one with `bump` applied.
    pub fn bump(&self, bump: fn(&mut semver::Version)) -> String {
        let mut version = self.released_version();
        bump(&mut version);
        let text = version.to_string();
        self.set_version(&text);
        text
    }

    pub fn layout(&self) -> Layout {
        Layout::new(&self.root)
    }

    pub fn check(&self) -> Report {
        xtask::check::run(&self.layout()).expect("the check runs")
    }

    pub fn codegen(&self) {
        xtask::codegen::run(&self.layout()).expect("codegen runs");
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {rel}: {e}"));
    }

    /// Applies `edit` to the JSON of a schema file below `schemas/`.
    pub fn edit_schema(&self, rel: &str, edit: impl FnOnce(&mut Value)) {
        let file = format!("schemas/{rel}");
        let mut json: Value = serde_json::from_str(&self.read(&file)).unwrap();
        edit(&mut json);
        self.write(&file, &serde_json::to_string_pretty(&json).unwrap());
    }

    pub fn set_version(&self, version: &str) {
        let file = "schemas/contract-set.toml";
        let text = self.read(file);
        let edited: String = text
            .lines()
            .map(|l| {
                if l.starts_with("version") {
                    format!("version = \"{version}\"")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        self.write(file, &(edited + "\n"));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Asserts that `report` has an error with `code`, and returns its findings for more checks.
pub fn assert_error(report: &Report, code: &str) -> Vec<xtask::check::Finding> {
    let found: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.code == code && f.severity == xtask::check::Severity::Error)
        .cloned()
        .collect();
    assert!(
        !found.is_empty(),
        "expected an error {code}; the report was:\n{}",
        report
            .findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    found
}

pub fn assert_clean(report: &Report) {
    assert_eq!(
        report.errors(),
        0,
        "expected no errors; the report was:\n{}",
        report
            .findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
