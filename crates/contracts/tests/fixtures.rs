//! The fixtures in `fixtures/` against the contracts.
//!
//! Layout (checked here): `fixtures/<contract>/valid/*.json` holds plain messages that must be
//! accepted; `fixtures/<contract>/invalid/*.json` holds wrappers
//! `{"why": "...", "breaks": {"path": "<instance path>", "rule": "<keyword>", "detail": "..."},
//! "message": {...}}` describing exactly which rule the message breaks;
//! `fixtures/ops_signing/*.json` holds the ops HMAC test vector;
//! `fixtures/fuzz/<target>/` holds inputs a fuzz target once crashed on (raw bytes, replayed by
//! the owning crate's `tests/fuzz_regressions.rs`; see docs/FUZZING.md).
//!
//! What is checked:
//! - every valid fixture decodes on its contract's subject, re-encodes, and the re-encoded bytes
//!   decode to an equal message;
//! - every invalid fixture is rejected with the violation its `breaks` names, and only at that
//!   instance path (a fixture must break one thing, not several by accident);
//! - the folder tree matches the inventory;
//! - coverage, computed from the schemas: every `required` entry, closed object, `format`, `enum`,
//!   `const`, `pattern`, `minLength`, `maxLength`, `minItems`, `minProperties`, `minimum` and
//!   conditional rule has an invalid fixture aimed at it, and every property and every enum
//!   value appears in a valid fixture;
//! - the ops signing vector is the one of SPEC §5 and matches `ops_command/valid/signed_halt_all.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use contracts::{ContractError, ContractInfo, KeyValueRecord, Message, CONTRACTS, KEY_VALUES};
use serde_json::{json, Map, Value};

/// The folder next to the contract folders that holds the ops signing vector.
const OPS_SIGNING_DIR: &str = "ops_signing";
const FUZZ_DIR: &str = "fuzz";

/// Pseudo-rule of an invalid fixture whose version field carries another version.
const UNSUPPORTED_VERSION: &str = "unsupported_version";

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// A fixture file, named relative to the repository root in messages.
struct Fixture {
    name: String,
    bytes: Vec<u8>,
}

impl Fixture {
    fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.bytes).map_err(|e| format!("{}: not JSON: {e}", self.name))
    }
}

fn display_name(path: &Path) -> String {
    let root = fixtures_root();
    match path.strip_prefix(&root) {
        Ok(rel) => format!("fixtures/{}", rel.display()),
        Err(_) => path.display().to_string(),
    }
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("cannot read an entry of {}: {e}", dir.display()))
                .path()
        })
        .collect();
    entries.sort();
    entries
}

/// The `.json` files of `dir`; anything else in it is reported in `problems`.
fn json_files(dir: &Path, problems: &mut Vec<String>) -> Vec<Fixture> {
    if !dir.is_dir() {
        problems.push(format!("{}: folder is missing", display_name(dir)));
        return Vec::new();
    }
    let mut out = Vec::new();
    for path in sorted_entries(dir) {
        let name = display_name(&path);
        if path.is_dir() {
            problems.push(format!(
                "{name}: unexpected folder (only .json files belong here)"
            ));
        } else if path.extension().and_then(|e| e.to_str()) != Some("json") {
            problems.push(format!("{name}: not a .json file"));
        } else {
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
            out.push(Fixture { name, bytes });
        }
    }
    out
}

/// Every contract with fixtures: the messages, then the key-value values with a schema
/// (`fixtures/interlock_armed/`, …), which are checked exactly like messages.
fn all_contracts() -> impl Iterator<Item = &'static ContractInfo> {
    CONTRACTS.iter().chain(KEY_VALUES.iter()).copied()
}

/// A decoded message or key-value value.
#[derive(Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
enum Decoded {
    Message(Message),
    Value(KeyValueRecord),
}

impl Decoded {
    fn info(&self) -> &'static ContractInfo {
        match self {
            Decoded::Message(m) => m.info(),
            Decoded::Value(v) => v.info(),
        }
    }

    fn encode(&self) -> Result<Vec<u8>, ContractError> {
        match self {
            Decoded::Message(m) => m.encode(),
            Decoded::Value(v) => v.encode(),
        }
    }
}

