//! Silences (maintenance windows), pure: the window and criteria an administrator asks for,
//! building the `orion.silence.v1` messages (to be signed by the caller), and what the stream
//! says about each silence (scheduled, active, expired, lifted).
//!
//! The rules approval-cli enforces before anything is signed: at least one criterion, a
//! mandatory reason of at most [`MAX_REASON`] characters, an end in the future, and a window of
//! at most [`MAX_WINDOW`]. brain enforces the window again (`brain::silences::MAX_WINDOW`,
//! the same 7 days) and, above all, the signature.

use std::collections::{BTreeMap, HashMap, HashSet};

use contracts::generated::silence_v1::{
    SilenceMatch, SilenceMatchIncidentType, SilenceMatchTarget, SilenceSource, SilenceState,
    SilenceVersion,
};
use contracts::target::CanonicalTarget;
use contracts::{ContractError, Message, Silence, Timestamp};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::records::Record;
use crate::render::{format_duration, format_time};

/// The longest silence: a maintenance window, not a way to switch automation off for good
/// (that is the ops interlock's `disarm`).
pub const MAX_WINDOW: time::Duration = time::Duration::days(7);

/// The longest reason, in characters (the schema's `maxLength`).
pub const MAX_REASON: usize = 500;

/// Why a silence is refused before anything is signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("say what to silence: --target NAME, --incident-type TYPE and/or --tag KEY=VALUE (every one given must match)")]
    NoCriterion,
    #[error("--target {0}")]
    BadTarget(String),
    #[error("--incident-type {0:?} is not an incident type (service_outage, edge_device_failure, metric_anomaly, repeated_failures, correlation_detected)")]
    BadIncidentType(String),
    #[error("--tag {0:?} is not KEY=VALUE with a non-empty key and value")]
    BadTag(String),
    #[error("--tag {0} is given twice")]
    RepeatedTag(String),
    #[error("say for how long: --for DURATION (e.g. 90m, 2h, 1d) or --until TIME (RFC 3339)")]
    NoWindow,
    #[error("give --for or --until, not both")]
    BothWindows,
    #[error(
        "--for {0:?} is not a duration: a number and a unit (s, m, h, d), e.g. 90m, 2h, 1d, 1h30m"
    )]
    BadDuration(String),
    #[error("--until {0:?} is not an RFC 3339 time such as 2026-02-14T18:00:00Z")]
    BadTime(String),
    #[error(
        "the silence would end at {ends}, which is not in the future (now {now}): nothing was sent"
    )]
    EndInPast { ends: String, now: String },
    #[error("a silence lasts at most {} days, this one {asked}: nothing was sent (to stop automation for longer, disarm the ops interlock)", MAX_WINDOW.whole_days())]
    TooLong { asked: String },
    #[error("--reason is mandatory and must not be empty: say why, it goes into the audit trail and into brain's decisions")]
    NoReason,
    #[error("--reason is {0} characters long; at most {MAX_REASON}")]
    LongReason(usize),
}

/// A reason typed by an administrator: trimmed, not empty, at most [`MAX_REASON`] characters.
pub fn check_reason(reason: Option<&str>) -> Result<String, SilenceError> {
    let reason = reason.map(str::trim).unwrap_or_default();
    let length = reason.chars().count();
    match length {
        0 => Err(SilenceError::NoReason),
        n if n > MAX_REASON => Err(SilenceError::LongReason(n)),
        _ => Ok(reason.to_string()),
    }
}

/// `90s`, `45m`, `2h`, `1d`, `1h30m`: whole numbers each followed by a unit.
pub fn parse_duration(text: &str) -> Result<time::Duration, SilenceError> {
    let bad = || SilenceError::BadDuration(text.to_string());
    let mut total = time::Duration::ZERO;
    let mut digits = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        let unit = match c {
            's' => time::Duration::SECOND,
            'm' => time::Duration::MINUTE,
            'h' => time::Duration::HOUR,
            'd' => time::Duration::DAY,
            _ => return Err(bad()),
        };
        total = unit
            .checked_mul(i32::try_from(n).map_err(|_| bad())?)
            .and_then(|d| total.checked_add(d))
            .ok_or_else(bad)?;
        any = true;
    }
    if !digits.is_empty() || !any || total.is_zero() {
        return Err(bad());
    }
    Ok(total)
}

