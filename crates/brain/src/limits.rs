//! Cooldowns, rate limits, circuit breakers and pending requests, per action type and target
//! (pure: the state is loaded and stored by [`crate::state`]).
//!
//! - cooldown: `cooldown_s` after the last action on the target (or the last denial of an
//!   approval request for it), nothing new runs — this is also what keeps re-emitted versions of
//!   one incident from acting twice;
//! - rate limit: at most `max` actions on the target within `per_s`;
//! - circuit breaker: `failures` failed or rolled-back outcomes within `within_s` open it for
//!   `open_s` from the failure that tripped it; it closes by itself afterwards (and needs
//!   `failures` new failures within `within_s` to open again);
//! - pending request: while an approval request for the target waits, no second one is made.

use contracts::Timestamp;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::policy::{BreakerConfig, LimitKey, Limits, RateLimit, MAX_RATE_MAX, MAX_RATE_WINDOW_S};

/// An action brain emitted on the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionMark {
    pub action_id: Uuid,
    pub at: Timestamp,
    pub incident_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<Uuid>,
}

/// A failed or rolled-back outcome of an action on the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureMark {
    pub action_id: Uuid,
    pub outcome_id: Uuid,
    pub at: Timestamp,
    /// `failed` or `rolled_back`.
    pub status: String,
}

/// An approval request waiting for the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestMark {
    pub approval_request_id: Uuid,
    pub expires_at: Timestamp,
    pub incident_id: Uuid,
}

/// The last denial of an approval request for the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenialMark {
    pub approval_request_id: Uuid,
    pub approval_id: Uuid,
    pub at: Timestamp,
    pub by: String,
}

/// What brain remembers about one action type on one target (key `limits.<action>.<target>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitState {
    #[serde(default)]
    pub actions: Vec<ActionMark>,
    #[serde(default)]
    pub failures: Vec<FailureMark>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_request: Option<RequestMark>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied: Option<DenialMark>,
}

fn seconds(d: time::Duration) -> i64 {
    // Rounded up: "1s remaining" rather than "0s remaining" for 0.3 s.
    let whole = d.whole_seconds();
    if d.subsec_nanoseconds() > 0 {
        whole.saturating_add(1)
    } else {
        whole
    }
}

fn secs(s: u64) -> time::Duration {
    time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 2))
}

impl LimitState {
    /// Records an action (idempotent per action id); clears the pending request it answers.
    pub fn record_action(&mut self, mark: ActionMark, answers_request: Option<Uuid>) {
        if let (Some(pending), Some(answered)) = (&self.pending_request, answers_request) {
            if pending.approval_request_id == answered {
                self.pending_request = None;
            }
        }
        if !self.actions.iter().any(|a| a.action_id == mark.action_id) {
            self.actions.push(mark);
            self.actions.sort_by_key(|a| a.at);
        }
    }

    /// Records a failure (idempotent per action id).
    pub fn record_failure(&mut self, mark: FailureMark) {
        if !self.failures.iter().any(|f| f.action_id == mark.action_id) {
            self.failures.push(mark);
            self.failures.sort_by_key(|f| f.at);
        }
    }

    pub fn open_request(&mut self, mark: RequestMark) {
        self.pending_request = Some(mark);
    }

    /// Forgets the pending request `id` (settled); a denial starts the cooldown.
    pub fn settle_request(&mut self, id: Uuid, denial: Option<DenialMark>) {
        if self
            .pending_request
            .as_ref()
            .is_some_and(|p| p.approval_request_id == id)
        {
            self.pending_request = None;
        }
        if let Some(denial) = denial {
            self.denied = Some(denial);
        }
    }

    /// What brain records when it emits an action on the target: the action (answering
    /// `answers_request`, if any), then pruned at `now`. Shared by the service's state
    /// ([`crate::state`]) and the simulator ([`crate::simulate`]) so both count the same way.
    /// Returns whether anything changed.
    pub fn note_action(
        &mut self,
        mark: ActionMark,
        answers_request: Option<Uuid>,
        now: Timestamp,
    ) -> bool {
        let before = self.clone();
        self.record_action(mark, answers_request);
        self.prune(now);
        *self != before
    }

    /// What brain records when it asks for an approval on the target (see [`Self::note_action`]).
    pub fn note_request(&mut self, mark: RequestMark, now: Timestamp) -> bool {
        if self.pending_request.as_ref() == Some(&mark) {
            return false;
        }
        self.open_request(mark);
        self.prune(now);
        true
    }