/// Decodes what arrived on `subject`: a message, or the value of a key (`$KV.<bucket>.<key>`).
fn decode_on(subject: &str, bytes: &[u8]) -> Result<Decoded, ContractError> {
    if subject.starts_with("$KV.") {
        KeyValueRecord::decode(subject, bytes).map(Decoded::Value)
    } else {
        Message::decode(subject, bytes).map(Decoded::Message)
    }
}

fn contract(name: &str) -> &'static ContractInfo {
    all_contracts()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no contract `{name}` in CONTRACTS"))
}

fn valid_fixtures(info: &ContractInfo) -> Vec<Fixture> {
    let mut problems = Vec::new();
    let files = json_files(
        &fixtures_root().join(info.name).join("valid"),
        &mut problems,
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    files
}

fn invalid_fixtures(info: &ContractInfo) -> Vec<Fixture> {
    let mut problems = Vec::new();
    let files = json_files(
        &fixtures_root().join(info.name).join("invalid"),
        &mut problems,
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    files
}

fn fail_if_any(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} {what}:\n  - {}",
        failures.len(),
        failures.join("\n  - ")
    );
}

// ---------------------------------------------------------------------------------------------
// Invalid-fixture wrappers
// ---------------------------------------------------------------------------------------------

/// What an invalid fixture claims to break.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Breaks {
    path: String,
    rule: String,
    detail: Option<String>,
}

impl fmt::Display for Breaks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.path.is_empty() {
            "(root)"
        } else {
            &self.path
        };
        write!(f, "{at} `{}`", self.rule)?;
        if let Some(detail) = &self.detail {
            write!(f, " [{detail}]")?;
        }
        Ok(())
    }
}

struct InvalidFixture {
    name: String,
    breaks: Breaks,
    message: Value,
}

/// Parses and checks the wrapper `{"why", "breaks": {"path", "rule", "detail"?}, "message"}`.
fn parse_invalid(fixture: &Fixture) -> Result<InvalidFixture, String> {
    let name = &fixture.name;
    let value = fixture.json()?;
    let Value::Object(wrapper) = value else {
        return Err(format!(
            "{name}: an invalid fixture must be a JSON object wrapper"
        ));
    };
    let keys: BTreeSet<&str> = wrapper.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = ["why", "breaks", "message"].into();
    if keys != expected {
        return Err(format!(
            "{name}: wrapper keys must be exactly {expected:?}, found {keys:?}"
        ));
    }
    match wrapper.get("why") {
        Some(Value::String(why)) if why.trim().len() >= 10 => {}
        _ => {
            return Err(format!(
                "{name}: `why` must be a sentence saying which rule is broken"
            ))
        }
    }
    let Some(Value::Object(breaks)) = wrapper.get("breaks") else {
        return Err(format!("{name}: `breaks` must be an object"));
    };
    for key in breaks.keys() {
        if !["path", "rule", "detail"].contains(&key.as_str()) {
            return Err(format!("{name}: unknown key `breaks.{key}`"));
        }
    }
    let text = |key: &str| -> Result<Option<String>, String> {
        match breaks.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!(
                "{name}: `breaks.{key}` must be a string, found {other}"
            )),
        }
    };
    let path = text("path")?.ok_or_else(|| format!("{name}: `breaks.path` is missing"))?;
    let rule = text("rule")?.ok_or_else(|| format!("{name}: `breaks.rule` is missing"))?;
    let detail = text("detail")?;
    if !(path.is_empty() || path.starts_with('/')) {
        return Err(format!(
            "{name}: `breaks.path` must be a JSON pointer (\"\" or starting with /), found {path:?}"
        ));
    }
    if rule.is_empty() {
        return Err(format!("{name}: `breaks.rule` is empty"));
    }
    if rule == "required" && detail.is_none() {
        return Err(format!(
            "{name}: a `required` fixture must name the missing field in `breaks.detail`"
        ));
    }
    Ok(InvalidFixture {
        name: name.clone(),
        breaks: Breaks { path, rule, detail },
        message: wrapper["message"].clone(),
    })
}

