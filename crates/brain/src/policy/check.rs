//! Parsing and checking a policy: the raw TOML shape (with spans), and every semantic check,
//! each reported at the line and column of the offending value.

use std::collections::{BTreeMap, BTreeSet};

use contracts::generated::action_v1::error::ConversionError;
use contracts::generated::action_v1::{
    ActionActionType, ActionSafetyClassification, ActionState, ActionVersion,
};
use contracts::generated::incident_v1::{IncidentIncidentType, IncidentSeverity};
use contracts::signing::Verifier;
use contracts::target::CanonicalTarget;
use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use super::{
    AllowedTargets, BreakerConfig, Level, Limits, Param, Policy, Problem, RateLimit, Rule, Safety,
    DEFAULT_APPROVAL_TIMEOUT_S, MAX_APPROVAL_TIMEOUT_S, MAX_RATE_MAX, MAX_RATE_WINDOW_S,
    TARGET_PARAMETERS,
};
use crate::parameters::action_parameters;
use crate::template::Template;

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    autonomy_level: Spanned<String>,
    #[serde(default)]
    approval_timeout_s: Option<Spanned<i64>>,
    #[serde(default)]
    targets: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    admins: Vec<Spanned<RawAdmin>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
    #[serde(default)]
    fallback: Option<Spanned<RawFallback>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    identity: Spanned<String>,
    public_key: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    incident_types: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    severities: Option<Spanned<Vec<Spanned<String>>>>,
    action: Spanned<String>,
    safety: Spanned<String>,
    #[serde(default)]
    parameters: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    targets: Option<Spanned<Vec<Spanned<String>>>>,
    cooldown_s: Spanned<i64>,
    #[serde(default)]
    rate_limit: Option<Spanned<RawRateLimit>>,
    #[serde(default)]
    circuit_breaker: Option<Spanned<RawBreaker>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFallback {
    action: Spanned<String>,
    #[serde(default)]
    parameters: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    targets: Option<Spanned<Vec<Spanned<String>>>>,
    cooldown_s: Spanned<i64>,
    #[serde(default)]
    rate_limit: Option<Spanned<RawRateLimit>>,
    #[serde(default)]
    circuit_breaker: Option<Spanned<RawBreaker>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    max: Spanned<i64>,
    per_s: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    failures: Spanned<i64>,
    within_s: Spanned<i64>,
    open_s: Spanned<i64>,
}

const ACTION_TYPES: &str = "restart_service, scale_service, send_notification, acknowledge_incident, run_diagnostic, stop_edge_device, restart_edge_device";
const INCIDENT_TYPES: &str =
    "service_outage, edge_device_failure, metric_anomaly, repeated_failures, correlation_detected";
const SEVERITIES: &str = "low, medium, high, critical";

/// Parameters each action type needs (what commander reads), with a hint.
fn required_parameters(action: ActionActionType) -> &'static [(&'static str, &'static str)] {
    match action {
        ActionActionType::RestartService => &[(
            "service_name",
            "the service to restart, e.g. \"${tags.service_name}\"",
        )],
        ActionActionType::ScaleService => &[
            (
                "service_name",
                "the service to scale, e.g. \"${tags.service_name}\"",
            ),
            ("replicas", "the desired replica count, a whole number"),
        ],
        ActionActionType::StopEdgeDevice | ActionActionType::RestartEdgeDevice => {
            &[("device_id", "the edge device, e.g. \"${tags.device_id}\"")]
        }
        ActionActionType::AcknowledgeIncident => &[(
            "incident_id",
            "the incident to acknowledge: \"${incident.incident_id}\"",
        )],
        ActionActionType::SendNotification => &[("message", "the text operators see")],
        ActionActionType::RunDiagnostic => &[],
    }
}

/// Action parameters the contract types as whole numbers (templates render text).
const INTEGER_PARAMETERS: &[&str] = &["replicas", "timeout_s"];

pub(super) struct Checker<'t> {
    pub(super) text: &'t str,
    pub(super) problems: Vec<Problem>,
}

