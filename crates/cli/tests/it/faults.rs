//! Network, server and disk faults (issue #5 point 2): the binary against Dovecot through
//! oi-testkit's fault-injecting proxy (a mock network: it drops, stalls, or answers NO /
//! BYE in the server's place when one folder's command comes by). Each fault must fail that
//! folder with a clear error, leave the other folders synced, and the next run must end
//! with both sides complete: nothing lost, nothing doubled, flags right.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use oi_testkit::{Fault, FaultProxy, Times, Trigger};

use crate::common::*;
use crate::long_running::{add_to_general, connect_through};

/// Synced in this order (OfflineIMAP's case-insensitive sort); the fault is put in the
/// middle one, so that a folder after it shows the run went on.
const FOLDERS: [&str; 3] = ["Alpha", "Beta", "INBOX"];
const FAULTY: &str = "Beta";

/// What each folder must hold on both sides once synced.
#[derive(Debug, Clone, Default)]
struct Expected {
    subjects: Vec<String>,
    /// Whether `<folder>-base-1` is flagged.
    flagged: bool,
}

struct Output {
    status: ExitStatus,
    text: String,
}

/// Runs the binary (stdout and stderr together), killing it if it hangs: a hang guard,
/// not a timing assertion.
fn run_guarded(w: &World, extra: &[&str]) -> Output {
    let mut child = w
        .command()
        .args(["-o", "-u", "basic"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "offlineimap hung (killed after the hang guard):\n{}{}",
                o.join().unwrap(),
                e.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        text: format!("{}{}", o.join().unwrap(), e.join().unwrap()),
    }
}

/// Points the configuration at `port` (the proxy) with the given `[general]` extras.
fn config_through(w: &World, port: u16, general: &str, remote: &str) {
    w.write_config(remote, "");
    connect_through(w, port);
    add_to_general(w, general);
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Three folders with three messages each, synced once.
fn prepare(w: &World) -> BTreeMap<&'static str, Expected> {
    let mut model = BTreeMap::new();
    for f in FOLDERS {
        if f != "INBOX" {
            w.server.create_mailbox(USER, f).unwrap();
        }
        let mut e = Expected::default();
        for i in 1..=3 {
            let s = format!("{f}-base-{i}");
            w.put(f, &s);
            e.subjects.push(s);
        }
        model.insert(f, e);
    }
    w.write_config("", "");
    w.sync_ok();
    for f in FOLDERS {
        check_folder(w, f, &model[f], true);
    }
    model
}

/// Changes on both sides of every folder that need each command kind: a new server
/// message (FETCH), a new local one (APPEND), a flag change (STORE) and a local deletion
/// (STORE \Deleted, EXPUNGE).
fn make_changes(w: &World, round: usize, model: &mut BTreeMap<&'static str, Expected>) {
    make_changes_in(w, &FOLDERS, round, model);
}

/// [`make_changes`] in `folders` only.
fn make_changes_in(
    w: &World,
    folders: &[&str],
    round: usize,
    model: &mut BTreeMap<&'static str, Expected>,
) {
    for &f in folders {
        let e = model.get_mut(f).unwrap();
        let dir = w.maildir().join(f);
        let srv = format!("{f}-r{round}-srv");
        w.put(f, &srv);
        let loc = format!("{f}-r{round}-loc");
        std::fs::write(
            dir.join(format!("new/{}.r{round}.faults", 1_700_000_000 + round)),
            message(&loc),
        )
        .unwrap();
        let local = local_messages(&dir);
        let base = local
            .iter()
            .find(|m| m.subject == format!("{f}-base-1"))
            .unwrap();
        e.flagged = !e.flagged;
        set_local_flags(base, if e.flagged { "F" } else { "" });
        let victim = e
            .subjects
            .iter()
            .find(|s| **s != format!("{f}-base-1"))
            .unwrap()
            .clone();
        let m = local.iter().find(|m| m.subject == victim).unwrap();
        std::fs::remove_file(&m.path).unwrap();
        e.subjects.retain(|s| *s != victim);
        e.subjects.push(srv);
        e.subjects.push(loc);
    }
}

/// Both sides of a folder hold exactly the expected messages, once each, with the
/// expected flag; when `complete`, every local message also carries its server UID.
fn check_folder(w: &World, folder: &str, e: &Expected, complete: bool) {
    let server = w.server_messages(folder);
    let local = local_messages(&w.maildir().join(folder));
    let want = sorted(e.subjects.clone());
    let server_subjects = sorted(server.values().map(|(s, _)| s.clone()).collect());
    let local_subjects = sorted(local.iter().map(|m| m.subject.clone()).collect());
    assert_eq!(server_subjects, want, "server side of {folder}");
    assert_eq!(local_subjects, want, "local side of {folder}");
    let base = format!("{folder}-base-1");
    let (_, server_flags) = server.values().find(|(s, _)| *s == base).unwrap();
    let local_flags = &local.iter().find(|m| m.subject == base).unwrap().flags;
    let want_server: Vec<String> = if e.flagged {
        vec!["\\Flagged".into()]
    } else {
        vec![]
    };
    assert_eq!(*server_flags, want_server, "server flags in {folder}");
    assert_eq!(
        local_flags,
        if e.flagged { "F" } else { "" },
        "local flags in {folder}"
    );
    if complete {
        for m in &local {
            let uid = m.uid.unwrap_or_else(|| panic!("no UID in {m:?}"));
            assert_eq!(server[&uid].0, m.subject, "UID of {m:?}");
        }
    }
}

/// Neither side of a folder holds a message twice (checked after a failed run too).
fn check_no_duplicates(w: &World, folder: &str) {
    let server: Vec<String> = w
        .server_messages(folder)
        .into_values()
        .map(|(s, _)| s)
        .collect();
    let local: Vec<String> = local_messages(&w.maildir().join(folder))
        .into_iter()
        .map(|m| m.subject)
        .collect();
    for side in [server, local] {
        let mut uniq = side.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), side.len(), "duplicates in {folder}: {side:?}");
    }
}

