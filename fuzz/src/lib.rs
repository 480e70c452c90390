//! The checks of the fuzz targets, one module per parser of untrusted bytes. Each
//! `check` takes arbitrary bytes, calls the parser through p11kms's public API (the
//! code the daemon or client runs, not a copy) and asserts what must hold beyond "no
//! panic"; each module's doc says what. A failed assertion is a crash to libFuzzer and
//! a failed test to the corpus replay (`tests/fuzz_corpus.rs` in the main crate, which
//! includes this file with `#[path]`): so this code uses only p11kms and dependencies
//! the main crate has too.

pub mod aws_json;
pub mod blob;
pub mod config;
pub mod envelope;
pub mod envelope_header;
pub mod policy;
pub mod sigv4;

/// One target: its name (its binary, and its corpus under `fuzz/corpus/<name>`), its
/// check, and whether its parser accepts an input (what a `valid-*` seed must be).
pub struct Target {
    /// The name.
    pub name: &'static str,
    /// The fuzz target's body.
    pub check: fn(&[u8]),
    /// True when the parser accepts the input.
    pub accepted: fn(&[u8]) -> bool,
}

macro_rules! targets {
    ($($name:ident),*) => {
        /// Every target.
        pub const TARGETS: &[Target] = &[$(Target {
            name: stringify!($name),
            check: $name::check,
            accepted: $name::accepted,
        }),*];
    };
}

targets!(
    blob,
    envelope,
    envelope_header,
    policy,
    config,
    aws_json,
    sigv4
);
