//! Unattended operation: hooks, autorefresh, and signals.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Replaces `from` with `to` in the world's config file.
fn edit_config(w: &World, from: &str, to: &str) {
    let text = std::fs::read_to_string(w.rc()).unwrap().replace(from, to);
    std::fs::write(w.rc(), text).unwrap();
}

/// Adds `lines` to the account section of the config [`World::write_config`] wrote.
pub(crate) fn add_to_account(w: &World, lines: &str) {
    edit_config(
        w,
        "remoterepository = Remote\n",
        &format!("remoterepository = Remote\n{lines}\n"),
    );
}

/// Adds `lines` to the `[general]` section of the world's config.
pub(crate) fn add_to_general(w: &World, lines: &str) {
    edit_config(w, "[general]\n", &format!("[general]\n{lines}\n"));
}

/// Points the remote repository of the world's config at `port` (a proxy) instead of the
/// server.
pub(crate) fn connect_through(w: &World, port: u16) {
    edit_config(
        w,
        &format!("remoteport = {}\n", w.server.imap_port()),
        &format!("remoteport = {port}\n"),
    );
}

/// Undoes [`connect_through`]: the config points at the test server again.
pub(crate) fn connect_directly(w: &World, port: u16) {
    edit_config(
        w,
        &format!("remoteport = {port}\n"),
        &format!("remoteport = {}\n", w.server.imap_port()),
    );
}

/// Polls a condition for up to a minute (a bound against hangs, not a speed assertion).
pub(crate) fn eventually(what: &str, f: impl FnMut() -> bool) {
    eventually_within(what, Duration::from_secs(60), f);
}

/// Polls a condition for up to `limit` (a bound against hangs, not a speed assertion).
pub(crate) fn eventually_within(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn spawn_daemon(w: &World) -> Child {
    w.command()
        .args(["-u", "basic"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub(crate) fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig}");
}

/// Sends SIGUSR1 again and again until `done` (a signal while the previous sync is still
/// running brings no new sync), within [`eventually`]'s guard.
pub(crate) fn resync_until(child: &Child, what: &str, mut done: impl FnMut() -> bool) {
    eventually(what, || {
        signal(child, "USR1");
        std::thread::sleep(Duration::from_millis(300));
        done()
    });
}

/// Sends `sig`, waits for the exit, and asserts it succeeded; returns the run's output,
/// read from the file `log` its stderr went to.
pub(crate) fn exits_ok_after(child: &mut Child, sig: &str, log: &std::path::Path) -> String {
    signal(child, sig);
    let status = wait_exit(child);
    let text = std::fs::read_to_string(log).unwrap();
    assert!(status.success(), "SIG{sig}: {status}\n{text}");
    text
}

pub(crate) fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit after the signal");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn hooks_run_around_the_sync_and_a_failing_hook_does_not_stop_it() {
    let Some(w) = World::new("hooks") else { return };
    w.put("INBOX", "a");
    w.write_config("", "");
    let pre = w.dir.path().join("pre");
    let post = w.dir.path().join("post");
    add_to_account(
        &w,
        &format!(
            "presynchook = echo ran > {} ; exit 3\npostsynchook = echo $OFFLINEIMAPSYNCMODE > {}",
            pre.display(),
            post.display()
        ),
    );
    let out = w.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("presynchook") && err.contains("failed"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&pre).unwrap().trim(), "ran");
    assert_eq!(std::fs::read_to_string(&post).unwrap().trim(), "full");
    assert_eq!(local_messages(&w.maildir().join("INBOX")).len(), 1);
}

#[test]
fn autorefresh_syncs_again_on_sigusr1_and_stops_on_sigterm() {
    let Some(w) = World::new("autorefresh_signals") else {
        return;
    };
    w.put("INBOX", "first");
    w.write_config("", "");
    // Ten minutes: only SIGUSR1 can make the second sync happen within the test.
    add_to_account(&w, "autorefresh = 10");
    let mut child = spawn_daemon(&w);
    let inbox = w.maildir().join("INBOX");
    eventually("first sync", || local_messages(&inbox).len() == 1);
    w.put("INBOX", "second");
    // The first sync may still be finishing: repeat SIGUSR1 until the second sync shows.
    resync_until(&child, "sync after SIGUSR1", || {
        local_messages(&inbox).len() == 2
    });
    signal(&child, "TERM");
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status}");
}

/// `skipsleep = yes` in the account: the first autorefresh sleep is skipped, so a second
/// sync follows the first at once, and then the period holds (OfflineIMAP clears the
/// option once it has used it).
#[test]
fn skipsleep_syncs_twice_then_sleeps() {
    let Some(w) = World::new("skipsleep") else {
        return;
    };
    w.put("INBOX", "x");
    w.write_config("", "");
    let log = w.dir.path().join("syncs.log");
    add_to_account(
        &w,
        &format!(
            "autorefresh = 10\nskipsleep = yes\npostsynchook = echo synced >> {}",
            log.display()
        ),
    );
    let mut child = spawn_daemon(&w);
    let syncs = || {
        std::fs::read_to_string(&log)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    eventually("two syncs", || syncs() >= 2);
    // Ten minutes to the next: no third sync meanwhile.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(syncs(), 2);
    signal(&child, "TERM");
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status}");
}

