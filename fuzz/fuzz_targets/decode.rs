//! `decode` of every contract: the first byte picks the contract (an index into
//! `contracts::CONTRACTS`, modulo its length), the rest is the payload as it would arrive on that
//! contract's subject. Never panics; and whatever decodes encodes, and decodes again to the
//! same value.
#![no_main]

use contracts::{Message, CONTRACTS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let info = CONTRACTS[usize::from(pick) % CONTRACTS.len()];
    let Ok(message) = Message::decode(info.subject, payload) else {
        return;
    };
    let bytes = match message.encode() {
        Ok(bytes) => bytes,
        Err(e) => panic!("{} decoded but does not encode: {e}", info.name),
    };
    let again = match Message::decode(info.subject, &bytes) {
        Ok(again) => again,
        Err(e) => panic!("{} encoded but does not decode again: {e}", info.name),
    };
    assert_eq!(message, again, "{} changed on a round trip", info.name);
});
