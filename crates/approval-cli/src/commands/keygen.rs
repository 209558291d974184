//! `keygen`: a new admin key file, and the `[[admins]]` entry brain needs for it.

use serde_json::json;

use crate::cli::KeygenArgs;
use crate::keys;

use super::{print_json, required_identity, CmdResult, Failure};

pub(super) fn run(args: KeygenArgs, json: bool) -> CmdResult {
    let identity = required_identity(Some(args.identity))?;
    let key = keys::generate_to(&identity, &args.out).map_err(|e| match e {
        keys::KeyFileError::Exists(_) => Failure::refused(e.to_string()),
        _ => Failure::usage(e.to_string()),
    })?;
    let snippet = keys::policy_snippet(&key);
    if json {
        print_json(&json!({
            "identity": identity,
            "public_key": key.public_key_base64(),
            "key_file": args.out.display().to_string(),
            "policy_snippet": snippet,
        }));
    } else {
        println!(
            "Wrote the private key of `{identity}` to {} (mode 0600). Keep it secret.",
            args.out.display()
        );
        println!("Public key: {}", key.public_key_base64());
        println!();
        println!("Add this to brain's policy file so that brain accepts {identity}'s decisions:");
        println!();
        print!("{snippet}");
    }
    Ok(())
}