/// Whatever reached cur/ or new/ of a folder with a UID is whole: the server's bytes
/// (line endings and the upload marker aside).
fn check_whole_files(w: &World, folder: &str) {
    let server = w.server.messages(USER, folder).unwrap();
    // Uploads carry the X-OfflineIMAP marker on the server only.
    let bare = |b: &[u8]| -> String {
        String::from_utf8_lossy(b)
            .replace('\r', "")
            .lines()
            .filter(|l| !l.starts_with("X-OfflineIMAP: "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for m in local_messages(&w.maildir().join(folder)) {
        let Some(uid) = m.uid else { continue };
        let on_server = server
            .iter()
            .find(|s| s.uid == uid)
            .unwrap_or_else(|| panic!("{m:?} has a UID the server does not know"));
        let body = std::fs::read(&m.path).unwrap();
        assert_eq!(bare(&body), bare(&on_server.body), "partial file {m:?}");
    }
}

fn assert_clean_failure(out: &Output, what: &str, expect_text: &[&str]) {
    let text = &out.text;
    assert_eq!(out.status.code(), Some(1), "{what}: exit status\n{text}");
    assert!(
        !text.contains("panicked") && !text.contains("backtrace"),
        "{what}: a panic\n{text}"
    );
    // An error with its indented continuation lines, as one text.
    let mut errors: Vec<String> = Vec::new();
    for l in text.lines() {
        if l.starts_with("ERROR") {
            errors.push(l.to_string());
        } else if l.starts_with("  ")
            && let Some(last) = errors.last_mut()
        {
            last.push('\n');
            last.push_str(l);
        }
    }
    let error_lines: Vec<&String> = errors.iter().filter(|e| e.contains(FAULTY)).collect();
    assert!(
        !error_lines.is_empty(),
        "{what}: no error naming folder {FAULTY}\n{text}"
    );
    for t in expect_text {
        assert!(
            error_lines.iter().any(|l| l.contains(t)),
            "{what}: the error does not say {t:?}\n{text}"
        );
    }
    for f in FOLDERS.iter().filter(|f| **f != FAULTY) {
        assert!(
            !errors.iter().any(|l| l.contains(&format!("folder {f}"))),
            "{what}: folder {f} failed too\n{text}"
        );
    }
}

/// Every fault on one command kind, one after the other on the same account: each
/// faulted run fails Beta only, and a clean run after it converges.
fn fault_matrix(test: &str, trigger: Trigger, faults: &[(Fault, &[&str])]) {
    let Some(w) = World::new(test) else {
        return;
    };
    let mut model = prepare(&w);
    for (round, (fault, expect_text)) in faults.iter().enumerate() {
        let what = format!("{test}: {fault:?}");
        make_changes(&w, round, &mut model);
        let proxy = FaultProxy::start(
            w.server.imap_port(),
            trigger.clone().in_folder(FAULTY),
            *fault,
            Times::Always,
        )
        .unwrap();
        // A small socktimeout notices the stall; retrycount stays at its default.
        config_through(&w, proxy.port(), "socktimeout = 3", "");
        let out = run_guarded(&w, &[]);
        assert!(
            proxy.fired() >= 1,
            "{what}: the fault never fired\n{}",
            out.text
        );
        assert_clean_failure(&out, &what, expect_text);
        for f in FOLDERS {
            if f == FAULTY {
                check_no_duplicates(&w, f);
                check_whole_files(&w, f);
            } else {
                check_folder(&w, f, &model[f], true);
            }
        }
        // The network heals: the next run through the same proxy completes.
        proxy.disarm();
        let out = run_guarded(&w, &[]);
        assert!(
            out.status.success(),
            "{what}: the run after the fault failed\n{}\n{}",
            out.text,
            w.server.logs()
        );
        for f in FOLDERS {
            check_folder(&w, f, &model[f], true);
        }
        let out = run_guarded(&w, &[]);
        assert!(out.status.success(), "{what}: third run\n{}", out.text);
        assert_nothing_done(&out.text);
    }
}

#[test]
fn faults_mid_fetch() {
    fault_matrix(
        "faults_fetch",
        Trigger::fetch_bodies(),
        &[
            (Fault::Drop, &["closed", "2 attempts"]),
            (Fault::DropAfterReply(200), &["closed", "2 attempts"]),
            (Fault::Stall, &["timed out"]),
            (Fault::No, &["injected"]),
            (Fault::Bye, &["BYE", "2 attempts"]),
        ],
    );
}

#[test]
fn faults_mid_append() {
    fault_matrix(
        "faults_append",
        Trigger::append(),
        &[
            (Fault::Drop, &["closed"]),
            (Fault::DropAfterReply(0), &["closed"]),
            (Fault::Stall, &["timed out"]),
            (Fault::No, &["injected"]),
            (Fault::Bye, &["BYE"]),
        ],
    );
}

#[test]
fn faults_mid_store() {
    fault_matrix(
        "faults_store",
        Trigger::store(),
        &[
            (Fault::Drop, &["closed"]),
            (Fault::DropAfterReply(0), &["closed"]),
            (Fault::Stall, &["timed out"]),
            (Fault::No, &["injected"]),
            (Fault::Bye, &["BYE"]),
        ],
    );
}

#[test]
fn faults_mid_expunge() {
    fault_matrix(
        "faults_expunge",
        Trigger::expunge(),
        &[
            (Fault::Drop, &["closed"]),
            (Fault::DropAfterReply(0), &["closed"]),
            (Fault::Stall, &["timed out"]),
            (Fault::No, &["injected"]),
            (Fault::Bye, &["BYE"]),
        ],
    );
}

/// retrycount: a fetch whose connection drops once is tried again on a new connection,
/// and the run succeeds, saying it retried. Only the faulty folder changes, so that it
/// fetches its new message itself (several changed folders get theirs together with
/// their changes, on one connection, whose loss makes each ask again its own way: the
/// fault matrix above goes through that too).
#[test]
fn fetch_is_retried_on_a_new_connection() {
    let Some(w) = World::new("fetch_retried") else {
        return;
    };
    let mut model = prepare(&w);
    make_changes_in(&w, &[FAULTY], 0, &mut model);
    let proxy = FaultProxy::start(
        w.server.imap_port(),
        Trigger::fetch_bodies().in_folder(FAULTY),
        Fault::DropAfterReply(200),
        Times::Once,
    )
    .unwrap();
    config_through(&w, proxy.port(), "socktimeout = 10", "");
    let out = run_guarded(&w, &[]);
    assert_eq!(proxy.fired(), 1, "{}", out.text);
    assert!(out.status.success(), "{}", out.text);
    assert!(
        out.text
            .contains("retrying on a new connection (attempt 2 of 2"),
        "no word of the retry:\n{}",
        out.text
    );
    for f in FOLDERS {
        check_folder(&w, f, &model[f], true);
    }

    // retrycount = 1: a single attempt, so the same drop fails the folder.
    make_changes_in(&w, &[FAULTY], 1, &mut model);
    proxy.rearm();
    config_through(&w, proxy.port(), "socktimeout = 10", "retrycount = 1");
    let out = run_guarded(&w, &[]);
    assert_eq!(proxy.fired(), 2, "{}", out.text);
    assert_clean_failure(&out, "retrycount = 1", &["closed"]);
    assert!(!out.text.contains("retrying"), "{}", out.text);
    let out = run_guarded(&w, &[]);
    assert!(out.status.success(), "{}", out.text);
    for f in FOLDERS {
        check_folder(&w, f, &model[f], true);
    }
}

/// New mail in several changed folders comes with their changes, on one connection (see
/// `incremental::new_mail_comes_with_the_changes...`); that connection drops in the
/// middle of the faulty folder's new message: it and the folders after it ask again on a
/// connection of their own, nothing is lost or doubled, and no spool file is left behind.
#[test]
fn new_mail_asked_for_with_the_changes_is_asked_again_when_the_connection_drops() {
    let Some(w) = World::new("faults_survey_bodies") else {
        return;
    };
    let mut model = prepare(&w);
    make_changes(&w, 0, &mut model);
    let proxy = FaultProxy::start(
        w.server.imap_port(),
        Trigger::command(&["UID FETCH", "RFC822.SIZE", "BODY.PEEK[]<0."]).in_folder(FAULTY),
        Fault::DropAfterReply(200),
        Times::Once,
    )
    .unwrap();
    config_through(&w, proxy.port(), "socktimeout = 10", "");
    let out = run_guarded(&w, &[]);
    assert_eq!(proxy.fired(), 1, "{}", out.text);
    assert!(out.status.success(), "{}", out.text);
    for f in FOLDERS {
        check_folder(&w, f, &model[f], true);
        let tmp: Vec<_> = std::fs::read_dir(w.maildir().join(f).join("tmp"))
            .unwrap()
            .collect();
        assert!(tmp.is_empty(), "{f}/tmp/ not empty: {tmp:?}");
    }
    let out = run_guarded(&w, &[]);
    assert!(out.status.success(), "{}", out.text);
    assert_nothing_done(&out.text);
}

/// A tmpfs mounted over the test's Maildir, unmounted when dropped.
struct SmallDisk<'a> {
    at: &'a Path,
}

impl Drop for SmallDisk<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.at).status();
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> bool {
    std::fs::create_dir_all(at).unwrap();
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A full disk on the Maildir side fails the folder whose message does not fit, with the
/// system's "No space left on device" and the folder's name; the folders around it sync;
/// no partial message is left in cur/ or new/; with space again, the next run completes.
#[test]
fn full_disk_fails_the_folder_and_loses_nothing() {
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI runs as root: the full-disk test needs it to mount a tmpfs"
        );
        eprintln!("SKIPPED full_disk_fails_the_folder_and_loses_nothing: not root (mount)");
        return;
    }
    let Some(w) = World::new("full_disk") else {
        return;
    };
    let maildir = w.maildir();
    assert!(mount_tmpfs(&maildir, "1m"), "mounting a tmpfs failed");
    let _disk = SmallDisk { at: &maildir };
    let mut model = prepare(&w);
    // Small new mail everywhere, and one message in Beta bigger than the space left.
    for f in FOLDERS {
        let s = format!("{f}-small");
        w.put(f, &s);
        model.get_mut(f).unwrap().subjects.push(s);
    }
    let line = format!("{}\r\n", "x".repeat(76));
    let big = format!(
        "From: a@example.org\r\nSubject: Beta-big\r\nMessage-ID: <Beta-big@example.org>\r\n\
         Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\n{}",
        line.repeat(400 * 1024 / line.len())
    );
    w.server.put_message(USER, FAULTY, big.as_bytes()).unwrap();
    model
        .get_mut(FAULTY)
        .unwrap()
        .subjects
        .push("Beta-big".into());
    // Leave about 200 KB free.
    let filler = maildir.join("filler");
    let free = {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&maildir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<usize>()
            .unwrap()
    };
    std::fs::write(&filler, vec![0u8; free - 200 * 1024]).unwrap();

    let out = run_guarded(&w, &[]);
    assert_clean_failure(&out, "full disk", &["No space left on device"]);
    for f in FOLDERS {
        if f != FAULTY {
            check_folder(&w, f, &model[f], true);
        }
    }
    check_whole_files(&w, FAULTY);
    assert!(
        !local_messages(&maildir.join(FAULTY))
            .iter()
            .any(|m| m.subject == "Beta-big"),
        "the big message cannot have fit"
    );

    std::fs::remove_file(&filler).unwrap();
    let out = run_guarded(&w, &[]);
    assert!(out.status.success(), "{}", out.text);
    for f in FOLDERS {
        check_folder(&w, f, &model[f], true);
    }
}

