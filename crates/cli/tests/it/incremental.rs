//! Incremental change detection with CONDSTORE/QRESYNC (RFC 7162) against Dovecot: a run
//! asks only for what changed since the listing kept from the last run, and ends exactly
//! where a full scan would.

use std::collections::BTreeMap;
use std::process::Output;

use oi_testkit::{Fault, FaultProxy, Times, Trigger};

use crate::common::*;
use crate::compat::offlineimap8;
use crate::long_running::connect_through;

const FULL_LISTING: &str = "UID FETCH 1:* (UID FLAGS RFC822.SIZE)\\r\\n";

/// Whether the trace shows the changes of `folder` asked for together with its SELECT (one
/// round trip): the `CHANGEDSINCE` fetch goes out before the server completes the SELECT.
fn changes_sent_with_select(trace: &str, folder: &str) -> bool {
    sent_with_select(trace, folder, "CHANGEDSINCE")
}

/// Whether the trace shows a command containing `what` sent after `folder`'s SELECT and
/// before the server completed it.
fn sent_with_select(trace: &str, folder: &str, what: &str) -> bool {
    let lines: Vec<&str> = trace.lines().collect();
    let Some(select) = lines
        .iter()
        .position(|l| l.contains("C: ") && l.contains(&format!(" SELECT \\\"{folder}\\\"")))
    else {
        return false;
    };
    let Some(tag) = lines[select]
        .split("C: ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
    else {
        return false;
    };
    let done = lines
        .iter()
        .position(|l| l.contains(&format!("S: {tag} OK")));
    let changes = lines[select..]
        .iter()
        .position(|l| l.contains("C: ") && l.contains(what))
        .map(|i| i + select);
    matches!((changes, done), (Some(c), Some(d)) if c < d)
}

/// How many times the trace shows a folder's changes asked for (`CHANGEDSINCE` sent).
fn changes_asked(trace: &str) -> usize {
    trace
        .lines()
        .filter(|l| l.contains("C: ") && l.contains("CHANGEDSINCE"))
        .count()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Runs with the IMAP trace; asserts success; returns the trace.
fn traced(w: &World, no_condstore: bool) -> String {
    let mut cmd = w.command();
    cmd.args(["-o", "-u", "basic", "-d", "imap"]);
    if no_condstore {
        cmd.env("OFFLINEIMAP_TEST_NO_CONDSTORE", "1");
    }
    let out = cmd.output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "sync failed:\n{err}");
    err
}

/// Subject → sorted flag letters, from both sides, which must agree.
fn converged(w: &World, folder: &str) -> BTreeMap<String, String> {
    let letters = |flags: &[String]| {
        let mut v: Vec<char> = flags
            .iter()
            .filter_map(|f| match f.as_str() {
                "\\Seen" => Some('S'),
                "\\Flagged" => Some('F'),
                "\\Answered" => Some('R'),
                "\\Deleted" => Some('T'),
                "\\Draft" => Some('D'),
                _ => None,
            })
            .collect();
        v.sort_unstable();
        v.into_iter().collect::<String>()
    };
    let server: BTreeMap<String, String> = w
        .server_messages(folder)
        .into_values()
        .map(|(s, f)| (s, letters(&f)))
        .collect();
    let local: BTreeMap<String, String> = local_messages(&w.maildir().join(folder))
        .into_iter()
        .map(|m| (m.subject, m.flags))
        .collect();
    assert_eq!(server, local, "{folder}: the sides differ");
    let count = local_messages(&w.maildir().join(folder)).len();
    assert_eq!(
        count,
        server.len(),
        "{folder}: duplicates on the local side"
    );
    server
}

#[test]
fn changes_are_asked_for_since_the_last_run_and_converge() {
    let Some(w) = World::new("incremental_changes") else {
        return;
    };
    w.write_config("", "");
    let uids: Vec<u32> = (0..20)
        .map(|i| w.put("INBOX", &format!("m{i:02}")))
        .collect();
    w.server.create_mailbox(USER, "Other").unwrap();
    w.put("Other", "o1");
    let first = traced(&w, false);
    assert!(
        first.contains("ENABLE QRESYNC"),
        "QRESYNC not enabled:\n{first}"
    );
    // ENABLE and the folder LIST go out together: one round trip.
    let lines: Vec<&str> = first.lines().collect();
    let enable = lines
        .iter()
        .position(|l| l.contains("C: ") && l.contains(" ENABLE QRESYNC"))
        .unwrap();
    let tag = lines[enable]
        .split("C: ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .unwrap();
    let enabled = lines
        .iter()
        .position(|l| l.contains(&format!("S: {tag} OK")))
        .unwrap();
    let list = lines
        .iter()
        .position(|l| l.contains("C: ") && l.contains(" LIST "))
        .unwrap();
    assert!(list < enabled, "LIST waited for ENABLE:\n{first}");
    assert!(first.contains(FULL_LISTING), "first run lists in full");
    converged(&w, "INBOX");

    // Nothing changed: not a single message is listed.
    let noop = traced(&w, false);
    assert!(
        !noop.contains(FULL_LISTING),
        "no-op run listed in full:\n{noop}"
    );
    assert!(
        !noop.contains("CHANGEDSINCE"),
        "no-op run asked for changes:\n{noop}"
    );

    // Changes by another client on the server, and a local one.
    w.server
        .add_flags(USER, "INBOX", uids[3], &["\\Flagged"])
        .unwrap();
    w.server
        .add_flags(USER, "INBOX", uids[4], &["\\Seen"])
        .unwrap();
    w.expunge("INBOX", uids[5]);
    w.expunge("INBOX", uids[6]);
    let new = w.put("INBOX", "new on server");
    let inbox = w.maildir().join("INBOX");
    let m7 = local_messages(&inbox)
        .into_iter()
        .find(|m| m.subject == "m07")
        .unwrap();
    set_local_flags(&m7, "RS");
    let changed = traced(&w, false);
    assert!(
        changed.contains("CHANGEDSINCE") && changed.contains("VANISHED"),
        "changes not asked for incrementally:\n{changed}"
    );
    assert!(
        changes_sent_with_select(&changed, "INBOX"),
        "changes not asked for with the SELECT:\n{changed}"
    );
    assert!(
        !changed.contains(FULL_LISTING),
        "listed in full:\n{changed}"
    );
    let state = converged(&w, "INBOX");
    assert_eq!(state["m03"], "F");
    assert_eq!(state["m04"], "S");
    assert_eq!(state["m07"], "RS");
    assert!(!state.contains_key("m05") && !state.contains_key("m06"));
    assert!(state.contains_key("new on server"));
    assert_eq!(state.len(), 19);
    assert!(w.server_messages("INBOX").contains_key(&new));

    // Our own changes of that run come back as changes, and change nothing more.
    let after = traced(&w, false);
    assert!(!after.contains(FULL_LISTING), "listed in full:\n{after}");
    assert_eq!(converged(&w, "INBOX"), state);
    assert!(!after.contains("UID STORE"), "a change repeated:\n{after}");
}

/// The changes of known messages are asked for without their sizes (a server may have to
/// read a message to tell its size, and a mass flag change is thousands); the kept sizes
/// stay, so that `maxsize` still leaves out a large message that was re-flagged. New
/// messages are asked for with theirs.
#[test]
fn changed_flags_come_without_sizes_and_kept_sizes_still_apply() {
    let Some(w) = World::new("incremental_sizes") else {
        return;
    };
    w.put("INBOX", "small");
    let big = format!("{}{}", message("big"), "x".repeat(20_000));
    let big_uid = w.server.put_message(USER, "INBOX", big.as_bytes()).unwrap();
    w.write_config("", "");
    crate::long_running::add_to_account(&w, "maxsize = 10000");
    traced(&w, false);
    let inbox = w.maildir().join("INBOX");
    let subjects = |w: &World| -> Vec<String> {
        let mut v: Vec<String> = local_messages(&w.maildir().join("INBOX"))
            .into_iter()
            .map(|m| m.subject)
            .collect();
        v.sort();
        v
    };
    assert_eq!(subjects(&w), ["small"]);

    w.server
        .add_flags(USER, "INBOX", big_uid, &["\\Flagged"])
        .unwrap();
    let later = w.put("INBOX", "later");
    let changed = traced(&w, false);
    assert!(
        changed.contains(&format!("UID FETCH 1:{big_uid} (UID FLAGS) (CHANGEDSINCE ")),
        "known messages' changes not asked for alone:\n{changed}"
    );
    assert!(
        changed.contains(&format!(
            "UID FETCH {}:* (UID FLAGS RFC822.SIZE)\\r\\n",
            big_uid + 1
        )),
        "new messages not asked for with their sizes:\n{changed}"
    );
    assert!(
        !changed.contains(FULL_LISTING),
        "listed in full:\n{changed}"
    );
    // The re-flagged large message is still left out; the new one came.
    assert_eq!(subjects(&w), ["later", "small"]);
    assert!(w.server_messages("INBOX").contains_key(&later));
    assert!(local_messages(&inbox).iter().all(|m| m.subject != "big"));
    assert_nothing_done(&w.sync_ok());
    assert_eq!(subjects(&w), ["later", "small"]);
}

/// A listing kept by an earlier version, whose token kind is `imap-modseq/1` (its sizes
/// may be incomplete), is listed in full once, and incrementally again after that.
#[test]
fn a_listing_kept_by_version_1_is_listed_in_full_once() {
    let Some(w) = World::new("incremental_token_v1") else {
        return;
    };
    w.write_config("", "");
    w.put("INBOX", "m1");
    traced(&w, false);
    let status = w.metadata().join("Account-Test/LocalStatus-sqlite/INBOX");
    let db = rusqlite::Connection::open(&status).unwrap();
    let changed = db
        .execute(
            "UPDATE offlineimap_rs_listing SET token = \
             replace(token, 'imap-modseq/2 ', 'imap-modseq/1 ')",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1, "one kept remote listing");
    drop(db);
    let once = traced(&w, false);
    assert!(once.contains(FULL_LISTING), "not listed in full:\n{once}");
    let then = traced(&w, false);
    assert!(
        !then.contains(FULL_LISTING),
        "listed in full again:\n{then}"
    );
    assert!(
        !then
            .lines()
            .any(|l| l.contains("C: ") && l.contains(" SELECT ")),
        "not taken from the listing:\n{then}"
    );
    converged(&w, "INBOX");
}

/// The token of a listing kept before it carried the listing's last UID still gives an
/// incremental listing (SELECT first, then the changes); the next run asks for the
/// changes together with the SELECT.
#[test]
fn a_token_without_the_last_uid_is_still_incremental() {
    let Some(w) = World::new("incremental_token_no_last_uid") else {
        return;
    };
    w.write_config("", "");
    let uids: Vec<u32> = (0..5).map(|i| w.put("INBOX", &format!("m{i}"))).collect();
    traced(&w, false);
    let status = w.metadata().join("Account-Test/LocalStatus-sqlite/INBOX");
    let strip = || {
        let db = rusqlite::Connection::open(&status).unwrap();
        let token: String = db
            .query_row(
                "SELECT token FROM offlineimap_rs_listing WHERE side = 'remote'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let fields: Vec<&str> = token.split(' ').collect();
        assert_eq!(fields.len(), 5, "{token}");
        assert_eq!(fields[4], uids[4].to_string(), "{token}");
        let old = fields[..4].join(" ");
        db.execute(
            "UPDATE offlineimap_rs_listing SET token = ?1 WHERE side = 'remote'",
            [&old],
        )
        .unwrap();
    };
    // Unchanged: not even selected, as with a token of the new form.
    strip();
    let unchanged = traced(&w, false);
    assert!(
        !unchanged
            .lines()
            .any(|l| l.contains("C: ") && l.contains(" SELECT ")),
        "selected though unchanged:\n{unchanged}"
    );
    strip();

    w.server
        .add_flags(USER, "INBOX", uids[1], &["\\Flagged"])
        .unwrap();
    let once = traced(&w, false);
    assert!(once.contains("CHANGEDSINCE"), "not incremental:\n{once}");
    assert!(!once.contains(FULL_LISTING), "listed in full:\n{once}");
    assert!(
        !changes_sent_with_select(&once, "INBOX"),
        "asked for changes without knowing the last UID:\n{once}"
    );
    assert_eq!(converged(&w, "INBOX")["m1"], "F");

    w.server
        .add_flags(USER, "INBOX", uids[2], &["\\Seen"])
        .unwrap();
    let new = w.put("INBOX", "m5");
    let then = traced(&w, false);
    assert!(
        changes_sent_with_select(&then, "INBOX"),
        "changes not asked for with the SELECT:\n{then}"
    );
    let state = converged(&w, "INBOX");
    assert_eq!(state["m2"], "S");
    assert!(state.contains_key("m5"));
    assert!(w.server_messages("INBOX").contains_key(&new));
}

/// Records in `folder`'s LocalStatus an upload that a killed run was about to make, of a
/// message gone from both sides since: the next run looks for its copy on the server
/// (which needs the folder selected) before it lists the folder.
fn add_vanished_upload_record(w: &World, folder: &str) {
    let status = w
        .metadata()
        .join(format!("Account-Test/LocalStatus-sqlite/{folder}"));
    let db = rusqlite::Connection::open(&status).unwrap();
    db.execute(
        "CREATE TABLE IF NOT EXISTS offlineimap_rs_pending_upload \
         (marker TEXT PRIMARY KEY, source TEXT NOT NULL)",
        [],
    )
    .unwrap();
    db.execute(
        "INSERT INTO offlineimap_rs_pending_upload VALUES ('1-1', 'key:gone')",
        [],
    )
    .unwrap();
}

/// Changes asked for with the SELECT but not read by the listing, because the connection
/// was needed first (here: looking for the copy of an interrupted upload), are read and
/// dropped, and asked for again: the folder still converges.
#[test]
fn changes_sent_ahead_and_not_wanted_are_read_and_asked_again() {
    let Some(w) = World::new("incremental_ahead_dropped") else {
        return;
    };
    w.write_config("", "");
    let uids: Vec<u32> = (0..4).map(|i| w.put("INBOX", &format!("m{i}"))).collect();
    traced(&w, false);
    w.server
        .add_flags(USER, "INBOX", uids[3], &["\\Answered"])
        .unwrap();
    // An upload record of a killed run whose message is gone from both sides.
    add_vanished_upload_record(&w, "INBOX");
    let run = traced(&w, false);
    assert!(
        changes_sent_with_select(&run, "INBOX"),
        "changes not asked for with the SELECT:\n{run}"
    );
    assert!(run.contains("X-OfflineIMAP"), "no marker search:\n{run}");
    assert_eq!(
        changes_asked(&run),
        2,
        "changes not asked for again:\n{run}"
    );
    assert_eq!(converged(&w, "INBOX")["m3"], "R");
    let again = traced(&w, false);
    assert!(!again.contains("UID STORE"), "{again}");
}

/// The changes sent with the SELECT do not come back: the connection drops at their FETCH
/// (oi-testkit's fault proxy, a mock network with Dovecot behind it), or the FETCH is
/// refused. The folder is selected again and its changes asked for the plain way; after a
/// drop, from the kept listing (not listed in full). Both runs converge.
#[test]
fn changes_sent_ahead_that_do_not_come_are_asked_again() {
    let Some(w) = World::new("incremental_ahead_faults") else {
        return;
    };
    w.write_config("", "");
    let uids: Vec<u32> = (0..4).map(|i| w.put("INBOX", &format!("m{i}"))).collect();
    traced(&w, false);

    w.server
        .add_flags(USER, "INBOX", uids[2], &["\\Flagged"])
        .unwrap();
    let dropped = run_with_changes_dropped(&w);
    assert_eq!(changes_asked(&dropped), 2, "{dropped}");
    assert_eq!(converged(&w, "INBOX")["m2"], "F");

    w.server
        .add_flags(USER, "INBOX", uids[3], &["\\Seen"])
        .unwrap();
    let proxy = FaultProxy::start(
        w.server.imap_port(),
        Trigger::command(&["CHANGEDSINCE"]),
        Fault::No,
        Times::Once,
    )
    .unwrap();
    connect_through_again(&w, proxy.port());
    let refused = traced(&w, false);
    assert_eq!(proxy.fired(), 1, "{refused}");
    assert_eq!(converged(&w, "INBOX")["m3"], "S");
    let quiet = traced(&w, false);
    assert!(!quiet.contains("UID STORE"), "{quiet}");
}

/// Runs once through oi-testkit's fault proxy (a mock network with Dovecot behind it),
/// which drops the connection at the first fetch of changes; asserts that it did, that
/// the run succeeded and listed nothing in full (the kept listings were used); returns
/// the trace.
fn run_with_changes_dropped(w: &World) -> String {
    let proxy = FaultProxy::start(
        w.server.imap_port(),
        Trigger::command(&["CHANGEDSINCE"]),
        Fault::Drop,
        Times::Once,
    )
    .unwrap();
    connect_through(w, proxy.port());
    let run = traced(w, false);
    assert_eq!(proxy.fired(), 1, "{run}");
    assert!(
        !run.contains(FULL_LISTING),
        "listed in full after the drop:\n{run}"
    );
    run
}

/// Creates these mailboxes with `n` messages each (subjects `<name><i>`); their UIDs.
fn mailboxes_with<'a>(w: &World, names: &[&'a str], n: usize) -> BTreeMap<&'a str, Vec<u32>> {
    names
        .iter()
        .map(|&name| {
            w.server.create_mailbox(USER, name).unwrap();
            let uids = (0..n).map(|i| w.put(name, &format!("{name}{i}"))).collect();
            (name, uids)
        })
        .collect()
}

