//! Ed25519 signatures of messages, so nobody on the bus can forge or alter one: the producer
//! signs with its private key, the consumer verifies against the public keys it trusts.
//!
//! Two contracts use it (see `signature` in the inventory):
//! - `orion.approval_decision.v1`: approval-cli signs with the administrator's key; brain
//!   verifies against the policy's `[[admins]]`, the signer being the decision's
//!   `admin_identity` ([`Verifier::verify_claimed`] with [`APPROVAL_SIGNER_FIELD`]);
//! - `orion.action.v1`: brain signs every action with its own key; commander verifies against
//!   brain's trusted keys ([`Verifier::verify_payload`] as [`BRAIN_SIGNER`]) before it claims or
//!   plans anything.
//!
//! The scheme: the `Orion-Signature` header ([`SIGNATURE_HEADER`]) carries
//! `ed25519:<base64 signature>`, over the RFC 8785 canonical JSON of the message exactly as
//! published. Canonical JSON makes key order and whitespace irrelevant; any change of a value
//! breaks the signature. Ed25519 signatures are deterministic, so re-publishing the same message
//! (an outbox replay) carries the same header.
//!
//! A signer may have several trusted keys at once (rotation: trust the new key, switch the
//! signer to it, then drop the old one). Private keys live in files holding a base64 PKCS#8
//! document readable only by their owner ([`SigningKey::write_new`], [`SigningKey::load`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use ring::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde_json::Value;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Orion-Signature";
/// The field of an approval decision that names its signer.
pub const APPROVAL_SIGNER_FIELD: &str = "admin_identity";
/// The identity under which brain signs actions (and commander trusts its keys).
pub const BRAIN_SIGNER: &str = "brain";
const PREFIX: &str = "ed25519:";
const PUBLIC_KEY_LEN: usize = 32;

/// Why a signature does not verify, or a key is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the message carries no {SIGNATURE_HEADER} header")]
    Missing,
    #[error("the {SIGNATURE_HEADER} header is not `ed25519:<base64>`")]
    Malformed,
    #[error("the payload is not JSON: {0}")]
    NotJson(String),
    #[error("`{0}` is not a trusted signer")]
    UnknownSigner(String),
    #[error("the signature matches no trusted key of `{0}`: signed by another key, or altered after signing")]
    Mismatch(String),
    #[error("the message has no `{0}` naming its signer")]
    NoIdentity(String),
    #[error("not a valid Ed25519 key: {0}")]
    BadKey(String),
}

fn signed_bytes(message: &Value) -> Vec<u8> {
    serde_json_canonicalizer::to_vec(message).expect("a JSON value canonicalizes")
}

fn base64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A signer's identity and private key.
pub struct SigningKey {
    identity: String,
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// A new key for `identity`; returns it with its PKCS#8 document (what to store, secretly).
    pub fn generate(identity: &str) -> (Self, Vec<u8>) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("the system RNG works");
        let key = Self::from_pkcs8(identity, pkcs8.as_ref()).expect("a fresh key parses");
        (key, pkcs8.as_ref().to_vec())
    }

    pub fn from_pkcs8(identity: &str, pkcs8: &[u8]) -> Result<Self, SignatureError> {
        let pair =
            Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| SignatureError::BadKey(e.to_string()))?;
        Ok(Self {
            identity: identity.to_string(),
            pair,
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The public key, base64 (what the verifying side is configured with).
    pub fn public_key_base64(&self) -> String {
        base64().encode(self.pair.public_key().as_ref())
    }

    /// The header value for `message` (the JSON exactly as it will be published).
    pub fn sign(&self, message: &Value) -> String {
        let signature = self.pair.sign(&signed_bytes(message));
        format!("{PREFIX}{}", base64().encode(signature.as_ref()))
    }

    /// Generates a key for `identity` and writes it to `path` (base64 PKCS#8, mode 0600, never
    /// over an existing file). Returns the key (for its public half).
    pub fn write_new(identity: &str, path: &Path) -> Result<Self, KeyFileError> {
        let shown = path.display().to_string();
        let (key, pkcs8) = Self::generate(identity);
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
            file.write_all(base64().encode(&pkcs8).as_bytes())?;
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

    /// Reads the key file `path` (as [`SigningKey::write_new`] writes it) for `identity`.
    pub fn load(identity: &str, path: &Path) -> Result<LoadedKey, KeyFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
            path: shown.clone(),
            source,
        })?;
        let invalid = |reason: String| KeyFileError::Invalid {
            path: shown.clone(),
            reason,
        };
        let pkcs8 = base64()
            .decode(text.trim())
            .map_err(|e| invalid(e.to_string()))?;
        let key = Self::from_pkcs8(identity, &pkcs8).map_err(|e| invalid(e.to_string()))?;
        let warning = std::fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
            .filter(|mode| mode & 0o077 != 0)
            .map(|mode| {
                format!(
                    "key file {shown} has mode {mode:04o}: others can read it; `chmod 600 {shown}`"
                )
            });
        Ok(LoadedKey { key, warning })
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("identity", &self.identity)
            .field("public_key", &self.public_key_base64())
            .finish()
    }
}

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

