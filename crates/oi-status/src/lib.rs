//! LocalStatus and metadata directory of offlineimap, file-compatible with OfflineIMAP 8.
//!
//! The layout under `metadata` (`~/.offlineimap` by default):
//! ```text
//! <account>.lock                                    AccountLock (fcntl record lock)
//! Account-<account>/LocalStatus-sqlite/<status>     one SQLite DB per folder (SqliteStatus)
//! Account-<account>/LocalStatus/<status>            legacy plain text, imported once
//! Repository-<repo>/FolderValidity/<folder>         "<uidvalidity>\n" per folder and side
//! ```
//! where `<status>` and `<folder>` are [`folder_basename`] of the names described at
//! [`StatusDir::open_folder`].
//!
//! This crate implements `oi_core::StatusStore`. It depends on `oi-core` and SQLite only:
//! it must not know about IMAP, Maildir, the sync engine or the configuration format.
#![deny(missing_docs)]

mod ahead;
mod error;
mod lock;
mod plain;
mod sqlite;
mod startuid;

use std::fs;
use std::path::PathBuf;

pub use error::StatusError;
pub use lock::AccountLock;
pub use sqlite::SqliteStatus;

/// The file name OfflineIMAP gives a folder's status and FolderValidity files
/// (`BaseFolder.getfolderbasename`): `/` becomes `.`, so that a hierarchy never turns into
/// directories, and a name that would be `.` (or empty: the root folder) becomes `dot`.
pub fn folder_basename(name: &str) -> String {
    // A folder named exactly like its separator is the root ('') in OfflineIMAP, and both
    // '' and '.' end up as "dot"; '/' does too, whatever the separator was.
    let base = name.replace('/', ".");
    if base.is_empty() || base == "." {
        "dot".to_owned()
    } else {
        base
    }
}

/// The name OfflineIMAP uses for a folder's LocalStatus (`accounts.syncfolder`):
/// the *remote* folder's visible name (after the remote repository's `nametrans`) with the
/// remote separator replaced by `.` (the status repository's separator).
pub fn status_name(remote_visible_name: &str, remote_sep: char) -> String {
    remote_visible_name.replace(remote_sep, ".")
}

/// The metadata directory of one account.
#[derive(Debug, Clone)]
pub struct StatusDir {
    metadata: PathBuf,
    account: String,
    remote_repo: String,
    local_repo: String,
    fsync: bool,
    /// Status files read ahead ([`StatusDir::read_ahead`]).
    shelf: ahead::Shelf,
}

impl StatusDir {
    /// The metadata of `account`, whose repositories are named `remote_repo` and
    /// `local_repo` (the names after `[Repository `, which name the FolderValidity
    /// directories). `fsync` is `[general] fsync`.
    pub fn new(
        metadata: PathBuf,
        account: &str,
        remote_repo: &str,
        local_repo: &str,
        fsync: bool,
    ) -> StatusDir {
        StatusDir {
            metadata,
            account: account.to_owned(),
            remote_repo: remote_repo.to_owned(),
            local_repo: local_repo.to_owned(),
            fsync,
            shelf: ahead::Shelf::default(),
        }
    }

    /// The SQLite file of a status name.
    pub fn status_path(&self, status_name: &str) -> PathBuf {
        self.account_dir()
            .join("LocalStatus-sqlite")
            .join(folder_basename(status_name))
    }

    /// The FolderValidity file of a folder of one repository.
    pub fn validity_path(&self, side: oi_core::Side, folder: &str) -> PathBuf {
        let repo = match side {
            oi_core::Side::Remote => &self.remote_repo,
            oi_core::Side::Local => &self.local_repo,
        };
        self.metadata
            .join(format!("Repository-{repo}"))
            .join("FolderValidity")
            .join(folder_basename(folder))
    }

    fn account_dir(&self) -> PathBuf {
        self.metadata.join(format!("Account-{}", self.account))
    }