/// Points a config already going through one proxy at another.
fn connect_through_again(w: &World, port: u16) {
    let rc = std::fs::read_to_string(w.rc()).unwrap();
    let text: String = rc
        .lines()
        .map(|l| {
            if l.starts_with("remoteport = ") {
                format!("remoteport = {port}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(w.rc(), text).unwrap();
}

#[test]
fn switching_between_full_scans_and_condstore_stays_correct() {
    let Some(w) = World::new("incremental_switch") else {
        return;
    };
    w.write_config("", "");
    let uids: Vec<u32> = (0..8).map(|i| w.put("INBOX", &format!("s{i}"))).collect();
    traced(&w, false);
    // A run without CONDSTORE (an older binary, another server) changes things and
    // drops the kept listing; CONDSTORE runs must not trust a listing they did not see.
    w.server
        .add_flags(USER, "INBOX", uids[0], &["\\Seen"])
        .unwrap();
    w.expunge("INBOX", uids[1]);
    let full = traced(&w, true);
    assert!(
        full.contains(FULL_LISTING),
        "no full scan without CONDSTORE:\n{full}"
    );
    assert!(!full.contains("ENABLE QRESYNC"));
    converged(&w, "INBOX");
    w.expunge("INBOX", uids[2]);
    w.server
        .add_flags(USER, "INBOX", uids[3], &["\\Answered"])
        .unwrap();
    let back = traced(&w, false);
    assert!(
        back.contains(FULL_LISTING),
        "a listing was trusted after a full-scan run"
    );
    let state = converged(&w, "INBOX");
    assert_eq!(state.len(), 6);
    assert_eq!(state["s3"], "R");
    assert_eq!(state["s0"], "S");
}

#[test]
fn kept_listing_survives_offlineimap8_runs_in_between() {
    let Some(w) = World::new("incremental_interop") else {
        return;
    };
    let Some(oi8) = offlineimap8() else {
        return;
    };
    w.write_config("", "");
    let uids: Vec<u32> = (0..6).map(|i| w.put("INBOX", &format!("i{i}"))).collect();
    traced(&w, false);
    // OfflineIMAP 8 syncs a local flag change and a server expunge in between.
    let inbox = w.maildir().join("INBOX");
    let m = local_messages(&inbox)
        .into_iter()
        .find(|m| m.subject == "i0")
        .unwrap();
    set_local_flags(&m, "F");
    w.expunge("INBOX", uids[1]);
    let out = std::process::Command::new(&oi8)
        .env("HOME", w.dir.path())
        .args(["-c"])
        .arg(w.rc())
        .args(["-o", "-u", "basic"])
        .output()
        .unwrap();
    assert!(out.status.success(), "OfflineIMAP 8: {}", stderr(&out));
    converged(&w, "INBOX");
    w.server
        .add_flags(USER, "INBOX", uids[2], &["\\Seen"])
        .unwrap();
    let ours = traced(&w, false);
    assert!(!ours.contains(FULL_LISTING), "listed in full:\n{ours}");
    let state = converged(&w, "INBOX");
    assert_eq!(state.len(), 5);
    assert_eq!((state["i0"].as_str(), state["i2"].as_str()), ("F", "S"));
    // Nothing left to do.
    let again = traced(&w, false);
    let sent: Vec<&str> = again.lines().filter(|l| l.contains(" C: ")).collect();
    assert!(
        !sent
            .iter()
            .any(|l| l.contains(" UID STORE ") || l.contains(" APPEND ")),
        "something left to do: {sent:#?}"
    );
}

#[test]
fn new_local_messages_go_up_in_one_multiappend() {
    let Some(w) = World::new("multiappend") else {
        return;
    };
    w.write_config("", "");
    w.put("INBOX", "already there");
    traced(&w, false);
    let inbox = w.maildir().join("INBOX");
    for i in 0..5 {
        std::fs::write(
            inbox.join(format!("new/170000000{i}.up{i}.host")),
            message(&format!("up {i}")),
        )
        .unwrap();
    }
    let trace = traced(&w, false);
    let appends: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains(" C: ") && l.contains(" APPEND "))
        .collect();
    assert_eq!(appends.len(), 1, "not one APPEND: {appends:#?}");
    let state = converged(&w, "INBOX");
    assert_eq!(state.len(), 6);
    // Every uploaded copy got its UID locally from the APPENDUID set, in order.
    let server = w.server_messages("INBOX");
    for m in local_messages(&inbox) {
        let uid = m.uid.expect("uploaded message without UID");
        assert_eq!(server[&uid].0, m.subject, "UID {uid} names another message");
    }
    let again = traced(&w, false);
    assert!(!again.contains(" APPEND "), "uploaded twice");
}

/// A no-op run selects no folder: one LIST with each mailbox's state (LIST-STATUS) shows
/// that nothing changed on the server, and the local side shows nothing to send. A folder
/// changed on one side is selected when its turn comes, and only that one.
#[test]
fn unchanged_folders_are_not_selected() {
    let Some(w) = World::new("incremental_lazy_select") else {
        return;
    };
    w.write_config("", "");
    let uids: Vec<u32> = (0..4).map(|i| w.put("INBOX", &format!("i{i}"))).collect();
    for name in ["Other", "Empty"] {
        w.server.create_mailbox(USER, name).unwrap();
    }
    w.put("Other", "o1");
    let selects = |trace: &str| -> Vec<String> {
        trace
            .lines()
            .filter_map(|l| l.split_once("C: ").map(|(_, c)| c.to_string()))
            .filter(|c| c.contains(" SELECT ") || c.contains(" EXAMINE "))
            .collect()
    };
    let first = traced(&w, false);
    assert!(
        first.contains("RETURN (STATUS ("),
        "no LIST-STATUS:\n{first}"
    );
    assert_eq!(selects(&first).len(), 3, "first run:\n{first}");

    let noop = traced(&w, false);
    assert_eq!(selects(&noop), Vec::<String>::new(), "no-op run:\n{noop}");

    // A local change in Other: only Other is selected, and the change goes up.
    let o1 = local_messages(&w.maildir().join("Other"))
        .into_iter()
        .next()
        .unwrap();
    set_local_flags(&o1, "FS");
    let local = traced(&w, false);
    let s = selects(&local);
    assert!(
        s.len() == 1 && s[0].contains("Other"),
        "local change: {s:?}\n{local}"
    );
    assert_eq!(converged(&w, "Other")["o1"], "FS");
    // That run's own change raised Other's HIGHESTMODSEQ: the next run selects Other
    // once to see it (the kept listing shows the folder as it was before the change).
    let own = traced(&w, false);
    let s = selects(&own);
    assert!(
        s.len() == 1 && s[0].contains("Other") && !own.contains("UID STORE"),
        "after the local change: {s:?}\n{own}"
    );
    let noop = traced(&w, false);
    assert_eq!(selects(&noop), Vec::<String>::new(), "no-op run:\n{noop}");

    // A change on the server in INBOX: only INBOX.
    w.server
        .add_flags(USER, "INBOX", uids[2], &["\\Answered"])
        .unwrap();
    let server = traced(&w, false);
    let s = selects(&server);
    assert!(
        s.len() == 1 && s[0].contains("INBOX"),
        "server change: {s:?}\n{server}"
    );
    assert_eq!(converged(&w, "INBOX")["i2"], "R");
    converged(&w, "Empty");

    let again = traced(&w, false);
    assert_eq!(selects(&again), Vec::<String>::new(), "last run:\n{again}");

    // A sync of one chosen folder (-f, or IDLE) does not ask every mailbox's state.
    let out = w
        .command()
        .args(["-o", "-u", "basic", "-d", "imap", "-f", "Other"])
        .output()
        .unwrap();
    let one = stderr(&out);
    assert!(out.status.success(), "-f Other:\n{one}");
    assert!(!one.contains("RETURN (STATUS"), "-f Other:\n{one}");
    let s = selects(&one);
    assert!(s.len() == 1 && s[0].contains("Other"), "-f Other: {s:?}");

    // Quick mode (-q) takes OfflineIMAP's quick test (message count, last UID) from the
    // kept listing of a folder listed unchanged: no SELECT either, and a folder that
    // changed is still found and synced.
    let quick = |w: &World| -> String {
        let out = w
            .command()
            .args(["-o", "-q", "-u", "basic", "-d", "imap"])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(out.status.success(), "-q:\n{err}");
        err
    };
    let q = quick(&w);
    assert_eq!(selects(&q), Vec::<String>::new(), "-q no-op run:\n{q}");
    assert_nothing_done(&q);
    w.put("INBOX", "i4");
    let q = quick(&w);
    let s = selects(&q);
    assert!(
        s.len() == 1 && s[0].contains("INBOX"),
        "-q after a new message: {s:?}\n{q}"
    );
    assert!(converged(&w, "INBOX").contains_key("i4"));
    let q = quick(&w);
    assert_eq!(selects(&q), Vec::<String>::new(), "-q last run:\n{q}");
}

/// Where the trace shows `folder` selected (its `C:` line), and the line of that SELECT's
/// completion; `None` when it was not selected.
fn select_and_done(trace: &str, folder: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = trace.lines().collect();
    let select = lines
        .iter()
        .position(|l| l.contains("C: ") && l.contains(&format!(" SELECT \\\"{folder}\\\"")))?;
    let tag = lines[select].split("C: ").nth(1)?.split(' ').next()?;
    let done = lines
        .iter()
        .position(|l| l.contains(&format!("S: {tag} OK")))?;
    Some((select, done))
}

/// Asserts that every folder of `names` was selected before the server answered the
/// first of those SELECTs: all asked for in one go. Returns the names in the order asked.
fn asked_together<'a>(trace: &str, names: &[&'a str]) -> Vec<&'a str> {
    let mut asked: Vec<(usize, usize, &str)> = names
        .iter()
        .map(|&name| {
            let (s, done) = select_and_done(trace, name)
                .unwrap_or_else(|| panic!("{name} not selected:\n{trace}"));
            (s, done, name)
        })
        .collect();
    asked.sort();
    let first_answer = asked.iter().map(|&(_, done, _)| done).min().unwrap();
    for &(s, _, name) in &asked {
        assert!(
            s < first_answer,
            "{name} not asked for with the others, before the server answered:\n{trace}"
        );
    }
    asked.into_iter().map(|(_, _, name)| name).collect()
}

