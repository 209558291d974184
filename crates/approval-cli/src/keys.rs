//! Administrator keys on disk (the key files of `contracts::signing`: an Ed25519 PKCS#8
//! document, base64, in a file only its owner can read) and brain's `[[admins]]` snippet.

use std::path::Path;

use contracts::signing::SigningKey;
pub use contracts::signing::{KeyFileError, LoadedKey};

/// Generates a key for `identity` and writes it to `path` (mode 0600, never over an existing
/// file). Returns the key (for its public half).
pub fn generate_to(identity: &str, path: &Path) -> Result<SigningKey, KeyFileError> {
    SigningKey::write_new(identity, path)
}

/// Reads the key in `path` for `identity`.
pub fn load(identity: &str, path: &Path) -> Result<LoadedKey, KeyFileError> {
    SigningKey::load(identity, path)
}

/// The `[[admins]]` entry for brain's policy file that lets `key` sign approval decisions.
pub fn policy_snippet(key: &SigningKey) -> String {
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
    use std::os::unix::fs::PermissionsExt;

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
        let (key, _) = SigningKey::generate("o\"brien");
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