/// The window `[now, end)` from `--for` or `--until`, within [`MAX_WINDOW`] and ending in the
/// future.
pub fn window(
    for_: Option<&str>,
    until: Option<&str>,
    now: OffsetDateTime,
) -> Result<(Timestamp, Timestamp), SilenceError> {
    let ends = match (for_, until) {
        (None, None) => return Err(SilenceError::NoWindow),
        (Some(_), Some(_)) => return Err(SilenceError::BothWindows),
        (Some(length), None) => {
            let length = parse_duration(length)?;
            if length > MAX_WINDOW {
                return Err(SilenceError::TooLong {
                    asked: format_duration(length),
                });
            }
            now.checked_add(length)
                .ok_or_else(|| SilenceError::BadDuration(length.to_string()))?
        }
        (None, Some(until)) => OffsetDateTime::parse(until.trim(), &Rfc3339)
            .map_err(|_| SilenceError::BadTime(until.to_string()))?,
    };
    if ends <= now {
        return Err(SilenceError::EndInPast {
            ends: format_time(ends),
            now: format_time(now),
        });
    }
    if ends - now > MAX_WINDOW {
        return Err(SilenceError::TooLong {
            asked: format_duration(ends - now),
        });
    }
    Ok((Timestamp(now), Timestamp(ends)))
}

/// The `match` of a silence from the command line's criteria.
pub fn criteria(
    target: Option<&str>,
    incident_type: Option<&str>,
    tags: &[String],
) -> Result<SilenceMatch, SilenceError> {
    if target.is_none() && incident_type.is_none() && tags.is_empty() {
        return Err(SilenceError::NoCriterion);
    }
    let target = target
        .map(|t| {
            let canonical =
                CanonicalTarget::parse(t).map_err(|e| SilenceError::BadTarget(e.to_string()))?;
            canonical
                .as_str()
                .parse::<SilenceMatchTarget>()
                .map_err(|e| SilenceError::BadTarget(format!("{t:?}: {e}")))
        })
        .transpose()?;
    let incident_type = incident_type
        .map(|t| {
            t.parse::<SilenceMatchIncidentType>()
                .map_err(|_| SilenceError::BadIncidentType(t.to_string()))
        })
        .transpose()?;
    let mut by_key = BTreeMap::new();
    for tag in tags {
        let Some((key, value)) = tag.split_once('=') else {
            return Err(SilenceError::BadTag(tag.clone()));
        };
        if key.is_empty() || value.is_empty() {
            return Err(SilenceError::BadTag(tag.clone()));
        }
        if by_key.insert(key.to_string(), value.to_string()).is_some() {
            return Err(SilenceError::RepeatedTag(key.to_string()));
        }
    }
    Ok(SilenceMatch {
        incident_type,
        tags: by_key,
        target,
    })
}

/// What an administrator asks for.
#[derive(Debug, Clone)]
pub struct Request {
    pub admin_identity: String,
    pub reason: String,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub criteria: SilenceMatch,
}

/// The active silence, created at `now` with id `silence_id`, validated against its contract.
pub fn build_silence(
    request: &Request,
    silence_id: Uuid,
    now: Timestamp,
) -> Result<Silence, ContractError> {
    let admin = contracts::parse_field::<Silence, _>(
        "/admin_identity",
        "minLength",
        &request.admin_identity,
    )?;
    let silence = Silence {
        admin_identity: admin,
        created_at: now,
        created_by: contracts::parse_field::<Silence, _>(
            "/created_by",
            "minLength",
            &request.admin_identity,
        )?,
        ends_at: request.ends_at,
        lift_reason: None,
        lifted_at: None,
        match_: request.criteria.clone(),
        reason: contracts::parse_field::<Silence, _>("/reason", "pattern", &request.reason)?,
        silence_id,
        source: SilenceSource::OrionApprovalCli,
        starts_at: request.starts_at,
        state: SilenceState::Active,
        timestamp: now,
        version: SilenceVersion::X10,
    };
    contracts::to_value(&silence)?;
    Ok(silence)
}

/// The lift of `silence` by `admin_identity` at `now`, validated against its contract: the
/// silence as created, with state `lifted`, who, when and why.
pub fn build_lift(
    silence: &Silence,
    admin_identity: &str,
    reason: &str,
    now: Timestamp,
) -> Result<Silence, ContractError> {
    let lift = Silence {
        admin_identity: contracts::parse_field::<Silence, _>(
            "/admin_identity",
            "minLength",
            admin_identity,
        )?,
        lift_reason: Some(contracts::parse_field::<Silence, _>(
            "/lift_reason",
            "pattern",
            reason,
        )?),
        lifted_at: Some(now),
        state: SilenceState::Lifted,
        timestamp: now,
        ..silence.clone()
    };
    contracts::to_value(&lift)?;
    Ok(lift)
}

/// `target=web incident_type=service_outage tag:env=prod`: a silence's criteria on one line.
pub fn match_text(criteria: &SilenceMatch) -> String {
    let mut parts = Vec::new();
    if let Some(target) = &criteria.target {
        parts.push(format!("target={}", target.as_str()));
    }
    if let Some(kind) = &criteria.incident_type {
        parts.push(format!("incident_type={kind}"));
    }
    let tags: BTreeMap<&String, &String> = criteria.tags.iter().collect();
    for (k, v) in tags {
        parts.push(format!("tag:{k}={v}"));
    }
    parts.join(" ")
}

