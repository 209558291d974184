//! The `guardian` binary.

fn main() {
    eprintln!("guardian: not built yet");
    std::process::exit(2);
}
