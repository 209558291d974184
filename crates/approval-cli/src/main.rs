//! The `approval-cli` binary.

fn main() {
    eprintln!("approval-cli: not built yet");
    std::process::exit(2);
}