/// Where a silence stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Starts later.
    Scheduled,
    /// In force now.
    Active,
    /// Ended on its own.
    Expired,
    /// Ended early.
    Lifted {
        by: String,
        at: Timestamp,
        reason: String,
    },
}

impl Status {
    /// Scheduled or active: what `silences` lists without `--all`.
    pub fn is_current(&self) -> bool {
        matches!(self, Self::Scheduled | Self::Active)
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Lifted { .. } => "lifted",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Lifted { by, at, reason } => format!(
                "lifted by {by} at {}: {reason:?}",
                format_time(at.as_offset_date_time())
            ),
            other => other.code().to_string(),
        }
    }
}

/// One silence as the stream tells it: its active message and, if any, its lift.
#[derive(Debug, Clone)]
pub struct SilenceView<'a> {
    pub silence: &'a Silence,
    pub record: &'a Record,
    pub lift: Option<&'a Silence>,
    pub status: Status,
}

impl SilenceView<'_> {
    /// For scripts: the silence as published, where it is stored, its status.
    pub fn to_json(&self, now: OffsetDateTime) -> Value {
        let mut value = json!({
            "silence_id": self.silence.silence_id,
            "status": self.status.code(),
            "match": match_text(&self.silence.match_),
            "created_by": self.silence.created_by.as_str(),
            "reason": self.silence.reason.as_str(),
            "starts_at": format_time(self.silence.starts_at.as_offset_date_time()),
            "ends_at": format_time(self.silence.ends_at.as_offset_date_time()),
            "ends_in_s": (self.silence.ends_at.as_offset_date_time() - now).whole_seconds().max(0),
            "stream": self.record.stream,
            "sequence": self.record.sequence,
            "message": self.record.raw,
        });
        if let Status::Lifted { by, at, reason } = &self.status {
            value["lifted_by"] = json!(by);
            value["lifted_at"] = json!(format_time(at.as_offset_date_time()));
            value["lift_reason"] = json!(reason);
        }
        value
    }
}

/// Every silence in `records` (stream order), newest first. The first active message of an id
/// is the silence, the first lift its end: what brain does too, except that approval-cli
/// cannot check signatures against brain's administrators (brain ignores unsigned ones).
pub fn silences(records: &[Record], now: OffsetDateTime) -> Vec<SilenceView<'_>> {
    let mut lifts: HashMap<Uuid, &Silence> = HashMap::new();
    for record in records {
        if let Message::Silence(s) = &record.message {
            if s.state == SilenceState::Lifted {
                lifts.entry(s.silence_id).or_insert(s);
            }
        }
    }
    let mut seen = HashSet::new();
    let mut views: Vec<SilenceView<'_>> = records
        .iter()
        .filter_map(|record| match &record.message {
            Message::Silence(s) if s.state == SilenceState::Active && seen.insert(s.silence_id) => {
                let lift = lifts.get(&s.silence_id).copied();
                Some(SilenceView {
                    silence: s,
                    record,
                    lift,
                    status: status_of(s, lift, now),
                })
            }
            _ => None,
        })
        .collect();
    views.reverse();
    views
}