    /// Opens (creating or upgrading as needed) the LocalStatus of one folder.
    ///
    /// - `status_name`: [`status_name`] of the remote folder's visible name.
    /// - `remote_folder`: the remote folder's own name as the server lists it (no
    ///   nametrans), with the server's separator;
    /// - `local_folder`: the local folder's own name on disk (no nametrans), with the
    ///   Maildir `sep`.
    ///
    /// OfflineIMAP names each FolderValidity file after `folder.name` of that side's
    /// folder object, which is the untranslated name; [`folder_basename`] is applied to all
    /// three here.
    pub fn open_folder(
        &self,
        status_name: &str,
        remote_folder: &str,
        local_folder: &str,
    ) -> Result<SqliteStatus, StatusError> {
        let legacy = self
            .account_dir()
            .join("LocalStatus")
            .join(folder_basename(status_name));
        let path = self.status_path(status_name);
        let mut status = SqliteStatus::open(
            path.clone(),
            &legacy,
            self.validity_path(oi_core::Side::Remote, remote_folder),
            self.validity_path(oi_core::Side::Local, local_folder),
            self.fsync,
        )?;
        // Checked after the opening, which may have upgraded the file.
        if let Some(read) = self.shelf.take(&path) {
            status.use_read_ahead(read);
        }
        Ok(status)
    }

    /// Starts reading the account's LocalStatus files on a thread (see [`ahead`]), for the
    /// folders' own openings to take. Returns the thread, for tests to wait for; `None`
    /// when it could not start (each folder then reads its own file as usual).
    pub fn read_ahead(&self) -> Option<std::thread::JoinHandle<()>> {
        let shelf = self.shelf.clone();
        let dir = self.account_dir().join("LocalStatus-sqlite");
        std::thread::Builder::new()
            .name("status-ahead".into())
            .spawn(move || shelf.fill(&dir))
            .ok()
    }

    /// The token of the listing kept for one side in a folder's LocalStatus, read without
    /// creating, upgrading or locking anything: `None` when there is no such file, no
    /// kept listing, or anything in the way (the folder's own opening then reads it, or
    /// reports the problem). For [`oi_core::Repository::prepare_listings`], before the
    /// folders are opened.
    pub fn peek_token(&self, status_name: &str, side: oi_core::Side) -> Option<String> {
        let path = self.status_path(status_name);
        if let Some(token) = self.shelf.token(&path, side) {
            return token;
        }
        if !path.is_file() {
            return None;
        }
        let conn = sqlite::open_read_only(&path).ok()?;
        sqlite::kept_token(&conn, side).ok().flatten()
    }

