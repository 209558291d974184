//! The one exit-code convention of every ORION binary, and how an error's kind decides its code.
//!
//! | code | [`ExitStatus`] | meaning |
//! | --- | --- | --- |
//! | 0 | `Ok` | done; a service stopped by SIGTERM/SIGINT after draining |
//! | 1 | `Failure` | failed while running, or the command ran and failed (a failure receipt, a refused or unknown request, a check that found problems) |
//! | 2 | `Usage` | bad arguments, or configuration refused (config file, overlay, environment variables, keys, policy) — reported before connecting anywhere |
//! | 3 | `Unreachable` | NATS or another dependency (the Docker engine) could not be reached, the platform is not provisioned, or no answer in time |
//!
//! The code of an error is decided by its type, never by its text: [`exit_status_of`] walks the
//! error's `source()` chain and the first error of a known kind decides ([`ServiceError`],
//! [`BusError`], [`ConfigError`]); anything else is a [`ExitStatus::Failure`]. README.md
//! ("Configuration and exit codes") documents the same table for operators.

use crate::bus::{BusError, BusErrorKind};

use super::{ConfigError, ServiceError};

/// How a process ends; see the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExitStatus {
    /// 0: done.
    Ok = 0,
    /// 1: failed while running, or the command ran and failed.
    Failure = 1,
    /// 2: bad arguments, or configuration refused.
    Usage = 2,
    /// 3: NATS or another dependency unreachable, not provisioned, or no answer in time.
    Unreachable = 3,
}

impl ExitStatus {
    /// Every status, in code order.
    pub const ALL: [ExitStatus; 4] = [Self::Ok, Self::Failure, Self::Usage, Self::Unreachable];

    /// The process exit code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// What the code means, in the words of `--help`.
    pub const fn meaning(self) -> &'static str {
        match self {
            Self::Ok => "done (a service: stopped by SIGTERM/SIGINT after draining)",
            Self::Failure => "failed while running, or the command ran and failed",
            Self::Usage => "bad arguments, or configuration refused (before connecting)",
            Self::Unreachable => {
                "NATS or another dependency unreachable, not provisioned, or no answer in time"
            }
        }
    }
}

impl TryFrom<u8> for ExitStatus {
    type Error = u8;

    /// The status of a code of the convention; `Err` with the code for any other.
    fn try_from(code: u8) -> Result<Self, u8> {
        Self::ALL
            .into_iter()
            .find(|status| status.code() == code)
            .ok_or(code)
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status.code())
    }
}

/// The exit-code table every binary shows at the end of its `--help` (clap `after_help`).
pub const EXIT_CODES_HELP: &str = "\
Exit codes (the same for every ORION binary; see README.md, \"Configuration and exit codes\"):
  0  done (a service: stopped by SIGTERM/SIGINT after draining)
  1  failed while running, or the command ran and failed
  2  bad arguments, or configuration refused (before connecting)
  3  NATS or another dependency unreachable, not provisioned, or no answer in time";

/// The exit status of a bus error, by its kind.
pub fn bus_exit_status(error: &BusError) -> ExitStatus {
    match (error.kind(), error) {
        (BusErrorKind::Config, _) => ExitStatus::Usage,
        // A server that refuses the login: the credentials are configuration.
        (BusErrorKind::Refused, BusError::Connect { .. }) => ExitStatus::Usage,
        (BusErrorKind::Unreachable | BusErrorKind::NotProvisioned, _) => ExitStatus::Unreachable,
        _ => ExitStatus::Failure,
    }
}

/// The exit status of `error`: the first error of a known kind in its `source()` chain decides;
/// otherwise [`ExitStatus::Failure`]. (An error wrapped `#[error(transparent)]` hides itself
/// from the chain: wrap with `#[source]` or `#[from]` on a variant that has its own message.)
pub fn exit_status_of(error: &(dyn std::error::Error + 'static)) -> ExitStatus {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(status) = kind_of(error) {
            return status;
        }
        next = error.source();
    }
    ExitStatus::Failure
}

