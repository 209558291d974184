//! The policy file: which incidents map to which action, how safe that action is, and the
//! limits around it. Parsed and validated once at start (pure: text in, [`Policy`] out); every
//! problem is reported with its line and column, semantic ones included.
//!
//! ```toml
//! autonomy_level = "N3"          # N0 observe, N1 suggest, N2 execute SAFE, N3 + approvals
//! approval_timeout_s = 300       # default 300, at most 3600
//! targets = ["web", "api", "gw-7"]  # optional: the only targets any rule may act on
//!
//! [[admins]]                     # who may approve (Ed25519 public keys, base64)
//! identity = "alice@ops"
//! public_key = "…"
//!
//! [[rules]]                      # first matching rule whose parameters render wins
//! name = "restart-crashed-service"
//! incident_types = ["service_outage"]
//! severities = ["high", "critical"]          # optional: every severity if absent
//! action = "restart_service"
//! safety = "SAFE"                            # SAFE or RISKY
//! parameters = { service_name = "${tags.service_name}", timeout_s = 30 }
//! targets = ["web", "api"]                   # optional: replaces the policy's list here
//! cooldown_s = 300                           # per action + target
//! rate_limit = { max = 3, per_s = 3600 }     # optional, per action + target
//! circuit_breaker = { failures = 3, within_s = 300, open_s = 600 }  # optional; these defaults
//!
//! [fallback]                     # optional: what to propose when no rule matches (UNKNOWN)
//! action = "send_notification"
//! parameters = { message = "no policy rule for ${incident.incident_type}" }
//! cooldown_s = 600
//! ```
//!
//! See `crates/brain/policy.toml` for a documented example.

use std::path::Path;

use contracts::generated::action_v1::ActionActionType;
use contracts::generated::decision_v1::DecisionAutonomyLevel;
use contracts::generated::incident_v1::{IncidentIncidentType, IncidentSeverity};
use contracts::signing::Verifier;
use contracts::target::{CanonicalTarget, TargetError};
use contracts::Incident;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::template::{RenderError, Template};

/// Default time an operator has to answer an approval request.
pub const DEFAULT_APPROVAL_TIMEOUT_S: u64 = 300;
/// Longest approval timeout the policy may set.
pub const MAX_APPROVAL_TIMEOUT_S: u64 = 3600;
/// Longest window a rate limit may use (state keeps a week of history).
pub const MAX_RATE_WINDOW_S: u64 = 7 * 24 * 3600;
/// Most actions a rate limit may allow per window (state keeps this many marks).
pub const MAX_RATE_MAX: u32 = 256;

/// Autonomy levels (seed 002): what brain may do on its own.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub enum Level {
    /// Observe: decisions only, never a proposal that runs.
    #[default]
    N0,
    /// Suggest: propose, a human executes.
    N1,
    /// Execute SAFE actions; RISKY ones are blocked.
    N2,
    /// Execute SAFE actions; RISKY ones after a signed approval.
    N3,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::N0, Level::N1, Level::N2, Level::N3];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::N0 => "N0",
            Level::N1 => "N1",
            Level::N2 => "N2",
            Level::N3 => "N3",
        }
    }

    /// What the level allows, in words.
    pub fn meaning(self) -> &'static str {
        match self {
            Level::N0 => "observe only",
            Level::N1 => "suggest only, a human executes",
            Level::N2 => "execute SAFE actions, RISKY ones blocked",
            Level::N3 => "execute SAFE actions, RISKY ones after a signed approval",
        }
    }

    pub fn to_decision(self) -> DecisionAutonomyLevel {
        match self {
            Level::N0 => DecisionAutonomyLevel::N0,
            Level::N1 => DecisionAutonomyLevel::N1,
            Level::N2 => DecisionAutonomyLevel::N2,
            Level::N3 => DecisionAutonomyLevel::N3,
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Safety class of a proposal. UNKNOWN (no rule matched; the fallback) is treated as RISKY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Safety {
    Safe,
    Risky,
    Unknown,
}

impl Safety {
    pub fn as_str(self) -> &'static str {
        match self {
            Safety::Safe => "SAFE",
            Safety::Risky => "RISKY",
            Safety::Unknown => "UNKNOWN",
        }
    }

    /// RISKY and UNKNOWN need an approval; SAFE does not.
    pub fn needs_approval(self) -> bool {
        self != Safety::Safe
    }
}

impl std::fmt::Display for Safety {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// At most `max` actions per action + target within `per_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub max: u32,
    pub per_s: u64,
}

/// `failures` failed or rolled-back outcomes within `within_s` open the breaker for `open_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerConfig {
    pub failures: u32,
    pub within_s: u64,
    pub open_s: u64,
}