/// The folders with most to do are asked for first, as the folder listing tells it: most
/// new messages first, then the largest of those that changed otherwise; a folder that did
/// not change is not selected. On one connection the server answers in that order, and the
/// local side writes the first folders' messages while it answers for the others. The
/// folders still converge, and mbnames keeps the listing's order (`compat`).
#[test]
fn the_folders_with_most_to_do_are_asked_for_first() {
    let Some(w) = World::new("incremental_busiest_first") else {
        return;
    };
    w.write_config("", "");
    let mut uids = mailboxes_with(&w, &["A", "C", "D"], 2);
    uids.extend(mailboxes_with(&w, &["B"], 6));
    traced(&w, false);

    w.put("A", "A new");
    for i in 0..3 {
        w.put("C", &format!("C new {i}"));
    }
    w.server
        .add_flags(USER, "B", uids["B"][4], &["\\Flagged"])
        .unwrap();

    let run = traced(&w, false);
    assert_eq!(logins(&run), 1, "more than one connection:\n{run}");
    assert_eq!(
        asked_together(&run, &["A", "B", "C"]),
        ["C", "A", "B"],
        "not the busiest first:\n{run}"
    );
    assert_eq!(
        selects(&run, "D"),
        0,
        "an unchanged folder selected:\n{run}"
    );
    assert_eq!(converged(&w, "A").len(), 3);
    assert_eq!(converged(&w, "B")["B4"], "F");
    assert_eq!(converged(&w, "C").len(), 5);
    assert_eq!(converged(&w, "D").len(), 2);

    // An order the user set (`foldersort`, here by name) is kept as it is.
    let rc = std::fs::read_to_string(w.rc()).unwrap().replace(
        "[Repository Remote]\n",
        "[Repository Remote]\nfoldersort = lambda a, b: (a > b) - (a < b)\n",
    );
    std::fs::write(w.rc(), rc).unwrap();
    w.put("A", "A newer");
    for i in 0..3 {
        w.put("C", &format!("C newer {i}"));
    }
    w.server
        .add_flags(USER, "B", uids["B"][5], &["\\Flagged"])
        .unwrap();
    let run = traced(&w, false);
    assert_eq!(
        asked_together(&run, &["A", "B", "C"]),
        ["A", "B", "C"],
        "foldersort not followed:\n{run}"
    );
    assert_eq!(converged(&w, "C").len(), 8);
}

