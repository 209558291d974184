//! brain: decides how to respond to ORION incidents (`orion.incident.v1` → decisions, actions,
//! approval requests), under a policy file, the autonomy levels of seed 002, the ops interlock,
//! and signed approvals.
//!
//! What it is for:
//! - mapping an incident to an action with a safety class (SAFE, RISKY; UNKNOWN when no rule
//!   covers it) through the [`policy`] file, validated at start with line numbers — on a
//!   target that is a canonical name ([`contracts::target`]) as the incident spells it, never
//!   a repaired one and never `all`;
//! - deciding ([`decide`], pure) what the effective autonomy level allows — N0 observe, N1
//!   suggest, N2 execute SAFE, N3 execute SAFE and request approval for RISKY — within the
//!   cooldowns, rate limits and circuit breakers of each action and target ([`limits`]), and
//!   saying why in every decision;
//! - honouring the ops interlock live ([`interlock`], read through the typed bucket handle of
//!   `contracts::buckets::OpsInterlock`: disarmed, or no readable `armed` record → observe
//!   only; `set_risk` caps the level);
//! - checking approval decisions ([`approvals`], pure): Ed25519 signature of a configured
//!   administrator over the raw JSON, a pending request brain issued, in time; expiring
//!   unanswered requests; refusing the unsigned legacy `orion.approval.v1`;
//! - honouring administrators' signed silences (maintenance windows, [`silences`], pure;
//!   followed live from the stream `ORION_SILENCES` by [`silence_watch`]): while one in force
//!   matches an incident (target, incident type, tags), the decision is NO_ACTION naming the
//!   silence, its author, its end and its reason; unsigned or forged silences never apply;
//! - keeping all of that across restarts in the key-value bucket `brain_state` ([`state`]),
//!   with an outbox per message so nothing is lost or done twice;
//! - signing every action it publishes with its own Ed25519 key ([`service`]; header
//!   `Orion-Signature`, the scheme of `contracts::signing`), so that commander executes what
//!   brain decided and nothing else: a message on `orion.action.v1` without brain's signature
//!   never runs. The key comes from a file (`brain keygen`), and brain refuses to start without it.
//!
//! - trying a policy change on recorded history before deploying it ([`simulate`]: `brain
//!   simulate` replays the incident stream through a new policy with the same decision code
//!   and limits, and reports which decisions, actions and approvals would change; it only
//!   reads).
//!
//! What it is not for: executing actions (commander), correlating events (guardian), or asking
//! operators (approval-cli).
//!
//! Start at [`service`] for the life of a message, then [`decide`] and [`approvals`].

pub mod approvals;
pub mod config;
pub mod decide;
pub mod interlock;
pub mod limits;
pub mod messages;
pub mod parameters;
pub mod policy;
pub mod records;
pub mod service;
pub mod silence_watch;
pub mod silences;
pub mod simulate;
pub mod state;
pub mod template;

pub use policy::{Level, Policy, PolicyError, Safety};
pub use service::{Brain, BrainError, Settings};