impl Default for BreakerConfig {
    /// The earlier implementation's breaker: 3 failures in 300 s open it for 600 s.
    fn default() -> Self {
        Self {
            failures: 3,
            within_s: 300,
            open_s: 600,
        }
    }
}

/// The limits of one rule, per action type and target. Kept with approval requests, so an
/// approval is checked against the limits the request was made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub cooldown_s: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    pub circuit_breaker: BreakerConfig,
}

impl Limits {
    /// The limits in words, for reasoning.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("cooldown {}s", self.cooldown_s)];
        if let Some(rate) = self.rate_limit {
            parts.push(format!("at most {} per {}s", rate.max, rate.per_s));
        }
        let b = self.circuit_breaker;
        parts.push(format!(
            "breaker {} failures in {}s opens for {}s",
            b.failures, b.within_s, b.open_s
        ));
        parts.join(", ")
    }
}

/// A parameter value: literal, a string template, or a table/list containing them.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Literal(Value),
    Text(Template),
    Table(Vec<(String, Param)>),
    List(Vec<Param>),
}

impl Param {
    fn render(&self, incident: &Incident) -> Result<Value, RenderError> {
        Ok(match self {
            Param::Literal(value) => value.clone(),
            Param::Text(template) => Value::String(template.render(incident)?),
            Param::Table(entries) => {
                let mut map = Map::new();
                for (key, param) in entries {
                    map.insert(key.clone(), param.render(incident)?);
                }
                Value::Object(map)
            }
            Param::List(items) => Value::Array(
                items
                    .iter()
                    .map(|p| p.render(incident))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    fn has_variables(&self) -> bool {
        match self {
            Param::Literal(_) => false,
            Param::Text(t) => t.has_variables(),
            Param::Table(entries) => entries.iter().any(|(_, p)| p.has_variables()),
            Param::List(items) => items.iter().any(Param::has_variables),
        }
    }
}

/// One mapping from incidents to an action.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's name (`fallback` for the fallback).
    pub name: String,
    /// Line of the rule in the policy file.
    pub line: usize,
    /// Incident types it covers; empty for the fallback (every type).
    pub incident_types: Vec<IncidentIncidentType>,
    /// Severities it covers; every severity when `None`.
    pub severities: Option<Vec<IncidentSeverity>>,
    pub action: ActionActionType,
    /// SAFE or RISKY for rules; UNKNOWN for the fallback.
    pub safety: Safety,
    pub parameters: Vec<(String, Param)>,
    pub limits: Limits,
    /// The targets it may act on: its own `targets`, else the policy's; any canonical name
    /// when `None`.
    pub targets: Option<AllowedTargets>,
}

/// A `targets` list of the policy file: the only service names and device ids a rule may act
/// on. Entries are canonical names, checked at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedTargets {
    pub names: Vec<CanonicalTarget>,
    /// Line of the list in the policy file.
    pub line: usize,
}

impl AllowedTargets {
    pub fn allows(&self, target: &CanonicalTarget) -> bool {
        self.names.contains(target)
    }

    /// The names, comma separated.
    pub fn list(&self) -> String {
        self.names
            .iter()
            .map(CanonicalTarget::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Rule {
    fn covers(&self, incident: &Incident) -> bool {
        (self.incident_types.is_empty() || self.incident_types.contains(&incident.incident_type))
            && self
                .severities
                .as_ref()
                .is_none_or(|s| s.contains(&incident.severity))
    }

    /// Renders the parameters for `incident`; on failure, names the parameter.
    pub fn render(&self, incident: &Incident) -> Result<Map<String, Value>, (String, RenderError)> {
        let mut map = Map::new();
        for (key, param) in &self.parameters {
            let value = param.render(incident).map_err(|e| (key.clone(), e))?;
            map.insert(key.clone(), value);
        }
        Ok(map)
    }
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub autonomy_level: Level,
    pub approval_timeout_s: u64,
    /// The configured administrators' identities, in file order.
    pub admins: Vec<String>,
    /// Their public keys, to verify approval decisions.
    pub keyring: Verifier,
    pub rules: Vec<Rule>,
    /// What to propose when no rule covers an incident (classified UNKNOWN).
    pub fallback: Option<Rule>,
}

/// What the policy says about one incident.
#[derive(Debug)]
pub enum Evaluation<'a> {
    /// A rule (or the fallback) covers the incident and its parameters rendered.
    Proposal(Proposal<'a>),
    /// Rules cover the incident but none could render its parameters.
    RenderFailed {
        rule: &'a Rule,
        /// Why each covering rule failed.
        failures: Vec<String>,
    },
    /// The first covering rule that rendered names a target brain refuses: nothing is proposed,
    /// and later rules (or the fallback) are not tried, since any action would be taken on
    /// the strength of a name the platform does not accept.
    TargetRefused {
        rule: &'a Rule,
        refusal: TargetRefusal,
    },
    /// No rule covers the incident and there is no fallback.
    NoRule {
        /// Rules that cover the incident type but not its severity.
        near_misses: Vec<String>,
    },
}

/// A concrete proposal: the rule, its rendered parameters and the action's target.
#[derive(Debug, Clone)]
pub struct Proposal<'a> {
    pub rule: &'a Rule,
    pub parameters: Map<String, Value>,
    /// Rendered `service_name`, else `device_id`, else the incident id; see [`target_of`].
    pub target: CanonicalTarget,
    /// Covering rules before this one that could not render, with why.
    pub skipped: Vec<String>,
    /// Rules that cover the incident type but not its severity (for the fallback's reasoning).
    pub near_misses: Vec<String>,
}

impl<'a> Proposal<'a> {
    pub fn safety(&self) -> Safety {
        self.rule.safety
    }

    /// The `limits.<action>.<target>` state this proposal counts against.
    pub fn limit_key(&self) -> LimitKey {
        LimitKey {
            action_type: self.rule.action.to_string(),
            target: self.target.to_string(),
        }
    }
}

/// Cooldowns, rate windows and breakers are kept per action type and target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LimitKey {
    pub action_type: String,
    /// Always a canonical name (from [`Proposal::limit_key`]), so one service has one key
    /// however an event spelled it. Plain text because it is stored in approval requests'
    /// records, which must stay readable.
    pub target: String,
}

impl std::fmt::Display for LimitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.action_type, self.target)
    }
}

