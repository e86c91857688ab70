//! The rest of long-running operation: `-P DIR` timing profiles, the ttyui password prompt
//! (in a real terminal, tmux), SIGQUIT's report, and every signal (SIGUSR1, SIGUSR2,
//! SIGABRT, SIGTERM, SIGINT, SIGHUP, three SIGINTs) landing in the middle of a 2000-message
//! sync, each followed by a check of both sides.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::long_running::{
    add_to_account, connect_directly, connect_through, eventually, eventually_within,
    exits_ok_after, signal, wait_exit,
};
use crate::scenarios::{deliver_to_server, local_state, server_state};
use crate::tmux::{Tmux, have_tmux};

#[test]
fn profile_dir_gets_a_timing_file_per_folder() {
    let Some(w) = World::new("profile") else {
        return;
    };
    w.server.create_mailbox(USER, "Archive").unwrap();
    w.put("INBOX", "a");
    w.put("Archive", "b");
    w.write_config("", "");
    let prof = w.dir.path().join("prof");
    let out = w.run(&["-P", prof.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let mut names: Vec<String> = std::fs::read_dir(&prof)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["Test.Archive.prof", "Test.INBOX.prof"]);
    let text = std::fs::read_to_string(prof.join("Test.INBOX.prof")).unwrap();
    for phase in [
        "listing remote",
        "listing local",
        "total\t",
        "copied 1 to local",
    ] {
        assert!(text.contains(phase), "{phase} missing:\n{text}");
    }
    // A second run appends its own record.
    w.sync_ok();
    let out = w.run(&["-P", prof.to_str().unwrap()]);
    assert!(out.status.success());
    let text = std::fs::read_to_string(prof.join("Test.INBOX.prof")).unwrap();
    assert_eq!(
        text.matches("# account Test folder INBOX").count(),
        2,
        "{text}"
    );
}

#[test]
fn profile_dir_that_cannot_be_created_is_a_clear_error() {
    let Some(w) = World::new("profile_bad") else {
        return;
    };
    w.write_config("", "");
    let file = w.dir.path().join("plainfile");
    std::fs::write(&file, "x").unwrap();
    let bad = file.join("prof");
    let out = w.run(&["-P", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("-P") && err.contains(bad.to_str().unwrap()),
        "{err}"
    );
    assert!(!w.maildir().join("INBOX").exists(), "synced anyway");
}

/// Writes the world's config without the remote password.
fn config_without_password(w: &World) {
    w.write_config("", "");
    let text = std::fs::read_to_string(w.rc())
        .unwrap()
        .replace(&format!("remotepass = {PASS}\n"), "");
    std::fs::write(w.rc(), text).unwrap();
}

/// Waits for the password prompt, types the password, and returns the terminal's text once
/// the run has ended, asserting it succeeded.
fn type_the_password(tmux: &Tmux) -> String {
    let screen = || tmux.screen(true);
    eventually("the password prompt", || {
        screen().contains("Enter password for user 'alice':")
    });
    tmux.send_keys(&[PASS, "Enter"]);
    eventually("the run ended", || screen().contains("EXIT="));
    let shown = screen();
    tmux.kill();
    assert!(shown.contains("EXIT=0"), "{shown}");
    shown
}

#[test]
fn ttyui_asks_for_a_missing_password_without_echo() {
    if !have_tmux() {
        return;
    }
    let Some(w) = World::new("password_prompt") else {
        return;
    };
    w.put("INBOX", "a");
    config_without_password(&w);
    let log = w.dir.path().join("log");
    let session = format!("oi-prompt-{}", std::process::id());
    let flags = format!("-o -u ttyui -d imap -l {}", log.display());
    let tmux = Tmux::start(&w, session, (200, 50), &flags);
    let shown = type_the_password(&tmux);
    // Neither in clear nor as the AUTHENTICATE PLAIN argument of the -d imap trace.
    let plain_b64 = "AGFsaWNlAGFsaWNlcGFzcw==";
    assert!(!shown.contains(PASS), "the password was echoed:\n{shown}");
    assert!(
        !shown.contains(plain_b64),
        "the password was traced:\n{shown}"
    );
    assert!(shown.contains("C: "), "no -d imap trace to check:\n{shown}");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!logged.contains(PASS), "the password was logged:\n{logged}");
    assert_eq!(local_messages(&w.maildir().join("INBOX")).len(), 1);
}

#[test]
fn ttyui_asks_for_a_missing_password_for_info_too() {
    if !have_tmux() {
        return;
    }
    let Some(w) = World::new("password_prompt_info") else {
        return;
    };
    w.server.create_mailbox(USER, "Listed").unwrap();
    config_without_password(&w);
    let session = format!("oi-prompt-info-{}", std::process::id());
    let tmux = Tmux::start(&w, session, (200, 50), "--info -u ttyui");
    let shown = type_the_password(&tmux);
    assert!(
        shown.contains("Listed"),
        "--info did not list the server's folders:\n{shown}"
    );
    assert!(!shown.contains(PASS), "the password was echoed:\n{shown}");
}

#[test]
fn without_a_terminal_a_missing_password_is_a_clear_error() {
    let Some(w) = World::new("password_none") else {
        return;
    };
    config_without_password(&w);
    let out = w.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no password configured"), "{err}");
}

/// 2000 messages delivered straight into the server's Maildir, 50 of them \Flagged.
fn big_world(name: &str) -> Option<World> {
    let w = World::new(name)?;
    deliver_to_server(&w, 2000, |i| (format!("big{i}"), 1500));
    w.doveadm(&[
        "flags",
        "add",
        "-u",
        USER,
        "\\Flagged",
        "mailbox",
        "INBOX",
        "uid",
        "1:50",
    ]);
    w.write_config("", "");
    Some(w)
}

fn spawn(w: &World, extra: &[&str], stderr: &std::path::Path) -> Child {
    w.command()
        .args(["-u", "basic"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap()
}

/// Waits until the sync has copied some messages (a signal then lands mid-sync).
fn wait_mid_sync(w: &World, child: &mut Child) {
    let inbox = w.maildir().join("INBOX");
    eventually("the download started", || {
        !local_messages(&inbox).is_empty() || child.try_wait().unwrap().is_some()
    });
}

/// A clean run changes nothing more, and both sides hold the same 2000 messages with the
/// same flags, none twice (the state readers fail on duplicates).
fn verify_both_sides(w: &World) {
    verify_both_sides_hold(w, 2000);
}

/// [`verify_both_sides`] for `n` messages (the 2000, plus any added during the test).
fn verify_both_sides_hold(w: &World, n: usize) {
    let out = w.sync_ok();
    let (server, local): (BTreeMap<_, _>, BTreeMap<_, _>) = (server_state(w), local_state(w));
    assert_eq!(server.len(), n);
    assert_eq!(server, local, "the sides differ after:\n{out}");
    assert_eq!(server.values().filter(|f| f.contains('F')).count(), 50);
    assert_nothing_done(&w.sync_ok());
}

/// A 2000-message sync gets `sig` once it has copied some messages: a daemon (autorefresh
/// every ten minutes) when `daemon`, else a single run (`-o`). Returns the world and the
/// run's output once the process has exited successfully. With `slow`, through a slow
/// link: every body fetch reaches the server 100 ms late (oi-testkit's fault proxy, a mock
/// network with Dovecot behind it), so that the download (32 batches) cannot end between
/// the first messages' arrival and the signal, however fast the machine; the config points
/// at the server again afterwards.
fn signal_mid_sync(name: &str, daemon: bool, sig: &str, slow: bool) -> Option<(World, String)> {
    let w = big_world(name)?;
    if daemon {
        add_to_account(&w, "autorefresh = 10");
    }
    let proxy = slow.then(|| {
        oi_testkit::FaultProxy::start(
            w.server.imap_port(),
            oi_testkit::Trigger::fetch_bodies(),
            oi_testkit::Fault::Delay(Duration::from_millis(100)),
            oi_testkit::Times::Always,
        )
        .unwrap()
    });
    if let Some(p) = &proxy {
        connect_through(&w, p.port());
    }
    let err = w.dir.path().join("stderr");
    let mut child = spawn(&w, if daemon { &[] } else { &["-o"] }, &err);
    wait_mid_sync(&w, &mut child);
    let text = exits_ok_after(&mut child, sig, &err);
    if let Some(p) = &proxy {
        connect_directly(&w, p.port());
    }
    Some((w, text))
}

#[test]
fn sigquit_reports_every_task_and_the_sync_goes_on() {
    let Some((w, text)) = signal_mid_sync("sigquit", false, "QUIT", false) else {
        return;
    };
    assert!(text.contains("SIGQUIT: what every task is doing"), "{text}");
    assert!(text.contains("account Test: syncing"), "{text}");
    assert!(text.contains("folder INBOX: "), "{text}");
    // It went on to the end: everything is there without another run.
    assert_eq!(local_messages(&w.maildir().join("INBOX")).len(), 2000);
    verify_both_sides(&w);
}

#[test]
fn sigusr2_during_a_2000_message_sync_finishes_it_then_exits() {
    let Some((w, text)) = signal_mid_sync("sigusr2_big", true, "USR2", false) else {
        return;
    };
    // The current sync was finished, not cut short.
    assert_eq!(
        local_messages(&w.maildir().join("INBOX")).len(),
        2000,
        "{text}"
    );
    verify_both_sides(&w);
}

#[test]
fn sigterm_during_a_2000_message_sync_stops_safely_and_resumes() {
    let Some((w, text)) = signal_mid_sync("sigterm_big", true, "TERM", true) else {
        return;
    };
    assert!(
        text.contains("stopped by a signal at a safe point"),
        "{text}"
    );
    assert!(local_messages(&w.maildir().join("INBOX")).len() < 2000);
    verify_both_sides(&w);
}

/// Polls `f` for up to five minutes: a hang guard for a whole 2000-message sync on a loaded
/// machine, not a speed assertion.
fn within_minutes(what: &str, f: impl FnMut() -> bool) {
    eventually_within(what, Duration::from_secs(300), f);
}

#[test]
fn sigusr1_after_a_2000_message_sync_syncs_again_at_once() {
    let Some(w) = big_world("sigusr1_big") else {
        return;
    };
    // Ten minutes: only SIGUSR1 can bring the next sync within the test's guards.
    add_to_account(&w, "autorefresh = 10");
    let err = w.dir.path().join("stderr");
    let mut child = spawn(&w, &[], &err);
    let inbox = w.maildir().join("INBOX");
    within_minutes("the first sync", || {
        local_messages(&inbox).len() == 2000 || child.try_wait().unwrap().is_some()
    });
    // Listed after the first sync's listing, so only a second sync can bring it.
    w.put("INBOX", "after the first sync");
    signal(&child, "USR1");
    eventually("the sync SIGUSR1 asked for", || {
        local_messages(&inbox).len() == 2001 || child.try_wait().unwrap().is_some()
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "{}",
        std::fs::read_to_string(&err).unwrap()
    );
    assert_eq!(local_messages(&inbox).len(), 2001);
    exits_ok_after(&mut child, "USR2", &err);
    verify_both_sides_hold(&w, 2001);
}

#[test]
fn sigabrt_during_a_2000_message_sync_finishes_it_then_exits() {
    // A normal exit after the sync (asserted by signal_mid_sync), not the default action
    // (abort, core dump).
    let Some((w, text)) = signal_mid_sync("sigabrt_big", true, "ABRT", false) else {
        return;
    };
    assert!(text.contains("Terminating after this sync"), "{text}");
    assert_eq!(
        local_messages(&w.maildir().join("INBOX")).len(),
        2000,
        "{text}"
    );
    verify_both_sides(&w);
}

/// SIGINT and SIGHUP do what SIGTERM does: stop at the next safe point, exit 0, and the
/// next run goes on from there.
fn stop_signal_mid_sync(name: &str, sig: &str) {
    let Some((w, text)) = signal_mid_sync(name, true, sig, true) else {
        return;
    };
    assert!(text.contains("stop signal 1 of 3"), "SIG{sig}: {text}");
    assert!(
        text.contains("stopped by a signal at a safe point"),
        "SIG{sig}: {text}"
    );
    assert!(local_messages(&w.maildir().join("INBOX")).len() < 2000);
    verify_both_sides(&w);
}

#[test]
fn sigint_during_a_2000_message_sync_stops_safely_and_resumes() {
    stop_signal_mid_sync("sigint_big", "INT");
}

#[test]
fn sighup_during_a_2000_message_sync_stops_safely_and_resumes() {
    stop_signal_mid_sync("sighup_big", "HUP");
}

#[test]
fn three_sigints_during_a_2000_message_sync_exit_at_once_and_the_next_run_converges() {
    let Some(w) = big_world("sigint3_big") else {
        return;
    };
    // Through a proxy that can freeze the connection: once frozen, the sync cannot reach
    // a safe point, so only the third signal can end the process.
    let proxy = Proxy::start(w.server.imap_port());
    connect_through(&w, proxy.port);
    let err = w.dir.path().join("stderr");
    let mut child = spawn(&w, &["-o"], &err);
    wait_mid_sync(&w, &mut child);
    proxy.set(PROXY_BLACKHOLE);
    // What the server had already sent may still carry the sync through a safe point or
    // two; once nothing more arrives, the sync waits on a server that never answers, so
    // the first stop signals cannot be honoured at a safe point.
    let inbox = w.maildir().join("INBOX");
    let mut copied = local_messages(&inbox).len();
    within_minutes("the sync stalls behind the frozen proxy", || {
        std::thread::sleep(Duration::from_secs(3));
        let now = local_messages(&inbox).len();
        std::mem::replace(&mut copied, now) == now
    });
    let stderr = || std::fs::read_to_string(&err).unwrap();
    for n in 1..=2 {
        signal(&child, "INT");
        // One at a time: signals sent together may be merged into one delivery.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stderr().contains(&format!("stop signal {n} of 3")) {
            assert!(
                Instant::now() < deadline,
                "stop signal {n} never taken; exited: {:?}\n{}",
                child.try_wait().unwrap(),
                stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(child.try_wait().unwrap().is_none(), "{}", stderr());
    signal(&child, "INT");
    let status = wait_exit(&mut child);
    let text = stderr();
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(
        text.contains("third stop signal: exiting at once"),
        "{text}"
    );
    assert!(
        !text.contains("stopped by a signal at a safe point"),
        "{text}"
    );
    assert!(local_messages(&inbox).len() < 2000);
    proxy.set(PROXY_FORWARD);
    verify_both_sides(&w);
}