/// A folder the survey leaves out (here new mail under `maxsize`, whose bodies do not come
/// with the listings) needs the connection the survey reads on: the folders asked for
/// ahead are synced before it, in the order asked, even though it has the most new mail.
#[test]
fn the_folders_asked_for_ahead_are_synced_before_one_left_out() {
    let Some(w) = World::new("incremental_ahead_first") else {
        return;
    };
    w.write_config("", "");
    crate::long_running::add_to_account(&w, "maxsize = 1000000");
    let uids = mailboxes_with(&w, &["A", "B", "C"], 2);
    traced(&w, false);

    for i in 0..3 {
        w.put("A", &format!("A new {i}"));
    }
    w.server
        .add_flags(USER, "B", uids["B"][0], &["\\Flagged"])
        .unwrap();
    w.server
        .add_flags(USER, "C", uids["C"][1], &["\\Flagged"])
        .unwrap();

    let run = traced(&w, false);
    assert_eq!(logins(&run), 1, "more than one connection:\n{run}");
    asked_together(&run, &["B", "C"]);
    let started = |name: &str| {
        run.find(&format!("Syncing {name}:"))
            .unwrap_or_else(|| panic!("{name} not synced:\n{run}"))
    };
    assert!(
        started("B") < started("A") && started("C") < started("A"),
        "the folder left out went first:\n{run}"
    );
    assert_eq!(converged(&w, "A").len(), 5);
    assert_eq!(converged(&w, "B")["B0"], "F");
    assert_eq!(converged(&w, "C")["C1"], "F");
}

