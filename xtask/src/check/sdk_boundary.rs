//! The SDK boundary: service crates (every crate under `crates/` but the platform crate
//! `contracts`) reach NATS only through `contracts::bus`. They may not depend on `async-nats`
//! (tests and benchmarks may, as dev-dependencies: they play the admin and the attacker), and
//! their sources may not name it.

use std::path::Path;

use anyhow::{Context as _, Result};

use super::Report;
use crate::inventory::{rel_to_string, Layout};

/// The crate that wraps the NATS client for everyone else.
const PLATFORM_CRATE: &str = "contracts";
/// The client only the platform crate may use.
const CLIENT_PACKAGE: &str = "async-nats";
const CLIENT_PATH: &str = "async_nats";
/// Dependency tables that build into the service's own code (dev-dependencies do not).
const BUILD_TABLES: &[&str] = &["dependencies", "build-dependencies"];

pub fn check(layout: &Layout, report: &mut Report) -> Result<()> {
    let crates = layout.root.join("crates");
    if !crates.is_dir() {
        return Ok(());
    }
    let mut dirs: Vec<_> = std::fs::read_dir(&crates)
        .with_context(|| format!("listing {}", crates.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.join("Cargo.toml").is_file())
        .filter(|path| path.file_name().is_some_and(|name| name != PLATFORM_CRATE))
        .collect();
    dirs.sort();
    for dir in dirs {
        check_manifest(layout, &dir, report)?;
        check_sources(layout, &dir.join("src"), report)?;
    }
    Ok(())
}

fn check_manifest(layout: &Layout, dir: &Path, report: &mut Report) -> Result<()> {
    let path = dir.join("Cargo.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut tables: Vec<(String, &toml::Table)> = BUILD_TABLES
        .iter()
        .filter_map(|name| Some((name.to_string(), manifest.get(*name)?.as_table()?)))
        .collect();
    if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
        for (target, spec) in targets {
            for name in BUILD_TABLES {
                if let Some(table) = spec.get(*name).and_then(toml::Value::as_table) {
                    tables.push((format!("target.{target}.{name}"), table));
                }
            }
        }
    }
    let rel = rel_to_string(path.strip_prefix(&layout.root).unwrap_or(&path));
    for (table_name, table) in tables {
        for (key, spec) in table {
            let package = spec
                .get("package")
                .and_then(toml::Value::as_str)
                .unwrap_or(key);
            if package == CLIENT_PACKAGE {
                report.error(
                    "SDK_BYPASSED",
                    &rel,
                    format!("[{table_name}] depends on `{CLIENT_PACKAGE}`: a service reaches NATS only through `contracts::bus`"),
                    "use the platform's Bus, Records, Objects, readers and headers instead (add what is missing to contracts::bus); tests may keep it under [dev-dependencies]",
                );
            }
        }
    }
    Ok(())
}

fn check_sources(layout: &Layout, src: &Path, report: &mut Report) -> Result<()> {
    if !src.is_dir() {
        return Ok(());
    }
    for entry in walkdir::WalkDir::new(src).sort_by_file_name() {
        let entry = entry.with_context(|| format!("walking {}", src.display()))?;
        if entry.path().extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())
            .with_context(|| format!("reading {}", entry.path().display()))?;
        let rel = rel_to_string(
            entry
                .path()
                .strip_prefix(&layout.root)
                .unwrap_or(entry.path()),
        );
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if code.contains(CLIENT_PATH) {
                report.error(
                    "SDK_BYPASSED",
                    format!("{rel}:{}", number + 1),
                    format!("names `{CLIENT_PATH}`: a service reaches NATS only through `contracts::bus`"),
                    "use the platform's Bus, Records, Objects, readers and headers instead (add what is missing to contracts::bus)",
                );
            }
        }
    }
    Ok(())
}
