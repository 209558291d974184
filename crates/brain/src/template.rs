//! `${…}` templates in policy parameters, rendered from the incident being decided.
//!
//! Variables:
//! - `${tags.<key>}` — the incident's tag `<key>` (guardian puts each group-by key's last path
//!   segment there, e.g. `tags.service_name`, `tags.device_id`, plus `tags.rule`);
//! - `${incident.incident_id}`, `${incident.severity}`, `${incident.incident_type}`.
//!
//! A `$` not followed by `{` is literal text. Parsing happens when the policy is loaded, so a
//! malformed template stops brain at start with the line; rendering only fails when the incident
//! lacks a tag the template needs.

use contracts::Incident;

/// One variable a template may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variable {
    Tag(String),
    IncidentId,
    Severity,
    IncidentType,
}

impl std::fmt::Display for Variable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Variable::Tag(key) => write!(f, "${{tags.{key}}}"),
            Variable::IncidentId => f.write_str("${incident.incident_id}"),
            Variable::Severity => f.write_str("${incident.severity}"),
            Variable::IncidentType => f.write_str("${incident.incident_type}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Variable),
}

/// A parsed template string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// Why a template string is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`${{` at byte {0} is never closed with `}}`")]
    Unclosed(usize),
    #[error("unknown template variable `${{{0}}}`; use ${{tags.<key>}}, ${{incident.incident_id}}, ${{incident.severity}} or ${{incident.incident_type}}")]
    UnknownVariable(String),
    #[error(
        "`${{tags.}}` needs a tag name: ${{tags.<key>}} with letters, digits, `_`, `-` or `.`"
    )]
    EmptyTag,
}

/// Why a template could not be rendered for an incident.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the incident has no tag `{missing}` (its tags: {available})")]
pub struct RenderError {
    pub missing: String,
    pub available: String,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(start) = rest.find("${") {
            literal.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or(TemplateError::Unclosed(offset + start))?;
            let name = after[..end].trim();
            let variable = parse_variable(name)?;
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Var(variable));
            let consumed = start + 2 + end + 1;
            offset += consumed;
            rest = &rest[consumed..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Self { pieces })
    }

    /// Whether the template uses any variable (a plain string otherwise).
    pub fn has_variables(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Var(_)))
    }

    /// The variables the template uses.
    pub fn variables(&self) -> impl Iterator<Item = &Variable> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(v) => Some(v),
            Piece::Text(_) => None,
        })
    }

    pub fn render(&self, incident: &Incident) -> Result<String, RenderError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Var(Variable::IncidentId) => out.push_str(&incident.incident_id.to_string()),
                Piece::Var(Variable::Severity) => out.push_str(&incident.severity.to_string()),
                Piece::Var(Variable::IncidentType) => {
                    out.push_str(&incident.incident_type.to_string())
                }
                Piece::Var(Variable::Tag(key)) => match incident.tags.get(key) {
                    Some(value) => out.push_str(value),
                    None => {
                        let mut keys: Vec<&str> =
                            incident.tags.keys().map(String::as_str).collect();
                        keys.sort_unstable();
                        return Err(RenderError {
                            missing: key.clone(),
                            available: if keys.is_empty() {
                                "none".to_string()
                            } else {
                                keys.join(", ")
                            },
                        });
                    }
                },
            }
        }
        Ok(out)
    }
}

fn parse_variable(name: &str) -> Result<Variable, TemplateError> {
    if let Some(key) = name.strip_prefix("tags.") {
        if key.is_empty() {
            return Err(TemplateError::EmptyTag);
        }
        if !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(TemplateError::UnknownVariable(name.to_string()));
        }
        return Ok(Variable::Tag(key.to_string()));
    }
    match name {
        "tags" => Err(TemplateError::EmptyTag),
        "incident.incident_id" => Ok(Variable::IncidentId),
        "incident.severity" => Ok(Variable::Severity),
        "incident.incident_type" => Ok(Variable::IncidentType),
        other => Err(TemplateError::UnknownVariable(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(tags: &[(&str, &str)]) -> Incident {
        let mut value: serde_json::Value = serde_json::json!({
            "version": "1.0",
            "incident_id": "e725c20a-d5ea-4984-9043-b8e2be93a27c",
            "timestamp": "2026-02-14T12:05:30Z",
            "source": "orion-guardian",
            "incident_type": "service_outage",
            "severity": "high",
            "event_ids": ["8096f5a9-b0e0-4840-b850-a1f442700ab3"],
            "correlation_window": {"start": "2026-02-14T12:04:30Z", "end": "2026-02-14T12:05:30Z"},
            "state": "open"
        });
        value["tags"] = tags
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        contracts::decode_value(value).unwrap()
    }

    #[test]
    fn renders_tags_and_incident_fields() {
        let t = Template::parse("restart ${tags.service_name} for ${incident.incident_id} (${incident.severity}, ${incident.incident_type}) costs $5").unwrap();
        assert!(t.has_variables());
        assert_eq!(
            t.render(&incident(&[("service_name", "web")])).unwrap(),
            "restart web for e725c20a-d5ea-4984-9043-b8e2be93a27c (high, service_outage) costs $5"
        );
        let plain = Template::parse("just text").unwrap();
        assert!(!plain.has_variables());
    }

    #[test]
    fn a_missing_tag_names_the_tag_and_what_is_there() {
        let t = Template::parse("${tags.device_id}").unwrap();
        let err = t
            .render(&incident(&[("service_name", "web"), ("rule", "r")]))
            .unwrap_err();
        assert_eq!(err.missing, "device_id");
        assert_eq!(err.available, "rule, service_name");
    }

    #[test]
    fn malformed_templates_are_refused() {
        assert_eq!(
            Template::parse("x ${tags.a"),
            Err(TemplateError::Unclosed(2))
        );
        assert_eq!(Template::parse("${tags.}"), Err(TemplateError::EmptyTag));
        assert!(matches!(
            Template::parse("${incident.nope}"),
            Err(TemplateError::UnknownVariable(v)) if v == "incident.nope"
        ));
        assert!(matches!(
            Template::parse("${env.HOME}"),
            Err(TemplateError::UnknownVariable(_))
        ));
    }
}
