//! The worker's durable state in JetStream key-value buckets: the safety interlock (through
//! the typed handle of `contracts::buckets::OpsInterlock`; its values are the contracts
//! `InterlockArmed` and `InterlockRiskCeiling`, which brain reads), and the record of every
//! command id (a `contracts::bus::ClaimLog`), so that a command is never executed twice — not
//! even across a restart or a crash.
//!
//! The interlock fails closed: only an `armed` record that says `armed: true` lets restart and
//! deploy run. A missing key (never written, or deleted) or a value that breaks its schema (a
//! record from before contract set 1.1, or garbage) is disarmed.

use contracts::buckets::OpsInterlock;
use contracts::bus::{BucketError, BucketHandle, Bus};
use contracts::generated::interlock_risk_ceiling_v1::InterlockRiskCeilingLevel;
use contracts::services::OpsWorker;
use contracts::{InterlockArmed, InterlockRiskCeiling};
use uuid::Uuid;

/// Bucket of the command records (private to ops-worker; see `schemas/inventory.toml`).
pub const COMMANDS_BUCKET: &str = <contracts::buckets::OpsCommands as contracts::Bucket>::INFO.name;

/// The command records could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("key-value `{bucket}`: {what}")]
pub struct StateError {
    pub bucket: &'static str,
    pub what: String,
    #[source]
    pub source: contracts::bus::BusError,
}

/// What the `armed` record says. Anything but [`ArmedRecord::Armed`] means disarmed.
#[derive(Debug)]
pub enum ArmedRecord {
    Armed(InterlockArmed),
    Disarmed(InterlockArmed),
    /// The key holds nothing (never written, or deleted): disarmed (fail closed).
    Missing,
    /// The key cannot be read or breaks its schema: disarmed (fail closed).
    Unreadable(BucketError),
}

/// The platform-wide safety interlock (bucket `ops_interlock`, keys `armed` and
/// `risk_ceiling`, values [`InterlockArmed`] / [`InterlockRiskCeiling`]), through the typed
/// bucket handle: ops-worker is its only writer, brain reads it.
#[derive(Clone)]
pub struct Interlock {
    bucket: BucketHandle<OpsWorker, OpsInterlock>,
}

impl Interlock {
    pub async fn open(bus: &Bus<OpsWorker>) -> Result<Self, BucketError> {
        Ok(Self {
            bucket: bus.bucket::<OpsInterlock>().await?,
        })
    }

    /// Armed only if the `armed` record says so: a missing or unreadable record is disarmed.
    pub async fn armed(&self) -> ArmedRecord {
        match self.bucket.get::<InterlockArmed>().await {
            Ok(Some(record)) if record.armed => ArmedRecord::Armed(record),
            Ok(Some(record)) => ArmedRecord::Disarmed(record),
            Ok(None) => ArmedRecord::Missing,
            Err(e) => ArmedRecord::Unreadable(e),
        }
    }

    pub async fn set_armed(&self, armed: bool, command_id: Uuid) -> Result<(), BucketError> {
        self.bucket
            .put(&InterlockArmed::by_command(armed, command_id))
            .await
            .map(|_| ())
    }

    pub async fn risk_ceiling(&self) -> Result<Option<InterlockRiskCeiling>, BucketError> {
        self.bucket.get::<InterlockRiskCeiling>().await
    }

    pub async fn set_risk_ceiling(
        &self,
        level: InterlockRiskCeilingLevel,
        command_id: Uuid,
    ) -> Result<(), BucketError> {
        self.bucket
            .put(&InterlockRiskCeiling::by_command(level, command_id))
            .await
            .map(|_| ())
    }
}

/// The record of every command id (bucket `ops_commands`): claimed, then its final receipt.
pub async fn command_log(bus: &Bus<OpsWorker>) -> Result<contracts::bus::ClaimLog, StateError> {
    bus.claim_log::<contracts::buckets::OpsCommands>()
        .await
        .map_err(|source| StateError {
            bucket: COMMANDS_BUCKET,
            what: "opening the bucket".into(),
            source,
        })
}
