//! Ed25519 signatures of approval decisions, so nobody on the bus can forge one: approval-cli
//! signs with the administrator's private key, brain verifies against the configured public keys.
//!
//! The signature travels in the `Orion-Signature` header (see the inventory) as
//! `ed25519:<base64 signature>`, over the RFC 8785 canonical JSON of the decision exactly as
//! published. The signer is the decision's `admin_identity`.

use std::collections::BTreeMap;

use base64::Engine;
use ring::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde_json::Value;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Orion-Signature";
const PREFIX: &str = "ed25519:";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApprovalSignatureError {
    #[error("the approval decision carries no {SIGNATURE_HEADER} header")]
    Missing,
    #[error("the {SIGNATURE_HEADER} header is not `ed25519:<base64>`")]
    Malformed,
    #[error("`{0}` is not a configured administrator")]
    UnknownAdmin(String),
    #[error("the signature does not match administrator `{0}`'s key: forged or altered")]
    Mismatch(String),
    #[error("the decision has no admin_identity")]
    NoIdentity,
    #[error("not a valid Ed25519 key: {0}")]
    BadKey(String),
}

fn signed_bytes(decision: &Value) -> Vec<u8> {
    serde_json_canonicalizer::to_vec(decision).expect("a JSON value canonicalizes")
}

/// An administrator's signing key.
pub struct AdminKey {
    identity: String,
    pair: Ed25519KeyPair,
}

impl AdminKey {
    /// A new key for `identity`; returns it with its PKCS#8 document (what to store, secretly).
    pub fn generate(identity: &str) -> (Self, Vec<u8>) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("the system RNG works");
        let key = Self::from_pkcs8(identity, pkcs8.as_ref()).expect("a fresh key parses");
        (key, pkcs8.as_ref().to_vec())
    }

    pub fn from_pkcs8(identity: &str, pkcs8: &[u8]) -> Result<Self, ApprovalSignatureError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| ApprovalSignatureError::BadKey(e.to_string()))?;
        Ok(Self {
            identity: identity.to_string(),
            pair,
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The public key, base64 (what brain's configuration lists).
    pub fn public_key_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.pair.public_key().as_ref())
    }

    /// The header value for `decision` (the JSON exactly as it will be published).
    pub fn sign(&self, decision: &Value) -> String {
        let signature = self.pair.sign(&signed_bytes(decision));
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(signature.as_ref())
        )
    }
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminKey")
            .field("identity", &self.identity)
            .field("public_key", &self.public_key_base64())
            .finish()
    }
}

/// The administrators whose decisions count: identity → public key.
#[derive(Debug, Clone, Default)]
pub struct AdminKeyring {
    keys: BTreeMap<String, Vec<u8>>,
}

impl AdminKeyring {
    /// Adds `identity` with its base64 public key.
    pub fn add(
        &mut self,
        identity: &str,
        public_key_base64: &str,
    ) -> Result<(), ApprovalSignatureError> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(public_key_base64.trim())
            .map_err(|e| ApprovalSignatureError::BadKey(format!("{identity}: {e}")))?;
        if key.len() != 32 {
            return Err(ApprovalSignatureError::BadKey(format!(
                "{identity}: an Ed25519 public key is 32 bytes, got {}",
                key.len()
            )));
        }
        self.keys.insert(identity.to_string(), key);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks `header` against the raw decision (as received) and its `admin_identity`.
    pub fn verify(
        &self,
        decision: &Value,
        header: Option<&str>,
    ) -> Result<(), ApprovalSignatureError> {
        let header = header.ok_or(ApprovalSignatureError::Missing)?;
        let encoded = header
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(ApprovalSignatureError::Malformed)?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| ApprovalSignatureError::Malformed)?;
        let identity = decision
            .get("admin_identity")
            .and_then(Value::as_str)
            .ok_or(ApprovalSignatureError::NoIdentity)?;
        let key = self
            .keys
            .get(identity)
            .ok_or_else(|| ApprovalSignatureError::UnknownAdmin(identity.to_string()))?;
        UnparsedPublicKey::new(&signature::ED25519, key)
            .verify(&signed_bytes(decision), &signature)
            .map_err(|_| ApprovalSignatureError::Mismatch(identity.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signed_by_a_configured_admin_verifies_and_nothing_else_does() {
        let (alice, pkcs8) = AdminKey::generate("alice");
        let (mallory, _) = AdminKey::generate("alice");
        let mut ring = AdminKeyring::default();
        ring.add("alice", &alice.public_key_base64()).unwrap();
        let decision = json!({"admin_identity": "alice", "decision": "approve", "reason": "ok"});
        let header = alice.sign(&decision);
        assert_eq!(ring.verify(&decision, Some(&header)), Ok(()));
        let reloaded = AdminKey::from_pkcs8("alice", &pkcs8).unwrap();
        assert_eq!(
            ring.verify(&decision, Some(&reloaded.sign(&decision))),
            Ok(())
        );

        let mut altered = decision.clone();
        altered["decision"] = json!("force");
        assert_eq!(
            ring.verify(&altered, Some(&header)),
            Err(ApprovalSignatureError::Mismatch("alice".into()))
        );
        assert_eq!(
            ring.verify(&decision, Some(&mallory.sign(&decision))),
            Err(ApprovalSignatureError::Mismatch("alice".into()))
        );
        assert_eq!(
            ring.verify(&decision, None),
            Err(ApprovalSignatureError::Missing)
        );
        assert_eq!(
            ring.verify(&decision, Some("rsa:abc")),
            Err(ApprovalSignatureError::Malformed)
        );
        let bob = json!({"admin_identity": "bob", "decision": "approve"});
        assert_eq!(
            ring.verify(&bob, Some(&alice.sign(&bob))),
            Err(ApprovalSignatureError::UnknownAdmin("bob".into()))
        );
        // Key order does not matter: the canonical form is signed.
        let reordered: Value = serde_json::from_str(
            r#"{"reason":"ok","decision":"approve","admin_identity":"alice"}"#,
        )
        .unwrap();
        assert_eq!(ring.verify(&reordered, Some(&header)), Ok(()));
    }
}
