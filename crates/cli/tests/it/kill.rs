//! The randomized kill test: a two-way sync of a 2000-message mailbox, killed (SIGKILL) at
//! random instants while both sides keep changing, each time followed by a clean run and
//! a check of both sides: the same messages (by Message-ID), none twice, the same flags,
//! and every message that should exist still there. `KILL_RUNS` sets the number of kills
//! (50 by default), `KILL_SEED` the seed; a failure prints the seed and the run.

use std::process::Command;
use std::time::Duration;

use crate::common::*;
use crate::scenarios::{TwoWaySync, env_number};

/// Waits (a hang guard of a minute, not a timing assertion) until Dovecot has no session
/// of the user left.
fn wait_for_no_sessions(w: &World) {
    for _ in 0..600 {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(w.server.config_path())
            .args(["who", "-1", USER])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !text.lines().any(|l| l.starts_with(USER)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("Dovecot still has a session of {USER} a minute after the kill");
}

#[test]
fn randomized_kills_during_two_way_sync_lose_and_duplicate_nothing() {
    let runs: usize = env_number("KILL_RUNS", 50);
    let seed: u64 = env_number("KILL_SEED", 0x5eed);
    let Some(w) = World::new("randomized_kills") else {
        return;
    };
    let mut sync = TwoWaySync::new(&w, seed, "kill");
    for run in 0..runs {
        let ctx = format!("seed {seed}, run {run}");
        if run > 0 {
            sync.change_both_sides();
        }
        // Start a sync and kill it at a random instant (the first one, a 2000-message
        // download, gets a longer window).
        sync.kill_within(if run == 0 { 1500 } else { 250 });
        // The server finishes what the killed client had sent (a MULTIAPPEND already on
        // the wire is still committed, seconds later on a loaded machine) before the
        // next run starts, as it has long finished when a user runs the next sync. The
        // engine also looks for such late copies (a grace period, a second look before
        // the expunge, and every later run), but no client can out-wait a server that is
        // still working for a connection that is gone.
        wait_for_no_sessions(&w);
        sync.clean_run_converges(&ctx, "clean run failed");
    }
}
