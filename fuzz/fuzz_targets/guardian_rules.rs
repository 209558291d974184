//! guardian's configuration and correlation rules on arbitrary text, read as guardian reads its
//! file (TOML table, then `GuardianConfigFile`) and validated; an accepted configuration's rules are
//! applied to the fixture events. Never panics.
#![no_main]

use std::sync::LazyLock;

use contracts::Event;
use guardian::config::GuardianConfigFile;
use libfuzzer_sys::fuzz_target;

static EVENTS: LazyLock<Vec<Event>> = LazyLock::new(|| {
    [
        include_str!("../../fixtures/event/valid/full.json"),
        include_str!("../../fixtures/event/valid/minimal.json"),
        include_str!("../../fixtures/event/valid/service_down_with_service_name.json"),
        include_str!("../../fixtures/event/valid/edge_device_offline.json"),
        include_str!("../../fixtures/event/valid/edge_telemetry_with_producer_keys.json"),
    ]
    .iter()
    .map(|text| contracts::decode(text.as_bytes()).expect("a valid event fixture"))
    .collect()
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return;
    };
    let Ok(file) = toml::Value::Table(table).try_into::<GuardianConfigFile>() else {
        return;
    };
    match file.validate() {
        Ok(config) => {
            for rule in &config.rules {
                for event in EVENTS.iter() {
                    let _ = rule.role(event);
                    let _ = rule.group_values(event);
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
