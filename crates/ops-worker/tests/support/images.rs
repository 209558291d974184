//! The test images live in the `e2e` package, shared with the end-to-end tests and the demo.

pub use e2e::images::*;