/// What loading a key file found.
#[derive(Debug)]
pub struct LoadedKey {
    pub key: SigningKey,
    /// Set when the file can be read by others than its owner.
    pub warning: Option<String>,
}

/// The signers whose messages count: identity → its trusted public keys (several during a
/// rotation).
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    keys: BTreeMap<String, Vec<Vec<u8>>>,
}

impl Verifier {
    /// Trusts `public_key_base64` for `identity`, in addition to its other keys.
    pub fn add(&mut self, identity: &str, public_key_base64: &str) -> Result<(), SignatureError> {
        let key = base64()
            .decode(public_key_base64.trim())
            .map_err(|e| SignatureError::BadKey(format!("{identity}: {e}")))?;
        if key.len() != PUBLIC_KEY_LEN {
            return Err(SignatureError::BadKey(format!(
                "{identity}: an Ed25519 public key is {PUBLIC_KEY_LEN} bytes, got {}",
                key.len()
            )));
        }
        let keys = self.keys.entry(identity.to_string()).or_default();
        if !keys.contains(&key) {
            keys.push(key);
        }
        Ok(())
    }

    /// A verifier trusting each of `public_keys_base64` for `identity`.
    pub fn for_signer<'a>(
        identity: &str,
        public_keys_base64: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, SignatureError> {
        let mut verifier = Self::default();
        for key in public_keys_base64 {
            verifier.add(identity, key)?;
        }
        Ok(verifier)
    }

    /// How many signers it trusts.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many keys it trusts for `identity`.
    pub fn key_count(&self, identity: &str) -> usize {
        self.keys.get(identity).map_or(0, Vec::len)
    }

    /// Checks `header` against `message` (as received) signed by `signer`: it must verify with
    /// one of `signer`'s trusted keys.
    pub fn verify(
        &self,
        signer: &str,
        message: &Value,
        header: Option<&str>,
    ) -> Result<(), SignatureError> {
        let signature = parse_header(header)?;
        self.check(signer, message, &signature)
    }

    /// [`Verifier::verify`] of the raw payload bytes as received (parsed as JSON, then
    /// canonicalized).
    pub fn verify_payload(
        &self,
        signer: &str,
        payload: &[u8],
        header: Option<&str>,
    ) -> Result<(), SignatureError> {
        let signature = parse_header(header)?;
        let message: Value =
            serde_json::from_slice(payload).map_err(|e| SignatureError::NotJson(e.to_string()))?;
        self.check(signer, &message, &signature)
    }

    /// [`Verifier::verify`] with the signer named by the message's `signer_field` (an approval
    /// decision's `admin_identity`). Returns the signer.
    pub fn verify_claimed<'m>(
        &self,
        message: &'m Value,
        signer_field: &str,
        header: Option<&str>,
    ) -> Result<&'m str, SignatureError> {
        let signature = parse_header(header)?;
        let signer = message
            .get(signer_field)
            .and_then(Value::as_str)
            .ok_or_else(|| SignatureError::NoIdentity(signer_field.to_string()))?;
        self.check(signer, message, &signature)?;
        Ok(signer)
    }

    fn check(&self, signer: &str, message: &Value, signature: &[u8]) -> Result<(), SignatureError> {
        let keys = self
            .keys
            .get(signer)
            .ok_or_else(|| SignatureError::UnknownSigner(signer.to_string()))?;
        let bytes = signed_bytes(message);
        keys.iter()
            .any(|key| {
                UnparsedPublicKey::new(&signature::ED25519, key)
                    .verify(&bytes, signature)
                    .is_ok()
            })
            .then_some(())
            .ok_or_else(|| SignatureError::Mismatch(signer.to_string()))
    }
}