/// The folder cannot even be selected: the connection drops, stalls, or the server says
/// NO or BYE to SELECT.
#[test]
fn faults_at_select() {
    fault_matrix(
        "faults_select",
        Trigger::command(&["SELECT "]),
        &[
            (Fault::Drop, &["closed"]),
            (Fault::Stall, &["timed out"]),
            (Fault::No, &["injected"]),
            (Fault::Bye, &["BYE"]),
        ],
    );
}

/// A run does not wait for LOGOUT's answer: the proxy holds back LOGOUT and everything
/// after it on every connection, and nothing sets a socktimeout, so a client waiting for
/// the answer would wait until the hang guard kills it. The run ends, successfully, with
/// both sides synced and the LOGOUT sent.
#[test]
fn logout_answer_is_not_waited_for() {
    let Some(w) = World::new("logout_unawaited") else {
        return;
    };
    let mut model = prepare(&w);
    make_changes(&w, 0, &mut model);
    let proxy = FaultProxy::start(
        w.server.imap_port(),
        Trigger::command(&["LOGOUT"]),
        Fault::Stall,
        Times::Always,
    )
    .unwrap();
    config_through(&w, proxy.port(), "", "maxconnections = 2");
    let out = run_guarded(&w, &[]);
    assert!(out.status.success(), "{}", out.text);
    assert!(proxy.fired() >= 1, "no LOGOUT was sent\n{}", out.text);
    for f in FOLDERS {
        check_folder(&w, f, &model[f], true);
    }
}
