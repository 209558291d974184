//! Helpers shared by the integration tests that need a real Docker engine.
//!
//! Use with `mod support;` from a test file. Not every test file uses every helper.
#![allow(dead_code)]

pub mod engine;
pub mod images;
pub mod service;
pub mod starts;
pub mod worker;