fn invalid_fixtures_parsed(info: &ContractInfo) -> Vec<InvalidFixture> {
    let mut problems = Vec::new();
    let parsed: Vec<InvalidFixture> = invalid_fixtures(info)
        .iter()
        .filter_map(|f| parse_invalid(f).map_err(|e| problems.push(e)).ok())
        .collect();
    fail_if_any("malformed invalid fixture(s)", &problems);
    parsed
}

// ---------------------------------------------------------------------------------------------
// Tree
// ---------------------------------------------------------------------------------------------

#[test]
fn fixture_tree_matches_the_inventory() {
    assert!(!CONTRACTS.is_empty(), "CONTRACTS is empty");
    let root = fixtures_root();
    let names: BTreeSet<&str> = all_contracts().map(|c| c.name).collect();
    let mut problems = Vec::new();

    for path in sorted_entries(&root) {
        let shown = display_name(&path);
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !path.is_dir() {
            problems.push(format!(
                "{shown}: unexpected file at the top of fixtures/ (only contract folders, `{OPS_SIGNING_DIR}` and `{FUZZ_DIR}`)"
            ));
        } else if file_name == OPS_SIGNING_DIR {
            if json_files(&path, &mut problems).is_empty() {
                problems.push(format!("{shown}: holds no .json file"));
            }
        } else if file_name == FUZZ_DIR {
            for sub in sorted_entries(&path) {
                if !sub.is_dir() {
                    problems.push(format!(
                        "{}: unexpected file (fixtures/fuzz/ holds one folder per fuzz target)",
                        display_name(&sub)
                    ));
                }
            }
        } else if !names.contains(file_name) {
            problems.push(format!(
                "{shown}: `{file_name}` is not a contract in the inventory (nor `{OPS_SIGNING_DIR}` or `{FUZZ_DIR}`)"
            ));
        } else {
            for sub in sorted_entries(&path) {
                let sub_name = sub.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                if !(sub.is_dir() && (sub_name == "valid" || sub_name == "invalid")) {
                    problems.push(format!(
                        "{}: unexpected entry (a contract folder holds only valid/ and invalid/)",
                        display_name(&sub)
                    ));
                }
            }
        }
    }

    for info in all_contracts() {
        let dir = root.join(info.name);
        for kind in ["valid", "invalid"] {
            let files = json_files(&dir.join(kind), &mut problems);
            if files.is_empty() {
                problems.push(format!(
                    "fixtures/{}/{kind}/: contract `{}` needs at least one {kind} fixture",
                    info.name, info.name
                ));
            }
        }
    }
    fail_if_any("problem(s) in the fixtures tree", &problems);
}

// ---------------------------------------------------------------------------------------------
// Valid fixtures
// ---------------------------------------------------------------------------------------------

#[test]
fn valid_fixtures_decode_and_round_trip() {
    let mut failures = Vec::new();
    let mut seen = 0usize;
    for info in all_contracts() {
        let fixtures = valid_fixtures(info);
        assert!(
            !fixtures.is_empty(),
            "contract `{}` has no valid fixture",
            info.name
        );
        let mut messages: BTreeMap<String, String> = BTreeMap::new();
        for fixture in &fixtures {
            seen += 1;
            let name = &fixture.name;
            match fixture.json() {
                Ok(value) => {
                    if let Some(previous) = messages.insert(value.to_string(), name.clone()) {
                        failures.push(format!("{name}: same message as {previous}"));
                    }
                }
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            }
            let message = match decode_on(info.subject, &fixture.bytes) {
                Ok(message) => message,
                Err(e) => {
                    failures.push(format!("{name}: rejected on {}: {e}", info.subject));
                    continue;
                }
            };
            if message.info().name != info.name {
                failures.push(format!(
                    "{name}: decoded as `{}`, expected `{}`",
                    message.info().name,
                    info.name
                ));
            }
            let encoded = match message.encode() {
                Ok(bytes) => bytes,
                Err(e) => {
                    failures.push(format!("{name}: decoded but does not re-encode: {e}"));
                    continue;
                }
            };
            match decode_on(info.subject, &encoded) {
                Ok(again) if again == message => {}
                Ok(again) => failures.push(format!(
                    "{name}: re-encoded message decodes to a different value\n    first:  {message:?}\n    second: {again:?}"
                )),
                Err(e) => failures.push(format!(
                    "{name}: re-encoded message is rejected: {e}\n    re-encoded: {}",
                    String::from_utf8_lossy(&encoded)
                )),
            }
        }
    }
    assert!(seen > 0, "no valid fixture found");
    fail_if_any("valid fixture failure(s)", &failures);
}