/// How many times the trace shows `folder` selected.
fn selects(trace: &str, folder: &str) -> usize {
    let select = format!(" SELECT \\\"{folder}\\\"");
    trace
        .lines()
        .filter(|l| l.contains("C: ") && l.contains(&select))
        .count()
}

/// How many connections the trace shows logging in.
fn logins(trace: &str) -> usize {
    trace
        .lines()
        .filter(|l| l.contains("C: ") && (l.contains(" AUTHENTICATE ") || l.contains(" LOGIN ")))
        .count()
}

/// Several folders changed on the server since the last run: their SELECTs and changes
/// go out in one write, before the server answers the first, on the one connection
/// `maxconnections` allows, and each folder gets its own answers. A folder with new mail
/// is among them, and its new message comes with them: it is not selected again. A
/// folder that needs the server again (a local change to send) selects again. All
/// converge, and an expunge in one folder removes nothing from the others.
#[test]
fn changed_folders_are_asked_for_together_and_converge() {
    let Some(w) = World::new("incremental_survey") else {
        return;
    };
    w.write_config("", "");
    let uids = mailboxes_with(&w, &["A", "B", "C", "D"], 5);
    traced(&w, false);

    w.server
        .add_flags(USER, "A", uids["A"][1], &["\\Flagged"])
        .unwrap();
    w.server
        .add_flags(USER, "B", uids["B"][2], &["\\Answered"])
        .unwrap();
    w.expunge("B", uids["B"][3]);
    w.server
        .add_flags(USER, "C", uids["C"][0], &["\\Seen"])
        .unwrap();
    let c4 = local_messages(&w.maildir().join("C"))
        .into_iter()
        .find(|m| m.subject == "C4")
        .unwrap();
    set_local_flags(&c4, "F");
    w.put("D", "D new");

    let run = traced(&w, false);
    assert_eq!(logins(&run), 1, "more than one connection:\n{run}");
    assert!(!run.contains(FULL_LISTING), "listed in full:\n{run}");
    asked_together(&run, &["A", "B", "C", "D"]);
    // C sent its local change after a SELECT of its own; D's new message came with the
    // others' answers.
    assert_eq!(selects(&run, "C"), 2, "{run}");
    assert_eq!(selects(&run, "D"), 1, "{run}");
    assert!(
        !run.contains("BODY.PEEK[])"),
        "a body fetched on its own:\n{run}"
    );

    let a = converged(&w, "A");
    assert_eq!(a.len(), 5);
    assert_eq!(a["A1"], "F");
    let b = converged(&w, "B");
    assert_eq!(b.len(), 4);
    assert_eq!(b["B2"], "R");
    assert!(!b.contains_key("B3"));
    let c = converged(&w, "C");
    assert_eq!(c.len(), 5);
    assert_eq!(c["C0"], "S");
    assert_eq!(c["C4"], "F");
    let d = converged(&w, "D");
    assert_eq!(d.len(), 6);
    assert!(d.contains_key("D new"));

    let again = traced(&w, false);
    assert!(!again.contains("UID STORE"), "a change repeated:\n{again}");
    assert!(!again.contains(" APPEND "), "uploaded again:\n{again}");
    for name in ["A", "B", "C", "D"] {
        converged(&w, name);
    }
}

