//! [`DockerConfig`]: where the engine is, which services the worker may touch, and its timeouts.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use contracts::target::{CanonicalTarget, TargetProblem};

/// Services the worker must never be allowed to act on, whatever the configuration says: the
/// message broker and the worker itself (SPEC §5).
pub const FORBIDDEN_SERVICES: [&str; 3] = ["nats", "nats-server", "ops-worker"];

/// The label whose value names a container's service, as Docker Compose sets it.
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";

/// The reserved target that means "every allowlisted service".
pub const ALL_TARGET: &str = contracts::target::ALL;

/// How the worker reaches the Docker engine and what it may do there.
///
/// Build it with [`DockerConfig::new`], which fills in defaults and validates; the fields are
/// public so the caller can adjust them afterwards (or build the struct directly), and
/// [`crate::docker::Engine::connect`] validates again before connecting. Deploy tuning and the
/// worker's own container id are in [`EngineOptions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfig {
    /// Path of the engine's Unix socket (default `/var/run/docker.sock`).
    pub socket: PathBuf,
    /// Label whose value names a container's service (default
    /// [`COMPOSE_SERVICE_LABEL`], `com.docker.compose.service`).
    pub service_label: String,
    /// Services the worker may act on, each a canonical name ([`CanonicalTarget`]). `all`
    /// means every entry of this set.
    pub allowlist: BTreeSet<String>,
    /// Upper bound for a single engine call (default 30 s). Calls that legitimately take longer
    /// (stopping with a grace period) get that period added on top.
    pub call_timeout: Duration,
}

/// Finer settings of the engine layer, with defaults; give them with
/// [`crate::docker::Engine::connect_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    /// How long a freshly started container must stay up, after it became running (and healthy),
    /// before a deploy counts it as good (default 2 s). A container that exits at once fails here.
    pub settle: Duration,
    /// Grace period given to containers a deploy stops: the replaced old ones and the extras
    /// removed when scaling down (default 10 s).
    pub deploy_stop_timeout: Duration,
    /// How many log lines of a failed new container a deploy error carries (default 20).
    pub failure_log_lines: usize,
    /// The worker's own container id (or a prefix of at least 12 hex characters). Containers
    /// whose id starts with it are never touched. Defaults to [`detect_self_id`].
    pub self_id: Option<String>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            settle: Duration::from_secs(2),
            deploy_stop_timeout: Duration::from_secs(10),
            failure_log_lines: 20,
            self_id: detect_self_id(),
        }
    }
}

impl EngineOptions {
    /// Checks that `self_id`, when set, is a container id prefix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.self_id {
            Some(id) if !is_container_id_prefix(id) => {
                Err(ConfigError::InvalidSelfId { id: id.clone() })
            }
            _ => Ok(()),
        }
    }
}

/// A configuration the worker refuses to run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The allowlist names NATS or the worker itself.
    #[error(
        "docker allowlist entry `{entry}` is refused: the ops worker never acts on NATS or on \
         itself (refused names: nats, nats-server, ops-worker)"
    )]
    ForbiddenService {
        /// The refused entry.
        entry: String,
    },
    /// An allowlist entry is not a canonical name (this includes the reserved word `all`):
    /// commands could never name it, since targets are not trimmed or case-folded.
    #[error("docker allowlist entry {entry:?} is not a service name: {problem}")]
    InvalidEntry {
        /// The refused entry.
        entry: String,
        /// The rule it breaks.
        problem: TargetProblem,
    },
    /// The service label is empty or contains `=`.
    #[error("docker service label `{label}` is invalid: it must be non-empty and contain no `=`")]
    InvalidServiceLabel {
        /// The refused label.
        label: String,
    },
    /// A timeout that must be positive is zero.
    #[error("docker setting `{setting}` must be greater than zero")]
    ZeroDuration {
        /// Name of the setting.
        setting: &'static str,
    },
    /// [`EngineOptions::self_id`] is not a container id prefix.
    #[error(
        "docker self container id `{id}` is invalid: expected 12 to 64 lowercase hex characters"
    )]
    InvalidSelfId {
        /// The refused id.
        id: String,
    },
}

impl DockerConfig {
    /// A validated configuration with defaults for everything but the allowlist.
    ///
    /// Fails if an entry is `nats`, `nats-server` or `ops-worker` (in any letter case), or is
    /// not a canonical name (see [`contracts::target`]; `all` is not one).
    pub fn new<I, S>(allowlist: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let config = Self {
            socket: PathBuf::from("/var/run/docker.sock"),
            service_label: COMPOSE_SERVICE_LABEL.to_owned(),
            allowlist: allowlist.into_iter().map(Into::into).collect(),
            call_timeout: Duration::from_secs(30),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules [`DockerConfig::new`] enforces; call it after changing fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for entry in &self.allowlist {
            if FORBIDDEN_SERVICES
                .iter()
                .any(|f| entry.eq_ignore_ascii_case(f))
            {
                return Err(ConfigError::ForbiddenService {
                    entry: entry.clone(),
                });
            }
            if let Err(e) = CanonicalTarget::parse(entry) {
                return Err(ConfigError::InvalidEntry {
                    entry: entry.clone(),
                    problem: e.problem,
                });
            }
        }
        if self.service_label.is_empty() || self.service_label.contains('=') {
            return Err(ConfigError::InvalidServiceLabel {
                label: self.service_label.clone(),
            });
        }
        if self.call_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration {
                setting: "call_timeout",
            });
        }
        Ok(())
    }
}

/// True for 12 to 64 lowercase hex characters: a container id or an unambiguous prefix of one.
fn is_container_id_prefix(s: &str) -> bool {
    (12..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The id of the container this process runs in, if it runs in one.
///
/// Looks first for Docker's per-container files (`/var/lib/docker/containers/<id>/hostname`,
/// …) among the mounts of this process, which gives the full id even when the hostname was
/// overridden; otherwise uses the host name when it looks like a short container id (Docker's
/// default host name is the first 12 hex characters of the id). `None` outside a container.
pub fn detect_self_id() -> Option<String> {
    if let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") {
        if let Some(id) = id_from_mountinfo(&mountinfo) {
            return Some(id);
        }
    }
    let host = gethostname::gethostname();
    let host = host.to_str()?;
    is_container_id_prefix(host).then(|| host.to_owned())
}

/// Finds `/containers/<64 hex>/` in a mount line for `/etc/hostname`, `/etc/hosts` or
/// `/etc/resolv.conf`.
fn id_from_mountinfo(mountinfo: &str) -> Option<String> {
    mountinfo
        .lines()
        .filter(|line| {
            line.contains(" /etc/hostname ")
                || line.contains(" /etc/hosts ")
                || line.contains(" /etc/resolv.conf ")
        })
        .find_map(|line| {
            let rest = &line[line.find("/containers/")? + "/containers/".len()..];
            let id = rest.get(..64)?;
            (is_container_id_prefix(id) && rest[64..].starts_with('/')).then(|| id.to_owned())
        })
}