    /// Removes a folder's LocalStatus database, as OfflineIMAP does when it creates a
    /// folder (so that the status of an earlier folder of the same name is not trusted).
    /// A missing file is not an error.
    pub fn purge_folder(&self, status_name: &str) -> Result<(), StatusError> {
        let path = self.status_path(status_name);
        self.shelf.forget(&path);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StatusError::Io { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oi_core::{Flags, Side, StatusStore, Uid, UidValidity};
    use std::path::Path;
    use std::process::Command;

    fn uid(n: u32) -> Uid {
        Uid::new(n).unwrap()
    }

    fn dir(root: &Path, fsync: bool) -> StatusDir {
        StatusDir::new(root.join("meta"), "acc", "Remote", "Local", fsync)
    }

    fn python(script: &str, db: &Path) -> Option<String> {
        match Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(db)
            .output()
        {
            Ok(out) => {
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                Some(String::from_utf8_lossy(&out.stdout).into_owned())
            }
            Err(_) => {
                eprintln!("python3 is missing: SKIPPING the SQLite interop test");
                None
            }
        }
    }

    #[test]
    fn names_follow_offlineimap() {
        assert_eq!(folder_basename("INBOX/Sent"), "INBOX.Sent");
        assert_eq!(folder_basename("INBOX.Sent"), "INBOX.Sent");
        assert_eq!(folder_basename(""), "dot");
        assert_eq!(folder_basename("."), "dot");
        assert_eq!(folder_basename("/"), "dot");
        assert_eq!(folder_basename("a/.."), "a...");
        assert_eq!(status_name("INBOX/Sent", '/'), "INBOX.Sent");
        let d = dir(Path::new("/m"), true);
        assert_eq!(
            d.status_path("INBOX/a"),
            Path::new("/m/meta/Account-acc/LocalStatus-sqlite/INBOX.a")
        );
        assert_eq!(
            d.validity_path(Side::Remote, "INBOX/a"),
            Path::new("/m/meta/Repository-Remote/FolderValidity/INBOX.a")
        );
        assert_eq!(
            d.validity_path(Side::Local, "x"),
            Path::new("/m/meta/Repository-Local/FolderValidity/x")
        );
    }

    #[test]
    fn write_reopen_read_back() {
        for fsync in [true, false] {
            let tmp = tempfile::tempdir().unwrap();
            let d = dir(tmp.path(), fsync);
            let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
            assert!(s.is_new());
            assert!(s.load().unwrap().is_empty());
            s.set(uid(1), Flags::SEEN).unwrap();
            s.set(uid(2), Flags::FLAGGED | Flags::ANSWERED).unwrap();
            s.set(uid(3), Flags::EMPTY).unwrap();
            s.set(uid(1), Flags::SEEN | Flags::DELETED).unwrap();
            s.remove(uid(3)).unwrap();
            s.remove(uid(77)).unwrap();
            s.commit().unwrap();
            assert_eq!(s.saved_validity(Side::Remote).unwrap(), None);
            s.save_validity(Side::Remote, UidValidity(1234)).unwrap();
            s.save_validity(Side::Local, UidValidity(42)).unwrap();
            drop(s);

            let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
            assert!(!s.is_new());
            let rows = s.load().unwrap();
            assert_eq!(rows.len(), 2, "fsync={fsync}");
            assert_eq!(rows[&uid(1)], Flags::SEEN | Flags::DELETED);
            assert_eq!(rows[&uid(2)], Flags::FLAGGED | Flags::ANSWERED);
            assert_eq!(
                s.saved_validity(Side::Remote).unwrap(),
                Some(UidValidity(1234))
            );
            assert_eq!(
                s.saved_validity(Side::Local).unwrap(),
                Some(UidValidity(42))
            );
            let text = fs::read_to_string(d.validity_path(Side::Remote, "INBOX")).unwrap();
            assert_eq!(text, "1234\n");
        }
    }

    #[test]
    fn fsync_makes_commits_survive_a_power_loss() {
        // A commit that records upload markers also syncs the directory after the rollback
        // journal is deleted (what synchronous=EXTRA does); without that a power loss can
        // bring the journal back and undo the commit. SQLite itself stays at FULL (2).
        // (The power-loss itself is tested end to end in the binary's powerloss tests.)
        // SQLite stays at FULL with fsync off too: see SqliteStatus.
        use oi_core::{MsgRef, PendingUpload};
        let level = |s: &sqlite::SqliteStatus| -> i64 {
            s.conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap()
        };
        for (fsync, want) in [(true, 2), (false, 2)] {
            let tmp = tempfile::tempdir().unwrap();
            let mut s = dir(tmp.path(), fsync)
                .open_folder("INBOX", "INBOX", "INBOX")
                .unwrap();
            assert_eq!(level(&s), want, "fsync={fsync}");
            s.set(uid(1), Flags::SEEN).unwrap();
            assert_eq!(level(&s), want, "a plain record needs no EXTRA");
            s.add_pending_upload(&PendingUpload {
                marker: "1-2".into(),
                source: MsgRef::Unsynced("k".into()),
            })
            .unwrap();
            assert_eq!(level(&s), want, "fsync={fsync}: marker commit");
            assert_eq!(s.durable, fsync, "the commit must sync the directory");
            s.commit().unwrap();
            assert!(!s.durable);
            assert_eq!(level(&s), want, "fsync={fsync}: after the commit");
        }
    }

    /// Polls a future to its end on this thread (the commit's thread wakes it).
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
        let mut cx = std::task::Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }

    /// commit_aside commits on another thread what commit would (a marker's directory
    /// sync included), and the store goes on with its own connection afterwards.
    #[test]
    fn a_commit_aside_is_a_commit() {
        use oi_core::{MsgRef, PendingUpload};
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(tmp.path(), true);
        let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
        s.set(uid(1), Flags::SEEN).unwrap();
        s.add_pending_upload(&PendingUpload {
            marker: "1-2".into(),
            source: MsgRef::Unsynced("k".into()),
        })
        .unwrap();
        block_on(s.commit_aside()).unwrap();
        assert!(!s.durable);
        let other = rusqlite::Connection::open(d.status_path("INBOX")).unwrap();
        let ids: Vec<u32> = other
            .prepare("SELECT id FROM status")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(ids, [1]);
        let markers: u32 = other
            .query_row(
                "SELECT count(*) FROM offlineimap_rs_pending_upload",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(markers, 1);
        drop(other);
        // Nothing to commit: nothing done. Then more writes on the store's own connection.
        block_on(s.commit_aside()).unwrap();
        s.set(uid(2), Flags::SEEN).unwrap();
        s.commit().unwrap();
        drop(s);
        let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
        assert_eq!(s.load().unwrap().len(), 2);
        assert_eq!(s.pending_uploads().unwrap().len(), 1);
    }

    /// A commit_aside of a transaction that only read (a folder with nothing to record)
    /// ends it at once, on the caller's thread: done at the first poll, and the file is
    /// free for another connection's write.
    #[test]
    fn a_commit_aside_of_reads_only_ends_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(tmp.path(), true);
        let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
        s.set(uid(1), Flags::SEEN).unwrap();
        s.commit().unwrap();
        drop(s);
        let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
        assert_eq!(s.load().unwrap().len(), 1);
        {
            let mut f = std::pin::pin!(s.commit_aside());
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(matches!(
                f.as_mut().poll(&mut cx),
                std::task::Poll::Ready(Ok(()))
            ));
        }
        let other = rusqlite::Connection::open(d.status_path("INBOX")).unwrap();
        other.execute("DELETE FROM status", []).unwrap();
        drop(other);
        assert!(s.load().unwrap().is_empty());
    }

    /// A commit_aside whose future is dropped before its end (polled once here) leaves
    /// its commit to finish: the next operation waits for it and has the store's own
    /// connection back, and so does a drop.
    #[test]
    fn a_commit_aside_dropped_before_its_end_is_finished_by_the_next_operation() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(tmp.path(), true);
        for next_is_drop in [false, true] {
            let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
            // Records 1 (then 2 by the next operation's commit), then 3 (by the drop).
            s.set(uid(if next_is_drop { 3 } else { 1 }), Flags::SEEN)
                .unwrap();
            {
                let mut f = std::pin::pin!(s.commit_aside());
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                let _ = f.as_mut().poll(&mut cx);
            }
            if next_is_drop {
                drop(s);
            } else {
                assert_eq!(s.load().unwrap().len(), 1);
                s.set(uid(2), Flags::SEEN).unwrap();
                s.commit().unwrap();
                drop(s);
            }
            let other = rusqlite::Connection::open(d.status_path("INBOX")).unwrap();
            let n: u32 = other
                .query_row("SELECT count(*) FROM status", [], |r| r.get(0))
                .unwrap();
            assert_eq!(
                n,
                if next_is_drop { 3 } else { 2 },
                "next_is_drop={next_is_drop}"
            );
        }
    }