// ---------------------------------------------------------------------------------------------
// Invalid fixtures
// ---------------------------------------------------------------------------------------------

/// Checks that `error` is the rejection `breaks` describes.
fn check_rejection(
    info: &ContractInfo,
    fixture: &InvalidFixture,
    error: &ContractError,
) -> Result<(), String> {
    let breaks = &fixture.breaks;
    if breaks.rule == UNSUPPORTED_VERSION {
        let expected_path = format!("/{}", info.version_field);
        if breaks.path != expected_path {
            return Err(format!(
                "an `{UNSUPPORTED_VERSION}` fixture must point at {expected_path}, not {:?}",
                breaks.path
            ));
        }
        return match error {
            ContractError::UnsupportedVersion { field, .. } if *field == info.version_field => {
                Ok(())
            }
            other => Err(format!(
                "expected UnsupportedVersion on `{}`, got: {other}",
                info.version_field
            )),
        };
    }
    let ContractError::Invalid { violations, .. } = error else {
        return Err(format!(
            "expected a schema violation ({breaks}), got: {error}"
        ));
    };
    if violations.is_empty() {
        return Err("rejected as Invalid with an empty violation list".to_string());
    }
    let listed = || {
        violations
            .iter()
            .map(|v| format!("{:?} `{}`: {}", v.instance_path, v.rule, v.message))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let hit = violations
        .iter()
        .find(|v| v.instance_path == breaks.path && v.rule == breaks.rule);
    let Some(hit) = hit else {
        return Err(format!("no violation {breaks}; violations: {}", listed()));
    };
    if let Some(detail) = &breaks.detail {
        let named = violations.iter().any(|v| {
            v.instance_path == breaks.path
                && v.rule == breaks.rule
                && v.message.contains(detail.as_str())
        });
        if !named {
            return Err(format!(
                "the {breaks} violation does not name `{detail}`: {:?}",
                hit.message
            ));
        }
    }
    let elsewhere: Vec<_> = violations
        .iter()
        .filter(|v| v.instance_path != breaks.path)
        .collect();
    if !elsewhere.is_empty() {
        return Err(format!(
            "breaks more than it says: violations outside {:?}: {}",
            breaks.path,
            listed()
        ));
    }
    Ok(())
}

#[test]
fn invalid_fixtures_are_rejected_for_the_stated_reason() {
    let mut failures = Vec::new();
    let mut seen = 0usize;
    for info in all_contracts() {
        let fixtures = invalid_fixtures_parsed(info);
        assert!(
            !fixtures.is_empty(),
            "contract `{}` has no invalid fixture",
            info.name
        );
        let mut messages: BTreeMap<String, String> = BTreeMap::new();
        for fixture in &fixtures {
            seen += 1;
            let name = &fixture.name;
            if let Some(previous) = messages.insert(fixture.message.to_string(), name.clone()) {
                failures.push(format!("{name}: same message as {previous}"));
            }
            let bytes = serde_json::to_vec(&fixture.message).expect("a JSON value serializes");
            match decode_on(info.subject, &bytes) {
                Ok(_) => failures.push(format!(
                    "{name}: accepted, but should break {}",
                    fixture.breaks
                )),
                Err(error) => {
                    if let Err(why) = check_rejection(info, fixture, &error) {
                        failures.push(format!("{name}: {why}"));
                    }
                }
            }
        }
    }
    assert!(seen > 0, "no invalid fixture found");
    fail_if_any("invalid fixture failure(s)", &failures);
}

// ---------------------------------------------------------------------------------------------
// Coverage computed from the schemas
// ---------------------------------------------------------------------------------------------

/// Wildcard segment of a schema location: any array index or map key.
const ANY: &str = "*";

/// Keywords with no validation effect, or handled by their parent, that the walker skips.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "title",
    "description",
    "type",
    "default",
    "deprecated",
    "examples",
    "contentEncoding",
    "contentMediaType",
];

