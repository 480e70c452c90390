//! Integration tests: each starts the real `p11kms` daemon on a fresh token in a temp dir
//! (SoftHSM2, or kryoptic with `P11KMS_TEST_TOKEN=kryoptic`: see `harness::test_token`)
//! and calls it over gRPC with mTLS. One binary with modules, so CI links once.

// A test crate has no public API: `pub` here only shares helpers between modules.
#![allow(unreachable_pub)]
// Test helpers fail loudly by design: a panic is a failed test, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod harness;
// Shared with the benches, hence outside tests/it.
#[path = "../shim/p11shim.rs"]
mod p11shim;
// The fuzz targets' checks, replayed over their corpora by `fuzz_corpus`.
#[path = "../../fuzz/src/lib.rs"]
mod fuzz_targets;
mod secrets_scan;
// The throw-away PostgreSQL clusters of the PostgreSQL store's tests (the crate's own).
#[path = "../../src/store/postgres/testdb.rs"]
#[allow(dead_code)]
mod testdb;

mod aliases;
mod asymmetric;
mod audit;
mod audit_checkpoint;
mod aws_json;
mod aws_sdk;
mod bad_input;
mod bad_input_table;
mod batch;
mod blob_mutations;
mod cli;
mod concurrency;
mod config;
mod connections;
#[cfg(feature = "failpoints")]
mod crash_points;
mod credentials;
mod cross_account;
mod crypto;
mod envelope;
mod esdk_kms;
mod failover;
mod fuzz_corpus;
mod grants;
mod guardrails;
mod hsm_faults;
mod identity;
mod import;
mod iv_budget;
mod lifecycle;
mod logs;
mod markers;
mod metrics;
mod policies;
mod policy_eval;
mod postgres;
mod races;
mod replicas;
mod restart;
mod revocation;
mod shim;
mod shutdown;
mod store_faults;
mod tags;
mod token;
mod token_answers;
mod xks;
