//! `startdate` and `copy_ignore_eval` on an IMAP *local* repository (IMAP ↔ IMAP): two
//! users of one Dovecot, bob the local side and alice the remote one. Their UIDs are the
//! local server's own, not the remote UIDs the mapping gives them.

use crate::common::*;
use crate::compat::{offlineimap8, run_offlineimap8};

const BOB: &str = "bob";
const BOB_PASS: &str = "bobpass";
const OLD: &str = "01-Jan-2019 10:00:00 +0000";
const NEWER: &str = "05-Mar-2022 10:00:00 +0000";

/// APPENDs a message to bob's INBOX with an INTERNALDATE; returns its UID.
fn append_dated_bob(w: &World, subject: &str, date: &str) -> u32 {
    append_dated_as(w, (BOB, BOB_PASS), "INBOX", subject, date)
}

/// Bob (local, IMAP) ↔ alice (remote); `local_extra` goes into bob's section.
fn write_config(w: &World, local_extra: &str) {
    w.write_imap_to_imap_config("", &format!("{local_extra}\n"), "");
}

/// A user's INBOX: UID → Subject.
fn inbox(w: &World, user: &str) -> Vec<(u32, String)> {
    w.server
        .messages(user, "INBOX")
        .unwrap()
        .into_iter()
        .map(|m| (m.uid, subject_of(&m.body)))
        .collect()
}

fn subjects(w: &World, user: &str) -> Vec<String> {
    let mut v: Vec<String> = inbox(w, user).into_iter().map(|(_, s)| s).collect();
    v.sort();
    v
}

fn start_uid(w: &World) -> Option<String> {
    std::fs::read_to_string(w.metadata().join("Repository-Bob/StartUID/INBOX")).ok()
}

/// Bob's INBOX with two old messages before two since the day, so that its UIDs differ
/// from the ones alice gives the copies. Returns the local UID of the first new one.
fn old_and_new_on_bob(w: &World) -> u32 {
    append_dated_bob(w, "old 1", OLD);
    append_dated_bob(w, "old 2", OLD);
    let after = append_dated_bob(w, "after", NEWER);
    w.server
        .put_message(BOB, "INBOX", message("recent").as_bytes())
        .unwrap();
    after
}

/// startdate on the local IMAP repository: the first sync copies bob's messages since the
/// day to the empty remote and saves bob's own UID of the first one in
/// Repository-Bob/StartUID/INBOX (OfflineIMAP's file); later syncs read bob from that UID
/// on: the older messages stay out, a new one (even old-dated) is uploaded, and the
/// remote's new mail comes down.
#[test]
fn startdate_on_local_imap_starts_at_the_local_uid() {
    let Some(w) = World::new("imaplocal_startdate") else {
        return;
    };
    let after = old_and_new_on_bob(&w);
    assert_eq!(after, 3);
    write_config(&w, "startdate = 2021-01-01");
    // A dry run saves nothing.
    let out = w.run(&["--dry-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(start_uid(&w), None);
    assert!(inbox(&w, USER).is_empty());
    w.sync_ok();
    assert_eq!(subjects(&w, USER), ["after", "recent"]);
    assert_eq!(start_uid(&w).as_deref(), Some("3\n"));
    let mapping =
        std::fs::read_to_string(w.metadata().join("Repository-Bob/UIDMapping/INBOX")).unwrap();
    assert_eq!(mapping.lines().count(), 2, "{mapping}");
    assert_nothing_done(&w.sync_ok());

    append_dated_bob(&w, "late but old", OLD);
    w.put("INBOX", "from alice");
    w.sync_ok();
    assert_eq!(
        subjects(&w, USER),
        ["after", "from alice", "late but old", "recent"]
    );
    assert_eq!(
        subjects(&w, BOB),
        [
            "after",
            "from alice",
            "late but old",
            "old 1",
            "old 2",
            "recent"
        ]
    );
    assert_eq!(start_uid(&w).as_deref(), Some("3\n"));
    assert_nothing_done(&w.sync_ok());
}

/// The remote must be empty when a folder is first synced with startdate on the local
/// IMAP repository: the folder fails with OfflineIMAP's explanation, nothing is saved.
#[test]
fn startdate_on_local_imap_needs_an_empty_remote() {
    let Some(w) = World::new("imaplocal_startdate_nonempty") else {
        return;
    };
    append_dated_bob(&w, "after", NEWER);
    w.put("INBOX", "already there");
    write_config(&w, "startdate = 2021-01-01");
    let out = w.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "to use startdate on the local repository, the remote repository must be empty"
        ),
        "{err}"
    );
    assert_eq!(start_uid(&w), None);
    assert_eq!(subjects(&w, USER), ["already there"]);
    assert_eq!(subjects(&w, BOB), ["after"]);
}

