//! Correlation rules: what an event must look like to count for a rule, how events are grouped,
//! and how a rule is checked when the configuration is loaded. Pure code, no I/O.
//!
//! A rule is written in TOML (see `guardian.toml` at the crate root) and validated into a
//! [`Rule`] by [`RuleSpec::validate`]; every problem is reported as a [`RuleError`] that names
//! the rule and the field.

use std::collections::{BTreeMap, BTreeSet};

use contracts::event_v1::{EventData, EventEventType, EventSeverity};
use contracts::incident_v1::{IncidentIncidentType, IncidentSeverity};
use contracts::Event;
use serde::Deserialize;

/// The tag every incident carries with the name of the rule that opened it.
pub const RULE_TAG: &str = "rule";

/// A rule as written in the configuration file, before validation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique name; becomes the incident's `rule` tag.
    pub name: Option<String>,
    /// Which events count for the rule.
    #[serde(rename = "match")]
    pub matching: Option<MatchSpec>,
    /// Field paths whose values split events into groups; one incident per group.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Width of the sliding window, in seconds, in which `threshold` events must fall.
    pub window_s: Option<u64>,
    /// Events in the window that open an incident (1: the first event opens it).
    pub threshold: Option<u64>,
    /// The incident type to emit.
    pub incident_type: Option<String>,
    /// A fixed incident severity; by default the highest event severity is mapped.
    pub severity: Option<String>,
    /// Event types that resolve the open incident of the same group.
    #[serde(default)]
    pub resolve_on: Vec<String>,
    /// Resolve when no matching event arrived for this long.
    pub resolve_after_s: Option<u64>,
}

/// The `[rules.match]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// Event types that count (at least one).
    #[serde(default)]
    pub event_type: Vec<String>,
    /// Allowed sources: exact names or patterns with `*` (any characters). Empty: any source.
    #[serde(default)]
    pub source: Vec<String>,
    /// Allowed event severities. Empty: any.
    #[serde(default)]
    pub severity: Vec<String>,
    /// `data.<field> = value` (or a list of allowed values); nested tables are nested fields.
    #[serde(default)]
    pub data: toml::Table,
    /// `tags.<name> = value` (or a list of allowed values).
    #[serde(default)]
    pub tags: toml::Table,
}

/// A configuration problem in one rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule}: `{field}`: {problem}")]
pub struct RuleError {
    /// `"name"` or `#<position>` when the rule has no usable name.
    pub rule: String,
    pub field: String,
    pub problem: String,
}

/// Where a value is read from in an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldPath {
    Source,
    EventType,
    Severity,
    /// `data.a.b`: the segments after `data`.
    Data(Vec<String>),
    /// `tags.name`.
    Tag(String),
}

impl FieldPath {
    /// Parses `source`, `event_type`, `severity`, `data.<field>[.<field>…]` or `tags.<name>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let segments: Vec<&str> = text.split('.').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(format!("{text:?} has an empty path segment"));
        }
        match segments.as_slice() {
            ["source"] => Ok(Self::Source),
            ["event_type"] => Ok(Self::EventType),
            ["severity"] => Ok(Self::Severity),
            ["data", rest @ ..] if !rest.is_empty() => {
                Ok(Self::Data(rest.iter().map(|s| s.to_string()).collect()))
            }
            ["tags", name] => Ok(Self::Tag(name.to_string())),
            _ => Err(format!(
                "{text:?} is not a field path: use source, event_type, severity, data.<field> or tags.<name>"
            )),
        }
    }

    /// The last segment: the tag name an incident carries for this group-by key
    /// (`data.service_name` → `service_name`).
    pub fn tag_name(&self) -> String {
        match self {
            Self::Source => "source".into(),
            Self::EventType => "event_type".into(),
            Self::Severity => "severity".into(),
            Self::Data(segments) => segments.last().cloned().unwrap_or_default(),
            Self::Tag(name) => name.clone(),
        }
    }

    /// The value at this path as text (strings as they are, numbers and booleans printed);
    /// `None` when absent, null, an object or an array.
    pub fn lookup(&self, event: &Event) -> Option<String> {
        match self {
            Self::Source => Some(event.source.to_string()),
            Self::EventType => Some(event.event_type.to_string()),
            Self::Severity => Some(event.severity.to_string()),
            Self::Tag(name) => event.tags.get(name).cloned(),
            Self::Data(segments) => data_lookup(&event.data, segments),
        }
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Source => f.write_str("source"),
            Self::EventType => f.write_str("event_type"),
            Self::Severity => f.write_str("severity"),
            Self::Data(segments) => write!(f, "data.{}", segments.join(".")),
            Self::Tag(name) => write!(f, "tags.{name}"),
        }
    }
}