impl Checker<'_> {
    fn at(&mut self, offset: usize, message: impl Into<String>) {
        let (line, column) = line_col(self.text, offset);
        self.problems.push(Problem {
            line,
            column,
            message: message.into(),
        });
    }

    fn line(&self, offset: usize) -> usize {
        line_col(self.text, offset).0
    }

    pub(super) fn policy(&mut self, raw: RawPolicy) -> Policy {
        let level_span = raw.autonomy_level.span().start;
        let autonomy_level = match Level::parse(raw.autonomy_level.get_ref()) {
            Some(level) => level,
            None => {
                self.at(
                    level_span,
                    format!(
                        "autonomy_level {:?} is not one of N0 (observe), N1 (suggest), N2 (execute SAFE), N3 (execute SAFE, approvals for RISKY)",
                        raw.autonomy_level.get_ref()
                    ),
                );
                Level::N0
            }
        };
        let approval_timeout_s = match &raw.approval_timeout_s {
            None => DEFAULT_APPROVAL_TIMEOUT_S,
            Some(t) => {
                let value = *t.get_ref();
                if value < 1 || value as u64 > MAX_APPROVAL_TIMEOUT_S {
                    self.at(
                        t.span().start,
                        format!("approval_timeout_s = {value} is out of range: between 1 and {MAX_APPROVAL_TIMEOUT_S} seconds (default {DEFAULT_APPROVAL_TIMEOUT_S})"),
                    );
                    DEFAULT_APPROVAL_TIMEOUT_S
                } else {
                    value as u64
                }
            }
        };

        let mut keyring = Verifier::default();
        let mut admins = Vec::new();
        for admin in &raw.admins {
            let identity = admin.get_ref().identity.get_ref().trim().to_string();
            let identity_at = admin.get_ref().identity.span().start;
            if identity.is_empty() {
                self.at(identity_at, "admins: identity is empty");
                continue;
            }
            if admins.contains(&identity) {
                self.at(identity_at, format!("admins: `{identity}` is listed twice"));
                continue;
            }
            let key = &admin.get_ref().public_key;
            if let Err(e) = keyring.add(&identity, key.get_ref()) {
                self.at(
                    key.span().start,
                    format!("admins: public_key of `{identity}`: {e} (expected the base64 Ed25519 public key that `approval-cli` prints)"),
                );
                continue;
            }
            admins.push(identity);
        }
        if autonomy_level == Level::N3 && raw.admins.is_empty() {
            self.at(
                level_span,
                "autonomy_level N3 requests approvals for RISKY actions, but no [[admins]] are configured: nobody could approve one (add [[admins]] identity + public_key, or use N2)",
            );
        }

        let policy_targets = self.targets("targets", raw.targets.as_ref());

        let mut names = BTreeSet::new();
        let mut rules = Vec::new();
        for (number, raw_rule) in raw.rules.into_iter().enumerate() {
            let rule_at = raw_rule.span().start;
            let raw_rule = raw_rule.into_inner();
            let name = raw_rule.name.get_ref().trim().to_string();
            if name.is_empty() {
                self.at(
                    raw_rule.name.span().start,
                    format!("rule #{}: name is empty", number + 1),
                );
            } else if !names.insert(name.clone()) {
                self.at(
                    raw_rule.name.span().start,
                    format!("rule `{name}`: the name is used twice"),
                );
            }
            let label = format!("rule `{name}`");
            let mut incident_types = Vec::new();
            if raw_rule.incident_types.get_ref().is_empty() {
                self.at(
                    raw_rule.incident_types.span().start,
                    format!(
                        "{label}: incident_types is empty; list at least one of {INCIDENT_TYPES}"
                    ),
                );
            }
            for t in raw_rule.incident_types.get_ref() {
                match t.get_ref().parse::<IncidentIncidentType>() {
                    Ok(t) => incident_types.push(t),
                    Err(_) => self.at(
                        t.span().start,
                        format!(
                            "{label}: unknown incident type {:?}; expected one of {INCIDENT_TYPES}",
                            t.get_ref()
                        ),
                    ),
                }
            }
            let severities = raw_rule.severities.as_ref().map(|list| {
                if list.get_ref().is_empty() {
                    self.at(
                        list.span().start,
                        format!("{label}: severities is empty; leave it out to cover every severity"),
                    );
                }
                let mut out = Vec::new();
                for s in list.get_ref() {
                    match s.get_ref().parse::<IncidentSeverity>() {
                        Ok(s) => out.push(s),
                        Err(_) => self.at(
                            s.span().start,
                            format!(
                                "{label}: unknown severity {:?}; expected one of {SEVERITIES} (the incident scale)",
                                s.get_ref()
                            ),
                        ),
                    }
                }
                out
            });
            let safety = match raw_rule.safety.get_ref().as_str() {
                "SAFE" => Safety::Safe,
                "RISKY" => Safety::Risky,
                other => {
                    self.at(
                        raw_rule.safety.span().start,
                        format!("{label}: safety {other:?} is not SAFE or RISKY (incidents no rule covers are UNKNOWN: configure [fallback] for them)"),
                    );
                    Safety::Risky
                }
            };
            let core = self.core(
                &label,
                &raw_rule.action,
                &raw_rule.parameters,
                &raw_rule.cooldown_s,
                raw_rule.rate_limit.as_ref(),
                raw_rule.circuit_breaker.as_ref(),
            );
            let targets = self
                .targets(&format!("{label}: targets"), raw_rule.targets.as_ref())
                .or_else(|| policy_targets.clone());
            if let Some((action, parameters, cooldown_s, rate_limit, circuit_breaker)) = core {
                let rule = Rule {
                    name,
                    line: self.line(rule_at),
                    incident_types,
                    severities,
                    action,
                    safety,
                    parameters,
                    limits: Limits {
                        cooldown_s,
                        rate_limit,
                        circuit_breaker,
                    },
                    targets,
                };
                self.literal_targets(&label, &raw_rule.parameters, &rule);
                rules.push(rule);
            }
        }

        let fallback = raw.fallback.and_then(|raw_fallback| {
            let at = raw_fallback.span().start;
            let raw_fallback = raw_fallback.into_inner();
            let targets = self
                .targets("fallback: targets", raw_fallback.targets.as_ref())
                .or_else(|| policy_targets.clone());
            let (action, parameters, cooldown_s, rate_limit, circuit_breaker) = self.core(
                "fallback",
                &raw_fallback.action,
                &raw_fallback.parameters,
                &raw_fallback.cooldown_s,
                raw_fallback.rate_limit.as_ref(),
                raw_fallback.circuit_breaker.as_ref(),
            )?;
            let fallback = Rule {
                name: "fallback".to_string(),
                line: self.line(at),
                incident_types: Vec::new(),
                severities: None,
                action,
                safety: Safety::Unknown,
                parameters,
                limits: Limits {
                    cooldown_s,
                    rate_limit,
                    circuit_breaker,
                },
                targets,
            };
            self.literal_targets("fallback", &raw_fallback.parameters, &fallback);
            Some(fallback)
        });

        Policy {
            autonomy_level,
            approval_timeout_s,
            admins,
            keyring,
            rules,
            fallback,
        }
    }

    /// What rules and the fallback share: action, parameters and limits.
    #[allow(clippy::type_complexity)]
    fn core(
        &mut self,
        label: &str,
        action: &Spanned<String>,
        parameters: &BTreeMap<String, Spanned<toml::Value>>,
        cooldown_s: &Spanned<i64>,
        rate_limit: Option<&Spanned<RawRateLimit>>,
        circuit_breaker: Option<&Spanned<RawBreaker>>,
    ) -> Option<(
        ActionActionType,
        Vec<(String, Param)>,
        u64,
        Option<RateLimit>,
        BreakerConfig,
    )> {
        let action_type = match action.get_ref().parse::<ActionActionType>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.at(
                    action.span().start,
                    format!(
                        "{label}: unknown action type {:?}; expected one of {ACTION_TYPES}",
                        action.get_ref()
                    ),
                );
                None
            }
        };
        let mut params = Vec::new();
        for (key, value) in parameters {
            if let Some(param) = self.param(label, key, value) {
                params.push((key.clone(), param));
            }
        }
        if let Some(action_type) = action_type {
            for (key, hint) in required_parameters(action_type) {
                if !parameters.contains_key(*key) {
                    self.at(
                        action.span().start,
                        format!("{label}: {action_type} needs parameters.{key} ({hint})"),
                    );
                }
            }
            for (key, param) in &params {
                let at = parameters[key].span().start;
                if INTEGER_PARAMETERS.contains(&key.as_str()) && param.has_variables() {
                    self.at(at, format!("{label}: parameters.{key} must be a whole number; templates render text"));
                    continue;
                }
                // Strings without variables are literals; templates are checked when rendered.
                if let Param::Literal(value) = param {
                    if let Err(why) = check_parameter(action_type, key, value) {
                        self.at(at, format!("{label}: parameters.{key}: {why}"));
                    }
                }
            }
        }
        let cooldown = *cooldown_s.get_ref();
        if cooldown < 1 || cooldown as u64 > MAX_RATE_WINDOW_S {
            self.at(
                cooldown_s.span().start,
                format!("{label}: cooldown_s = {cooldown} is out of range: between 1 and {MAX_RATE_WINDOW_S}; the cooldown is what keeps re-emitted versions of one incident from acting twice"),
            );
        }
        let rate = rate_limit.map(|r| {
            let r = r.get_ref();
            let (max, per_s) = (*r.max.get_ref(), *r.per_s.get_ref());
            if max < 1 || max > i64::from(MAX_RATE_MAX) {
                self.at(
                    r.max.span().start,
                    format!("{label}: rate_limit.max = {max} is out of range: between 1 and {MAX_RATE_MAX}"),
                );
            }
            if per_s < 1 || per_s as u64 > MAX_RATE_WINDOW_S {
                self.at(
                    r.per_s.span().start,
                    format!("{label}: rate_limit.per_s = {per_s} is out of range: between 1 and {MAX_RATE_WINDOW_S}"),
                );
            }
            RateLimit {
                max: max.clamp(1, i64::from(MAX_RATE_MAX)) as u32,
                per_s: per_s.max(1) as u64,
            }
        });
        let breaker = match circuit_breaker {
            None => BreakerConfig::default(),
            Some(b) => {
                let b = b.get_ref();
                for (name, field) in [
                    ("failures", &b.failures),
                    ("within_s", &b.within_s),
                    ("open_s", &b.open_s),
                ] {
                    let value = *field.get_ref();
                    if value < 1 || value as u64 > MAX_RATE_WINDOW_S {
                        self.at(
                            field.span().start,
                            format!("{label}: circuit_breaker.{name} = {value} is out of range: between 1 and {MAX_RATE_WINDOW_S}"),
                        );
                    }
                }
                BreakerConfig {
                    failures: (*b.failures.get_ref()).clamp(1, i64::from(MAX_RATE_MAX)) as u32,
                    within_s: (*b.within_s.get_ref()).max(1) as u64,
                    open_s: (*b.open_s.get_ref()).max(1) as u64,
                }
            }
        };
        Some((action_type?, params, cooldown.max(1) as u64, rate, breaker))
    }

    /// A `targets` list; `label` says where it is. `None` when absent (or unusable: the
    /// problems are recorded, so the policy is refused anyway).
    fn targets(
        &mut self,
        label: &str,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
    ) -> Option<AllowedTargets> {
        let raw = raw?;
        if raw.get_ref().is_empty() {
            self.at(
                raw.span().start,
                format!("{label} is empty: it would refuse every target; leave it out to allow any canonical name"),
            );
            return None;
        }
        let mut names: Vec<CanonicalTarget> = Vec::new();
        for entry in raw.get_ref() {
            match CanonicalTarget::parse(entry.get_ref()) {
                Ok(name) if names.contains(&name) => self.at(
                    entry.span().start,
                    format!("{label}: {:?} is listed twice", entry.get_ref()),
                ),
                Ok(name) => names.push(name),
                Err(e) => self.at(entry.span().start, format!("{label}: {e}")),
            }
        }
        Some(AllowedTargets {
            names,
            line: self.line(raw.span().start),
        })
    }

    /// A target the policy writes out (no template) must be one brain would accept from an
    /// incident: otherwise the rule could never act, and that is better said at load.
    fn literal_targets(
        &mut self,
        label: &str,
        raw: &BTreeMap<String, Spanned<toml::Value>>,
        rule: &Rule,
    ) {
        for (key, param) in &rule.parameters {
            let Param::Literal(Value::String(text)) = param else {
                continue;
            };
            if !TARGET_PARAMETERS.contains(&key.as_str()) {
                continue;
            }
            let at = raw[key].span().start;
            match CanonicalTarget::parse(text) {
                Err(e) => self.at(at, format!("{label}: parameters.{key}: {e}")),
                Ok(name) => {
                    if let Some(allowed) = rule.targets.as_ref().filter(|a| !a.allows(&name)) {
                        self.at(
                            at,
                            format!(
                                "{label}: parameters.{key}: {text:?} is not in `targets` (line {}: {})",
                                allowed.line,
                                allowed.list()
                            ),
                        );
                    }
                }
            }
        }
    }

    fn param(&mut self, label: &str, key: &str, value: &Spanned<toml::Value>) -> Option<Param> {
        let at = value.span().start;
        convert(value.get_ref())
            .map_err(|why| {
                self.at(at, format!("{label}: parameters.{key}: {why}"));
            })
            .ok()
    }
}