/// A first sync (nothing kept) asks for each folder's whole listing together with its
/// SELECT, before the server answers it: one round trip per folder (an empty folder is
/// only selected). The same for a folder new on the server later. Everything converges.
#[test]
fn a_folder_with_nothing_kept_asks_for_its_listing_with_its_select() {
    let Some(w) = World::new("incremental_first_listing") else {
        return;
    };
    w.write_config("", "");
    mailboxes_with(&w, &["A", "B"], 3);
    // An empty one is only selected: some servers refuse `1:*` in an empty mailbox.
    mailboxes_with(&w, &["E"], 0);
    let first = traced(&w, false);
    assert!(
        !sent_with_select(&first, "E", FULL_LISTING),
        "E listed while empty:\n{first}"
    );
    assert_eq!(selects(&first, "E"), 1, "{first}");
    for f in ["A", "B"] {
        assert!(
            sent_with_select(&first, f, FULL_LISTING),
            "{f}'s listing not asked for with its SELECT:\n{first}"
        );
        assert_eq!(selects(&first, f), 1, "{first}");
        assert_eq!(converged(&w, f).len(), 3);
    }
    mailboxes_with(&w, &["C"], 2);
    let then = traced(&w, false);
    assert!(
        sent_with_select(&then, "C", FULL_LISTING),
        "C's listing not asked for with its SELECT:\n{then}"
    );
    assert_eq!(converged(&w, "C").len(), 2);
}

