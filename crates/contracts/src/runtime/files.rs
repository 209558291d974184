//! Files that hold secrets.

use std::path::Path;

/// Creates `path` for a secret (a password, a key): readable by its owner only from the first
/// byte on (mode 0600 at creation, never widened and narrowed after), and never over an existing
/// file.
pub fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Writes `text` to a new private file at `path` (see [`create_private_file`]), replacing a
/// file that was there.
pub fn write_private_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = create_private_file(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