fn pointer_segment(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The rules a schema imposes, each as the (instance path, rule, detail) an invalid fixture must
/// target. `unknown` collects keywords this walker cannot interpret, so a schema that grows a
/// new kind of rule fails coverage instead of being silently skipped.
struct RuleWalker<'a> {
    info: &'a ContractInfo,
    targets: BTreeSet<Breaks>,
    unknown: Vec<String>,
}

impl RuleWalker<'_> {
    fn add(&mut self, path: &str, rule: &str, detail: Option<&str>) {
        self.targets.insert(Breaks {
            path: path.to_string(),
            rule: rule.to_string(),
            detail: detail.map(str::to_string),
        });
    }

    fn walk(&mut self, schema: &Value, path: &str, location: &str) {
        let Value::Object(schema) = schema else {
            if schema != &Value::Bool(true) {
                self.unknown
                    .push(format!("{location}: non-object schema {schema}"));
            }
            return;
        };
        for (keyword, value) in schema {
            let here = format!("{location}/{keyword}");
            match keyword.as_str() {
                k if ANNOTATIONS.contains(&k) || k.starts_with("x-") => {}
                "required" => {
                    for field in value.as_array().into_iter().flatten() {
                        let field = field.as_str().unwrap_or_default();
                        self.add(path, "required", Some(field));
                    }
                }
                "additionalProperties" => match value {
                    Value::Bool(false) => self.add(path, "additionalProperties", None),
                    other => self.walk(other, &format!("{path}/{ANY}"), &here),
                },
                "properties" => {
                    for (name, sub) in value.as_object().into_iter().flatten() {
                        let sub_path = format!("{path}/{}", pointer_segment(name));
                        self.walk(sub, &sub_path, &format!("{here}/{name}"));
                    }
                }
                "items" => self.walk(value, &format!("{path}/{ANY}"), &here),
                "enum" if path == format!("/{}", self.info.version_field) => {
                    self.add(path, UNSUPPORTED_VERSION, None)
                }
                "format" | "enum" | "const" | "pattern" | "minLength" | "maxLength"
                | "minItems" | "minProperties" | "minimum" => self.add(path, keyword, None),
                "allOf" => {
                    for (i, sub) in value.as_array().into_iter().flatten().enumerate() {
                        self.walk(sub, path, &format!("{here}/{i}"));
                    }
                }
                // `if` only selects; its rules are not violations. `then` is where they are.
                "if" => {}
                "then" => self.walk(value, path, &here),
                // `not: {required: [x]}` forbids field x: target (path, not, x).
                "not" => {
                    let forbidden: Vec<&str> = value
                        .get("required")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    let only_required = value.as_object().is_some_and(|o| o.len() == 1);
                    if forbidden.is_empty() || !only_required {
                        self.unknown
                            .push(format!("{here}: `not` of something other than `required`"));
                    }
                    for field in forbidden {
                        self.add(path, "not", Some(field));
                    }
                }
                _ => self.unknown.push(format!(
                    "{here}: keyword `{keyword}` is not understood by the coverage walker"
                )),
            }
        }
    }
}

fn schema_json(info: &ContractInfo) -> Value {
    serde_json::from_str(info.schema)
        .unwrap_or_else(|e| panic!("schema {} is not JSON: {e}", info.schema_path))
}

fn path_matches(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    pattern.len() == path.len() && pattern.iter().zip(&path).all(|(p, s)| *p == ANY || p == s)
}

