//! Evidence bundles: container inspect data, recent logs and recent receipts in a tar.gz with
//! a sha256 manifest, stored in the `ops_evidence` object store.

use std::io::Write;

use async_nats::jetstream::{self, object_store};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::docker::ContainerEvidence;

/// The object store of evidence bundles.
pub const EVIDENCE_STORE: &str = "ops_evidence";
/// The manifest inside every bundle: `sha256  path` per file, as `sha256sum` prints it.
pub const MANIFEST: &str = "MANIFEST.sha256";

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("building the evidence archive: {0}")]
    Archive(#[from] std::io::Error),
    #[error("object store `{EVIDENCE_STORE}`: {0}")]
    Store(String),
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

/// The tar.gz of one bundle and its file count.
pub fn archive(
    containers: &[ContainerEvidence],
    receipts: &[Value],
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

/// Stores `bytes` as `name` in the evidence object store.
pub async fn store(
    js: &jetstream::Context,
    name: &str,
    bytes: Vec<u8>,
    files: usize,
) -> Result<StoredBundle, EvidenceError> {
    let store = js
        .get_object_store(EVIDENCE_STORE)
        .await
        .map_err(|e| EvidenceError::Store(format!("opening: {e}")))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let size = bytes.len() as u64;
    let meta = object_store::ObjectMetadata {
        name: name.to_string(),
        description: Some(format!("ops-worker evidence bundle, sha256 {sha256}")),
        ..Default::default()
    };
    store
        .put(meta, &mut bytes.as_slice())
        .await
        .map_err(|e| EvidenceError::Store(format!("writing {name}: {e}")))?;
    Ok(StoredBundle {
        object_store: EVIDENCE_STORE.into(),
        name: name.into(),
        size,
        sha256,
        files,
    })
}

/// Reads a bundle back (the operator's `evidence get`).
pub async fn fetch(js: &jetstream::Context, name: &str) -> Result<Vec<u8>, EvidenceError> {
    use tokio::io::AsyncReadExt;
    let store = js
        .get_object_store(EVIDENCE_STORE)
        .await
        .map_err(|e| EvidenceError::Store(format!("opening: {e}")))?;
    let mut object = store
        .get(name)
        .await
        .map_err(|e| EvidenceError::Store(format!("reading {name}: {e}")))?;
    let mut bytes = Vec::new();
    object.read_to_end(&mut bytes).await?;
    Ok(bytes)
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
