//! `approval-cli`: operators approve or deny risky actions and read the audit trail.
//! See `approval-cli --help`.

use std::process::ExitCode;

use approval_cli::cli::{Cli, EXIT_OK, EXIT_USAGE};
use clap::Parser;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    // A command line tool stays quiet unless asked: warnings and errors only by default.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    contracts::runtime::init_tracing(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(approval_cli::commands::run(cli.command, cli.json)) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(failure) => {
            eprintln!("approval-cli: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
