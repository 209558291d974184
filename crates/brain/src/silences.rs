//! Silences (maintenance windows), pure: which signed `orion.silence.v1` messages count, and
//! which silences match an incident now.
//!
//! A silence message counts only when, in this order:
//! 1. it is a valid `orion.silence.v1` message;
//! 2. its `Orion-Signature` header verifies over the raw JSON as stored, with the public key of
//!    its `admin_identity` from the policy's `[[admins]]` — the same administrators and the same
//!    check as approval decisions ([`crate::approvals`]), so unsigned, forged, altered or
//!    unknown-signer silences never apply;
//! 3. `active`: it was signed by its own creator (`admin_identity` = `created_by`), its window
//!    ends after it starts and lasts at most [`MAX_WINDOW`], and its id is new (or the very
//!    same silence again);
//! 4. `lifted`: it lifts a silence brain holds.
//!
//! Everything else is a [`Refusal`], logged by the reader and kept (the last
//! [`REFUSALS_KEPT`]) for inspection; nothing refused ever silences anything. A lift is final:
//! the active message of a lifted silence read again (a replay by someone holding
//! approval-cli's credentials) changes nothing. A silence applies from `starts_at` until
//! `ends_at` (exclusive) unless lifted, so it expires on its own without any message.

use std::collections::{BTreeMap, VecDeque};

use contracts::generated::silence_v1::SilenceState;
use contracts::signing::{SignatureError, Verifier, APPROVAL_SIGNER_FIELD};
use contracts::{Silence, Timestamp};
use serde_json::Value;
use uuid::Uuid;

/// The longest window a silence may have; approval-cli refuses longer ones before signing
/// (`approval-cli`'s `silence::MAX_WINDOW`, the same 7 days) and brain ignores any that gets
/// through: a silence is a maintenance window, not a way to switch automation off for good
/// (that is the ops interlock's `disarm`).
pub const MAX_WINDOW: time::Duration = time::Duration::days(7);

/// How many refusals the book keeps (the log has them all).
pub const REFUSALS_KEPT: usize = 100;

/// Which incidents a silence covers: every criterion given must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criteria {
    pub target: Option<String>,
    pub incident_type: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl Criteria {
    fn is_empty(&self) -> bool {
        self.target.is_none() && self.incident_type.is_none() && self.tags.is_empty()
    }

    /// Whether `subject` meets every criterion. Empty criteria match nothing (the schema
    /// forbids them; brain refuses them anyway, so this is only a second lock).
    pub fn matches(&self, subject: &Subject<'_>) -> bool {
        !self.is_empty()
            && self
                .target
                .as_deref()
                .is_none_or(|t| subject.target == Some(t))
            && self
                .incident_type
                .as_deref()
                .is_none_or(|t| t == subject.incident_type)
            && self
                .tags
                .iter()
                .all(|(k, v)| subject.tags.get(k).is_some_and(|have| have == v))
    }
}

impl std::fmt::Display for Criteria {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(target) = &self.target {
            parts.push(format!("target {target}"));
        }
        if let Some(kind) = &self.incident_type {
            parts.push(format!("incident type {kind}"));
        }
        for (k, v) in &self.tags {
            parts.push(format!("tag {k}={v}"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// What a silence is matched against: the incident, and the target brain's policy would act on
/// (none when no rule proposes anything).
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub target: Option<&'a str>,
    pub incident_type: &'a str,
    pub tags: &'a BTreeMap<String, String>,
}

/// An early end of a silence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lift {
    pub by: String,
    pub at: Timestamp,
    pub reason: String,
}

/// A silence brain accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilenceEntry {
    pub silence_id: Uuid,
    pub created_by: String,
    pub created_at: Timestamp,
    pub reason: String,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub criteria: Criteria,
    pub lifted: Option<Lift>,
    /// The stream message that created it.
    pub stream_sequence: u64,
}

impl SilenceEntry {
    /// Whether it applies at `now`: started, not ended, not lifted.
    pub fn in_force(&self, now: Timestamp) -> bool {
        self.lifted.is_none() && self.starts_at <= now && now < self.ends_at
    }
}

/// A silence message brain did not accept, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub stream_sequence: u64,
    pub silence_id: Option<Uuid>,
    pub why: String,
}

