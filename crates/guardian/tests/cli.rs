//! The binary's command line: help, configuration checks, and refusals before connecting.

use std::path::PathBuf;
use std::process::{Command, Output};

fn guardian(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Nothing listens here: a refusal must come before any connection attempt.
        .env("ORION_NATS_URL", "nats://127.0.0.1:1")
        .envs(env.iter().copied())
        .output()
        .expect("run the guardian binary")
}

fn example() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("guardian.toml")
        .display()
        .to_string()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn help_explains_the_config_keys_and_the_environment() {
    let output = guardian(&["--help"], &[]);
    assert_eq!(output.status.code(), Some(0));
    let help = text(&output);
    for needle in [
        "ORION_NATS_URL",
        "ORION_NATS_PASSWORD",
        "ORION_NATS_PASSWORD_GUARDIAN",
        "ORION_ENV",
        "ORION_LOG_FORMAT",
        "GUARDIAN_CONFIG",
        "group_by",
        "resolve_after_s",
        "max_seen_event_ids",
        "last path segment",
        "Exit codes",
        "README.md",
    ] {
        assert!(
            help.contains(needle),
            "--help does not mention {needle}:\n{help}"
        );
    }
    let run_help = text(&guardian(&["run", "--help"], &[]));
    assert!(run_help.contains("--config"), "{run_help}");
}

#[test]
fn check_accepts_the_shipped_example() {
    let output = guardian(&["check", "--config", &example()], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let printed = text(&output);
    assert!(printed.contains("4 rule(s)"), "{printed}");
    assert!(
        printed.contains("metric-anomaly: 3 × [metric_threshold_exceeded] in 60 s"),
        "{printed}"
    );
    // GUARDIAN_CONFIG instead of --config.
    let output = guardian(&["check"], &[("GUARDIAN_CONFIG", &example())]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(text(&output).contains("4 rule(s)"), "{}", text(&output));
}

#[test]
fn a_bad_rule_exits_2_naming_the_rule_and_the_field_and_check_says_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guardian.toml");
    std::fs::write(
        &path,
        "[[rules]]\nname = \"broken-outage\"\ngroup_by = [\"data.service_name\"]\nwindow_s = 0\nthreshold = 1\nincident_type = \"service_outage\"\n[rules.match]\nevent_type = [\"service_down\"]\n",
    )
    .unwrap();
    let output = guardian(&["run", "--config", path.to_str().unwrap()], &[]);
    // The convention of every binary (contracts::runtime::ExitStatus): 2, configuration refused.
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let message = text(&output);
    assert!(
        message.contains("configuration refused")
            && message.contains("\"broken-outage\"")
            && message.contains("window_s"),
        "{message}"
    );
    assert!(
        !message.contains("connecting"),
        "it must not try to connect: {message}"
    );
    // `check` ran and found a problem: 1.
    let checked = guardian(&["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(checked.status.code(), Some(1), "{}", text(&checked));
    assert!(text(&checked).contains("window_s"), "{}", text(&checked));
}

#[test]
fn other_bad_configurations_exit_2_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("unknown_type.toml", "[[rules]]\nname = \"x\"\nwindow_s = 60\nthreshold = 1\nincident_type = \"meltdown\"\n[rules.match]\nevent_type = [\"service_down\"]\n", "meltdown"),
        ("unknown_key.toml", "[limits]\nmax_groupz = 5\n", "max_groupz"),
        ("no_rules.toml", "[nats]\nreplicas = 1\n", "no correlation rules"),
        ("not_toml.toml", "[[rules]\nname =", "guardian/not_toml.toml"),
    ];
    for (name, content, needle) in cases {
        let path = dir.path().join("guardian").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        let output = guardian(&["run", "--config", path.to_str().unwrap()], &[]);
        assert_eq!(output.status.code(), Some(2), "{name}: {}", text(&output));
        assert!(text(&output).contains(needle), "{name}: {}", text(&output));
    }
    let missing = guardian(&["run"], &[]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("--config"), "{}", text(&missing));
    let unknown_env = guardian(
        &["run", "--config", &example()],
        &[("ORION_ENV", "staging")],
    );
    assert_eq!(unknown_env.status.code(), Some(2));
    assert!(text(&unknown_env).contains("staging"));
    let bad_args = guardian(&["run", "--bogus"], &[]);
    assert_eq!(bad_args.status.code(), Some(2));
}
