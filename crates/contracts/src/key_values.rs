//! Constructors for the generated key-value value types (the types themselves are generated
//! from `schemas/titan/interlock_*.v1.schema.json`; see [`crate::buckets`]).

use crate::generated::interlock_armed_v1::InterlockArmedSetBy;
use crate::generated::interlock_risk_ceiling_v1::{
    InterlockRiskCeilingLevel, InterlockRiskCeilingSetBy,
};
use crate::{InterlockArmed, InterlockRiskCeiling, Timestamp};

impl InterlockArmed {
    /// Set by the signed ops command `command_id` (`arm`, `disarm`, `halt`), now.
    pub fn by_command(armed: bool, command_id: uuid::Uuid) -> Self {
        Self {
            v: 1.try_into().expect("1 is the version"),
            armed,
            set_at: Timestamp::now(),
            set_by: InterlockArmedSetBy::OpsCommand,
            command_id: Some(command_id),
        }
    }

    /// The initial record provisioning writes into an empty bucket: armed.
    pub fn provisioned() -> Self {
        Self {
            v: 1.try_into().expect("1 is the version"),
            armed: true,
            set_at: Timestamp::now(),
            set_by: InterlockArmedSetBy::Provisioning,
            command_id: None,
        }
    }
}

impl InterlockRiskCeiling {
    /// Set by the signed ops command `command_id` (`set_risk`), now.
    pub fn by_command(level: InterlockRiskCeilingLevel, command_id: uuid::Uuid) -> Self {
        Self {
            v: 1.try_into().expect("1 is the version"),
            level,
            set_at: Timestamp::now(),
            set_by: InterlockRiskCeilingSetBy::OpsCommand,
            command_id: Some(command_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructed_values_are_valid() {
        let id = uuid::Uuid::new_v4();
        for value in [
            InterlockArmed::by_command(false, id),
            InterlockArmed::provisioned(),
        ] {
            let bytes = crate::encode(&value).unwrap();
            assert_eq!(crate::decode::<InterlockArmed>(&bytes).unwrap(), value);
        }
        let ceiling = InterlockRiskCeiling::by_command(InterlockRiskCeilingLevel::N2, id);
        let bytes = crate::encode(&ceiling).unwrap();
        assert_eq!(
            crate::decode::<InterlockRiskCeiling>(&bytes).unwrap(),
            ceiling
        );
    }
}