/// copy_ignore_eval on the local IMAP repository lists bob's own UIDs: those are never
/// uploaded (and not deleted either); the others are, and so is the remote's mail.
#[test]
fn copy_ignore_eval_on_local_imap_keeps_listed_local_uids() {
    let Some(w) = World::new("imaplocal_copy_ignore") else {
        return;
    };
    for s in ["one", "two", "three"] {
        w.server
            .put_message(BOB, "INBOX", message(s).as_bytes())
            .unwrap();
    }
    w.put("INBOX", "from alice");
    write_config(&w, "copy_ignore_eval = lambda f: {'INBOX': [2]}.get(f)");
    let err = w.sync_ok();
    assert!(
        err.contains("IGNORED: Copy message UID 2 of local folder INBOX"),
        "{err}"
    );
    assert_eq!(subjects(&w, USER), ["from alice", "one", "three"]);
    assert_eq!(subjects(&w, BOB), ["from alice", "one", "three", "two"]);
    assert_nothing_done(&w.sync_ok());
    assert_eq!(subjects(&w, USER), ["from alice", "one", "three"]);
    assert_eq!(subjects(&w, BOB), ["from alice", "one", "three", "two"]);
}

/// OfflineIMAP 8 starts the startdate sync (its StartUID and UIDMapping), we continue it
/// with nothing copied again, then sync new mail both ways from the saved local UID on.
#[test]
fn startdate_on_local_imap_continues_offlineimap8() {
    let Some(bin) = offlineimap8() else { return };
    let Some(w) = World::new("imaplocal_startdate_oi8") else {
        return;
    };
    old_and_new_on_bob(&w);
    write_config(&w, "startdate = 2021-01-01");
    run_offlineimap8(&bin, &w);
    assert_eq!(subjects(&w, USER), ["after", "recent"]);
    assert_eq!(start_uid(&w).as_deref(), Some("3\n"));
    assert_nothing_done(&w.sync_ok());
    append_dated_bob(&w, "late but old", OLD);
    w.sync_ok();
    assert_eq!(subjects(&w, USER), ["after", "late but old", "recent"]);
    assert_eq!(subjects(&w, BOB).len(), 5);
    // And OfflineIMAP 8 continues ours: nothing more to copy either way.
    run_offlineimap8(&bin, &w);
    assert_eq!(subjects(&w, USER), ["after", "late but old", "recent"]);
    assert_eq!(subjects(&w, BOB).len(), 5);
}

/// What OfflineIMAP 8 does with copy_ignore_eval on an IMAP local repository: it compares
/// the local UIDs listed with its mapped copy list (remote UIDs, and negative placeholders
/// for unsynced local messages), so the listed local message is uploaded anyway. We do not
/// follow it there (see `copy_ignore_eval_on_local_imap_keeps_listed_local_uids`).
#[test]
fn offlineimap8_uploads_local_uids_listed_by_copy_ignore_eval() {
    let Some(bin) = offlineimap8() else { return };
    let Some(w) = World::new("imaplocal_copy_ignore_oi8") else {
        return;
    };
    for s in ["one", "two", "three"] {
        w.server
            .put_message(BOB, "INBOX", message(s).as_bytes())
            .unwrap();
    }
    write_config(&w, "copy_ignore_eval = lambda f: {'INBOX': [2]}.get(f)");
    run_offlineimap8(&bin, &w);
    eprintln!("alice after OfflineIMAP 8: {:?}", inbox(&w, USER));
    assert_eq!(subjects(&w, USER), ["one", "three", "two"]);
}

/// IMAP ↔ IMAP with the default `maxconnections = 1`: one connection to each server for a
/// sync of several folders. (A Maildir local side is read a folder ahead; an IMAP one must
/// not be, or it would open a second connection.)
#[test]
fn one_connection_to_each_server_for_several_folders() {
    let Some(w) = World::new("imaplocal_connections") else {
        return;
    };
    for f in ["Alpha", "Beta", "Gamma", "Delta"] {
        w.server.create_mailbox(USER, f).unwrap();
        w.put(f, &format!("{f} mail"));
    }
    write_config(&w, "");
    let logins = |user: &str| {
        w.server
            .logs()
            .matches(&format!("Login: user=<{user}>"))
            .count()
    };
    let (bob0, alice0) = (logins(BOB), logins(USER));
    w.sync_ok();
    assert_eq!(logins(BOB) - bob0, 1, "{}", w.server.logs());
    assert_eq!(logins(USER) - alice0, 1, "{}", w.server.logs());
    let mut boxes = w.server.mailboxes(BOB).unwrap();
    boxes.sort();
    assert_eq!(boxes, ["Alpha", "Beta", "Delta", "Gamma", "INBOX"]);
}