/// The parameters that name an action's target (what commander hands ops-worker), in the
/// order brain looks for one.
pub const TARGET_PARAMETERS: [&str; 2] = ["service_name", "device_id"];

/// Why brain will not act on the target a rule rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetRefusal {
    /// The name is not canonical: empty, padded, upper-case, `all`, … ([`contracts::target`]).
    #[error("{error}")]
    NotCanonical {
        parameter: &'static str,
        error: TargetError,
    },
    /// A canonical name the rule's `targets` list does not contain.
    #[error("target {:?} is not one the policy allows here (`targets` at line {}: {})", .target.as_str(), .allowed.line, .allowed.list())]
    NotAllowed {
        parameter: &'static str,
        target: CanonicalTarget,
        allowed: AllowedTargets,
    },
}

impl TargetRefusal {
    /// The parameter that named the target.
    pub fn parameter(&self) -> &'static str {
        match self {
            TargetRefusal::NotCanonical { parameter, .. }
            | TargetRefusal::NotAllowed { parameter, .. } => parameter,
        }
    }
}

/// The target of an action: its `service_name` or `device_id` exactly as rendered, which must
/// be a canonical name — it is never trimmed or case-folded, so `"web "` cannot count apart
/// from `web`, and `all` is refused — and in `allowed` when the rule has a `targets` list. An
/// action naming neither (a notification, an acknowledgement) counts per incident: its id,
/// which names no service, so no list applies to it.
pub fn target_of(
    parameters: &Map<String, Value>,
    incident_id: &uuid::Uuid,
    allowed: Option<&AllowedTargets>,
) -> Result<CanonicalTarget, TargetRefusal> {
    let named = TARGET_PARAMETERS
        .into_iter()
        .find_map(|parameter| Some((parameter, parameters.get(parameter)?.as_str()?)));
    let Some((parameter, text)) = named else {
        return Ok(CanonicalTarget::parse(&incident_id.to_string())
            .expect("a hyphenated lower-case UUID is a canonical name"));
    };
    let target = CanonicalTarget::parse(text)
        .map_err(|error| TargetRefusal::NotCanonical { parameter, error })?;
    match allowed {
        Some(allowed) if !allowed.allows(&target) => Err(TargetRefusal::NotAllowed {
            parameter,
            target,
            allowed: allowed.clone(),
        }),
        _ => Ok(target),
    }
}

/// A rendered rule's proposal, or its refusal when the target is refused.
fn propose<'a>(
    rule: &'a Rule,
    parameters: Map<String, Value>,
    incident: &Incident,
    skipped: Vec<String>,
    near_misses: Vec<String>,
) -> Evaluation<'a> {
    match target_of(&parameters, &incident.incident_id, rule.targets.as_ref()) {
        Ok(target) => Evaluation::Proposal(Proposal {
            rule,
            parameters,
            target,
            skipped,
            near_misses,
        }),
        Err(refusal) => Evaluation::TargetRefused { rule, refusal },
    }
}