    #[test]
    fn uncommitted_batch_is_rolled_back_without_fsync() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(tmp.path(), false);
        let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
        s.set(uid(1), Flags::SEEN).unwrap();
        s.commit().unwrap();
        s.set(uid(2), Flags::SEEN).unwrap();
        drop(s);
        let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
        assert_eq!(
            s.load().unwrap().keys().copied().collect::<Vec<_>>(),
            [uid(1)]
        );
    }

    #[test]
    fn checkpoints_commit_with_fsync_and_wait_for_a_real_commit_without() {
        for fsync in [true, false] {
            let tmp = tempfile::tempdir().unwrap();
            let d = dir(tmp.path(), fsync);
            let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
            s.set(uid(1), Flags::SEEN).unwrap();
            s.checkpoint_commit().unwrap();
            s.set(uid(2), Flags::SEEN).unwrap();
            // What another reader (OfflineIMAP, the next run after a kill) sees now.
            let seen: Vec<u32> = rusqlite::Connection::open(d.status_path("INBOX"))
                .unwrap()
                .prepare("SELECT id FROM status ORDER BY id")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            let want: &[u32] = if fsync { &[1] } else { &[] };
            assert_eq!(seen, want, "fsync={fsync}");
            s.commit().unwrap();
            drop(s);
            let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
            let kept: Vec<u32> = s.load().unwrap().keys().map(|u| u.get()).collect();
            assert_eq!(kept, [1, 2], "fsync={fsync}");
        }
    }

    /// The exact statements of OfflineIMAP 8's LocalStatusSQLite.py, run by Python's
    /// sqlite3 module.
    const PY_CREATE_V2: &str = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.executescript("""
CREATE TABLE metadata (key VARCHAR(50) PRIMARY KEY, value VARCHAR(128));
INSERT INTO metadata VALUES('db_version', '2');
CREATE TABLE status (id INTEGER PRIMARY KEY, flags VARCHAR(50), mtime INTEGER, labels VARCHAR(256));
""")
c.commit()
c.execute('INSERT INTO status (id,flags,mtime,labels) VALUES (?,?,?,?)', (10, 'FS', 99, 'a, b'))
c.execute('INSERT INTO status (id,flags,mtime,labels) VALUES (?,?,?,?)', (11, '', 0, ''))
c.execute('INSERT INTO status (id,flags,mtime,labels) VALUES (?,?,?,?)', (12, None, 0, None))
c.commit()
"#;

    const PY_DUMP: &str = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("SELECT value from metadata WHERE key='db_version'").fetchone()[0])
