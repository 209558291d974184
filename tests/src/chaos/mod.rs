//! The whole-platform chaos test's parts: a seeded plan of faults (SIGKILL of every service,
//! a broker restart, a lost cluster node) and the process supervisor that carries it out
//! ([`faults`]); a seeded flood of troubles reported as events ([`flood`]); what the streams
//! and the Docker engine hold afterwards, and the invariants checked against them
//! ([`ledger`], [`engine`]).
//!
//! A seed fixes the plan — when each process dies and for how long, which troubles the flood
//! reports, with which event ids, duplicates and crashed containers — not the interleaving: how
//! far the platform got when a process dies depends on timing. So a seed reproduces the same
//! fault plan and flood, and a failure names its seed so the same plan can be run again.

pub mod engine;
pub mod faults;
pub mod flood;
pub mod ledger;
pub mod tail;

use rand::rngs::StdRng;
use rand::SeedableRng;

/// The environment variable that fixes the seed (a decimal `u64`); random when unset.
pub const SEED_VAR: &str = "ORION_CHAOS_SEED";

/// The seed of one chaos run. Displays as `chaos seed <n>`, the prefix of every failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed(pub u64);

/// Independent random streams drawn from one seed, so that changing how many draws one part
/// makes does not change the others.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    Faults = 1,
    Flood = 2,
    EventIds = 3,
}

impl Seed {
    /// `ORION_CHAOS_SEED`, or a fresh random seed.
    pub fn from_env() -> Self {
        match std::env::var(SEED_VAR) {
            Ok(text) => Seed(
                text.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{SEED_VAR}={text:?} is not a u64: {e}")),
            ),
            Err(_) => Seed(rand::random()),
        }
    }

    /// The random stream `stream` of phase `phase` (each phase of a run gets its own plan).
    pub fn rng(&self, phase: u64, stream: Stream) -> StdRng {
        let salt = (phase << 8 | stream as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        StdRng::seed_from_u64(self.0 ^ salt)
    }
}

impl std::fmt::Display for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "chaos seed {}", self.0)
    }
}
