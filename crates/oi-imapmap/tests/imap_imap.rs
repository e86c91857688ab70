//! IMAP ↔ IMAP through the real engine, against a private Dovecot from oi-testkit: alice is
//! the remote account, bob the local one (an IMAP `localrepository`). Also: OfflineIMAP 8
//! continuing from our UIDMapping state, and the crash window between a local APPEND and the
//! mapping write.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oi_core::{
    Access, Event, EventSink, FlagUpdate, Flags, Folder, Repository, Secret, Severity, StoreError,
    SyncStats, Uid,
};
use oi_imap::{ImapConfig, ImapRepository, Security};
use oi_imapmap::mapfile::{MapFile, PendingAppend, fingerprint};
use oi_imapmap::{MappedImapRepository, UidMap};
use oi_status::StatusDir;
use oi_sync::memory::MemStatusFactory;
use oi_sync::{AccountPolicy, AccountReport, ExecOptions, StatusFactory, SyncError, sync_account};
use oi_testkit::{Dovecot, ServerMessage};

const LOCAL_REPO: &str = "Local";

#[derive(Default)]
struct Events(Mutex<Vec<Event>>);

impl EventSink for Events {
    fn emit(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

impl Events {
    fn warnings(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::Warning { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }
}

fn config(d: &Dovecot, user: &str, pass: &str) -> ImapConfig {
    let mut c = ImapConfig::new("127.0.0.1", user);
    c.password = Some(Secret::new(pass));
    c.security = Security::Plain;
    c.port = Some(d.imap_port());
    c.timeout = Some(Duration::from_secs(30));
    c
}

/// The real LocalStatus (SQLite + FolderValidity), as the binary uses it.
struct Status(StatusDir);

impl StatusFactory for Status {
    type Status = oi_status::SqliteStatus;

    fn open(&self, name: &str, remote: &str, local: &str) -> Result<Self::Status, StoreError> {
        self.0
            .open_folder(name, remote, local)
            .map_err(|e| StoreError::with_source(Severity::Folder, "status", e))
    }

    fn forget(&self, name: &str, _: &str, _: &str) -> Result<(), StoreError> {
        self.0
            .purge_folder(name)
            .map_err(|e| StoreError::with_source(Severity::Folder, "status", e))
    }
}

struct World {
    d: Dovecot,
    dir: tempfile::TempDir,
}

impl World {
    fn new(test: &str) -> Option<World> {
        let d = Dovecot::start_or_skip(test)?;
        Some(World {
            d,
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn metadata(&self) -> PathBuf {
        self.dir.path().join("meta")
    }

    fn map_file(&self, folder: &str) -> MapFile {
        MapFile::new(
            &self.metadata().join(format!("Repository-{LOCAL_REPO}")),
            folder,
            true,
        )
    }

    fn mapping(&self, folder: &str) -> UidMap {
        self.map_file(folder).load(false).unwrap().0
    }

    fn mapping_text(&self, folder: &str) -> String {
        std::fs::read_to_string(self.map_file(folder).path()).unwrap_or_default()
    }

    /// One run of the engine over fresh repositories (so the mapping is read from disk).
    async fn sync_with<SF: StatusFactory>(&self, status: &SF, events: &Arc<Events>) -> SyncStats {
        let report = self
            .sync_opts(status, events, &ExecOptions::default())
            .await
            .unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        report.stats
    }

    async fn sync_opts<SF: StatusFactory>(
        &self,
        status: &SF,
        events: &Arc<Events>,
        opts: &ExecOptions,
    ) -> Result<AccountReport, SyncError> {
        let remote = ImapRepository::new(config(&self.d, "alice", "alicepass"), events.clone());
        let local = MappedImapRepository::new(
            ImapRepository::new(config(&self.d, "bob", "bobpass"), events.clone()),
            &self.metadata(),
            LOCAL_REPO,
            true,
            events.clone(),
        );
        let policy = AccountPolicy {
            create_local: true,
            create_remote: true,
            ..AccountPolicy::default()
        };
        let report = sync_account(
            "acc",
            &remote,
            &local,
            status,
            &oi_sync::PlainNaming,
            &policy,
            opts,
            events.as_ref(),
        )
        .await;
        remote.shutdown().await;
        local.shutdown().await;
        report
    }

    fn put(&self, user: &str, mailbox: &str, subject: &str) -> u32 {
        self.d
            .put_message(user, mailbox, message(subject).as_bytes())
            .unwrap()
    }

    fn messages(&self, user: &str, mailbox: &str) -> Vec<ServerMessage> {
        self.d.messages(user, mailbox).unwrap()
    }

    /// Subject → (uid, flags) of a mailbox, failing on a duplicate subject.
    fn by_subject(&self, user: &str, mailbox: &str) -> BTreeMap<String, (u32, Vec<String>)> {
        let mut out = BTreeMap::new();
        for m in self.messages(user, mailbox) {
            let s = subject(&m.body);
            let mut flags = m.flags.clone();
            flags.retain(|f| f.starts_with('\\') && f != "\\Recent");
            flags.sort();
            assert!(
                out.insert(s.clone(), (m.uid, flags)).is_none(),
                "{user}/{mailbox}: duplicate message {s:?}"
            );
        }
        out
    }

    /// Both sides hold the same messages with the same flags, and the mapping pairs each
    /// local UID with the remote UID of the same message, and nothing else.
    fn assert_in_step(&self, mailbox: &str, local_name: &str) {
        let alice = self.by_subject("alice", mailbox);
        let bob = self.by_subject("bob", local_name);
        let flags = |m: &BTreeMap<String, (u32, Vec<String>)>| {
            m.iter()
                .map(|(s, (_, f))| (s.clone(), f.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(flags(&alice), flags(&bob));
        let want: BTreeMap<u32, u32> = bob.iter().map(|(s, (l, _))| (*l, alice[s].0)).collect();
        let got: BTreeMap<u32, u32> = self
            .mapping(local_name)
            .entries()
            .map(|(l, r)| (l.get(), r.get()))
            .collect();
        assert_eq!(got, want, "mapping of {local_name}");
    }

    /// Changes flags or deletes through the IMAP store directly, as a mail client would.
    async fn client(&self, user: &str, pass: &str, mailbox: &str, f: ClientOp) {
        let repo = ImapRepository::new(config(&self.d, user, pass), Arc::new(Events::default()));
        let mut folder = repo.open_folder(mailbox, Access::ReadWrite).await.unwrap();
        match f {
            ClientOp::Flags(update) => folder.set_flags(&[update]).await.unwrap(),
            ClientOp::Delete(uid) => folder.delete(&[uid]).await.unwrap(),
        }
        folder.close().await.unwrap();
        repo.shutdown().await;
    }
}

enum ClientOp {
    Flags(FlagUpdate),
    Delete(Uid),
}

fn uid(n: u32) -> Uid {
    Uid::new(n).unwrap()
}

fn message(subject: &str) -> String {
    format!(
        "From: a@example.org\nTo: b@example.org\nSubject: {subject}\n\
         Message-ID: <{}@example.org>\n\nbody of {subject}\n",
        subject.replace(' ', ".")
    )
}

fn subject(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or("")
        .trim()
        .to_string()
}

fn assert_mapping_format(text: &str) {
    assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
    for line in text.lines() {
        let (l, r) = line.split_once(':').unwrap_or_else(|| panic!("{line:?}"));
        assert!(
            l.parse::<u32>().unwrap() > 0 && r.parse::<u32>().unwrap() > 0,
            "{line:?}"
        );
    }
}

#[tokio::test]
async fn two_servers_sync_both_ways() {
    let Some(w) = World::new("two_servers_sync_both_ways") else {
        return;
    };
    let status = MemStatusFactory::default();
    let events = Arc::new(Events::default());
    let a1 = w.put("alice", "INBOX", "remote one");
    w.put("alice", "INBOX", "remote two");
    w.d.add_flags("alice", "INBOX", a1, &["\\Seen"]).unwrap();
    let b1 = w.put("bob", "INBOX", "local one");
    w.d.create_mailbox("alice", "Work").unwrap();
    w.put("alice", "Work", "work item");

    // Initial copy both ways, the Work folder created locally.
    let stats = w.sync_with(&status, &events).await;
    assert_eq!((stats.copied_to_local, stats.copied_to_remote), (3, 1));
    w.assert_in_step("INBOX", "INBOX");
    w.assert_in_step("Work", "Work");
    assert_eq!(w.by_subject("bob", "INBOX")["remote one"].1, ["\\Seen"]);
    let text = w.mapping_text("INBOX");
    assert_eq!(text.lines().count(), 3, "{text}");
    assert_mapping_format(&text);
    assert!(w.mapping("INBOX").remote_of(uid(b1)).is_some());
    assert!(
        w.metadata()
            .join("Repository-Local/UIDMapping/Work")
            .exists()
    );

    // A second run has nothing to do and leaves the mapping alone.
    let stats = w.sync_with(&status, &events).await;
    assert!(stats.is_empty(), "{stats:?}");
    assert_eq!(w.mapping_text("INBOX"), text);

    // New messages on both sides.
    w.put("alice", "INBOX", "remote three");
    let b2 = w.put("bob", "INBOX", "local two");
    let stats = w.sync_with(&status, &events).await;
    assert_eq!((stats.copied_to_local, stats.copied_to_remote), (1, 1));
    w.assert_in_step("INBOX", "INBOX");

    // Flags both ways: added on the remote, added and removed on the local side.
    let alice = w.by_subject("alice", "INBOX");
    let bob = w.by_subject("bob", "INBOX");
    w.d.add_flags("alice", "INBOX", alice["remote two"].0, &["\\Flagged"])
        .unwrap();
    w.d.add_flags("bob", "INBOX", b1, &["\\Answered"]).unwrap();
    w.client(
        "bob",
        "bobpass",
        "INBOX",
        ClientOp::Flags(FlagUpdate {
            uid: uid(bob["remote one"].0),
            add: Flags::EMPTY,
            remove: Flags::SEEN,
        }),
    )
    .await;
    let stats = w.sync_with(&status, &events).await;
    assert_eq!((stats.flagged_local, stats.flagged_remote), (1, 2));
    w.assert_in_step("INBOX", "INBOX");
    let alice = w.by_subject("alice", "INBOX");
    assert_eq!(alice["local one"].1, ["\\Answered"]);
    assert!(alice["remote one"].1.is_empty());
    assert_eq!(w.by_subject("bob", "INBOX")["remote two"].1, ["\\Flagged"]);

    // Deletions both ways.
    w.client(
        "alice",
        "alicepass",
        "INBOX",
        ClientOp::Delete(uid(alice["remote three"].0)),
    )
    .await;
    w.client("bob", "bobpass", "INBOX", ClientOp::Delete(uid(b2)))
        .await;
    let stats = w.sync_with(&status, &events).await;
    assert_eq!((stats.deleted_local, stats.deleted_remote), (1, 1));
    w.assert_in_step("INBOX", "INBOX");
    let left: Vec<String> = w.by_subject("alice", "INBOX").into_keys().collect();
    assert_eq!(left, ["local one", "remote one", "remote two"]);
    assert_eq!(w.mapping_text("INBOX").lines().count(), 3);

    // And quiet again.
    let text = w.mapping_text("INBOX");
    let stats = w.sync_with(&status, &events).await;
    assert!(stats.is_empty(), "{stats:?}");
    assert_eq!(w.mapping_text("INBOX"), text);
    assert!(events.warnings().is_empty(), "{:?}", events.warnings());
    assert!(!w.map_file("INBOX").journal_path().exists());
}

/// A remote folder deleted and created again by the sync: the local messages are uploaded
/// again and their mapping entries move to the new remote UIDs (`assign_uid` of a stale
/// sync UID), which may equal the old ones.
#[tokio::test]
async fn recreated_remote_folder_remaps_local_messages() {
    let Some(w) = World::new("recreated_remote_folder_remaps_local_messages") else {
        return;
    };
    let status = MemStatusFactory::default();
    let events = Arc::new(Events::default());
    w.d.create_mailbox("alice", "Proj").unwrap();
    // The first UID is taken by a message that is gone, so the recreated folder's UIDs
    // are the old ones shifted down by one: each rename lands on another's old UID.
    w.put("alice", "Proj", "gone");
    for s in ["p1", "p2", "p3"] {
        w.put("alice", "Proj", s);
    }
    w.client(
        "alice",
        "alicepass",
        "Proj",
        ClientOp::Delete(uid(w.by_subject("alice", "Proj")["gone"].0)),
    )
    .await;
    w.sync_with(&status, &events).await;
    w.assert_in_step("Proj", "Proj");
    let before = w.mapping("Proj");

    let out = Command::new("doveadm")
        .arg("-c")
        .arg(w.d.config_path())
        .args(["mailbox", "delete", "-u", "alice", "Proj"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = w.sync_with(&status, &events).await;
    assert_eq!(stats.copied_to_remote, 3, "{stats:?}");
    w.assert_in_step("Proj", "Proj");
    let after = w.mapping("Proj");
    let locals = |m: &UidMap| m.entries().map(|(l, _)| l).collect::<Vec<_>>();
    assert_eq!(locals(&after), locals(&before));
    assert_ne!(after, before, "the remote UIDs did not change");
    let stats = w.sync_with(&status, &events).await;
    assert!(stats.is_empty(), "{stats:?}");
}

/// The engine stopped after every possible number of effects, then run again: each time
/// both servers end in step with no duplicate, and a third run has nothing to do.
#[tokio::test]
async fn interrupted_at_every_step_converges() {
    let Some(w) = World::new("interrupted_at_every_step_converges") else {
        return;
    };
    let mut n = 0;
    loop {
        let status = MemStatusFactory::default();
        let events = Arc::new(Events::default());
        let mailbox = format!("Crash{n}");
        w.d.create_mailbox("alice", &mailbox).unwrap();
        w.d.create_mailbox("bob", &mailbox).unwrap();
        // Something of every kind to do: downloads, uploads, flags, deletions.
        let keep = w.put("alice", &mailbox, "r keep");
        let drop = w.put("alice", &mailbox, "r drop");
        let local = w.put("bob", &mailbox, "l keep");
        w.sync_with(&status, &events).await;
        w.d.add_flags("alice", &mailbox, keep, &["\\Seen"]).unwrap();
        w.d.add_flags("bob", &mailbox, local, &["\\Flagged"])
            .unwrap();
        w.client("alice", "alicepass", &mailbox, ClientOp::Delete(uid(drop)))
            .await;
        w.put("alice", &mailbox, "r new");
        w.put("bob", &mailbox, "l new");

        let opts = ExecOptions {
            crash_after: Some(n),
            ..ExecOptions::default()
        };
        let first = w.sync_opts(&status, &events, &opts).await;
        w.sync_with(&status, &events).await;
        w.assert_in_step(&mailbox, &mailbox);
        let left: Vec<String> = w.by_subject("bob", &mailbox).into_keys().collect();
        assert_eq!(
            left,
            ["l keep", "l new", "r keep", "r new"],
            "crash after {n}"
        );
        let stats = w.sync_with(&status, &events).await;
        assert!(stats.is_empty(), "crash after {n}: {stats:?}");
        match first {
            Err(SyncError::CrashHook) => n += 1,
            Ok(_) => break,
            Err(e) => panic!("crash after {n}: {e}"),
        }
    }
    // Every effect of the run was interrupted once.
    assert!(n >= 5, "{n}");
}

/// The crash window: the local server stored a downloaded message but the mapping does not
/// name it. With our journal the next run maps the stored copy; without it (OfflineIMAP's
/// behaviour) the message is duplicated on both sides.
#[tokio::test]
async fn crash_between_local_append_and_mapping_write() {
    let Some(w) = World::new("crash_between_local_append_and_mapping_write") else {
        return;
    };
    for journal in [true, false] {
        let status = MemStatusFactory::default();
        let events = Arc::new(Events::default());
        let mailbox = if journal { "Journal" } else { "NoJournal" };
        w.d.create_mailbox("alice", mailbox).unwrap();
        w.d.create_mailbox("bob", mailbox).unwrap();
        w.put("alice", mailbox, "before");
        w.sync_with(&status, &events).await;
        w.assert_in_step(mailbox, mailbox);

        // What an interrupted run leaves: journal entry, then the APPEND, then nothing.
        let a = w.put("alice", mailbox, "interrupted");
        let floor = w
            .messages("bob", mailbox)
            .iter()
            .map(|m| m.uid)
            .max()
            .unwrap();
        let body = message("interrupted");
        if journal {
            w.map_file(mailbox)
                .write_journal(&[PendingAppend {
                    sync_uid: uid(a),
                    fingerprint: fingerprint(body.replace('\n', "\r\n").as_bytes()),
                    floor,
                }])
                .unwrap();
        }
        w.d.put_message("bob", mailbox, body.as_bytes()).unwrap();

        w.sync_with(&status, &events).await;
        let count = |user| {
            w.messages(user, mailbox)
                .iter()
                .filter(|m| subject(&m.body) == "interrupted")
                .count()
        };
        if journal {
            assert_eq!((count("alice"), count("bob")), (1, 1));
            w.assert_in_step(mailbox, mailbox);
            let warnings = events.warnings();
            assert!(
                warnings.iter().any(|m| m.contains("interrupted run")),
                "{warnings:?}"
            );
            assert!(!w.map_file(mailbox).journal_path().exists());
        } else {
            assert_eq!((count("alice"), count("bob")), (2, 2));
        }
    }
}

fn offlineimap8() -> Option<PathBuf> {
    let path = PathBuf::from(
        std::env::var("OFFLINEIMAP8")
            .unwrap_or_else(|_| "/opt/offlineimap8-venv/bin/offlineimap".into()),
    );
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "OfflineIMAP 8 not found at {} under CI (scripts/install-deps installs it)",
            path.display()
        );
    }
    eprintln!(
        "SKIPPED: OfflineIMAP 8 not installed at {}: not testing IMAP-IMAP interoperability",
        path.display()
    );
    None
}

fn run_offlineimap8(bin: &Path, w: &World) -> String {
    let rc = w.dir.path().join("offlineimaprc");
    let text = format!(
        "[general]\naccounts = acc\nmetadata = {meta}\n\n\
         [Account acc]\nlocalrepository = {LOCAL_REPO}\nremoterepository = Remote\n\n\
         [DEFAULT]\nremotehost = 127.0.0.1\nremoteport = {port}\nssl = no\nstarttls = no\n\n\
         [Repository {LOCAL_REPO}]\ntype = IMAP\nremoteuser = bob\nremotepass = bobpass\n\n\
         [Repository Remote]\ntype = IMAP\nremoteuser = alice\nremotepass = alicepass\n",
        meta = w.metadata().display(),
        port = w.d.imap_port(),
    );
    std::fs::write(&rc, text).unwrap();
    let out = Command::new(bin)
        .env("HOME", w.dir.path())
        .arg("-c")
        .arg(&rc)
        .args(["-o", "-u", "basic"])
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "offlineimap 8 failed: {log}");
    log
}

type Snapshot = BTreeMap<String, (u32, Vec<String>)>;

fn snapshot(w: &World) -> (Snapshot, Snapshot) {
    (w.by_subject("alice", "INBOX"), w.by_subject("bob", "INBOX"))
}

#[tokio::test]
async fn offlineimap8_continues_our_mapping_and_we_continue_its() {
    let Some(bin) = offlineimap8() else { return };
    let Some(w) = World::new("offlineimap8_continues_our_mapping_and_we_continue_its") else {
        return;
    };
    let status = Status(StatusDir::new(
        w.metadata(),
        "acc",
        "Remote",
        LOCAL_REPO,
        true,
    ));
    let events = Arc::new(Events::default());
    let a = w.put("alice", "INBOX", "remote one");
    w.d.add_flags("alice", "INBOX", a, &["\\Seen"]).unwrap();
    w.put("alice", "INBOX", "remote two");
    w.put("bob", "INBOX", "local one");
    w.sync_with(&status, &events).await;
    w.assert_in_step("INBOX", "INBOX");

    // OfflineIMAP 8 on our state: nothing to transfer, the mapping still pairs the same.
    let before = snapshot(&w);
    let mapping = w.mapping("INBOX");
    let log = run_offlineimap8(&bin, &w);
    assert_eq!(
        snapshot(&w),
        before,
        "offlineimap 8 changed messages:\n{log}"
    );
    assert_eq!(w.mapping("INBOX"), mapping, "{log}");
    assert_mapping_format(&w.mapping_text("INBOX"));

    // OfflineIMAP 8 syncs new messages both ways and writes its mapping; we carry on.
    w.put("alice", "INBOX", "remote three");
    w.put("bob", "INBOX", "local two");
    let log = run_offlineimap8(&bin, &w);
    w.assert_in_step("INBOX", "INBOX");
    assert_eq!(w.mapping("INBOX").len(), 5, "{log}");
    let before = snapshot(&w);
    let stats = w.sync_with(&status, &events).await;
    assert!(stats.is_empty(), "{stats:?}");
    assert_eq!(snapshot(&w), before);
    w.assert_in_step("INBOX", "INBOX");
}
