//! RFC 3339 timestamps as `time::OffsetDateTime`, the type every `date-time` field gets, and the
//! range of instants the platform accepts.
//!
//! # The supported range
//!
//! A `date-time` value is accepted only if, converted to UTC, it lies in [`TIMESTAMP_RANGE`]:
//! from `1970-01-01T00:00:00Z` to `9998-12-31T23:59:59.999Z`, both included. The offset counts:
//! `9999-12-31T23:59:59-00:01` is `10000-01-01T00:00:59Z` and is refused, and so is
//! `1970-01-01T00:00:00+00:01`. A leap second (`…T23:59:60Z`, on the last day of a month) is read
//! as the nanosecond before the next minute, as `time` does.
//!
//! RFC 3339 and the JSON Schema `date-time` format allow years 0000 to 9999 with any offset,
//! which `time` can hold but not always convert to UTC or move by a duration without panicking.
//! The range keeps every accepted instant at least a year away from what `time` can represent, so
//! converting any accepted instant to UTC cannot fail. [`decode`](crate::decode) refuses values
//! outside the range with a violation of rule [`DATE_TIME_RANGE_RULE`] at the field's JSON
//! pointer, [`encode`](crate::encode) refuses to send them, and [`Timestamp`]'s `FromStr` and
//! `Deserialize` refuse them too. Arithmetic on timestamps goes through the checked and
//! saturating methods of [`Timestamp`], which stay in the range and never panic.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Every instant a message may carry, after conversion to UTC: `1970-01-01T00:00:00Z` to
/// `9998-12-31T23:59:59.999Z`, both included.
pub const TIMESTAMP_RANGE: RangeInclusive<Timestamp> = RangeInclusive::new(
    Timestamp(OffsetDateTime::UNIX_EPOCH),
    Timestamp(time::macros::datetime!(9998-12-31 23:59:59.999 UTC)),
);

/// The rule a [`Violation`](crate::Violation) names when a `date-time` value is well formed but
/// outside [`TIMESTAMP_RANGE`] (a well-formed value that is not a date-time breaks `format`).
pub const DATE_TIME_RANGE_RULE: &str = "date_time_range";

/// An RFC 3339 instant. Serializes as RFC 3339 text; keeps the offset it was given.
///
/// Values parsed or deserialized are always inside [`TIMESTAMP_RANGE`]; a value built from an
/// `OffsetDateTime` directly may not be, and [`encode`](crate::encode) refuses it then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub OffsetDateTime);

/// Why a text is not a supported timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Not an RFC 3339 date-time (`T` or `t` between date and time).
    #[error("not an RFC 3339 date-time: {0}")]
    NotDateTime(String),
    /// A date-time, but outside [`TIMESTAMP_RANGE`] once converted to UTC.
    #[error("{0} is outside the supported range {min} to {max} (after conversion to UTC)", min = Timestamp::MIN, max = Timestamp::MAX)]
    OutOfRange(String),
}

impl Timestamp {
    /// The earliest supported instant (`1970-01-01T00:00:00Z`).
    pub const MIN: Timestamp = *TIMESTAMP_RANGE.start();
    /// The latest supported instant (`9998-12-31T23:59:59.999Z`).
    pub const MAX: Timestamp = *TIMESTAMP_RANGE.end();

    /// The current time in UTC, truncated to milliseconds (the precision producers use),
    /// clamped to the supported range (a clock before 1970 reads as [`Timestamp::MIN`]).
    pub fn now() -> Self {
        let now = OffsetDateTime::now_utc();
        let whole = now.replace_nanosecond(now.millisecond() as u32 * 1_000_000);
        Self(whole.unwrap_or(now)).clamped()
    }

    /// `value` if it is inside [`TIMESTAMP_RANGE`].
    pub fn new(value: OffsetDateTime) -> Result<Self, TimestampError> {
        let candidate = Self(value);
        if candidate.is_supported() {
            Ok(candidate)
        } else {
            Err(TimestampError::OutOfRange(candidate.to_string()))
        }
    }

    /// Whether this instant is inside [`TIMESTAMP_RANGE`] (never panics, whatever the offset).
    pub fn is_supported(&self) -> bool {
        let nanos = self.0.unix_timestamp_nanos();
        nanos >= Self::MIN.0.unix_timestamp_nanos() && nanos <= Self::MAX.0.unix_timestamp_nanos()
    }

    /// This instant, or the nearer end of the range if it is outside.
    pub fn clamped(self) -> Self {
        let nanos = self.0.unix_timestamp_nanos();
        if nanos < Self::MIN.0.unix_timestamp_nanos() {
            Self::MIN
        } else if nanos > Self::MAX.0.unix_timestamp_nanos() {
            Self::MAX
        } else {
            self
        }
    }

    pub fn as_offset_date_time(&self) -> OffsetDateTime {
        self.0
    }

    /// The same instant in UTC. An instant outside the range that UTC cannot hold becomes the
    /// nearer end of the range (only a value built by hand can be one).
    pub fn to_utc(self) -> Self {
        match self.0.checked_to_offset(UtcOffset::UTC) {
            Some(utc) => Self(utc),
            None => self.clamped(),
        }
    }

    /// `self + duration`, if the result is inside the range.
    pub fn checked_add(self, duration: time::Duration) -> Option<Self> {
        let sum = Self(self.0.checked_add(duration)?);
        sum.is_supported().then_some(sum)
    }

    /// `self - duration`, if the result is inside the range.
    pub fn checked_sub(self, duration: time::Duration) -> Option<Self> {
        let difference = Self(self.0.checked_sub(duration)?);
        difference.is_supported().then_some(difference)
    }

