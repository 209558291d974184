//! Administrator keys on disk: an Ed25519 PKCS#8 document, base64, in a file only its owner
//! can read.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use contracts::approval_signature::AdminKey;

/// Why a key file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error(
        "{0} already exists; refusing to overwrite a key (move it away or choose another --out)"
    )]
    Exists(String),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("reading key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} is not a base64 PKCS#8 Ed25519 key: {reason}")]
    Invalid { path: String, reason: String },
}

/// Generates a key for `identity` and writes it to `path` (mode 0600, never over an existing
/// file). Returns the key (for its public half).
pub fn generate_to(identity: &str, path: &Path) -> Result<AdminKey, KeyFileError> {
    let shown = path.display().to_string();
    let (key, pkcs8) = AdminKey::generate(identity);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => KeyFileError::Exists(shown.clone()),
            _ => KeyFileError::Write {
                path: shown.clone(),
                source,
            },
        })?;
    let write = |file: &mut std::fs::File| -> std::io::Result<()> {
        // The umask may only have removed bits; make the mode exact.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(&pkcs8);
        file.write_all(encoded.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    };
    write(&mut file).map_err(|source| {
        let _ = std::fs::remove_file(path);
        KeyFileError::Write {
            path: shown.clone(),
            source,
        }
    })?;
    Ok(key)
}

/// What loading a key found.
pub struct LoadedKey {
    pub key: AdminKey,
    /// Set when the file can be read by others than its owner.
    pub warning: Option<String>,
}

/// Reads the key in `path` for `identity`.
pub fn load(identity: &str, path: &Path) -> Result<LoadedKey, KeyFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: shown.clone(),
        source,
    })?;
    let pkcs8 = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| KeyFileError::Invalid {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    let key = AdminKey::from_pkcs8(identity, &pkcs8).map_err(|e| KeyFileError::Invalid {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let warning = std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
        .filter(|mode| mode & 0o077 != 0)
        .map(|mode| {
            format!("key file {shown} has mode {mode:04o}: others can read it; `chmod 600 {shown}`")
        });
    Ok(LoadedKey { key, warning })
}

/// The `[[admins]]` entry for brain's policy file that lets `key` sign approval decisions.
pub fn policy_snippet(key: &AdminKey) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    format!(
        "[[admins]]\nidentity = {}\npublic_key = {}\n",
        quote(key.identity()),
        quote(&key.public_key_base64())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_keys_are_private_reload_and_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice.key");
        let key = generate_to("alice", &path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = load("alice", &path).unwrap();
        assert!(loaded.warning.is_none());
        assert_eq!(loaded.key.public_key_base64(), key.public_key_base64());
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(
            generate_to("alice", &path),
            Err(KeyFileError::Exists(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), before);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load("alice", &path).unwrap().warning.is_some());
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            load("alice", &path),
            Err(KeyFileError::Invalid { .. })
        ));
    }

    #[test]
    fn the_policy_snippet_is_valid_toml() {
        let (key, _) = AdminKey::generate("o\"brien");
        let snippet = policy_snippet(&key);
        let parsed: toml::Table = snippet.parse().unwrap();
        let admin = &parsed["admins"].as_array().unwrap()[0];
        assert_eq!(admin["identity"].as_str(), Some("o\"brien"));
        assert_eq!(
            admin["public_key"].as_str(),
            Some(key.public_key_base64().as_str())
        );
    }
}