#[test]
fn every_schema_rule_has_an_invalid_fixture() {
    let mut missing = Vec::new();
    let mut problems = Vec::new();
    let mut total_targets = 0usize;
    for info in all_contracts() {
        let mut walker = RuleWalker {
            info,
            targets: BTreeSet::new(),
            unknown: Vec::new(),
        };
        walker.walk(&schema_json(info), "", "#");
        for unknown in &walker.unknown {
            problems.push(format!("{}: {unknown}", info.schema_path));
        }
        assert!(
            !walker.targets.is_empty(),
            "schema {} yields no rule to cover",
            info.schema_path
        );
        total_targets += walker.targets.len();

        let fixtures = invalid_fixtures_parsed(info);
        for target in &walker.targets {
            let covered = fixtures.iter().any(|f| {
                f.breaks.rule == target.rule
                    && path_matches(&target.path, &f.breaks.path)
                    && (target.detail.is_none() || f.breaks.detail == target.detail)
            });
            if !covered {
                missing.push(format!(
                    "fixtures/{}/invalid/: nothing breaks {target}",
                    info.name
                ));
            }
        }
        // Not derived per property (that would need a fixture per field), but every contract
        // needs at least one wrong-type message.
        if !fixtures.iter().any(|f| f.breaks.rule == "type") {
            missing.push(format!(
                "fixtures/{}/invalid/: no wrong-type fixture (rule `type`)",
                info.name
            ));
        }
        // ... and at least one required field set to null (a common producer bug).
        let null_required = fixtures.iter().any(|f| {
            f.breaks.rule == "type"
                && f.message.pointer(&f.breaks.path) == Some(&Value::Null)
                && walker.targets.iter().any(|t| {
                    t.rule == "required"
                        && t.detail.as_deref().is_some_and(|field| {
                            path_matches(
                                &format!("{}/{}", t.path, pointer_segment(field)),
                                &f.breaks.path,
                            )
                        })
                })
        });
        if !null_required {
            missing.push(format!(
                "fixtures/{}/invalid/: no fixture sets a required field to null (rule `type`)",
                info.name
            ));
        }
        // A fixture aimed at a path the schema does not describe is a typo.
        for f in &fixtures {
            let known = walker
                .targets
                .iter()
                .any(|t| path_matches(&t.path, &f.breaks.path))
                || f.breaks.path.is_empty();
            if !known && f.breaks.rule != "type" {
                problems.push(format!(
                    "{}: breaks.path {:?} is not a location the schema constrains",
                    f.name, f.breaks.path
                ));
            }
        }
    }
    assert!(total_targets > 0, "the schemas yielded no rule at all");
    fail_if_any(
        "schema construct(s) the coverage walker cannot map",
        &problems,
    );
    fail_if_any("schema rule(s) without an invalid fixture", &missing);
}

/// Every property a schema declares, and every enum value (but the version's), must appear in
/// some valid fixture, so that the accepted side of each rule is exercised too.
#[test]
fn valid_fixtures_use_every_property_and_enum_value() {
    fn walk(
        schema: &Value,
        path: &str,
        props: &mut BTreeSet<String>,
        enums: &mut BTreeSet<(String, String)>,
        version: &str,
    ) {
        let Some(schema) = schema.as_object() else {
            return;
        };
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            if path != version {
                for v in values {
                    enums.insert((path.to_string(), v.to_string()));
                }
            }
        }
        for (name, sub) in schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let sub_path = format!("{path}/{}", pointer_segment(name));
            props.insert(sub_path.clone());
            walk(sub, &sub_path, props, enums, version);
        }
        if let Some(items) = schema.get("items") {
            walk(items, &format!("{path}/{ANY}"), props, enums, version);
        }
    }
    fn collect(value: &Value, path: &str, present: &mut Vec<(String, Value)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let p = format!("{path}/{}", pointer_segment(k));
                    present.push((p.clone(), v.clone()));
                    collect(v, &p, present);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let p = format!("{path}/{i}");
                    present.push((p.clone(), v.clone()));
                    collect(v, &p, present);
                }
            }
            _ => {}
        }
    }

    let mut missing = Vec::new();
    let mut checked = 0usize;
    for info in all_contracts() {
        let mut props = BTreeSet::new();
        let mut enums = BTreeSet::new();
        walk(
            &schema_json(info),
            "",
            &mut props,
            &mut enums,
            &format!("/{}", info.version_field),
        );
        let mut present = Vec::new();
        for fixture in valid_fixtures(info) {
            match fixture.json() {
                Ok(value) => collect(&value, "", &mut present),
                Err(e) => missing.push(e),
            }
        }
        for prop in &props {
            checked += 1;
            if !present.iter().any(|(p, _)| path_matches(prop, p)) {
                missing.push(format!(
                    "fixtures/{}/valid/: no fixture sets {prop}",
                    info.name
                ));
            }
        }
        for (path, value) in &enums {
            checked += 1;
            if !present
                .iter()
                .any(|(p, v)| path_matches(path, p) && &v.to_string() == value)
            {
                missing.push(format!(
                    "fixtures/{}/valid/: no fixture has {path} = {value}",
                    info.name
                ));
            }
        }
    }
    assert!(checked > 0, "the schemas declare no property");
    fail_if_any("gap(s) in the valid fixtures", &missing);
}

