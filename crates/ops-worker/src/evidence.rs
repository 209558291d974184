//! Evidence bundles: container inspect data, recent logs and recent receipts in a tar.gz with
//! a sha256 manifest, stored in the `ops_evidence` object store.
//!
//! A bundle holds, in this order:
//!
//! | file | what |
//! | --- | --- |
//! | `containers/<name>/inspect.json` | the engine's inspect answer, redacted ([`crate::redact`]) |
//! | `containers/<name>/logs.txt` | the last log lines (at most [`MAX_LOG_LINES`] and [`MAX_LOG_BYTES`]), known secrets replaced |
//! | `receipts.jsonl` | the recent receipts of the ops stream, one per line, as published |
//! | `redactions.json` ([`REDACTIONS`]) | every value removed: container, file, JSON Pointer, name, reason; never the value |
//! | `bundle.json` ([`SUMMARY`]) | the limits applied: log lines used and requested, the caps, which logs were cut |
//! | `MANIFEST.sha256` ([`MANIFEST`]) | `sha256  path` of every file above |
//!
//! Every environment value is redacted, so a bundle shows which variables a container has but
//! none of their values. A `log_lines` request above [`MAX_LOG_LINES`] is clamped to it (the
//! bundle is still exported: evidence taken during an incident should not be lost to a typo);
//! the receipt's `log_lines` / `log_lines_requested` and `bundle.json` say so.

use std::io::Write;

use contracts::buckets::OpsEvidence;
use contracts::bus::{Bus, ObjectsError};
use contracts::services::{OpsConsole, OpsWorker};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::docker::ContainerEvidence;
pub use crate::docker::MAX_LOG_BYTES;
use crate::redact;

/// The object store of evidence bundles.
pub const EVIDENCE_STORE: &str = <contracts::buckets::OpsEvidence as contracts::Bucket>::INFO.name;
/// The manifest inside every bundle: `sha256  path` per file, as `sha256sum` prints it.
pub const MANIFEST: &str = "MANIFEST.sha256";
/// The redaction record inside every bundle.
pub const REDACTIONS: &str = "redactions.json";
/// The limits a bundle was collected with.
pub const SUMMARY: &str = "bundle.json";
/// The most log lines per container a bundle holds; larger requests are clamped to it.
pub const MAX_LOG_LINES: usize = 5000;

/// How many log lines per container a bundle holds, and how many were asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLines {
    /// Lines asked of the engine: `requested`, at most [`MAX_LOG_LINES`].
    pub used: usize,
    /// What the command (or the configuration) asked for.
    pub requested: u64,
}

impl LogLines {
    /// `requested` lines, clamped to [`MAX_LOG_LINES`].
    pub fn clamp(requested: u64) -> Self {
        let used = usize::try_from(requested)
            .unwrap_or(usize::MAX)
            .min(MAX_LOG_LINES);
        Self { used, requested }
    }

    /// True when fewer lines are used than were requested.
    pub fn clamped(&self) -> bool {
        self.requested > self.used as u64
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("building the evidence archive: {0}")]
    Archive(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] ObjectsError),
}

/// A bundle as stored: what the receipt reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredBundle {
    pub object_store: String,
    pub name: String,
    pub size: u64,
    /// sha256 of the tar.gz, lowercase hex.
    pub sha256: String,
    pub files: usize,
}

/// How many values were redacted in `containers`.
pub fn redaction_count(containers: &[ContainerEvidence]) -> usize {
    containers.iter().map(|c| c.redactions.len()).sum()
}

