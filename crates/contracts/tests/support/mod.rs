//! What the bus tests share.

use std::path::PathBuf;

use contracts::Contract;

/// The valid fixture `name` of contract `T` (`fixtures/<contract>/valid/<name>`), decoded.
pub fn fixture<T: Contract>(name: &str) -> T {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(T::INFO.name)
        .join("valid")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    contracts::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