    /// What brain records for a failed or rolled-back outcome (see [`Self::note_action`]).
    pub fn note_failure(&mut self, mark: FailureMark, now: Timestamp) -> bool {
        if self.failures.iter().any(|f| f.action_id == mark.action_id) {
            return false;
        }
        self.record_failure(mark);
        self.prune(now);
        true
    }

    /// Drops history no limit can use any more.
    pub fn prune(&mut self, now: Timestamp) {
        let horizon = now.saturating_sub(secs(MAX_RATE_WINDOW_S));
        self.actions.retain(|a| a.at > horizon);
        let keep = MAX_RATE_MAX as usize;
        if self.actions.len() > keep {
            self.actions.drain(..self.actions.len() - keep);
        }
        let horizon = now.saturating_sub(secs(MAX_RATE_WINDOW_S.saturating_mul(2)));
        self.failures.retain(|f| f.at > horizon);
        if self.failures.len() > keep {
            self.failures.drain(..self.failures.len() - keep);
        }
    }

    /// Until when the breaker is open (if it is), and how many failures tripped it.
    pub fn breaker_open_until(
        &self,
        config: BreakerConfig,
        now: OffsetDateTime,
    ) -> Option<(OffsetDateTime, usize)> {
        let within = secs(config.within_s);
        let open = secs(config.open_s);
        self.failures
            .iter()
            .filter_map(|trip| {
                let count = self
                    .failures
                    .iter()
                    .filter(|f| f.at <= trip.at && f.at > trip.at.saturating_sub(within))
                    .count();
                (count >= config.failures as usize)
                    .then_some((trip.at.saturating_add(open).0, count))
            })
            .filter(|(until, _)| *until > now)
            .max_by_key(|(until, _)| *until)
    }

    fn recent_failures(&self, within_s: u64, now: OffsetDateTime) -> usize {
        let since = Timestamp(now).saturating_sub(secs(within_s));
        self.failures.iter().filter(|f| f.at > since).count()
    }
}

/// Something that stops an action from running now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    Cooldown {
        cooldown_s: u64,
        remaining_s: i64,
        cause: String,
    },
    RateLimit {
        count: usize,
        limit: RateLimit,
        next_in_s: i64,
    },
    Breaker {
        failures: usize,
        config: BreakerConfig,
        open_until: Timestamp,
        remaining_s: i64,
    },
    PendingRequest {
        approval_request_id: Uuid,
        expires_at: Timestamp,
        incident_id: Uuid,
    },
}

impl Block {
    /// In words, for reasoning.
    pub fn describe(&self, key: &LimitKey) -> String {
        match self {
            Block::Cooldown {
                cooldown_s,
                remaining_s,
                cause,
            } => format!(
                "cooldown of {key}: {cause}; {remaining_s}s of the {cooldown_s}s cooldown remain"
            ),
            Block::RateLimit {
                count,
                limit,
                next_in_s,
            } => format!(
                "rate limit of {key}: {count} actions in the last {}s, the limit is {}; the next is allowed in {next_in_s}s",
                limit.per_s, limit.max
            ),
            Block::Breaker {
                failures,
                config,
                open_until,
                remaining_s,
            } => format!(
                "circuit breaker of {key} is open: {failures} failed/rolled-back outcomes within {}s (threshold {}); it closes at {open_until} ({remaining_s}s remaining)",
                config.within_s, config.failures
            ),
            Block::PendingRequest {
                approval_request_id,
                expires_at,
                incident_id,
            } => format!(
                "approval request {approval_request_id} for {key} (incident {incident_id}) is already waiting for an operator until {expires_at}"
            ),
        }
    }

    /// The approval-decision flag that lets `force` pass this block, if any.
    pub fn force_override(&self) -> Option<&'static str> {
        match self {
            Block::Cooldown { .. } | Block::RateLimit { .. } => Some("override_cooldown"),
            Block::Breaker { .. } => Some("override_circuit_breaker"),
            Block::PendingRequest { .. } => None,
        }
    }
}

/// `limits` applied to `state` at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub blocks: Vec<Block>,
    /// The limits' state in words when nothing blocks (or in addition to the blocks).
    pub summary: String,
}

