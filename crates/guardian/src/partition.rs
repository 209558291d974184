//! The shares of the group keys that guardian instances hold separately.
//!
//! The inventory splits guardian's work into `partitions` (`schemas/inventory.toml`,
//! [`contracts::Service::PARTITIONS`]). A group belongs to exactly one partition, chosen by the
//! id of its record, so every event of a group is handled by one instance, in order, whichever
//! instance holds the partition. Each partition has its own durables (`<durable>-p<index>`,
//! which every event reaches), its own lease and its own keys in the `guardian_state` bucket,
//! all under the prefix `p<index>.`. A guardian holding no partition handles nothing; one
//! holding all of them is the single active guardian of old.

use contracts::services::Guardian;
use contracts::Service;

use crate::engine::GroupKey;
use crate::lease::LEASE_KEY;

/// One partition of the group keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition {
    pub index: u32,
    pub count: u32,
}

impl Partition {
    /// Every partition the inventory declares for guardian.
    pub fn all() -> impl Iterator<Item = Partition> {
        Self::all_of(Guardian::PARTITIONS)
    }

    /// Every partition of a split into `count` (at least one).
    pub fn all_of(count: u32) -> impl Iterator<Item = Partition> {
        let count = count.max(1);
        (0..count).map(move |index| Partition { index, count })
    }

    /// Whether the group under `key` belongs here.
    pub fn owns(&self, key: &GroupKey) -> bool {
        self.count <= 1
            || key.record_id().as_u128() % u128::from(self.count) == u128::from(self.index)
    }

    /// The prefix of the partition's keys in the bucket (none when there is only one).
    pub fn key_prefix(&self) -> String {
        if self.count <= 1 {
            String::new()
        } else {
            format!("p{}.", self.index)
        }
    }

    /// The key of the partition's lease.
    pub fn lease_key(&self) -> String {
        format!("{}{LEASE_KEY}", self.key_prefix())
    }

    /// What to bind: the partition's durables (`None` when the service is not split).
    pub fn durable(&self) -> Option<u32> {
        (self.count > 1).then_some(self.index)
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> GroupKey {
        GroupKey {
            rule: "service_down".into(),
            values: vec![format!("service-{n}")],
        }
    }

    #[test]
    fn every_group_belongs_to_exactly_one_partition_and_they_share_the_keys() {
        let partitions: Vec<Partition> = Partition::all_of(4).collect();
        let mut per_partition = [0usize; 4];
        for n in 0..4000 {
            let owners: Vec<&Partition> = partitions.iter().filter(|p| p.owns(&key(n))).collect();
            assert_eq!(owners.len(), 1, "group {n} has owners {owners:?}");
            per_partition[owners[0].index as usize] += 1;
        }
        for (index, groups) in per_partition.iter().enumerate() {
            assert!(
                (800..1200).contains(groups),
                "partition {index} owns {groups} of 4000 groups: {per_partition:?}"
            );
        }
    }

    #[test]
    fn a_single_partition_owns_everything_under_the_old_keys() {
        let only = Partition::all_of(1).next().unwrap();
        assert!(only.owns(&key(7)));
        assert_eq!(only.key_prefix(), "");
        assert_eq!(only.lease_key(), "lease");
        assert_eq!(only.durable(), None);
        let third = Partition { index: 2, count: 4 };
        assert_eq!(third.lease_key(), "p2.lease");
        assert_eq!(third.durable(), Some(2));
    }
}