    /// `self + duration`, or the end of the range it passes ([`Timestamp::MAX`] for a positive
    /// duration, [`Timestamp::MIN`] for a negative one).
    pub fn saturating_add(self, duration: time::Duration) -> Self {
        self.checked_add(duration)
            .unwrap_or(if duration.is_negative() {
                Self::MIN
            } else {
                Self::MAX
            })
    }

    /// `self - duration`, or the end of the range it passes ([`Timestamp::MIN`] for a positive
    /// duration, [`Timestamp::MAX`] for a negative one).
    pub fn saturating_sub(self, duration: time::Duration) -> Self {
        self.checked_sub(duration)
            .unwrap_or(if duration.is_negative() {
                Self::MAX
            } else {
                Self::MIN
            })
    }

    /// [`Timestamp::saturating_add`] with a `std` duration (one too long for `time` saturates).
    pub fn saturating_add_std(self, duration: std::time::Duration) -> Self {
        match time::Duration::try_from(duration) {
            Ok(duration) => self.saturating_add(duration),
            Err(_) => Self::MAX,
        }
    }

    /// [`Timestamp::saturating_sub`] with a `std` duration.
    pub fn saturating_sub_std(self, duration: std::time::Duration) -> Self {
        match time::Duration::try_from(duration) {
            Ok(duration) => self.saturating_sub(duration),
            Err(_) => Self::MIN,
        }
    }

    /// `self - earlier` (negative if `earlier` is later); never overflows for two timestamps of
    /// the range, and saturates otherwise.
    pub fn since(self, earlier: Timestamp) -> time::Duration {
        let nanos = self.0.unix_timestamp_nanos() - earlier.0.unix_timestamp_nanos();
        let bound = i64::MAX as i128 * 1_000_000_000;
        let clamped = nanos.clamp(-bound, bound);
        time::Duration::nanoseconds_i128(clamped)
    }
}

/// Parses `text` as a supported timestamp: an RFC 3339 date-time (with `T` or `t` between date
/// and time) inside [`TIMESTAMP_RANGE`]. The `date-time` format check of every schema.
pub fn parse_supported(text: &str) -> Result<Timestamp, TimestampError> {
    let separated = matches!(text.as_bytes().get(10), Some(b'T' | b't'));
    let parsed = OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .filter(|_| separated)
        .ok_or_else(|| TimestampError::NotDateTime(text.to_string()))?;
    let candidate = Timestamp(parsed);
    if candidate.is_supported() {
        Ok(candidate)
    } else {
        Err(TimestampError::OutOfRange(text.to_string()))
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(value: OffsetDateTime) -> Self {
        Self(value)
    }
}

impl From<Timestamp> for OffsetDateTime {
    fn from(value: Timestamp) -> Self {
        value.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.format(&Rfc3339).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_supported(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn at(text: &str) -> Timestamp {
        Timestamp(OffsetDateTime::parse(text, &Rfc3339).unwrap())
    }

    #[test]
    fn the_range_is_the_documented_one() {
        assert_eq!(Timestamp::MIN.to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp::MAX.to_string(), "9998-12-31T23:59:59.999Z");
    }

    #[test]
    fn arithmetic_stays_in_the_range() {
        let max = Timestamp::MAX;
        assert_eq!(max.checked_add(Duration::milliseconds(1)), None);
        assert_eq!(max.saturating_add(Duration::MAX), Timestamp::MAX);
        assert_eq!(max.saturating_sub(Duration::MIN), Timestamp::MAX);
        assert_eq!(Timestamp::MIN.checked_sub(Duration::nanoseconds(1)), None);
        assert_eq!(Timestamp::MIN.saturating_sub(Duration::MAX), Timestamp::MIN);
        assert_eq!(Timestamp::MIN.saturating_add(Duration::MIN), Timestamp::MIN);
        assert_eq!(
            max.saturating_add_std(std::time::Duration::MAX),
            Timestamp::MAX
        );
        assert_eq!(
            Timestamp::MIN.saturating_sub_std(std::time::Duration::MAX),
            Timestamp::MIN
        );
        let t = at("2026-02-14T12:00:00Z");
        assert_eq!(
            t.saturating_add(Duration::SECOND),
            at("2026-02-14T12:00:01Z")
        );
        assert_eq!(t.since(at("2026-02-14T11:59:00Z")), Duration::MINUTE);
        assert!(Timestamp::MAX.since(Timestamp::MIN).is_positive());
    }

    #[test]
    fn values_time_cannot_convert_to_utc_neither_panic_nor_pass() {
        let beyond = at("9999-12-31T23:59:59-00:01");
        assert!(!beyond.is_supported());
        assert_eq!(beyond.to_utc(), Timestamp::MAX);
        assert_eq!(beyond.clamped(), Timestamp::MAX);
        assert_eq!(beyond.checked_add(Duration::ZERO), None);
        assert_eq!(beyond.saturating_sub(Duration::SECOND), Timestamp::MIN);
        let before = at("0000-01-01T00:00:00+00:01");
        assert!(!before.is_supported());
        assert_eq!(before.to_utc(), before, "UTC holds it, the range does not");
        assert_eq!(before.clamped(), Timestamp::MIN);
        assert!(Timestamp::new(before.0).is_err());
        assert!(Timestamp::new(Timestamp::MAX.0).is_ok());
    }

    #[test]
    fn parsing_needs_the_t_separator_and_the_range() {
        assert!(parse_supported("2026-02-14T12:00:00Z").is_ok());
        assert!(parse_supported("2026-02-14t12:00:00z").is_ok());
        assert!(matches!(
            parse_supported("2026-02-14 12:00:00Z"),
            Err(TimestampError::NotDateTime(_))
        ));
        assert!(matches!(
            parse_supported("9999-01-01T00:00:00Z"),
            Err(TimestampError::OutOfRange(_))
        ));
    }
}