fn data_lookup(data: &EventData, segments: &[String]) -> Option<String> {
    let (first, rest) = segments.split_first()?;
    if rest.is_empty() {
        match first.as_str() {
            "service_name" => return data.service_name.as_ref().map(|v| v.to_string()),
            "device_id" => return data.device_id.as_ref().map(|v| v.to_string()),
            "metric" => return data.metric.as_ref().map(|v| v.to_string()),
            "message" => return data.message.clone(),
            "value" => return data.value.map(format_number),
            "threshold" => return data.threshold.map(format_number),
            _ => {}
        }
    }
    let mut value = data.extra.get(first)?;
    for segment in rest {
        value = value.as_object()?.get(segment)?;
    }
    json_scalar(value)
}

fn format_number(n: f64) -> String {
    n.to_string()
}

fn json_scalar(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Number(n) => Some(match n.as_i64() {
            Some(i) => i.to_string(),
            None => n
                .as_f64()
                .map(format_number)
                .unwrap_or_else(|| n.to_string()),
        }),
        _ => None,
    }
}

/// A `*` pattern (any run of characters) or an exact name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Self(pattern.to_string())
    }

    pub fn matches(&self, text: &str) -> bool {
        glob_match(self.0.as_bytes(), text.as_bytes())
    }
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative wildcard matching with backtracking to the last `*`.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A field that must have one of the listed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMatch {
    pub path: FieldPath,
    pub allowed: Vec<String>,
}

/// A group-by key: where its value comes from and the tag it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupKeySpec {
    pub path: FieldPath,
    pub tag: String,
}

/// What an event is to a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It counts towards (or joins) the group's incident.
    Correlates,
    /// Its type is in `resolve_on`: it resolves the group's open incident.
    Resolves,
}

/// A validated correlation rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub event_types: Vec<EventEventType>,
    pub sources: Vec<Glob>,
    pub severities: Vec<EventSeverity>,
    pub fields: Vec<FieldMatch>,
    pub group_by: Vec<GroupKeySpec>,
    pub window: time::Duration,
    pub threshold: usize,
    pub incident_type: IncidentIncidentType,
    pub severity: Option<IncidentSeverity>,
    pub resolve_on: Vec<EventEventType>,
    pub resolve_after: Option<time::Duration>,
}

impl Rule {
    /// Whether `event` counts for this rule, resolves its incidents, or neither.
    ///
    /// A counting event must match every filter (type, source, severity, fields). A resolving
    /// event only needs its type in `resolve_on` and an allowed source: a `service_up` is
    /// usually `info` and need not carry the fields the failure carried.
    pub fn role(&self, event: &Event) -> Option<Role> {
        let source_ok =
            self.sources.is_empty() || self.sources.iter().any(|g| g.matches(&event.source));
        if !source_ok {
            return None;
        }
        if self.resolve_on.contains(&event.event_type) {
            return Some(Role::Resolves);
        }
        if !self.event_types.contains(&event.event_type) {
            return None;
        }
        if !self.severities.is_empty() && !self.severities.contains(&event.severity) {
            return None;
        }
        let fields_ok = self.fields.iter().all(|m| {
            m.path
                .lookup(event)
                .is_some_and(|value| m.allowed.contains(&value))
        });
        fields_ok.then_some(Role::Correlates)
    }

    /// The values of the group-by keys of `event`, in order; `Err(path)` names the first key
    /// the event does not carry (the rule then does not apply to it).
    pub fn group_values(&self, event: &Event) -> Result<Vec<String>, &FieldPath> {
        self.group_by
            .iter()
            .map(|key| key.path.lookup(event).ok_or(&key.path))
            .collect()
    }
}