/// toml → parameter, parsing every string as a template.
fn convert(value: &toml::Value) -> Result<Param, String> {
    Ok(match value {
        toml::Value::String(s) => {
            let template = Template::parse(s).map_err(|e| e.to_string())?;
            if template.has_variables() {
                Param::Text(template)
            } else {
                Param::Literal(Value::String(s.clone()))
            }
        }
        toml::Value::Integer(i) => Param::Literal(Value::from(*i)),
        toml::Value::Float(f) => Param::Literal(
            serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .ok_or_else(|| format!("{f} is not a finite number"))?,
        ),
        toml::Value::Boolean(b) => Param::Literal(Value::Bool(*b)),
        toml::Value::Datetime(d) => Param::Literal(Value::String(d.to_string())),
        toml::Value::Array(items) => {
            Param::List(items.iter().map(convert).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(table) => Param::Table(
            table
                .iter()
                .map(|(k, v)| Ok((k.clone(), convert(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// Checks one literal parameter against the action contract.
fn check_parameter(action: ActionActionType, key: &str, value: &Value) -> Result<(), String> {
    let mut parameters = Map::new();
    parameters.insert(key.to_string(), value.clone());
    let action = contracts::Action {
        action_id: uuid::Uuid::nil(),
        action_type: action,
        approval_id: None,
        decision_id: uuid::Uuid::nil(),
        dry_run: false,
        parameters: action_parameters(&parameters),
        rollback_enabled: false,
        safety_classification: ActionSafetyClassification::Safe,
        source: "orion-brain"
            .parse()
            .map_err(|e: ConversionError| e.to_string())?,
        state: ActionState::Pending,
        tags: Default::default(),
        timestamp: contracts::Timestamp(time::OffsetDateTime::UNIX_EPOCH),
        version: ActionVersion::X10,
    };
    contracts::to_value(&action)
        .map(|_| ())
        .map_err(|e| match e.violations().first() {
            Some(v) => format!("{} (value {})", v.message, v.value),
            None => e.to_string(),
        })
}