// ---------------------------------------------------------------------------------------------
// Ops signing vector
// ---------------------------------------------------------------------------------------------

#[test]
fn ops_signing_vector_matches_the_spec_and_the_signed_fixture() {
    let dir = fixtures_root().join(OPS_SIGNING_DIR);
    let path = dir.join("vector.json");
    let name = display_name(&path);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
    let vector: Map<String, Value> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not a JSON object: {e}"));

    let keys: BTreeSet<&str> = vector.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["comment", "secret", "command", "signature"]),
        "{name}: unexpected keys"
    );
    let comment = vector["comment"].as_str().unwrap_or_default();
    assert!(
        comment.starts_with("TEST KEY ONLY"),
        "{name}: `comment` must start with TEST KEY ONLY"
    );
    assert_eq!(
        vector["secret"],
        json!("test-ops-secret-32chars!!!!!!!!"),
        "{name}: secret differs from SPEC §5"
    );

    // SPEC §5, verbatim.
    let spec_command: Value = serde_json::from_str(
        r#"{"v":1,"id":"00000000-0000-0000-0000-000000000001","ts":"2026-02-14T12:00:00.000Z","type":"halt","target":"all","meta":{"initiator_id":"operator-1","reason":"test"}}"#,
    )
    .expect("the SPEC command is JSON");
    assert_eq!(
        vector["command"], spec_command,
        "{name}: command differs from SPEC §5"
    );
    let signature = vector["signature"].as_str().unwrap_or_default();
    assert_eq!(
        signature, "8fcc63021f7409861b63d4c117fd1100f7b40e39fc800c28750d6c4f6ecc7349",
        "{name}: signature differs from SPEC §5"
    );

    // The unsigned command is not a valid message (meta.signature is required) ...
    let unsigned = serde_json::to_vec(&spec_command).expect("serializes");
    let err = Message::decode(contract("ops_command").subject, &unsigned)
        .expect_err("the unsigned vector command must not pass as a signed command");
    assert!(
        err.violations()
            .iter()
            .any(|v| v.instance_path == "/meta" && v.rule == "required"),
        "{name}: unsigned command should miss /meta signature, got: {err}"
    );

    // ... and the signed fixture is exactly the command with meta.signature set.
    let signed_path = fixtures_root().join("ops_command/valid/signed_halt_all.json");
    let signed_name = display_name(&signed_path);
    let signed_bytes =
        fs::read(&signed_path).unwrap_or_else(|e| panic!("cannot read {signed_name}: {e}"));
    let signed: Value =
        serde_json::from_slice(&signed_bytes).unwrap_or_else(|e| panic!("{signed_name}: {e}"));
    let mut expected = spec_command.clone();
    expected["meta"]["signature"] = json!(signature);
    assert_eq!(
        signed, expected,
        "{signed_name}: must be the vector command with meta.signature = the vector signature"
    );
    Message::decode(contract("ops_command").subject, &signed_bytes)
        .unwrap_or_else(|e| panic!("{signed_name}: rejected: {e}"));
}
