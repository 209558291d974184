//! Generated files are exactly what `cargo xtask codegen` would write now.

use super::{Context, Report};
use crate::codegen::{self, GENERATED_RUST_DIR};

const HINT: &str =
    "run `cargo xtask codegen` and commit the result; never edit generated files by hand";

pub fn check(cx: &Context, report: &mut Report) {
    let files = match codegen::generate(cx.set, cx.recorded) {
        Ok(files) => files,
        Err(e) => {
            report.error(
                "CODEGEN_FAILED",
                "schemas/",
                format!("{e:#}"),
                "fix the schema named above",
            );
            return;
        }
    };
    for file in &files {
        let on_disk = std::fs::read_to_string(cx.layout.root.join(&file.path));
        match on_disk {
            Ok(text) if text == file.contents => {}
            Ok(_) => report.error(
                "GENERATED_FILE_STALE",
                &file.path,
                "differs from what the schemas and inventory generate",
                HINT,
            ),
            Err(_) => report.error("GENERATED_FILE_MISSING", &file.path, "is missing", HINT),
        }
    }
    let dir = cx.layout.root.join(GENERATED_RUST_DIR);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let rel = format!(
                "{GENERATED_RUST_DIR}/{}",
                entry.file_name().to_string_lossy()
            );
            if !files.iter().any(|f| f.path == rel) {
                report.error(
                    "GENERATED_FILE_UNEXPECTED",
                    rel,
                    "is in the generated directory but no schema generates it",
                    "delete it (`cargo xtask codegen` removes stale modules); hand-written code lives outside generated/",
                );
            }
        }
    }
}