/// Every silence brain accepted, from the messages read in stream order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SilenceBook {
    silences: BTreeMap<Uuid, SilenceEntry>,
    refused: VecDeque<Refusal>,
    /// The last stream sequence applied (0: none yet).
    pub read_to: u64,
}

/// The outcome of applying one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Created(Uuid),
    Lifted(Uuid),
    /// The same message again (a redelivery or a replay): nothing changes.
    Unchanged(Uuid),
    Refused(Refusal),
}

fn signature_problem(e: &SignatureError, admin: &str) -> String {
    match e {
        SignatureError::Missing => format!(
            "it claims administrator `{admin}` but carries no Orion-Signature header: unsigned silences are refused"
        ),
        SignatureError::Malformed => {
            "its Orion-Signature header is not `ed25519:<base64>`: refused".to_string()
        }
        SignatureError::UnknownSigner(who) => {
            format!("`{who}` is not an administrator of this policy ([[admins]]): refused")
        }
        SignatureError::Mismatch(who) => format!(
            "its Orion-Signature does not verify against `{who}`'s public key: forged or altered, refused"
        ),
        SignatureError::NoIdentity(_) => "it names no admin_identity: refused".to_string(),
        SignatureError::NotJson(why) => format!("its payload is not JSON ({why}): refused"),
        SignatureError::BadKey(why) => {
            format!("the administrator's key is unusable ({why}): refused")
        }
    }
}

impl SilenceBook {
    /// The silences brain holds (active, ended and lifted), by id.
    pub fn silences(&self) -> impl Iterator<Item = &SilenceEntry> {
        self.silences.values()
    }

    pub fn get(&self, id: Uuid) -> Option<&SilenceEntry> {
        self.silences.get(&id)
    }

    /// The most recent refusals, oldest first.
    pub fn refused(&self) -> impl Iterator<Item = &Refusal> {
        self.refused.iter()
    }

    /// The silences in force at `now` that match `subject`, the one ending last first.
    pub fn matching(&self, subject: &Subject<'_>, now: Timestamp) -> Vec<&SilenceEntry> {
        let mut found: Vec<&SilenceEntry> = self
            .silences
            .values()
            .filter(|s| s.in_force(now) && s.criteria.matches(subject))
            .collect();
        found.sort_by(|a, b| {
            b.ends_at
                .cmp(&a.ends_at)
                .then(a.silence_id.cmp(&b.silence_id))
        });
        found
    }

    /// Applies one stored message: `payload` exactly as stored, `signature` its
    /// `Orion-Signature` header.
    pub fn apply(
        &mut self,
        stream_sequence: u64,
        payload: &[u8],
        signature: Option<&str>,
        keyring: &Verifier,
    ) -> Applied {
        self.read_to = self.read_to.max(stream_sequence);
        let applied = self.judge(stream_sequence, payload, signature, keyring);
        if let Applied::Refused(refusal) = &applied {
            if self.refused.len() == REFUSALS_KEPT {
                self.refused.pop_front();
            }
            self.refused.push_back(refusal.clone());
        }
        applied
    }

    fn judge(
        &mut self,
        stream_sequence: u64,
        payload: &[u8],
        signature: Option<&str>,
        keyring: &Verifier,
    ) -> Applied {
        let refuse = |silence_id: Option<Uuid>, why: String| {
            Applied::Refused(Refusal {
                stream_sequence,
                silence_id,
                why,
            })
        };
        let silence = match contracts::decode::<Silence>(payload) {
            Ok(silence) => silence,
            Err(e) => {
                return refuse(
                    None,
                    format!("it is not a valid orion.silence.v1 message: {e}"),
                )
            }
        };
        let id = Some(silence.silence_id);
        let raw: Value = match serde_json::from_slice(payload) {
            Ok(raw) => raw,
            Err(e) => return refuse(id, format!("its payload is not JSON: {e}")),
        };
        let admin = silence.admin_identity.to_string();
        if let Err(e) = keyring.verify_claimed(&raw, APPROVAL_SIGNER_FIELD, signature) {
            return refuse(id, signature_problem(&e, &admin));
        }
        match silence.state {
            SilenceState::Active => self.create(stream_sequence, &silence, &admin),
            SilenceState::Lifted => self.lift(stream_sequence, &silence, &admin),
        }
    }