fn kind_of(error: &(dyn std::error::Error + 'static)) -> Option<ExitStatus> {
    if let Some(error) = error.downcast_ref::<ServiceError>() {
        return error.own_status();
    }
    if let Some(error) = error.downcast_ref::<BusError>() {
        return Some(bus_exit_status(error));
    }
    if error.downcast_ref::<ConfigError>().is_some() {
        return Some(ExitStatus::Usage);
    }
    None
}

/// `error` and its sources, joined by `: ` (what `anyhow` prints with `{:#}`).
pub fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        let part = source.to_string();
        // A wrapper that repeats its source's words adds nothing.
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = source.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::BoxError;

    /// A service's own error that keeps its cause as a source.
    #[derive(Debug, thiserror::Error)]
    #[error("opening the state")]
    struct Opening(#[source] BoxError);

    #[test]
    fn the_codes_are_the_documented_ones() {
        let codes: Vec<u8> = ExitStatus::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3]);
        assert_eq!(ExitStatus::try_from(2), Ok(ExitStatus::Usage));
        assert_eq!(ExitStatus::try_from(4), Err(4));
        for status in ExitStatus::ALL {
            let line = format!("  {}  {}", status.code(), status.meaning());
            assert!(EXIT_CODES_HELP.contains(&line), "{line}");
        }
    }

    #[test]
    fn an_errors_kind_decides_its_code_wherever_it_is_in_the_chain() {
        let connect = || BusError::Connect {
            url: "nats://127.0.0.1:1".into(),
            user: "guardian".into(),
            source: crate::bus::NatsError::unreachable("connection refused"),
        };
        let login_refused = BusError::Connect {
            url: "nats://127.0.0.1:4222".into(),
            user: "guardian".into(),
            source: crate::bus::NatsError::other("authorization violation"),
        };
        assert_eq!(bus_exit_status(&login_refused), ExitStatus::Usage);
        let missing = BusError::NotProvisioned {
            what: "stream ORION_EVENTS".into(),
            problem: "is missing".into(),
        };
        let publish = BusError::Publish {
            subject: "orion.incident.v1".into(),
            source: crate::bus::NatsError::other("no ack"),
        };
        assert_eq!(bus_exit_status(&connect()), ExitStatus::Unreachable);
        assert_eq!(bus_exit_status(&missing), ExitStatus::Unreachable);
        assert_eq!(
            bus_exit_status(&BusError::Config("bad URL".into())),
            ExitStatus::Usage
        );
        assert_eq!(bus_exit_status(&publish), ExitStatus::Failure);

        let refused = ServiceError::config(ConfigError::Invalid("x".into()));
        assert_eq!(refused.exit_status(), ExitStatus::Usage);
        // A service's own loader error, whatever its type, is a refusal once the bootstrap
        // calls it one.
        let own = ServiceError::config(Opening("no policy".into()));
        assert_eq!(own.exit_status(), ExitStatus::Usage);
        assert_eq!(
            ServiceError::bus("connecting to NATS", connect()).exit_status(),
            ExitStatus::Unreachable
        );
        assert_eq!(
            ServiceError::unreachable("connecting to the Docker engine", "refused").exit_status(),
            ExitStatus::Unreachable
        );
        assert_eq!(
            ServiceError::Drain(std::time::Duration::from_secs(70)).exit_status(),
            ExitStatus::Failure
        );
        // Deeper in a chain: the first known kind decides; none known is a failure.
        let deep: BoxError = Box::new(Opening(Box::new(connect())));
        assert_eq!(exit_status_of(&*deep), ExitStatus::Unreachable);
        let failed = ServiceError::failed("running", Opening(Box::new(publish)));
        assert_eq!(failed.exit_status(), ExitStatus::Failure);
        let wrapped_refusal = ServiceError::failed("starting", Opening(Box::new(refused)));
        assert_eq!(wrapped_refusal.exit_status(), ExitStatus::Usage);
        let unknown: BoxError = "something else".into();
        assert_eq!(exit_status_of(&*unknown), ExitStatus::Failure);
        let reported = report(&ServiceError::bus("connecting to NATS", connect()));
        assert_eq!(
            reported,
            "connecting to NATS: cannot connect to NATS at nats://127.0.0.1:1 as guardian: connection refused"
        );
    }
}
