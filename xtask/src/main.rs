use anyhow::Result;
use clap::{Parser, Subcommand};
use xtask::inventory::Layout;

/// Project automation: contract code generation and governance.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate Rust types, docs/CONTRACTS.md, docs/asyncapi.json and the NATS permissions from schemas/.
    Codegen,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let layout = Layout::of_this_checkout();
    match cli.command {
        Command::Codegen => {
            let files = xtask::codegen::run(&layout)?;
            eprintln!("codegen: {} files up to date", files.len());
        }
    }
    Ok(())
}