fn status_of(silence: &Silence, lift: Option<&Silence>, now: OffsetDateTime) -> Status {
    if let Some(lift) = lift {
        return Status::Lifted {
            by: lift.admin_identity.to_string(),
            at: lift.lifted_at.unwrap_or(lift.timestamp),
            reason: lift
                .lift_reason
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default(),
        };
    }
    if now >= silence.ends_at.as_offset_date_time() {
        Status::Expired
    } else if now < silence.starts_at.as_offset_date_time() {
        Status::Scheduled
    } else {
        Status::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::RawRecord;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_771_070_400 + seconds).unwrap()
    }

    #[test]
    fn durations_and_windows() {
        assert_eq!(parse_duration("90m").unwrap(), time::Duration::minutes(90));
        assert_eq!(
            parse_duration("1h30m").unwrap(),
            time::Duration::minutes(90)
        );
        assert_eq!(parse_duration("2d").unwrap(), time::Duration::days(2));
        for bad in ["", "2", "h", "2x", "0m", "-1h", "2 h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        let now = at(0);
        let (starts, ends) = window(Some("2h"), None, now).unwrap();
        assert_eq!(starts.as_offset_date_time(), now);
        assert_eq!(ends.as_offset_date_time(), at(7200));
        assert!(window(Some("7d"), None, now).is_ok());
        assert!(matches!(
            window(Some("7d1s"), None, now),
            Err(SilenceError::TooLong { .. })
        ));
        assert!(matches!(
            window(None, Some(&format_time(at(8 * 86_400))), now),
            Err(SilenceError::TooLong { .. })
        ));
        assert!(matches!(
            window(None, Some(&format_time(at(-1))), now),
            Err(SilenceError::EndInPast { .. })
        ));
        assert!(matches!(
            window(None, Some(&format_time(at(0))), now),
            Err(SilenceError::EndInPast { .. })
        ));
        assert_eq!(format_time(now), "2026-02-14T12:00:00.000Z");
        assert_eq!(
            window(None, Some("2026-02-14T14:00:00+01:00"), now)
                .unwrap()
                .1
                .as_offset_date_time(),
            at(3600),
            "an offset is read as the instant it names"
        );
        assert_eq!(window(None, None, now), Err(SilenceError::NoWindow));
        assert_eq!(
            window(Some("1h"), Some("x"), now),
            Err(SilenceError::BothWindows)
        );
        assert!(matches!(
            window(None, Some("tomorrow"), now),
            Err(SilenceError::BadTime(_))
        ));
    }

    #[test]
    fn criteria_and_reasons() {
        assert_eq!(criteria(None, None, &[]), Err(SilenceError::NoCriterion));
        assert!(matches!(
            criteria(Some("Web"), None, &[]),
            Err(SilenceError::BadTarget(_))
        ));
        assert!(matches!(
            criteria(Some("all"), None, &[]),
            Err(SilenceError::BadTarget(_))
        ));
        assert!(matches!(
            criteria(None, Some("disk_full"), &[]),
            Err(SilenceError::BadIncidentType(_))
        ));
        assert!(matches!(
            criteria(None, None, &["env".into()]),
            Err(SilenceError::BadTag(_))
        ));
        assert!(matches!(
            criteria(None, None, &["env=a".into(), "env=b".into()]),
            Err(SilenceError::RepeatedTag(_))
        ));
        let m = criteria(
            Some("web"),
            Some("service_outage"),
            &["env=prod".into(), "k=v=w".into()],
        )
        .unwrap();
        assert_eq!(
            match_text(&m),
            "target=web incident_type=service_outage tag:env=prod tag:k=v=w"
        );
        assert_eq!(check_reason(Some("  ")), Err(SilenceError::NoReason));
        assert_eq!(check_reason(None), Err(SilenceError::NoReason));
        assert_eq!(
            check_reason(Some(&"x".repeat(501))),
            Err(SilenceError::LongReason(501))
        );
        assert_eq!(check_reason(Some(" migration ")).unwrap(), "migration");
    }

    fn record(sequence: u64, silence: &Silence) -> Record {
        Record::decode(RawRecord {
            stream: "ORION_SILENCES".into(),
            sequence,
            subject: "orion.silence.v1".into(),
            stored_at: at(sequence as i64),
            payload: contracts::encode(silence).unwrap(),
            signature: Some("ed25519:x".into()),
            trace: None,
        })
        .unwrap()
    }

    #[test]
    fn the_stream_tells_where_each_silence_stands() {
        let request = |ends: i64| Request {
            admin_identity: "alice".into(),
            reason: "migration".into(),
            starts_at: Timestamp(at(0)),
            ends_at: Timestamp(at(ends)),
            criteria: criteria(Some("web"), None, &[]).unwrap(),
        };
        let a = build_silence(&request(3600), Uuid::new_v4(), Timestamp(at(0))).unwrap();
        let b = build_silence(&request(60), Uuid::new_v4(), Timestamp(at(0))).unwrap();
        let lifted = build_lift(&a, "bob", "done", Timestamp(at(30))).unwrap();
        assert_eq!(lifted.silence_id, a.silence_id);
        assert_eq!(lifted.created_by.as_str(), "alice");
        assert!(build_lift(&a, "bob", " ", Timestamp(at(30))).is_err());
        let records = vec![record(1, &a), record(2, &b)];
        let views = silences(&records, at(10));
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].silence.silence_id, b.silence_id, "newest first");
        assert!(views.iter().all(|v| v.status == Status::Active));
        let views = silences(&records, at(60));
        assert_eq!(views[0].status, Status::Expired);
        assert_eq!(views[1].status, Status::Active);

        let records = vec![record(1, &a), record(2, &b), record(3, &lifted)];
        let views = silences(&records, at(40));
        let Status::Lifted { by, reason, .. } = &views[1].status else {
            panic!("{:?}", views[1].status)
        };
        assert_eq!((by.as_str(), reason.as_str()), ("bob", "done"));
        assert!(!views[1].status.is_current());
        assert_eq!(views[1].to_json(at(40))["status"], "lifted");
    }
}