/// The tar.gz of one bundle and its file count. `containers` come redacted from
/// [`crate::docker::Engine::evidence`]; this writes their redaction records to [`REDACTIONS`].
pub fn archive(
    containers: &[ContainerEvidence],
    receipts: &[Value],
    log_lines: LogLines,
) -> Result<(Vec<u8>, usize), std::io::Error> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for container in containers {
        let inspect = serde_json::to_vec_pretty(&container.inspect).expect("inspect data is JSON");
        files.push((
            format!("containers/{}/inspect.json", container.name),
            inspect,
        ));
        files.push((
            format!("containers/{}/logs.txt", container.name),
            container.logs.clone().into_bytes(),
        ));
    }
    let mut lines = Vec::new();
    for receipt in receipts {
        serde_json::to_writer(&mut lines, receipt).expect("receipts are JSON");
        lines.push(b'\n');
    }
    files.push(("receipts.jsonl".into(), lines));
    files.push((REDACTIONS.into(), pretty(&redaction_record(containers))));
    files.push((SUMMARY.into(), pretty(&summary(containers, log_lines))));
    let manifest: String = files
        .iter()
        .map(|(path, bytes)| format!("{}  {path}\n", hex::encode(Sha256::digest(bytes))))
        .collect();
    files.push((MANIFEST.into(), manifest.into_bytes()));

    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(encoder);
    let mtime = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    for (path, bytes) in &files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_cksum();
        tar.append_data(&mut header, path, bytes.as_slice())?;
    }
    let mut encoder = tar.into_inner()?;
    encoder.flush()?;
    Ok((encoder.finish()?, files.len()))
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("JSON values serialize");
    bytes.push(b'\n');
    bytes
}

/// `redactions.json`: every redaction of every container, with the bundle file it is in.
fn redaction_record(containers: &[ContainerEvidence]) -> Value {
    let mut listed = Vec::new();
    for container in containers {
        for redaction in &container.redactions {
            let mut entry = serde_json::to_value(redaction).expect("redactions serialize");
            let file = entry["file"].as_str().unwrap_or_default().to_owned();
            entry["file"] = json!(format!("containers/{}/{file}", container.name));
            let object = entry.as_object_mut().expect("a redaction is an object");
            object.insert("container".into(), json!(container.name));
            listed.push(entry);
        }
    }
    json!({
        "marker": redact::MARKER,
        "count": listed.len(),
        "sensitive_words": redact::SENSITIVE_WORDS,
        "redactions": listed,
    })
}

/// `bundle.json`: the limits the bundle was collected with.
fn summary(containers: &[ContainerEvidence], log_lines: LogLines) -> Value {
    let mut summary = json!({
        "log_lines": log_lines.used,
        "log_lines_max": MAX_LOG_LINES,
        "log_bytes_max": MAX_LOG_BYTES,
        "redactions": redaction_count(containers),
        "containers": containers.iter().map(|c| json!({
            "name": c.name,
            "logs_truncated": c.logs_truncated,
            "redactions": c.redactions.len(),
        })).collect::<Vec<_>>(),
    });
    if log_lines.clamped() {
        summary["log_lines_requested"] = json!(log_lines.requested);
    }
    summary
}

/// Stores `bytes` as `name` in the evidence object store.
pub async fn store(
    bus: &Bus<OpsWorker>,
    name: &str,
    bytes: Vec<u8>,
    files: usize,
) -> Result<StoredBundle, EvidenceError> {
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let size = bytes.len() as u64;
    bus.objects::<OpsEvidence>()
        .await?
        .put(
            name,
            &bytes,
            format!("ops-worker evidence bundle, sha256 {sha256}"),
        )
        .await?;
    Ok(StoredBundle {
        object_store: EVIDENCE_STORE.into(),
        name: name.into(),
        size,
        sha256,
        files,
    })
}

/// Reads a bundle back (the operator's `evidence get`).
pub async fn fetch(bus: &Bus<OpsConsole>, name: &str) -> Result<Vec<u8>, EvidenceError> {
    Ok(bus.objects::<OpsEvidence>().await?.get(name).await?)
}

