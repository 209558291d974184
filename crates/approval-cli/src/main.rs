//! `approval-cli`: operators approve or deny risky actions and read the audit trail.
//! See `approval-cli --help`.

use std::process::ExitCode;

use approval_cli::cli::Cli;
use contracts::runtime::{self, ExitStatus};

fn main() -> ExitCode {
    let cli: Cli = match runtime::parse_args() {
        Ok(cli) => cli,
        Err(status) => return status.into(),
    };
    runtime::client_main(&cli.log, async {
        match approval_cli::commands::run(cli.command, cli.json).await {
            Ok(()) => ExitStatus::Ok,
            Err(failure) => {
                eprintln!("approval-cli: {}", failure.message);
                // `Failure::code` is one of the cli::EXIT_* codes, which are ExitStatus codes.
                ExitStatus::try_from(failure.code).unwrap_or(ExitStatus::Failure)
            }
        }
    })
    .into()
}
