//! Plain data the Docker layer hands out: containers, evidence, deploy reports.

use std::collections::BTreeMap;

use bollard::models::ContainerInspectResponse;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// One container of a service, as the engine describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerInfo {
    /// Full container id.
    pub id: String,
    /// Name, without Docker's leading `/`.
    pub name: String,
    /// Image reference the container was created from (as given, e.g. `web:1.2`).
    pub image: String,
    /// Id of that image (`sha256:…`).
    pub image_id: String,
    /// Docker's state: `created`, `running`, `restarting`, `exited`, `paused`, `dead`, …
    pub state: String,
    /// True when the state is `running`.
    pub running: bool,
    /// Health status (`starting`, `healthy`, `unhealthy`) when the container has a health check.
    pub health: Option<String>,
    /// Last start time; `None` if it never started.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339::option")]
    pub created: Option<OffsetDateTime>,
    /// How many times the engine restarted it under its restart policy.
    pub restart_count: i64,
    /// All labels.
    pub labels: BTreeMap<String, String>,
}

impl ContainerInfo {
    /// Builds the summary from a full inspect answer; `None` when the answer lacks the id.
    pub(crate) fn from_inspect(inspect: &ContainerInspectResponse) -> Option<Self> {
        let id = inspect.id.clone()?;
        let state = inspect.state.as_ref();
        let status = state
            .and_then(|s| s.status)
            .map(|s| s.to_string())
            .unwrap_or_default();
        let health = state
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none");
        let config = inspect.config.as_ref();
        Some(Self {
            name: inspect
                .name
                .as_deref()
                .unwrap_or(&id)
                .trim_start_matches('/')
                .to_owned(),
            image: config.and_then(|c| c.image.clone()).unwrap_or_default(),
            image_id: inspect.image.clone().unwrap_or_default(),
            running: state.and_then(|s| s.running).unwrap_or(false),
            state: status,
            health,
            started_at: state
                .and_then(|s| s.started_at.as_deref())
                .and_then(parse_docker_time),
            created: date_string(&inspect.created)
                .as_deref()
                .and_then(parse_docker_time),
            restart_count: inspect.restart_count.unwrap_or(0),
            labels: config
                .and_then(|c| c.labels.as_ref())
                .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            id,
        })
    }
}

/// Docker's timestamps are RFC 3339 with nanoseconds; the zero time (`0001-01-01T00:00:00Z`)
/// means "never".
pub(crate) fn parse_docker_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .filter(|t| t.year() > 1)
}

/// bollard's date type is a `String` or a date type depending on its features; both serialize
/// to an RFC 3339 string.
fn date_string<T: Serialize>(value: &T) -> Option<String> {
    match serde_json::to_value(value).ok()? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    }
}

/// What `export_evidence` collects about one container.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerEvidence {
    /// Container name.
    pub name: String,
    /// The engine's inspect answer, as JSON, redacted (see [`crate::redact`]).
    pub inspect: serde_json::Value,
    /// The last log lines, stdout and stderr interleaved as the engine returns them, each line
    /// prefixed with its RFC 3339 timestamp, at most [`super::MAX_LOG_BYTES`] of them, with the
    /// secrets found in the inspect data replaced. The engine copies the two streams
    /// separately, so lines of different streams written within milliseconds may appear out of
    /// order; the timestamps give the true order.
    pub logs: String,
    /// True when older lines were dropped to keep the logs within [`super::MAX_LOG_BYTES`].
    pub logs_truncated: bool,
    /// What was removed from `inspect` and `logs`: places and reasons, never values.
    pub redactions: Vec<crate::redact::Redaction>,
}

/// One old container replaced by a new one during a deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replacement {
    /// Name of the removed old container.
    pub old: String,
    /// Name of the new container that replaced it.
    pub new: String,
    /// The host ports that made the old container stop before the new one could start (a
    /// short outage); empty (and left out of receipts) when the new one was proven up first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stopped_first_for_ports: Vec<String>,
}

/// What a successful deploy did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeployReport {
    /// The service.
    pub service: String,
    /// The image reference deployed.
    pub image: String,
    /// Its id (`sha256:…`).
    pub image_id: String,
    /// Old containers replaced, in the order they were replaced.
    pub replaced: Vec<Replacement>,
    /// Containers added to reach the requested replicas.
    pub added: Vec<String>,
    /// Containers removed to reach the requested replicas.
    pub removed: Vec<String>,
    /// The service's containers after the deploy, sorted by name.
    pub containers: Vec<String>,
}
