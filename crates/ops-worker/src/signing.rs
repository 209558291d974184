//! Signing and verifying ops commands.
