//! The `commander` binary.

fn main() {
    eprintln!("commander: not built yet");
    std::process::exit(2);
}
