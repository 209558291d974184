//! The HMAC keys from the environment, the same way for ops-worker, `ops-worker send` and
//! commander: `OPS_SECRET` (signs) then the comma-separated `OPS_SECRET_PREVIOUS` (still
//! accepted during a rotation), or the lines of `OPS_SECRET_FILE` (the first one signing; empty
//! lines and `#` comments skipped).

use std::path::PathBuf;

use contracts::runtime::Environment;

use crate::signing::SigningKeys;

/// Why no usable key was found, phrased as what to set.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("no HMAC secret: set OPS_SECRET (or OPS_SECRET_FILE, a file with one secret per line, the first one signing) — commands are never sent or run unsigned")]
    Missing,
    #[error("OPS_SECRET_FILE={path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} — set a strong OPS_SECRET")]
    Weak(#[source] crate::signing::WeakSecret),
}

/// The signing keys from `env`, checked.
pub fn keys_from_env(env: &dyn Environment) -> Result<SigningKeys, KeysError> {
    SigningKeys::new(&secrets(env)?).map_err(KeysError::Weak)
}

/// The secrets as configured, signing one first (for checks on the secrets themselves).
pub fn secrets(env: &dyn Environment) -> Result<Vec<String>, KeysError> {
    let mut secrets = Vec::new();
    if let Some(secret) = env.var("OPS_SECRET") {
        secrets.push(secret);
        if let Some(previous) = env.var("OPS_SECRET_PREVIOUS") {
            secrets.extend(
                previous
                    .split(',')
                    .map(str::to_string)
                    .filter(|s| !s.is_empty()),
            );
        }
    } else if let Some(path) = env.var("OPS_SECRET_FILE") {
        let text = std::fs::read_to_string(&path).map_err(|source| KeysError::File {
            path: path.clone().into(),
            source,
        })?;
        secrets.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    if secrets.is_empty() {
        return Err(KeysError::Missing);
    }
    Ok(secrets)
}
