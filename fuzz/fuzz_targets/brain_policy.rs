//! brain's policy parser and checker on arbitrary text: `Policy::parse` never panics, its
//! errors print, and an accepted policy summarizes and evaluates the fixture incidents.
#![no_main]

use std::sync::LazyLock;

use brain::policy::Policy;
use contracts::Incident;
use libfuzzer_sys::fuzz_target;

static INCIDENTS: LazyLock<Vec<Incident>> = LazyLock::new(|| {
    [
        include_str!("../../fixtures/incident/valid/full.json"),
        include_str!("../../fixtures/incident/valid/minimal.json"),
        include_str!("../../fixtures/incident/valid/edge_device_failure.json"),
        include_str!("../../fixtures/incident/valid/service_outage_resolved_with_offsets.json"),
    ]
    .iter()
    .map(|text| contracts::decode(text.as_bytes()).expect("a valid incident fixture"))
    .collect()
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Policy::parse(text, "fuzz.toml") {
        Ok(policy) => {
            let _ = policy.summary();
            for incident in INCIDENTS.iter() {
                let _ = policy.evaluate(incident);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