    fn create(&mut self, stream_sequence: u64, silence: &Silence, admin: &str) -> Applied {
        let id = silence.silence_id;
        let refuse = |why: String| {
            Applied::Refused(Refusal {
                stream_sequence,
                silence_id: Some(id),
                why,
            })
        };
        let created_by = silence.created_by.to_string();
        if created_by != admin {
            return refuse(format!(
                "it was signed by `{admin}` but says it was created by `{created_by}`: an active silence is signed by its creator, refused"
            ));
        }
        if silence.ends_at <= silence.starts_at {
            return refuse(format!(
                "its window ends at {} but starts at {}: refused",
                silence.ends_at, silence.starts_at
            ));
        }
        if silence.starts_at.saturating_add(MAX_WINDOW) < silence.ends_at {
            return refuse(format!(
                "its window {} → {} is longer than the maximum of {} days: refused (to stop automation for longer, disarm the ops interlock)",
                silence.starts_at,
                silence.ends_at,
                MAX_WINDOW.whole_days()
            ));
        }
        let match_ = &silence.match_;
        let entry = SilenceEntry {
            silence_id: id,
            created_by,
            created_at: silence.created_at,
            reason: silence.reason.to_string(),
            starts_at: silence.starts_at,
            ends_at: silence.ends_at,
            criteria: Criteria {
                target: match_.target.as_ref().map(|t| t.to_string()),
                incident_type: match_.incident_type.map(|t| t.to_string()),
                tags: match_
                    .tags
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            },
            lifted: None,
            stream_sequence,
        };
        if entry.criteria.is_empty() {
            return refuse("it matches nothing (no target, incident type or tag): refused".into());
        }
        match self.silences.get(&id) {
            None => {
                self.silences.insert(id, entry);
                Applied::Created(id)
            }
            Some(known) if known.lifted.is_some() => refuse(format!(
                "silence {id} was lifted by {}; a lift is final, so its active message read again changes nothing",
                known.lifted.as_ref().map_or("", |l| l.by.as_str())
            )),
            Some(known) if same_silence(known, &entry) => Applied::Unchanged(id),
            Some(_) => refuse(format!(
                "silence {id} exists with another window or match; a silence id is created once: refused"
            )),
        }
    }

    fn lift(&mut self, stream_sequence: u64, silence: &Silence, admin: &str) -> Applied {
        let id = silence.silence_id;
        let refuse = |why: String| {
            Applied::Refused(Refusal {
                stream_sequence,
                silence_id: Some(id),
                why,
            })
        };
        let Some(known) = self.silences.get_mut(&id) else {
            return refuse(format!(
                "it lifts silence {id}, which brain does not hold: ignored"
            ));
        };
        if known.lifted.is_some() {
            return Applied::Unchanged(id);
        }
        // The schema makes both fields required on a lift; a missing one is a defect upstream.
        let (Some(at), Some(reason)) = (silence.lifted_at, silence.lift_reason.as_ref()) else {
            return refuse("a lift without lifted_at or lift_reason: refused".into());
        };
        known.lifted = Some(Lift {
            by: admin.to_string(),
            at,
            reason: reason.to_string(),
        });
        Applied::Lifted(id)
    }

    /// Forgets silences that ended before `now`: none of them can apply again, not even when
    /// their messages are read again (the end is signed).
    pub fn prune(&mut self, now: Timestamp) {
        self.silences.retain(|_, s| s.ends_at > now);
    }
}

fn same_silence(a: &SilenceEntry, b: &SilenceEntry) -> bool {
    a.created_by == b.created_by
        && a.starts_at == b.starts_at
        && a.ends_at == b.ends_at
        && a.criteria == b.criteria
        && a.reason == b.reason
}

#[cfg(test)]
pub(crate) mod tests;