#[test]
fn sigusr2_leaves_autorefresh_after_the_current_sync() {
    let Some(w) = World::new("sigusr2") else {
        return;
    };
    w.put("INBOX", "x");
    w.write_config("", "");
    add_to_account(&w, "autorefresh = 10");
    let mut child = spawn_daemon(&w);
    let inbox = w.maildir().join("INBOX");
    eventually("first sync", || local_messages(&inbox).len() == 1);
    signal(&child, "USR2");
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status}");
}

/// SIGTERM in the middle of a sync stops it at a safe point; whenever it lands, the next
/// run completes the sync with nothing lost or duplicated.
#[test]
fn sigterm_mid_sync_then_resume_converges() {
    let Some(w) = World::new("sigterm_mid_sync") else {
        return;
    };
    for i in 0..150 {
        w.put("INBOX", &format!("m{i:03}"));
    }
    w.write_config("", "");
    let mut child = w.command().args(["-o", "-u", "quiet"]).spawn().unwrap();
    let inbox = w.maildir().join("INBOX");
    eventually("sync started", || {
        !local_messages(&inbox).is_empty() || child.try_wait().unwrap().is_some()
    });
    signal(&child, "TERM");
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status}");
    w.sync_ok();
    let subjects: Vec<_> = local_messages(&inbox)
        .into_iter()
        .map(|m| m.subject)
        .collect();
    let expected: Vec<_> = (0..150).map(|i| format!("m{i:03}")).collect();
    assert_eq!(subjects, expected);
    assert_eq!(w.server_messages("INBOX").len(), 150);
}

/// A connection that goes silent (suspend, dead NAT) is noticed within socktimeout, the
/// error is reported, the daemon keeps running, and the next sync connects again.
#[test]
fn dead_connection_is_noticed_and_the_next_sync_reconnects() {
    let Some(w) = World::new("dead_connection") else {
        return;
    };
    w.put("INBOX", "before");
    let proxy = Proxy::start(w.server.imap_port());
    w.write_config("", "");
    connect_through(&w, proxy.port);
    add_to_general(&w, "socktimeout = 2");
    add_to_account(&w, "autorefresh = 10");
    let mut child = spawn_daemon(&w);
    let inbox = w.maildir().join("INBOX");
    eventually("first sync", || local_messages(&inbox).len() == 1);
    proxy.set(PROXY_BLACKHOLE);
    w.put("INBOX", "after");
    signal(&child, "USR1");
    // The blackholed sync must fail by itself (socktimeout), not hang: give it time to.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon died on a dead connection"
    );
    assert_eq!(local_messages(&inbox).len(), 1);
    proxy.set(PROXY_FORWARD);
    eventually("sync after the network came back", || {
        signal(&child, "USR1");
        std::thread::sleep(Duration::from_millis(500));
        local_messages(&inbox).len() == 2
    });
    signal(&child, "TERM");
    let status = wait_exit(&mut child);
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("timed out"), "no timeout reported: {err}");
    // One sync of the run failed, so the exit status says so.
    assert_eq!(status.code(), Some(1), "{status}");
}

/// idlefolders: between autorefresh syncs, new mail in a watched folder is synced at once
/// (here the refresh period is ten minutes, so only IDLE can bring it), with
/// OFFLINEIMAPSYNCMODE=idle for the hooks.
#[test]
fn idle_folder_brings_new_mail_without_waiting_for_autorefresh() {
    let Some(w) = World::new("idle_push") else {
        return;
    };
    w.put("INBOX", "first");
    w.write_config("idlefolders = ['INBOX']", "");
    let modes = w.dir.path().join("modes");
    add_to_account(
        &w,
        &format!(
            "autorefresh = 10\npostsynchook = echo $OFFLINEIMAPSYNCMODE >> {}",
            modes.display()
        ),
    );
    let mut child = spawn_daemon(&w);
    let inbox = w.maildir().join("INBOX");
    eventually("first sync", || local_messages(&inbox).len() == 1);
    // Let the watcher reach IDLE (a bounded wait: the assertion below polls anyway).
    std::thread::sleep(Duration::from_millis(500));
    w.put("INBOX", "pushed");
    eventually("IDLE push", || local_messages(&inbox).len() == 2);
    signal(&child, "TERM");
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status}");
    let modes = std::fs::read_to_string(&modes).unwrap();
    assert!(modes.lines().any(|l| l == "idle"), "{modes}");
}

/// newmail_hook: the remote's Python callable runs after new mail was copied from INBOX,
/// and not after a run that brought none.
#[test]
fn newmail_hook_runs_after_new_inbox_mail_only() {
    let Some(w) = World::new("newmail_hook") else {
        return;
    };
    w.put("INBOX", "a");
    let marks = w.dir.path().join("newmail");
    let py = w.dir.path().join("hooks.py");
    std::fs::write(
        &py,
        format!(
            "def notify():\n    open({:?}, 'a').write('new\\n')\n",
            marks.display().to_string()
        ),
    )
    .unwrap();
    w.write_config("newmail_hook = notify", "");
    add_to_general(&w, &format!("pythonfile = {}", py.display()));
    w.sync_ok();
    assert_eq!(std::fs::read_to_string(&marks).unwrap(), "new\n");
    w.sync_ok();
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap(),
        "new\n",
        "called without new mail"
    );
    w.put("INBOX", "b");
    w.sync_ok();
    assert_eq!(std::fs::read_to_string(&marks).unwrap(), "new\nnew\n");
}