/// The most tagged commands the trace shows in flight at once (sent, not yet completed).
fn most_in_flight(trace: &str) -> usize {
    let tag_of = |l: &str, side: &str| {
        let rest = l.split(side).nth(1)?;
        let tag = rest.split(' ').next()?;
        let mut c = tag.chars();
        (c.next()?.is_ascii_uppercase()
            && c.clone().next().is_some()
            && c.all(|c| c.is_ascii_digit()))
        .then(|| tag.to_string())
    };
    let mut in_flight = std::collections::HashSet::new();
    let mut most = 0;
    for l in trace.lines() {
        if let Some(tag) = tag_of(l, "C: ") {
            in_flight.insert(tag);
            most = most.max(in_flight.len());
        } else if let Some(tag) = tag_of(l, "S: ") {
            in_flight.remove(&tag);
        }
    }
    most
}

/// `pipelinedepth = 1` (ours): one command at a time, each sent once the one before it is
/// answered, and the changed folders still converge. Without it, several go out at once.
#[test]
fn pipelinedepth_one_sends_one_command_at_a_time() {
    let Some(w) = World::new("incremental_depth_one") else {
        return;
    };
    w.write_config("", "");
    let uids = mailboxes_with(&w, &["A", "B", "C"], 3);
    traced(&w, false);
    let change = |n: usize| {
        for f in ["A", "B", "C"] {
            w.server
                .add_flags(USER, f, uids[f][n], &["\\Flagged"])
                .unwrap();
        }
    };
    change(0);
    let default = traced(&w, false);
    assert!(most_in_flight(&default) > 1, "{default}");

    w.write_config("pipelinedepth = 1", "");
    change(1);
    let run = traced(&w, false);
    assert_eq!(
        most_in_flight(&run),
        1,
        "more than one command in flight:\n{run}"
    );
    for f in ["A", "B", "C"] {
        let m = converged(&w, f);
        assert_eq!(m.len(), 3);
        assert_eq!(m[format!("{f}1").as_str()], "F");
    }
}

/// Folders whose only change is new local mail send it without being selected: APPEND
/// needs no selected mailbox, and UIDPLUS names each new UID (RFC 4315). One message
/// (a single APPEND) in A, two (a MULTIAPPEND) in B. The UIDs are recorded: the next run
/// has nothing to do.
#[test]
fn new_local_mail_is_sent_without_selecting_its_folder() {
    let Some(w) = World::new("incremental_push_unselected") else {
        return;
    };
    w.write_config("", "");
    mailboxes_with(&w, &["A", "B"], 2);
    traced(&w, false);
    let drop_in = |folder: &str, n: u32, subject: &str| {
        let path = w
            .maildir()
            .join(folder)
            .join("new")
            .join(format!("170000000{n}.local.host"));
        std::fs::write(path, message(subject)).unwrap();
    };
    drop_in("A", 1, "A local");
    drop_in("B", 2, "B local 1");
    drop_in("B", 3, "B local 2");

    let run = traced(&w, false);
    assert_eq!(logins(&run), 1, "{run}");
    for f in ["A", "B"] {
        assert_eq!(
            selects(&run, f),
            0,
            "{f} selected to send its new mail:\n{run}"
        );
    }
    let a = converged(&w, "A");
    assert_eq!(a.len(), 3);
    assert!(a.contains_key("A local"));
    let b = converged(&w, "B");
    assert_eq!(b.len(), 4);
    assert!(b.contains_key("B local 1") && b.contains_key("B local 2"));

    let again = traced(&w, false);
    assert!(!again.contains(" APPEND "), "sent again:\n{again}");
    assert_eq!(converged(&w, "A").len(), 3);
    assert_eq!(converged(&w, "B").len(), 4);
}

/// With `maxconnections = 2`, a folder left out of the survey (new on the server: nothing
/// kept to ask the changes of) opens the second connection while the survey still reads
/// on the first, rather than wait for the survey's end; there are never more than two.
/// The survey's answers for its last folder are held up two seconds on the way.
#[test]
fn a_folder_left_out_of_the_survey_syncs_beside_it_on_a_second_connection() {
    let Some(w) = World::new("incremental_survey_beside") else {
        return;
    };
    w.write_config("maxconnections = 2", "");
    let uids = mailboxes_with(&w, &["B", "C", "D"], 3);
    traced(&w, false);
    for f in ["B", "C", "D"] {
        w.server
            .add_flags(USER, f, uids[f][0], &["\\Flagged"])
            .unwrap();
    }
    mailboxes_with(&w, &["A"], 2);
    let proxy = FaultProxy::start(
        w.server.imap_port(),
        Trigger::command(&["SELECT \"D\""]),
        Fault::Delay(std::time::Duration::from_secs(2)),
        Times::Once,
    )
    .unwrap();
    connect_through(&w, proxy.port());

    let run = traced(&w, false);
    assert_eq!(proxy.fired(), 1, "{run}");
    assert_eq!(logins(&run), 2, "not two connections:\n{run}");
    let (b, _) = select_and_done(&run, "B").expect("B selected");
    let (d, d_done) = select_and_done(&run, "D").expect("D selected");
    assert!(b < d, "B and D not surveyed together:\n{run}");
    let (a, _) = select_and_done(&run, "A").expect("A selected");
    assert!(
        a < d_done,
        "A waited for the survey's end to be selected:\n{run}"
    );
    assert_eq!(converged(&w, "A").len(), 2);
    for f in ["B", "C", "D"] {
        let m = converged(&w, f);
        assert_eq!(m.len(), 3);
        assert_eq!(m[format!("{f}0").as_str()], "F");
    }
}