/// Maps an event severity to the incident scale: critical→critical, error→high,
/// warning→medium, info→low.
pub fn incident_severity(severity: EventSeverity) -> IncidentSeverity {
    match severity {
        EventSeverity::Critical => IncidentSeverity::Critical,
        EventSeverity::Error => IncidentSeverity::High,
        EventSeverity::Warning => IncidentSeverity::Medium,
        EventSeverity::Info => IncidentSeverity::Low,
    }
}

/// Orders event severities: info < warning < error < critical.
pub fn event_severity_rank(severity: EventSeverity) -> u8 {
    match severity {
        EventSeverity::Info => 0,
        EventSeverity::Warning => 1,
        EventSeverity::Error => 2,
        EventSeverity::Critical => 3,
    }
}

const EVENT_TYPES: &str = "metric_threshold_exceeded, service_down, service_up, edge_device_offline, edge_device_online, edge_telemetry, user_command_received, external_api_failure, external_api_success";
const INCIDENT_TYPES: &str =
    "service_outage, edge_device_failure, metric_anomaly, repeated_failures, correlation_detected";

/// Longest accepted window or resolve delay (30 days): longer ones are almost surely a typo.
const MAX_DURATION_S: u64 = 30 * 24 * 3600;

impl RuleSpec {
    /// Checks the rule and turns it into a [`Rule`]. `position` (from 1) names the rule when it
    /// has no name.
    pub fn validate(&self, position: usize) -> Result<Rule, RuleError> {
        let label = match &self.name {
            Some(name) if !name.trim().is_empty() => format!("{name:?}"),
            _ => format!("#{position}"),
        };
        let error = |field: &str, problem: String| RuleError {
            rule: label.clone(),
            field: field.to_string(),
            problem,
        };
        let name = match &self.name {
            None => {
                return Err(error(
                    "name",
                    "is missing: every rule needs a unique name".into(),
                ))
            }
            Some(name) => name.trim().to_string(),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(error(
                "name",
                format!("{name:?} must be non-empty and use only letters, digits, `-`, `_` or `.`"),
            ));
        }
        let matching = self.matching.clone().ok_or_else(|| {
            error(
                "match",
                "is missing: add a [rules.match] table with at least `event_type`".into(),
            )
        })?;
        if matching.event_type.is_empty() {
            return Err(error(
                "match.event_type",
                format!(
                    "is empty: list the event types that count for the rule (one of {EVENT_TYPES})"
                ),
            ));
        }
        let event_types = parse_event_types(&matching.event_type)
            .map_err(|problem| error("match.event_type", problem))?;
        let resolve_on =
            parse_event_types(&self.resolve_on).map_err(|problem| error("resolve_on", problem))?;
        if let Some(both) = resolve_on.iter().find(|t| event_types.contains(t)) {
            return Err(error(
                "resolve_on",
                format!("{both} is also in match.event_type: an event cannot both open and resolve an incident"),
            ));
        }
        let severities = matching
            .severity
            .iter()
            .map(|s| {
                s.parse::<EventSeverity>().map_err(|_| {
                    error(
                        "match.severity",
                        format!("{s:?} is not an event severity (info, warning, error, critical)"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut sources = Vec::new();
        for source in &matching.source {
            if source.is_empty() {
                return Err(error(
                    "match.source",
                    "an empty source pattern matches nothing".into(),
                ));
            }
            sources.push(Glob::new(source));
        }
        let mut fields = Vec::new();
        flatten_matches(&matching.data, "data", &mut fields)
            .map_err(|(field, problem)| error(&field, problem))?;
        flatten_matches(&matching.tags, "tags", &mut fields)
            .map_err(|(field, problem)| error(&field, problem))?;

        let mut group_by = Vec::new();
        let mut tags = BTreeSet::new();
        for key in &self.group_by {
            let path = FieldPath::parse(key).map_err(|problem| error("group_by", problem))?;
            let tag = path.tag_name();
            if tag == RULE_TAG {
                return Err(error(
                    "group_by",
                    format!("{key:?} would become the tag `{RULE_TAG}`, which names the rule; group by another field"),
                ));
            }
            if !tags.insert(tag.clone()) {
                return Err(error(
                    "group_by",
                    format!("two keys end in `{tag}`: incident tags are named by the last segment, so they must differ"),
                ));
            }
            group_by.push(GroupKeySpec { path, tag });
        }

        let window_s = self.window_s.ok_or_else(|| {
            error(
                "window_s",
                "is missing: the correlation window in seconds (e.g. 60)".into(),
            )
        })?;
        if window_s == 0 || window_s > MAX_DURATION_S {
            return Err(error(
                "window_s",
                format!("{window_s} is out of range: 1 to {MAX_DURATION_S} seconds"),
            ));
        }
        let threshold = self.threshold.ok_or_else(|| {
            error(
                "threshold",
                "is missing: how many events in the window open an incident (1: the first one)"
                    .into(),
            )
        })?;
        if threshold == 0 || threshold > 10_000 {
            return Err(error(
                "threshold",
                format!("{threshold} is out of range: 1 to 10000 events"),
            ));
        }
        let incident_type = self.incident_type.as_deref().ok_or_else(|| {
            error(
                "incident_type",
                format!("is missing: one of {INCIDENT_TYPES}"),
            )
        })?;
        let incident_type = incident_type.parse::<IncidentIncidentType>().map_err(|_| {
            error(
                "incident_type",
                format!("{incident_type:?} is not an incident type (one of {INCIDENT_TYPES})"),
            )
        })?;
        let severity = self
            .severity
            .as_deref()
            .map(|s| {
                s.parse::<IncidentSeverity>().map_err(|_| {
                    error(
                        "severity",
                        format!("{s:?} is not an incident severity (low, medium, high, critical)"),
                    )
                })
            })
            .transpose()?;
        let resolve_after = match self.resolve_after_s {
            None => None,
            Some(s) if s == 0 || s > MAX_DURATION_S => {
                return Err(error(
                    "resolve_after_s",
                    format!("{s} is out of range: 1 to {MAX_DURATION_S} seconds (leave it out to never resolve by time)"),
                ))
            }
            Some(s) => Some(time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX))),
        };
        Ok(Rule {
            name,
            event_types,
            sources,
            severities,
            fields,
            group_by,
            window: time::Duration::seconds(i64::try_from(window_s).unwrap_or(i64::MAX)),
            threshold: threshold as usize,
            incident_type,
            severity,
            resolve_on,
            resolve_after,
        })
    }
}

fn parse_event_types(names: &[String]) -> Result<Vec<EventEventType>, String> {
    let mut types = Vec::new();
    for name in names {
        let parsed = name
            .parse::<EventEventType>()
            .map_err(|_| format!("{name:?} is not an event type (one of {EVENT_TYPES})"))?;
        if !types.contains(&parsed) {
            types.push(parsed);
        }
    }
    Ok(types)
}

/// Turns `{ service_name = "x", region = ["eu", "us"], nested = { a = 1 } }` under `prefix`
/// into field matches (`data.service_name`, `data.region`, `data.nested.a`).
fn flatten_matches(
    table: &toml::Table,
    prefix: &str,
    out: &mut Vec<FieldMatch>,
) -> Result<(), (String, String)> {
    // Sorted for a stable order in messages and tests.
    let sorted: BTreeMap<_, _> = table.iter().collect();
    for (key, value) in sorted {
        let field = format!("{prefix}.{key}");
        let allowed = match value {
            toml::Value::Table(inner) if prefix.starts_with("data") => {
                flatten_matches(inner, &field, out)?;
                continue;
            }
            toml::Value::Array(items) => {
                let mut allowed = Vec::new();
                for item in items {
                    allowed.push(toml_scalar(item).ok_or_else(|| {
                        (
                            format!("match.{field}"),
                            "list items must be strings, numbers or booleans".to_string(),
                        )
                    })?);
                }
                if allowed.is_empty() {
                    return Err((
                        format!("match.{field}"),
                        "an empty list matches nothing".to_string(),
                    ));
                }
                allowed
            }
            scalar => vec![toml_scalar(scalar).ok_or_else(|| {
                (
                    format!("match.{field}"),
                    "must be a string, number, boolean or a list of them".to_string(),
                )
            })?],
        };
        let path =
            FieldPath::parse(&field).map_err(|problem| (format!("match.{field}"), problem))?;
        out.push(FieldMatch { path, allowed });
    }
    Ok(())
}

fn toml_scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(format_number(*f)),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> RuleSpec {
        toml::from_str(text).unwrap()
    }

    const BASE: &str = r#"
        name = "outage"
        group_by = ["data.service_name"]
        window_s = 60
        threshold = 1
        incident_type = "service_outage"
        resolve_on = ["service_up"]
        [match]
        event_type = ["service_down"]
    "#;

    fn event(json: serde_json::Value) -> Event {
        let mut base = serde_json::json!({
            "version": "1.0",
            "event_id": "8096f5a9-b0e0-4840-b850-a1f442700ab3",
            "timestamp": "2026-02-14T12:00:00Z",
            "source": "orion-watcher",
            "event_type": "service_down",
            "severity": "critical",
            "data": {"service_name": "payments"}
        });
        for (k, v) in json.as_object().unwrap() {
            base[k] = v.clone();
        }
        contracts::decode_value(base).unwrap()
    }

    #[test]
    fn globs() {
        assert!(Glob::new("orion-*").matches("orion-watcher"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("orion-*-probe").matches("orion-edge-eu-probe"));
        assert!(!Glob::new("orion-*-probe").matches("orion-edge-eu"));
        assert!(Glob::new("orion-watcher").matches("orion-watcher"));
        assert!(!Glob::new("orion-watcher").matches("orion-watchers"));
        assert!(Glob::new("a*b*c").matches("aXbYbZc"));
    }

    #[test]
    fn field_paths_read_typed_and_producer_keys() {
        let e = event(serde_json::json!({
            "data": {"service_name": "payments", "value": 3.0, "region": {"zone": "eu-1"}, "n": 7, "ok": true},
            "tags": {"team": "core"}
        }));
        let lookup = |p: &str| FieldPath::parse(p).unwrap().lookup(&e);
        assert_eq!(lookup("data.service_name").as_deref(), Some("payments"));
        assert_eq!(lookup("data.value").as_deref(), Some("3"));
        assert_eq!(lookup("data.region.zone").as_deref(), Some("eu-1"));
        assert_eq!(lookup("data.n").as_deref(), Some("7"));
        assert_eq!(lookup("data.ok").as_deref(), Some("true"));
        assert_eq!(lookup("data.region"), None, "objects are not values");
        assert_eq!(lookup("data.missing"), None);
        assert_eq!(lookup("tags.team").as_deref(), Some("core"));
        assert_eq!(lookup("source").as_deref(), Some("orion-watcher"));
        assert_eq!(lookup("severity").as_deref(), Some("critical"));
        assert!(FieldPath::parse("data").is_err());
        assert!(FieldPath::parse("data..x").is_err());
        assert!(FieldPath::parse("payload.x").is_err());
        assert_eq!(FieldPath::parse("data.a.b").unwrap().tag_name(), "b");
    }

    #[test]
    fn a_valid_rule_matches_and_groups() {
        let rule = spec(BASE).validate(1).unwrap();
        assert_eq!(
            rule.role(&event(serde_json::json!({}))),
            Some(Role::Correlates)
        );
        assert_eq!(
            rule.role(&event(
                serde_json::json!({"event_type": "service_up", "severity": "info", "data": {}})
            )),
            Some(Role::Resolves)
        );
        assert_eq!(
            rule.role(&event(serde_json::json!({"event_type": "edge_telemetry"}))),
            None
        );
        assert_eq!(
            rule.group_values(&event(serde_json::json!({}))).unwrap(),
            vec!["payments".to_string()]
        );
        let missing = event(serde_json::json!({"data": {}}));
        assert_eq!(
            rule.group_values(&missing).unwrap_err().to_string(),
            "data.service_name"
        );
    }

    #[test]
    fn filters_on_source_severity_and_fields() {
        let rule = spec(&format!(
            "{BASE}\nsource = [\"orion-edge-*\"]\nseverity = [\"error\", \"critical\"]\ndata.region = [\"eu\", \"us\"]\ntags.env = \"prod\"\n"
        ))
        .validate(1)
        .unwrap();
        let good = serde_json::json!({
            "source": "orion-edge-gw", "data": {"service_name": "p", "region": "eu"}, "tags": {"env": "prod"}
        });
        assert_eq!(rule.role(&event(good.clone())), Some(Role::Correlates));
        let mut wrong_source = good.clone();
        wrong_source["source"] = "orion-watcher".into();
        assert_eq!(rule.role(&event(wrong_source)), None);
        let mut low = good.clone();
        low["severity"] = "warning".into();
        assert_eq!(rule.role(&event(low)), None);
        let mut other_region = good.clone();
        other_region["data"]["region"] = "ap".into();
        assert_eq!(rule.role(&event(other_region)), None);
        let mut no_tag = good;
        no_tag["tags"] = serde_json::json!({});
        assert_eq!(rule.role(&event(no_tag)), None);
    }

    fn problem(extra: &str, without: &[&str]) -> RuleError {
        let text: String = BASE
            .lines()
            .filter(|l| !without.iter().any(|w| l.trim_start().starts_with(w)))
            .collect::<Vec<_>>()
            .join("\n");
        // Top-level keys must precede [match]: put extras first.
        spec(&format!("{extra}\n{text}")).validate(3).unwrap_err()
    }

    #[test]
    fn every_problem_names_the_rule_and_the_field() {
        let cases: Vec<(RuleError, &str, &str)> = vec![
            (problem("", &["name"]), "#3", "name"),
            (problem("", &["window_s"]), "\"outage\"", "window_s"),
            (
                problem("window_s = 0", &["window_s"]),
                "\"outage\"",
                "window_s",
            ),
            (
                problem("threshold = 0", &["threshold"]),
                "\"outage\"",
                "threshold",
            ),
            (problem("", &["threshold"]), "\"outage\"", "threshold"),
            (
                problem("incident_type = \"outage\"", &["incident_type"]),
                "\"outage\"",
                "incident_type",
            ),
            (
                problem("severity = \"urgent\"", &[]),
                "\"outage\"",
                "severity",
            ),
            (
                problem("resolve_on = [\"service_down\"]", &["resolve_on"]),
                "\"outage\"",
                "resolve_on",
            ),
            (
                problem("resolve_on = [\"service_upp\"]", &["resolve_on"]),
                "\"outage\"",
                "resolve_on",
            ),
            (
                problem("resolve_after_s = 0", &[]),
                "\"outage\"",
                "resolve_after_s",
            ),
            (
                problem("group_by = [\"payload.x\"]", &["group_by"]),
                "\"outage\"",
                "group_by",
            ),
            (
                problem("group_by = [\"data.rule\"]", &["group_by"]),
                "\"outage\"",
                "group_by",
            ),
            (
                problem("group_by = [\"data.a.name\", \"tags.name\"]", &["group_by"]),
                "\"outage\"",
                "group_by",
            ),
            (
                problem("name = \"bad name\"", &["name"]),
                "\"bad name\"",
                "name",
            ),
        ];
        for (error, rule, field) in cases {
            assert_eq!(
                (error.rule.as_str(), error.field.as_str()),
                (rule, field),
                "{error}"
            );
            let text = error.to_string();
            assert!(text.contains(rule) && text.contains(field), "{text}");
        }
        let bad_type = spec(&BASE.replace("[\"service_down\"]", "[\"service_dwn\"]"))
            .validate(1)
            .unwrap_err();
        assert_eq!(bad_type.field, "match.event_type");
        assert!(bad_type.problem.contains("service_dwn"), "{bad_type}");
        let empty_types = spec(&BASE.replace("[\"service_down\"]", "[]"))
            .validate(1)
            .unwrap_err();
        assert_eq!(empty_types.field, "match.event_type");
        let bad_data = spec(&format!("{BASE}\ndata.region = []\n"))
            .validate(1)
            .unwrap_err();
        assert_eq!(bad_data.field, "match.data.region");
        let no_match: RuleSpec = toml::from_str(
            "name = \"x\"\nwindow_s = 1\nthreshold = 1\nincident_type = \"service_outage\"\n",
        )
        .unwrap();
        assert_eq!(no_match.validate(1).unwrap_err().field, "match");
    }

    #[test]
    fn severity_mapping() {
        assert_eq!(
            incident_severity(EventSeverity::Critical),
            IncidentSeverity::Critical
        );
        assert_eq!(
            incident_severity(EventSeverity::Error),
            IncidentSeverity::High
        );
        assert_eq!(
            incident_severity(EventSeverity::Warning),
            IncidentSeverity::Medium
        );
        assert_eq!(
            incident_severity(EventSeverity::Info),
            IncidentSeverity::Low
        );
        assert!(
            event_severity_rank(EventSeverity::Critical)
                > event_severity_rank(EventSeverity::Error)
        );
    }
}