fn parse_header(header: Option<&str>) -> Result<Vec<u8>, SignatureError> {
    let encoded = header
        .ok_or(SignatureError::Missing)?
        .trim()
        .strip_prefix(PREFIX)
        .ok_or(SignatureError::Malformed)?;
    base64()
        .decode(encoded)
        .map_err(|_| SignatureError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signed_by_a_trusted_key_verifies_and_nothing_else_does() {
        let (alice, pkcs8) = SigningKey::generate("alice");
        let (mallory, _) = SigningKey::generate("alice");
        let mut verifier = Verifier::default();
        verifier.add("alice", &alice.public_key_base64()).unwrap();
        let decision = json!({"admin_identity": "alice", "decision": "approve", "reason": "ok"});
        let header = alice.sign(&decision);
        assert_eq!(verifier.verify("alice", &decision, Some(&header)), Ok(()));
        assert_eq!(
            verifier.verify_claimed(&decision, APPROVAL_SIGNER_FIELD, Some(&header)),
            Ok("alice")
        );
        let reloaded = SigningKey::from_pkcs8("alice", &pkcs8).unwrap();
        assert_eq!(reloaded.sign(&decision), header, "Ed25519 is deterministic");

        let mut altered = decision.clone();
        altered["decision"] = json!("force");
        assert_eq!(
            verifier.verify("alice", &altered, Some(&header)),
            Err(SignatureError::Mismatch("alice".into()))
        );
        assert_eq!(
            verifier.verify("alice", &decision, Some(&mallory.sign(&decision))),
            Err(SignatureError::Mismatch("alice".into()))
        );
        assert_eq!(
            verifier.verify("alice", &decision, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verifier.verify("alice", &decision, Some("rsa:abc")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verifier.verify("alice", &decision, Some("ed25519:not base64!")),
            Err(SignatureError::Malformed)
        );
        let bob = json!({"admin_identity": "bob", "decision": "approve"});
        assert_eq!(
            verifier.verify_claimed(&bob, APPROVAL_SIGNER_FIELD, Some(&alice.sign(&bob))),
            Err(SignatureError::UnknownSigner("bob".into()))
        );
        let nobody = json!({"decision": "approve"});
        assert_eq!(
            verifier.verify_claimed(&nobody, APPROVAL_SIGNER_FIELD, Some(&alice.sign(&nobody))),
            Err(SignatureError::NoIdentity("admin_identity".into()))
        );
        // Key order and whitespace do not matter: the canonical form is signed.
        let reordered = br#"{ "reason":"ok", "decision":"approve", "admin_identity":"alice" }"#;
        assert_eq!(
            verifier.verify_payload("alice", reordered, Some(&header)),
            Ok(())
        );
        assert!(matches!(
            verifier.verify_payload("alice", b"{not json", Some(&header)),
            Err(SignatureError::NotJson(_))
        ));
    }

    #[test]
    fn a_signer_may_have_several_keys_during_a_rotation() {
        let (old, _) = SigningKey::generate(BRAIN_SIGNER);
        let (new, _) = SigningKey::generate(BRAIN_SIGNER);
        let (other, _) = SigningKey::generate(BRAIN_SIGNER);
        let verifier = Verifier::for_signer(
            BRAIN_SIGNER,
            [
                old.public_key_base64().as_str(),
                new.public_key_base64().as_str(),
                old.public_key_base64().as_str(),
            ],
        )
        .unwrap();
        assert_eq!(verifier.key_count(BRAIN_SIGNER), 2, "duplicates count once");
        let action = json!({"action_id": "a", "action_type": "restart_service"});
        let payload = serde_json::to_vec(&action).unwrap();
        for key in [&old, &new] {
            assert_eq!(
                verifier.verify_payload(BRAIN_SIGNER, &payload, Some(&key.sign(&action))),
                Ok(())
            );
        }
        assert_eq!(
            verifier.verify_payload(BRAIN_SIGNER, &payload, Some(&other.sign(&action))),
            Err(SignatureError::Mismatch(BRAIN_SIGNER.into()))
        );
        assert!(matches!(
            Verifier::for_signer(BRAIN_SIGNER, ["AAAA"]),
            Err(SignatureError::BadKey(_))
        ));
        assert!(matches!(
            Verifier::for_signer(BRAIN_SIGNER, ["not base64"]),
            Err(SignatureError::BadKey(_))
        ));
    }

    #[test]
    fn key_files_are_private_reload_and_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("brain.key");
        let key = SigningKey::write_new(BRAIN_SIGNER, &path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = SigningKey::load(BRAIN_SIGNER, &path).unwrap();
        assert!(loaded.warning.is_none());
        assert_eq!(loaded.key.public_key_base64(), key.public_key_base64());
        assert_eq!(loaded.key.identity(), BRAIN_SIGNER);
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(
            SigningKey::write_new(BRAIN_SIGNER, &path),
            Err(KeyFileError::Exists(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), before);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(SigningKey::load(BRAIN_SIGNER, &path)
            .unwrap()
            .warning
            .is_some());
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            SigningKey::load(BRAIN_SIGNER, &path),
            Err(KeyFileError::Invalid { .. })
        ));
        assert!(matches!(
            SigningKey::load(BRAIN_SIGNER, &dir.path().join("missing.key")),
            Err(KeyFileError::Read { .. })
        ));
    }
}