/// New mail in several folders comes with their changes, on the connection they are
/// asked for together: each body whole, in memory or (an attachment above the spooling
/// size) in a spool file of the folder's `tmp/`, written as it comes and renamed into
/// place, and none of the folders asks the server again. A message too large to be
/// fetched whole comes cut, is dropped, and is fetched its own way (in pieces, after a
/// SELECT of its folder). All converge, byte for byte, with nothing left in `tmp/`.
#[test]
fn new_mail_comes_with_the_changes_and_a_message_too_large_its_own_way() {
    use crate::large::{big_message, normalized};
    let Some(w) = World::new("incremental_survey_bodies") else {
        return;
    };
    w.write_config("", "");
    mailboxes_with(&w, &["A", "B", "C"], 2);
    traced(&w, false);
    w.put("A", "A new");
    let attached = big_message("B attached", 300 << 10);
    let large = big_message("C large", 9 << 20);
    w.server.put_message(USER, "B", &attached).unwrap();
    w.put("C", "C new");
    w.server.put_message(USER, "C", &large).unwrap();

    let run = traced(&w, false);
    assert_eq!(logins(&run), 1, "more than one connection:\n{run}");
    asked_together(&run, &["A", "B", "C"]);
    // One more byte than the largest whole fetch (8 MiB): a message that fills it is cut.
    assert!(run.contains("BODY.PEEK[]<0.8388609>"), "{run}");
    assert_eq!(selects(&run, "A"), 1, "{run}");
    assert_eq!(selects(&run, "B"), 1, "{run}");
    assert_eq!(
        selects(&run, "C"),
        2,
        "C's large message not fetched its own way:\n{run}"
    );
    assert!(
        !run.contains("BODY.PEEK[])"),
        "a body fetched whole on its own:\n{run}"
    );

    for (folder, subject, body) in [("B", "B attached", &attached), ("C", "C large", &large)] {
        let m = local_messages(&w.maildir().join(folder))
            .into_iter()
            .find(|m| m.subject == subject)
            .unwrap_or_else(|| panic!("{subject} not downloaded"));
        assert!(m.uid.is_some());
        let bytes = std::fs::read(&m.path).unwrap();
        assert!(
            normalized(&bytes) == *body,
            "{subject}: downloaded copy differs"
        );
    }
    for name in ["A", "B", "C"] {
        converged(&w, name);
        let tmp: Vec<_> = std::fs::read_dir(w.maildir().join(name).join("tmp"))
            .unwrap()
            .collect();
        assert!(tmp.is_empty(), "{name}/tmp/ not empty: {tmp:?}");
    }
    let again = traced(&w, false);
    assert!(!again.contains("BODY.PEEK"), "fetched again:\n{again}");
    assert!(!again.contains(" APPEND "), "uploaded:\n{again}");
}

/// The connection of the folders asked for together drops before their answers come
/// (oi-testkit's fault proxy, a mock network with Dovecot behind it): each folder asks
/// again on a connection of its own, from its kept listing, and all converge.
#[test]
fn folders_asked_for_together_ask_again_when_the_answers_do_not_come() {
    let Some(w) = World::new("incremental_survey_drop") else {
        return;
    };
    w.write_config("", "");
    let uids = mailboxes_with(&w, &["A", "B", "C"], 3);
    traced(&w, false);
    for name in ["A", "B", "C"] {
        w.server
            .add_flags(USER, name, uids[name][1], &["\\Flagged"])
            .unwrap();
    }
    let run = run_with_changes_dropped(&w);
    // Three in the write that was dropped, and each folder's own.
    assert_eq!(changes_asked(&run), 6, "{run}");
    for name in ["A", "B", "C"] {
        assert_eq!(converged(&w, name)[&format!("{name}1")], "F");
    }
}

/// A folder asked for with others whose connection is needed before its listing (here:
/// looking for the copy of an interrupted upload) is selected for that, and its listing
/// asks anew rather than take the older answers: it converges, and the others take theirs.
#[test]
fn a_folder_asked_for_with_others_but_selected_first_asks_again() {
    let Some(w) = World::new("incremental_survey_selected_first") else {
        return;
    };
    w.write_config("", "");
    let uids = mailboxes_with(&w, &["A", "B"], 3);
    traced(&w, false);
    for name in ["A", "B"] {
        w.server
            .add_flags(USER, name, uids[name][2], &["\\Answered"])
            .unwrap();
    }
    // An upload record of a killed run in A, whose message is gone from both sides.
    add_vanished_upload_record(&w, "A");
    let run = traced(&w, false);
    let (a, a_done) = select_and_done(&run, "A").expect("A selected");
    let (b, _) = select_and_done(&run, "B").expect("B selected");
    assert!(a < b && b < a_done, "not asked for together:\n{run}");
    assert!(run.contains("X-OfflineIMAP"), "no marker search:\n{run}");
    // Both in the survey, and A once more on its own.
    assert_eq!(changes_asked(&run), 3, "{run}");
    for name in ["A", "B"] {
        assert_eq!(converged(&w, name)[&format!("{name}2")], "R");
    }
    let again = traced(&w, false);
    assert!(!again.contains("UID STORE"), "{again}");
}
