//! The `brain` binary.

fn main() {
    eprintln!("brain: not built yet");
    std::process::exit(2);
}