/// Checks cooldown, rate limit and breaker (and, with `pending`, a waiting approval request).
pub fn assess(
    state: Option<&LimitState>,
    rule: &Limits,
    now: Timestamp,
    pending: bool,
) -> Assessment {
    let empty = LimitState::default();
    let state = state.unwrap_or(&empty);
    let now_t = now.0;
    let mut blocks = Vec::new();
    let mut summary = Vec::new();

    let last_action = state.actions.last();
    let last_denial = state.denied.as_ref();
    let cooldown_from = match (last_action, last_denial) {
        (Some(a), Some(d)) if d.at > a.at => Some((
            d.at,
            format!(
                "denied by {} at {} (request {})",
                d.by, d.at, d.approval_request_id
            ),
        )),
        (Some(a), _) => Some((
            a.at,
            format!(
                "action {} ran at {} for incident {}",
                a.action_id, a.at, a.incident_id
            ),
        )),
        (None, Some(d)) => Some((
            d.at,
            format!(
                "denied by {} at {} (request {})",
                d.by, d.at, d.approval_request_id
            ),
        )),
        (None, None) => None,
    };
    match cooldown_from {
        // Saturating: a cooldown that ends past the supported range never ends.
        Some((at, cause)) if at.saturating_add(secs(rule.cooldown_s)).0 > now_t => {
            blocks.push(Block::Cooldown {
                cooldown_s: rule.cooldown_s,
                remaining_s: seconds(at.saturating_add(secs(rule.cooldown_s)).since(now)),
                cause,
            })
        }
        Some((at, _)) => summary.push(format!(
            "cooldown {}s clear (last at {at})",
            rule.cooldown_s
        )),
        None => summary.push(format!(
            "cooldown {}s clear (no earlier action)",
            rule.cooldown_s
        )),
    }

    if let Some(limit) = rule.rate_limit {
        let since = now.saturating_sub(secs(limit.per_s));
        let in_window: Vec<&ActionMark> = state.actions.iter().filter(|a| a.at > since).collect();
        if in_window.len() >= limit.max as usize {
            let oldest = in_window.first().expect("at least max ≥ 1 actions").at;
            blocks.push(Block::RateLimit {
                count: in_window.len(),
                limit,
                next_in_s: seconds(oldest.saturating_add(secs(limit.per_s)).since(now)).max(1),
            });
        } else {
            summary.push(format!(
                "rate {}/{} in {}s",
                in_window.len(),
                limit.max,
                limit.per_s
            ));
        }
    }

    let config = rule.circuit_breaker;
    match state.breaker_open_until(config, now_t) {
        Some((until, failures)) => blocks.push(Block::Breaker {
            failures,
            config,
            open_until: Timestamp(until),
            remaining_s: seconds(Timestamp(until).since(now)),
        }),
        None => summary.push(format!(
            "circuit breaker closed ({}/{} failures in {}s)",
            state.recent_failures(config.within_s, now_t),
            config.failures,
            config.within_s
        )),
    }

    if pending {
        if let Some(request) = &state.pending_request {
            if request.expires_at.0 > now_t {
                blocks.push(Block::PendingRequest {
                    approval_request_id: request.approval_request_id,
                    expires_at: request.expires_at,
                    incident_id: request.incident_id,
                });
            }
        }
    }

    Assessment {
        blocks,
        summary: summary.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Policy, Safety};

    fn at(s: i64) -> Timestamp {
        Timestamp(OffsetDateTime::from_unix_timestamp(1_800_000_000 + s).unwrap())
    }

    fn rule(rate: Option<RateLimit>) -> Limits {
        let text = r#"
autonomy_level = "N2"
[[rules]]
name = "r"
incident_types = ["service_outage"]
action = "restart_service"
safety = "SAFE"
parameters = { service_name = "web" }
cooldown_s = 300
"#;
        let rule = Policy::parse(text, "t").unwrap().rules.remove(0);
        assert_eq!(rule.safety, Safety::Safe);
        Limits {
            rate_limit: rate,
            ..rule.limits
        }
    }

    fn action(s: i64, n: u128) -> ActionMark {
        ActionMark {
            action_id: Uuid::from_u128(n),
            at: at(s),
            incident_id: Uuid::from_u128(99),
            approval_id: None,
        }
    }

    fn failure(s: i64, n: u128) -> FailureMark {
        FailureMark {
            action_id: Uuid::from_u128(n),
            outcome_id: Uuid::from_u128(1000 + n),
            at: at(s),
            status: "failed".into(),
        }
    }

    #[test]
    fn cooldown_blocks_until_it_has_passed() {
        let mut state = LimitState::default();
        state.record_action(action(0, 1), None);
        state.record_action(action(0, 1), None);
        assert_eq!(state.actions.len(), 1, "recording is idempotent");
        let a = assess(Some(&state), &rule(None), at(120), true);
        assert!(
            matches!(
                a.blocks[..],
                [Block::Cooldown {
                    remaining_s: 180,
                    ..
                }]
            ),
            "{a:?}"
        );
        let text = a.blocks[0].describe(&LimitKey {
            action_type: "restart_service".into(),
            target: "web".into(),
        });
        assert!(text.contains("180s of the 300s cooldown remain"), "{text}");
        assert!(assess(Some(&state), &rule(None), at(300), true)
            .blocks
            .is_empty());
        assert!(assess(None, &rule(None), at(0), true).blocks.is_empty());
    }

    #[test]
    fn a_denial_starts_the_cooldown_too() {
        let mut state = LimitState::default();
        state.settle_request(
            Uuid::from_u128(5),
            Some(DenialMark {
                approval_request_id: Uuid::from_u128(5),
                approval_id: Uuid::from_u128(6),
                at: at(0),
                by: "alice".into(),
            }),
        );
        let a = assess(Some(&state), &rule(None), at(10), true);
        assert!(
            matches!(&a.blocks[..], [Block::Cooldown { cause, .. }] if cause.contains("denied by alice"))
        );
    }

    #[test]
    fn rate_limit_counts_actions_in_the_window() {
        let limit = RateLimit {
            max: 2,
            per_s: 1000,
        };
        let mut state = LimitState::default();
        state.record_action(action(0, 1), None);
        state.record_action(action(400, 2), None);
        let a = assess(Some(&state), &rule(Some(limit)), at(800), true);
        assert!(
            matches!(
                a.blocks[..],
                [Block::RateLimit {
                    count: 2,
                    next_in_s: 200,
                    ..
                }]
            ),
            "{a:?}"
        );
        let a = assess(Some(&state), &rule(Some(limit)), at(1001), true);
        assert!(a.blocks.is_empty(), "{a:?}");
        assert!(a.summary.contains("rate 1/2 in 1000s"), "{}", a.summary);
    }

    #[test]
    fn the_breaker_opens_on_three_failures_in_300s_for_600s() {
        let mut state = LimitState::default();
        state.record_failure(failure(0, 1));
        state.record_failure(failure(100, 2));
        let r = rule(None);
        let a = assess(Some(&state), &r, at(150), false);
        assert!(a.blocks.is_empty());
        assert!(
            a.summary
                .contains("circuit breaker closed (2/3 failures in 300s)"),
            "{}",
            a.summary
        );
        state.record_failure(failure(200, 3));
        state.record_failure(failure(200, 3));
        assert_eq!(state.failures.len(), 3);
        let a = assess(Some(&state), &r, at(250), false);
        assert!(
            matches!(
                a.blocks[..],
                [Block::Breaker {
                    failures: 3,
                    remaining_s: 550,
                    ..
                }]
            ),
            "{a:?}"
        );
        assert_eq!(
            a.blocks[0].force_override(),
            Some("override_circuit_breaker")
        );
        assert!(
            assess(Some(&state), &r, at(800), false).blocks.is_empty(),
            "closes after open_s"
        );
        // Spread-out failures never trip it.
        let mut spread = LimitState::default();
        for (i, s) in [0, 400, 800].into_iter().enumerate() {
            spread.record_failure(failure(s, i as u128));
        }
        assert!(assess(Some(&spread), &r, at(810), false).blocks.is_empty());
    }

    #[test]
    fn a_pending_request_blocks_a_second_one_until_it_expires_or_settles() {
        let mut state = LimitState::default();
        state.open_request(RequestMark {
            approval_request_id: Uuid::from_u128(7),
            expires_at: at(300),
            incident_id: Uuid::from_u128(99),
        });
        assert!(matches!(
            assess(Some(&state), &rule(None), at(10), true).blocks[..],
            [Block::PendingRequest { .. }]
        ));
        assert!(assess(Some(&state), &rule(None), at(10), false)
            .blocks
            .is_empty());
        assert!(assess(Some(&state), &rule(None), at(301), true)
            .blocks
            .is_empty());
        let mut answered = state.clone();
        answered.record_action(action(20, 1), Some(Uuid::from_u128(7)));
        assert_eq!(answered.pending_request, None);
        state.settle_request(Uuid::from_u128(7), None);
        assert_eq!(state.pending_request, None);
    }

    #[test]
    fn pruning_keeps_what_limits_can_use() {
        let mut state = LimitState::default();
        for i in 0..300 {
            state.record_action(action(i, i as u128), None);
        }
        state.record_failure(failure(0, 1));
        state.prune(at(400));
        assert_eq!(state.actions.len(), MAX_RATE_MAX as usize);
        assert_eq!(
            state.actions.last().unwrap().action_id,
            Uuid::from_u128(299)
        );
        state.prune(at(10 * MAX_RATE_WINDOW_S as i64));
        assert!(state.actions.is_empty());
        assert!(state.failures.is_empty());
    }
}
