//! Inputs the `decode` fuzz target (fuzz/fuzz_targets/decode.rs) once crashed on, kept in
//! fixtures/fuzz/decode/ and replayed here without the fuzzer: the first byte picks the contract
//! (an index into `CONTRACTS`, modulo its length), the rest is the payload. Each must decode or
//! be refused without a panic, and whatever decodes must encode and decode to the same value.

use std::path::Path;

use contracts::{Message, CONTRACTS};

fn replay(data: &[u8]) -> Result<(), String> {
    let Some((&pick, payload)) = data.split_first() else {
        return Ok(());
    };
    let info = CONTRACTS[usize::from(pick) % CONTRACTS.len()];
    let Ok(message) = Message::decode(info.subject, payload) else {
        return Ok(());
    };
    let bytes = message
        .encode()
        .map_err(|e| format!("{} decoded but does not encode: {e}", info.name))?;
    let again = Message::decode(info.subject, &bytes)
        .map_err(|e| format!("{} encoded but does not decode again: {e}", info.name))?;
    if again != message {
        return Err(format!("{} changed on a round trip", info.name));
    }
    Ok(())
}

#[test]
fn every_kept_decode_input_round_trips() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/fuzz/decode");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "no inputs in {}", dir.display());
    let failures: Vec<String> = entries
        .iter()
        .filter_map(|path| {
            let data = std::fs::read(path).unwrap();
            replay(&data)
                .err()
                .map(|why| format!("{}: {why}", path.display()))
        })
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn a_success_receipt_with_an_empty_result_round_trips() {
    let text = br#"{"v":1,"id":"17d16613-ae53-4485-8543-20aad50893e9",
        "command_id":"baa84cd7-f6a5-4540-97f1-4981e365d66a","ts":"2026-02-14T12:00:05.840Z",
        "type":"disarm","status":"success","result":{},
        "meta":{"executor_id":"ops-host-1","duration_ms":3}}"#;
    let receipt: contracts::OpsReceipt = contracts::decode(text).unwrap();
    assert_eq!(receipt.result, Some(serde_json::Map::new()));
    let bytes = contracts::encode(&receipt).expect("encodes with its empty result");
    assert_eq!(
        contracts::decode::<contracts::OpsReceipt>(&bytes).unwrap(),
        receipt
    );
}
