//! `holdconnectionopen` and `keepalive`: what happens to the IMAP connections between two
//! autorefresh syncs, seen from the server's log and the `-d imap` trace; and idlefolders
//! watched on one NOTIFY connection.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::common::*;
use crate::long_running::{add_to_account, eventually, exits_ok_after, resync_until};

fn logins(w: &World) -> usize {
    w.server.logs().matches("Login: user=<alice>").count()
}

fn logouts(w: &World) -> usize {
    w.server.logs().matches("Logged out").count()
}

/// The daemon with `-d imap`, its stderr (the protocol trace) going to `trace`.
fn spawn_traced(w: &World) -> (Child, PathBuf) {
    let trace = w.dir.path().join("trace");
    let child = w
        .command()
        .args(["-u", "basic", "-d", "imap"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&trace).unwrap())
        .spawn()
        .unwrap();
    (child, trace)
}

fn stop(mut child: Child, trace: &Path) -> String {
    exits_ok_after(&mut child, "TERM", trace)
}

/// Syncs once more through SIGUSR1 and waits until `n` messages are local.
fn sync_now_until(child: &Child, w: &World, n: usize) {
    let inbox = w.maildir().join("INBOX");
    resync_until(child, "sync after SIGUSR1", || {
        local_messages(&inbox).len() == n
    });
}

/// One message on the server, `remote` added to the remote repository, the daemon
/// (autorefresh every ten minutes) started with `-d imap`, and its first sync done.
fn daemon_after_first_sync(test: &str, remote: &str) -> Option<(World, Child, PathBuf)> {
    let w = World::new(test)?;
    w.put("INBOX", "a");
    w.write_config(remote, "");
    add_to_account(&w, "autorefresh = 10");
    let (child, trace) = spawn_traced(&w);
    let inbox = w.maildir().join("INBOX");
    eventually("first sync", || local_messages(&inbox).len() == 1);
    Some((w, child, trace))
}

/// [`daemon_after_first_sync`] with `holdconnectionopen`, once the server has logged the
/// login.
fn holding_daemon(test: &str) -> Option<(World, Child, PathBuf)> {
    let (w, child, trace) = daemon_after_first_sync(test, "holdconnectionopen = yes")?;
    eventually("the server logged the login", || logins(&w) >= 1);
    Some((w, child, trace))
}

#[test]
fn held_connection_is_reused_by_the_next_autorefresh_sync() {
    let Some((w, child, trace)) = holding_daemon("held_reused") else {
        return;
    };
    let (before_in, before_out) = (logins(&w), logouts(&w));
    w.put("INBOX", "b");
    sync_now_until(&child, &w, 2);
    // Two more syncs, to be sure none opened a connection.
    w.put("INBOX", "c");
    sync_now_until(&child, &w, 3);
    assert_eq!(logins(&w), before_in, "{}", w.server.logs());
    assert_eq!(logouts(&w), before_out, "{}", w.server.logs());
    let text = stop(child, &trace);
    // The reused connections keep their CONDSTORE/QRESYNC mode: later syncs ask only for
    // what changed.
    assert!(text.contains("CHANGEDSINCE"), "{text}");
    // Stopping logs the held connections out.
    eventually("held connections logged out at exit", || {
        logouts(&w) >= before_in
    });
}

#[test]
fn without_holdconnectionopen_connections_are_logged_out_between_syncs() {
    let Some((w, child, trace)) = daemon_after_first_sync("held_not", "") else {
        return;
    };
    // While the daemon waits, every connection it opened is logged out.
    eventually("logged out after the sync", || {
        let n = logins(&w);
        n >= 1 && logouts(&w) == n
    });
    let first = logins(&w);
    w.put("INBOX", "b");
    sync_now_until(&child, &w, 2);
    eventually("the next sync logs in again", || logins(&w) > first);
    let text = stop(child, &trace);
    assert!(!text.contains("NOOP"), "{text}");
}

#[test]
fn keepalive_sends_noops_on_held_connections_while_waiting() {
    let Some((w, child, trace)) = daemon_after_first_sync("keepalive", "keepalive = 1") else {
        return;
    };
    eventually("two keepalive NOOPs", || {
        std::fs::read_to_string(&trace)
            .unwrap()
            .lines()
            .filter(|l| l.contains("NOOP") && l.contains("C:"))
            .count()
            >= 2
    });
    let logins_while_waiting = logins(&w);
    assert_eq!(logouts(&w), 0, "{}", w.server.logs());
    // The kept-alive connection serves the next sync.
    w.put("INBOX", "b");
    sync_now_until(&child, &w, 2);
    assert_eq!(logins(&w), logins_while_waiting, "{}", w.server.logs());
    stop(child, &trace);
}