/// The files of a bundle (path → bytes), checked against its manifest.
pub fn unpack_verified(bundle: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    use std::io::Read;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bundle));
    let mut files = Vec::new();
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        files.push((path, bytes));
    }
    let manifest = files
        .iter()
        .find(|(p, _)| p == MANIFEST)
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .ok_or("the bundle has no manifest")?;
    for line in manifest.lines() {
        let (digest, path) = line
            .split_once("  ")
            .ok_or_else(|| format!("bad manifest line {line:?}"))?;
        let (_, bytes) = files
            .iter()
            .find(|(p, _)| p == path)
            .ok_or_else(|| format!("{path} is in the manifest but not in the bundle"))?;
        if hex::encode(Sha256::digest(bytes)) != digest {
            return Err(format!("{path} does not match its manifest digest"));
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::{File, Reason, Redaction};

    fn container(
        name: &str,
        redactions: Vec<Redaction>,
        logs_truncated: bool,
    ) -> ContainerEvidence {
        ContainerEvidence {
            name: name.into(),
            inspect: json!({ "Config": { "Env": ["DB_PASSWORD=[redacted]"] } }),
            logs: "line\n".into(),
            logs_truncated,
            redactions,
        }
    }

    fn env_redaction() -> Redaction {
        Redaction {
            file: File::Inspect,
            path: "/Config/Env/0".into(),
            name: Some("DB_PASSWORD".into()),
            reason: Reason::EnvironmentValue,
            keyword: None,
            occurrences: None,
        }
    }

    #[test]
    fn log_lines_above_the_maximum_are_clamped() {
        assert_eq!(
            LogLines::clamp(200),
            LogLines {
                used: 200,
                requested: 200
            }
        );
        assert!(!LogLines::clamp(5000).clamped());
        let over = LogLines::clamp(u64::MAX);
        assert_eq!((over.used, over.clamped()), (MAX_LOG_LINES, true));
    }

    #[test]
    fn the_bundle_lists_its_redactions_and_limits_in_the_manifest() {
        let containers = [
            container("web-1", vec![env_redaction()], false),
            container("web-2", vec![], true),
        ];
        let (bytes, count) = archive(&containers, &[], LogLines::clamp(9000)).unwrap();
        let files: std::collections::BTreeMap<_, _> =
            unpack_verified(&bytes).unwrap().into_iter().collect();
        assert_eq!(count, files.len());
        let manifest = String::from_utf8_lossy(&files[MANIFEST]).into_owned();
        for path in [
            REDACTIONS,
            SUMMARY,
            "receipts.jsonl",
            "containers/web-1/inspect.json",
        ] {
            assert!(
                manifest.contains(&format!("  {path}\n")),
                "{path}: {manifest}"
            );
        }
        let record: Value = serde_json::from_slice(&files[REDACTIONS]).unwrap();
        assert_eq!(record["count"], 1);
        assert_eq!(record["marker"], "[redacted]");
        assert_eq!(
            record["redactions"][0],
            json!({
                "container": "web-1",
                "file": "containers/web-1/inspect.json",
                "path": "/Config/Env/0",
                "name": "DB_PASSWORD",
                "reason": "environment_value",
            })
        );
        let summary: Value = serde_json::from_slice(&files[SUMMARY]).unwrap();
        assert_eq!(summary["log_lines"], 5000);
        assert_eq!(summary["log_lines_requested"], 9000);
        assert_eq!(summary["log_bytes_max"], MAX_LOG_BYTES);
        assert_eq!(summary["containers"][1]["logs_truncated"], true);
        assert_eq!(summary["redactions"], 1);

        let (bytes, _) = archive(&containers, &[], LogLines::clamp(10)).unwrap();
        let files: std::collections::BTreeMap<_, _> =
            unpack_verified(&bytes).unwrap().into_iter().collect();
        let summary: Value = serde_json::from_slice(&files[SUMMARY]).unwrap();
        assert_eq!(summary["log_lines"], 10);
        assert!(summary.get("log_lines_requested").is_none(), "{summary}");
    }
}