for row in c.execute('SELECT id,flags,mtime,labels from status ORDER BY id'):
    print(row)
"#;

    #[test]
    fn reads_and_writes_a_database_made_by_offlineimap() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(tmp.path(), true);
        let db = d.status_path("INBOX.Sent");
        fs::create_dir_all(db.parent().unwrap()).unwrap();
        if python(PY_CREATE_V2, &db).is_none() {
            return;
        }
        let mut s = d
            .open_folder("INBOX.Sent", "INBOX/Sent", "INBOX.Sent")
            .unwrap();
        assert!(!s.is_new());
        let rows = s.load().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[&uid(10)], Flags::FLAGGED | Flags::SEEN);
        assert_eq!(rows[&uid(11)], Flags::EMPTY);
        assert_eq!(rows[&uid(12)], Flags::EMPTY);
        // Updating flags keeps the Gmail columns; a new row gets OfflineIMAP's defaults.
        s.set(uid(10), Flags::SEEN).unwrap();
        s.set(uid(13), Flags::DRAFT | Flags::SEEN).unwrap();
        s.commit().unwrap();
        drop(s);
        let dump = python(PY_DUMP, &db).unwrap();
        assert_eq!(
            dump,
            "2\n(10, 'S', 99, 'a, b')\n(11, '', 0, '')\n(12, None, 0, None)\n(13, 'DS', 0, '')\n"
        );
    }

    #[test]
    fn upgrades_a_version_1_database() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(tmp.path(), true);
        let db = d.status_path("INBOX");
        fs::create_dir_all(db.parent().unwrap()).unwrap();
        let v1 = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.executescript("""
CREATE TABLE metadata (key VARCHAR(50) PRIMARY KEY, value VARCHAR(128));
INSERT INTO metadata VALUES('db_version', '1');
CREATE TABLE status (id INTEGER PRIMARY KEY, flags VARCHAR(50));
INSERT INTO status VALUES(5, 'RS');
""")
c.commit()
"#;
        if python(v1, &db).is_none() {
            return;
        }
        let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
        assert_eq!(s.load().unwrap()[&uid(5)], Flags::ANSWERED | Flags::SEEN);
        drop(s);
        assert_eq!(python(PY_DUMP, &db).unwrap(), "2\n(5, 'RS', 0, '')\n");
    }

    #[test]
    fn corrupt_database_is_a_folder_error_and_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(tmp.path(), true);
        let db = d.status_path("INBOX");
        fs::create_dir_all(db.parent().unwrap()).unwrap();
        let garbage = vec![b'x'; 4096];
        fs::write(&db, &garbage).unwrap();
        let e = d.open_folder("INBOX", "INBOX", "INBOX").unwrap_err();
        assert_eq!(e.severity(), oi_core::Severity::Folder);
        assert_eq!(fs::read(&db).unwrap(), garbage);

        // An empty file is an empty database: it is set up like a new one.
        fs::write(&db, b"").unwrap();
        let s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
        assert!(s.is_new());
    }

    #[test]
    fn bad_validity_file_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(tmp.path(), true);
        let s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
        let p = d.validity_path(Side::Local, "INBOX");
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, "  42  \nrest\n").unwrap();
        assert_eq!(
            s.saved_validity(Side::Local).unwrap(),
            Some(UidValidity(42))
        );
        fs::write(&p, "forty-two\n").unwrap();
        assert!(s.saved_validity(Side::Local).is_err());
    }

    #[test]
    fn imports_legacy_plain_status_once() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(tmp.path(), true);
        let legacy = tmp.path().join("meta/Account-acc/LocalStatus/INBOX.Sent");
        fs::create_dir_all(legacy.parent().unwrap()).unwrap();
        fs::write(
            &legacy,
            "OFFLINEIMAP LocalStatus CACHE DATA - DO NOT MODIFY - FORMAT 2\n7|S|0|\n8|FR|5|x\n",
        )
        .unwrap();
        let mut s = d
            .open_folder("INBOX/Sent", "INBOX/Sent", "INBOX.Sent")
            .unwrap();
        let rows = s.load().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[&uid(8)], Flags::FLAGGED | Flags::ANSWERED);
        s.remove(uid(7)).unwrap();
        s.commit().unwrap();
        drop(s);
        let mut s = d
            .open_folder("INBOX/Sent", "INBOX/Sent", "INBOX.Sent")
            .unwrap();
        assert_eq!(s.load().unwrap().len(), 1, "not imported a second time");
    }

    #[test]
    fn pending_uploads_survive_a_crash_and_clear_with_a_commit() {
        use oi_core::{MsgRef, PendingUpload};
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(tmp.path(), true);
        let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
        assert!(s.pending_uploads().unwrap().is_empty());
        let p = PendingUpload {
            marker: "1-2".into(),
            source: MsgRef::Unsynced("123.host".into()),
        };
        s.add_pending_upload(&p).unwrap();
        s.commit().unwrap();
        s.set(uid(4), Flags::SEEN).unwrap();
        drop(s); // a crash: only the pending record was committed
        let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
        assert_eq!(s.pending_uploads().unwrap(), vec![p]);
        assert!(s.load().unwrap().is_empty());
        s.clear_pending_upload("1-2").unwrap();
        s.commit().unwrap();
        drop(s);
        let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
        assert!(s.pending_uploads().unwrap().is_empty());
        // OfflineIMAP's own reading of the file is unaffected by the extra table.
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg("import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute('SELECT value FROM metadata WHERE key=\"db_version\"').fetchone()[0], len(c.execute('SELECT id,flags,mtime,labels FROM status').fetchall()))")
            .arg(s.path())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2 0");
    }

    #[test]
    fn kept_listing_is_one_row_written_with_the_commit() {
        use oi_core::{CachedListing, Listing, MessageMeta, Side};
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(tmp.path(), true);
        let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
        assert_eq!(s.cached_listing(Side::Remote).unwrap(), None);
        let mut listing = Listing::default();
        listing.messages.insert(
            uid(3),
            MessageMeta {
                flags: Flags::SEEN,
                size: Some(99),
            },
        );
        let c = CachedListing {
            token: "imap-modseq/1 1 5 0".into(),
            listing,
        };
        s.save_listing(Side::Remote, Some(&c)).unwrap();
        drop(s); // not committed: gone
        let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
        assert_eq!(s.cached_listing(Side::Remote).unwrap(), None);
        s.save_listing(Side::Remote, Some(&c)).unwrap();
        s.commit().unwrap();
        drop(s);
        let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
        assert_eq!(s.cached_listing(Side::Remote).unwrap(), Some(c));
        assert_eq!(s.cached_listing(Side::Local).unwrap(), None);
        s.save_listing(Side::Remote, None).unwrap();
        s.commit().unwrap();
        assert_eq!(s.cached_listing(Side::Remote).unwrap(), None);
        // A damaged row is no listing (the store then lists in full).
        let conn = rusqlite::Connection::open(s.path()).unwrap();
        conn.execute(
            "INSERT INTO offlineimap_rs_listing VALUES ('remote', 't', x'0102')",
            [],
        )
        .unwrap();
        assert_eq!(s.cached_listing(Side::Remote).unwrap(), None);
    }

    /// A status of records `uids` (all seen) and, when `token` is given, a remote listing
    /// of them kept under that token; committed and closed.
    fn status_with(
        d: &StatusDir,
        name: &str,
        uids: &[u32],
        token: Option<&str>,
    ) -> CachedListingOf {
        use oi_core::{CachedListing, Listing, MessageMeta};
        let mut s = d.open_folder(name, name, name).unwrap();
        let mut listing = Listing::default();
        for &n in uids {
            s.set(uid(n), Flags::SEEN).unwrap();
            listing.messages.insert(
                uid(n),
                MessageMeta {
                    flags: Flags::SEEN,
                    size: Some(10),
                },
            );
        }
        let kept = token.map(|t| CachedListing {
            token: t.to_owned(),
            listing,
        });
        if let Some(c) = &kept {
            s.save_listing(Side::Remote, Some(c)).unwrap();
        }
        s.commit().unwrap();
        kept
    }

    type CachedListingOf = Option<oi_core::CachedListing>;

    #[test]
    fn statuses_read_ahead_are_taken_as_read_and_dropped_by_writes() {
        use oi_core::CachedListing;
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(tmp.path(), true);
        let kept = status_with(&d, "A", &[1, 2], Some("r1"));
        status_with(&d, "B", &[5], None);
        d.read_ahead().unwrap().join().unwrap();
        // Served from what was read, without opening the file.
        assert_eq!(d.peek_token("A", Side::Remote).as_deref(), Some("r1"));
        assert_eq!(d.peek_token("B", Side::Remote), None);

        let mut s = d.open_folder("A", "A", "A").unwrap();
        let ahead = s.read_ahead.as_ref().expect("A read ahead");
        assert_eq!(ahead.records.as_ref().map(|r| r.len()), Some(2));
        assert_eq!(s.cached_token(Side::Remote).unwrap().as_deref(), Some("r1"));
        assert_eq!(s.cached_listing(Side::Remote).unwrap(), kept);
        assert_eq!(s.cached_listing(Side::Local).unwrap(), None);
        let records = s.load().unwrap();
        assert_eq!(records.keys().map(|u| u.get()).collect::<Vec<_>>(), [1, 2]);
        // Each item is taken once: the next reads go to the file.
        let ahead = s.read_ahead.as_ref().unwrap();
        assert!(ahead.records.is_none() && ahead.listings.iter().all(Option::is_none));
        assert_eq!(s.load().unwrap(), records);

        // A write drops what it changes before it is taken.
        let mut s = d.open_folder("B", "B", "B").unwrap();
        assert!(s.read_ahead.as_ref().is_some_and(|r| r.records.is_some()));
        s.set(uid(6), Flags::FLAGGED).unwrap();
        let newer = CachedListing {
            token: "l2".into(),
            listing: Default::default(),
        };
        s.save_listing(Side::Local, Some(&newer)).unwrap();
        assert_eq!(s.load().unwrap().len(), 2);
        assert_eq!(s.cached_token(Side::Local).unwrap().as_deref(), Some("l2"));
        assert_eq!(s.cached_listing(Side::Local).unwrap(), Some(newer));
        assert_eq!(s.cached_listing(Side::Remote).unwrap(), None);
    }

    #[test]
    fn statuses_are_read_ahead_in_name_order_within_the_budget() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(tmp.path(), false);
        for (name, count) in [("A", 15_000u32), ("B", 6_000), ("C", 10)] {
            status_with(&d, name, &[], None);
            let mut conn = rusqlite::Connection::open(d.status_path(name)).unwrap();
            let tx = conn.transaction().unwrap();
            for n in 1..=count {
                tx.execute("INSERT INTO status (id, flags) VALUES (?, 'S')", [n])
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        d.read_ahead().unwrap().join().unwrap();
        // A fits; A and B together are over 20000 records, so neither B nor what follows.
        let read = |name: &str| {
            d.open_folder(name, name, name)
                .unwrap()
                .read_ahead
                .is_some()
        };
        assert_eq!([read("A"), read("B"), read("C")], [true, false, false]);
        // A later reading starts afresh.
        d.read_ahead().unwrap().join().unwrap();
        assert!(read("A"));
    }

    #[test]
    fn a_status_changed_or_with_a_journal_after_its_read_ahead_is_read_again() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(tmp.path(), true);
        status_with(&d, "A", &[1], Some("r1"));
        status_with(&d, "B", &[1], Some("r1"));
        status_with(&d, "C", &[1], Some("r1"));
        std::fs::write(d.status_path("C").with_file_name("C-journal"), b"").unwrap();
        d.read_ahead().unwrap().join().unwrap();
        // C had a journal beside it: not read.
        std::fs::remove_file(d.status_path("C").with_file_name("C-journal")).unwrap();
        assert!(d.open_folder("C", "C", "C").unwrap().read_ahead.is_none());
        // A changes after the reading. Within a clock tick its size and modification time
        // can stay the same (put back here): the file change counter tells.
        let before = std::fs::metadata(d.status_path("A")).unwrap();
        let other = rusqlite::Connection::open(d.status_path("A")).unwrap();
        other
            .execute("UPDATE status SET flags='FS' WHERE id=1", [])
            .unwrap();
        other
            .execute("UPDATE offlineimap_rs_listing SET token='r2'", [])
            .unwrap();
        drop(other);
        let file = std::fs::File::options()
            .write(true)
            .open(d.status_path("A"))
            .unwrap();
        file.set_modified(before.modified().unwrap()).unwrap();
        assert_eq!(file.metadata().unwrap().len(), before.len());
        drop(file);
        assert_eq!(d.peek_token("A", Side::Remote).as_deref(), Some("r2"));
        let mut s = d.open_folder("A", "A", "A").unwrap();
        assert!(s.read_ahead.is_none());
        assert_eq!(s.load().unwrap()[&uid(1)], Flags::FLAGGED | Flags::SEEN);
        assert_eq!(s.cached_token(Side::Remote).unwrap().as_deref(), Some("r2"));
        // B is purged (its folder was created again): what was read goes with it.
        d.purge_folder("B").unwrap();
        let mut s = d.open_folder("B", "B", "B").unwrap();
        assert!(s.read_ahead.is_none());
        assert!(s.load().unwrap().is_empty());
    }

    #[test]
    fn purge_removes_the_database() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(tmp.path(), true);
        let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
        s.set(uid(1), Flags::SEEN).unwrap();
        drop(s);
        d.purge_folder("INBOX").unwrap();
        d.purge_folder("INBOX").unwrap();
        let mut s = d.open_folder("INBOX", "INBOX", "INBOX").unwrap();
        assert!(s.load().unwrap().is_empty());
    }
}