#[test]
fn a_held_connection_killed_meanwhile_is_replaced_at_the_next_sync() {
    let Some((w, child, trace)) = holding_daemon("held_killed") else {
        return;
    };
    let first = logins(&w);
    // The server drops every connection of the user (as a restart or an admin would).
    w.doveadm(&["kick", USER]);
    eventually("the server closed the held connection", || {
        w.server.logs().contains("Disconnected")
    });
    w.put("INBOX", "b");
    sync_now_until(&child, &w, 2);
    assert!(
        logins(&w) > first,
        "no new connection:\n{}",
        w.server.logs()
    );
    let text = stop(child, &trace);
    assert!(!text.contains("ERROR"), "{text}");
}

/// Beyond OfflineIMAP: Dovecot offers NOTIFY (RFC 5465), so all the idlefolders are
/// watched on one connection (no per-folder EXAMINE + IDLE), and new mail or a flag
/// changed on the server in any of them is synced without waiting for autorefresh.
#[test]
fn idlefolders_are_watched_on_one_notify_connection() {
    let Some(w) = World::new("notify") else {
        return;
    };
    w.server.create_mailbox(USER, "Other").unwrap();
    w.put("INBOX", "first");
    w.write_config("idlefolders = ['INBOX', 'Other']", "");
    add_to_account(&w, "autorefresh = 10");
    let (child, trace) = spawn_traced(&w);
    let (inbox, other) = (w.maildir().join("INBOX"), w.maildir().join("Other"));
    eventually("first sync", || local_messages(&inbox).len() == 1);
    let trace_text = || std::fs::read_to_string(&trace).unwrap();
    // (The trace escapes quotes.)
    let notify_set = "NOTIFY SET (mailboxes (";
    for _ in 0..200 {
        if trace_text().contains(notify_set) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(trace_text().contains(notify_set), "{}", trace_text());
    // Let the watcher reach IDLE (the assertions below poll anyway).
    std::thread::sleep(Duration::from_millis(500));
    w.put("Other", "pushed");
    eventually("NOTIFY push in Other", || local_messages(&other).len() == 1);
    w.put("INBOX", "pushed too");
    eventually("NOTIFY push in INBOX", || local_messages(&inbox).len() == 2);
    w.server
        .add_flags(USER, "Other", 1, &["\\Flagged"])
        .unwrap();
    eventually("flag change pushed", || {
        local_messages(&other).iter().all(|m| m.flags.contains('F'))
    });
    let text = stop(child, &trace);
    assert!(
        !text.contains("EXAMINE"),
        "per-folder IDLE watchers were started:\n{text}"
    );
}

/// A server without NOTIFY (Courier): each idlefolder gets its own EXAMINE + IDLE
/// connection, as in OfflineIMAP.
#[test]
fn without_notify_each_idlefolder_is_watched_with_idle() {
    let Some(c) = oi_testkit::Courier::start_or_skip("idle_without_notify") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (mail, rc) = crate::servers::write_config_in(
        dir.path(),
        c.imap_port(),
        "autorefresh = 10\n",
        "idlefolders = ['INBOX']\n",
    );
    c.put_message("alice", "INBOX", &[], message("first").as_bytes())
        .unwrap();
    let trace = dir.path().join("trace");
    let child = offlineimap(dir.path(), &rc)
        .args(["-u", "basic", "-d", "imap"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&trace).unwrap())
        .spawn()
        .unwrap();
    let inbox = mail.join("INBOX");
    eventually("first sync", || local_messages(&inbox).len() == 1);
    let trace_text = || std::fs::read_to_string(&trace).unwrap();
    eventually("the IDLE watcher", || {
        let t = trace_text();
        t.contains("EXAMINE") && t.contains("IDLE\\r\\n")
    });
    // (Courier without FAM polls the Maildir once a minute during IDLE, so its push is
    // not waited for here; the IDLE watcher's push is tested against Dovecot in
    // crates/oi-imap/tests/watch.rs.)
    let text = stop(child, &trace);
    assert!(!text.contains("NOTIFY SET"), "{text}");
}

/// IMAP ↔ IMAP: the local IMAP repository holds its connections too.
#[test]
fn imap_to_imap_holds_the_connections_of_both_sides() {
    let Some(w) = World::new("held_imap_imap") else {
        return;
    };
    w.put("INBOX", "a");
    w.write_imap_to_imap_config(
        "autorefresh = 10\n",
        "holdconnectionopen = yes\n",
        "holdconnectionopen = yes\n",
    );
    let bob_count = || w.server.messages("bob", "INBOX").unwrap().len();
    let bob_logins = || w.server.logs().matches("Login: user=<bob>").count();
    let (child, trace) = spawn_traced(&w);
    eventually("first sync", || bob_count() == 1);
    eventually("logins logged", || logins(&w) >= 1 && bob_logins() >= 1);
    let (alice_before, bob_before) = (logins(&w), bob_logins());
    w.put("INBOX", "b");
    resync_until(&child, "sync after SIGUSR1", || bob_count() == 2);
    assert_eq!(logins(&w), alice_before, "{}", w.server.logs());
    assert_eq!(bob_logins(), bob_before, "{}", w.server.logs());
    stop(child, &trace);
}
