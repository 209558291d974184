//! What a batch of handled messages must make durable before it is acknowledged, coalesced.
//!
//! guardian plans and applies the messages of a batch in memory one after the other, and
//! collects here what they change in the bucket and on the bus: the last record of every key
//! (a group, a closing, a chunk of seen ids, or a deletion — a key changed twice in a batch is
//! written once, with its last value), the incident versions in the order they were made, and
//! the closed groups whose records go once their last versions are out. [`crate::service`]
//! then writes all records at once, publishes the versions in order, deletes the closed records,
//! and only then acknowledges the batch's messages. Pure: no I/O.
//!
//! A group closed in a batch keeps its closing record until the batch is durable: a later change
//! of the same key must wait for the next batch ([`Batch::closes`]), or it would replace the
//! closing record before the last version is published.

use std::collections::{BTreeMap, BTreeSet};

use contracts::Incident;

use crate::engine::Group;
use crate::seen::SeenWrite;
use crate::store::Closing;

/// The last record a batch leaves under one key.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Group(Box<Group>),
    Closing(Closing),
    Seen(SeenWrite),
    Delete,
}

/// The effects of the messages handled since the last flush.
#[derive(Debug, Default)]
pub struct Batch {
    writes: BTreeMap<String, Write>,
    versions: Vec<Incident>,
    closed: BTreeSet<String>,
}

impl Batch {
    /// Nothing to write or publish.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.versions.is_empty()
    }

    /// Whether the group stored under `key` was closed in this batch: a change of it must wait
    /// until this batch is durable.
    pub fn closes(&self, key: &str) -> bool {
        self.closed.contains(key)
    }

    /// `write` becomes the record of `key` (replacing what this batch wrote there before).
    pub fn write(&mut self, key: String, write: Write) {
        debug_assert!(
            !self.closed.contains(&key),
            "a closed key changes in its batch"
        );
        self.writes.insert(key, write);
    }

    /// A chunk of seen ids to store.
    pub fn remember(&mut self, write: SeenWrite) {
        self.writes.insert(write.key.clone(), Write::Seen(write));
    }

    /// An incident version to publish after the records are written.
    pub fn publish(&mut self, version: Incident) {
        self.versions.push(version);
    }

    /// A group that ends with `closing.version`: its closing record is written with the others,
    /// the version published after them, and the record deleted once the version is out.
    pub fn close(&mut self, closing: Closing) {
        self.versions.push(closing.version.clone());
        self.closed.insert(closing.key.clone());
        self.writes
            .insert(closing.key.clone(), Write::Closing(closing));
    }

    /// The records to write, one per key.
    pub fn writes(&self) -> impl Iterator<Item = (&str, &Write)> {
        self.writes.iter().map(|(key, write)| (key.as_str(), write))
    }

    /// The versions to publish, in the order they were made.
    pub fn versions(&self) -> &[Incident] {
        &self.versions
    }

    /// The closing records to delete once the versions are published.
    pub fn cleanups(&self) -> impl Iterator<Item = &str> {
        self.closed.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seen::SeenChunk;

    fn seen(key: &str) -> SeenWrite {
        SeenWrite {
            key: key.to_string(),
            chunk: SeenChunk {
                seq: 0,
                ids: Vec::new(),
            },
        }
    }

    #[test]
    fn a_key_written_twice_keeps_its_last_record() {
        let mut batch = Batch::default();
        batch.write("group.a".into(), Write::Delete);
        batch.remember(seen("seen.1"));
        batch.remember(seen("seen.1"));
        let writes: Vec<_> = batch.writes().map(|(k, _)| k).collect();
        assert_eq!(writes, ["group.a", "seen.1"]);
        assert!(!batch.is_empty());
        assert!(!batch.closes("group.a"));
    }
}
