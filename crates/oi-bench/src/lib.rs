//! A benchmark anyone can run from this repository: `scripts/bench [N] [FOLDERS] [PROFILE]`.
//!
//! It starts a private Dovecot on 127.0.0.1 (oi-testkit), writes N generated messages
//! straight into its Maildir, and times our `offlineimap` (and `mbsync` when installed) on
//! the scenarios initial, noop, flags, new and push, each from the same starting state,
//! verifying both sides after every run, and optionally the protocol floor of each scenario
//! (the server's share, [`floor`]). See README.md, section "Benchmark".
#![deny(missing_docs)]

pub mod delay;
pub mod floor;
pub mod harness;
pub mod mail;
pub mod report;
pub mod rusage;

pub use harness::{Bench, RunResult, Scenario, Settings, Tool, Transport};