impl Policy {
    /// Reads and validates the policy file at `path`.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Validates policy `text`; `origin` names it in errors (usually the path).
    pub fn parse(text: &str, origin: &str) -> Result<Self, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            PolicyError::Invalid {
                origin: origin.to_string(),
                problems: vec![Problem {
                    line,
                    column,
                    message: e.message().trim().to_string(),
                }],
            }
        })?;
        let mut check = Checker {
            text,
            problems: Vec::new(),
        };
        let policy = check.policy(raw);
        if check.problems.is_empty() {
            Ok(policy)
        } else {
            check.problems.sort_by_key(|p| (p.line, p.column));
            Err(PolicyError::Invalid {
                origin: origin.to_string(),
                problems: check.problems,
            })
        }
    }

    /// What the policy proposes for `incident`.
    pub fn evaluate(&self, incident: &Incident) -> Evaluation<'_> {
        let near_misses: Vec<String> = self
            .rules
            .iter()
            .filter(|r| r.incident_types.contains(&incident.incident_type) && !r.covers(incident))
            .map(|r| {
                let severities: Vec<String> = r
                    .severities
                    .iter()
                    .flatten()
                    .map(ToString::to_string)
                    .collect();
                format!(
                    "rule `{}` covers {} only at severity {}",
                    r.name,
                    incident.incident_type,
                    severities.join("/")
                )
            })
            .collect();
        let mut failures = Vec::new();
        let mut first_failed = None;
        for rule in self.rules.iter().filter(|r| r.covers(incident)) {
            match rule.render(incident) {
                Ok(parameters) => {
                    return propose(rule, parameters, incident, failures, near_misses)
                }
                Err((key, error)) => {
                    first_failed.get_or_insert(rule);
                    failures.push(format!(
                        "rule `{}` (line {}) cannot render parameters.{key}: {error}",
                        rule.name, rule.line
                    ));
                }
            }
        }
        if let Some(rule) = first_failed {
            return Evaluation::RenderFailed { rule, failures };
        }
        match &self.fallback {
            Some(fallback) => match fallback.render(incident) {
                Ok(parameters) => propose(fallback, parameters, incident, Vec::new(), near_misses),
                Err((key, error)) => Evaluation::RenderFailed {
                    rule: fallback,
                    failures: vec![format!(
                        "the fallback (line {}) cannot render parameters.{key}: {error}",
                        fallback.line
                    )],
                },
            },
            None => Evaluation::NoRule { near_misses },
        }
    }

    /// A short human summary (for `brain check`).
    pub fn summary(&self) -> String {
        let mut out = format!(
            "autonomy level {} ({}); approval timeout {}s; {} admin(s): {}\n",
            self.autonomy_level,
            self.autonomy_level.meaning(),
            self.approval_timeout_s,
            self.admins.len(),
            if self.admins.is_empty() {
                "none".to_string()
            } else {
                self.admins.join(", ")
            }
        );
        for rule in self.rules.iter().chain(self.fallback.iter()) {
            let types: Vec<String> = if rule.incident_types.is_empty() {
                vec!["any incident no rule covers".to_string()]
            } else {
                rule.incident_types
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            };
            let severities = rule
                .severities
                .as_ref()
                .map(|s| {
                    format!(
                        " [{}]",
                        s.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
                .unwrap_or_default();
            let targets = rule
                .targets
                .as_ref()
                .map(|t| format!("; only on {}", t.list()))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {} (line {}): {}{} → {} {}; {}{targets}\n",
                rule.name,
                rule.line,
                types.join(", "),
                severities,
                rule.action,
                rule.safety,
                rule.limits.describe()
            ));
        }
        out
    }
}

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Why a policy cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading policy file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", describe(origin, problems))]
    Invalid {
        origin: String,
        problems: Vec<Problem>,
    },
}

impl PolicyError {
    /// The problems found (empty for a read error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            PolicyError::Invalid { problems, .. } => problems,
            PolicyError::Read { .. } => &[],
        }
    }
}

fn describe(origin: &str, problems: &[Problem]) -> String {
    let mut out = format!(
        "policy {origin} is invalid ({} problem{}):",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str(&format!(
            "\n  {origin}:{}:{}: {}",
            p.line, p.column, p.message
        ));
    }
    out
}

mod check;
use check::{line_col, Checker, RawPolicy};

#[cfg(test)]
mod tests;
