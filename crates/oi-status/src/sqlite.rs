//! One folder's LocalStatus in OfflineIMAP's SQLite format, plus the two FolderValidity
//! files of that folder.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oi_core::{
    CachedListing, Flags, MsgRef, OffThread, PendingUpload, Side, StatusStore, StoreError, Uid,
    UidValidity,
};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use crate::ahead::{ListingRow, ReadAhead};
use crate::error::{StatusError, io_at};
use crate::plain;

/// Our own table of kept listings (see [`StatusStore::cached_listing`]).
pub(crate) const LISTING_TABLE: &str = "offlineimap_rs_listing";

/// The schema OfflineIMAP 8 writes (`LocalStatusSQLiteFolder.__create_db`), statement for
/// statement, so that the files are indistinguishable.
const CREATE_V2: &str = "
CREATE TABLE metadata (key VARCHAR(50) PRIMARY KEY, value VARCHAR(128));
INSERT INTO metadata VALUES('db_version', '2');
CREATE TABLE status (id INTEGER PRIMARY KEY, flags VARCHAR(50), mtime INTEGER, labels VARCHAR(256));
";

/// OfflineIMAP's v1 → v2 upgrade (`__upgrade_db`).
const UPGRADE_V1: &str = "
ALTER TABLE status ADD mtime INTEGER DEFAULT 0;
ALTER TABLE status ADD labels VARCHAR(256) DEFAULT '';
UPDATE metadata SET value='2' WHERE key='db_version';
";

/// The LocalStatus of one folder.
///
/// Writes are gathered in one transaction that [`StatusStore::commit`] ends; with `fsync`
/// on the engine commits at every checkpoint (after each batch of messages). OfflineIMAP
/// commits after each statement when `fsync` is on, but nothing depends on that here: the
/// engine's plan never needs a record to be durable (a message on both sides without a
/// record is only recorded again, a deletion whose record survives is only repeated), so
/// per-statement commits would buy a thousand fsyncs and no safety. `fsync` still makes
/// the commits and the FolderValidity files durable. Uncommitted writes are rolled back
/// when the value is dropped.
///
/// With `fsync` off, OfflineIMAP's "false batches SQLite transactions": the engine's
/// checkpoints do not commit ([`StatusStore::checkpoint_commit`]), only the commits it needs
/// (upload markers before their APPEND, a folder's end, a stop) do, still at SQLite's
/// default `synchronous=FULL`. A record lost with an uncommitted transaction only costs a
/// re-pairing on the next run. Committing at every checkpoint cost more than the commit: on
/// ext4 (`data=ordered`) each SQLite fsync commits the file system's journal, which writes
/// out every message file written since, so a run with fsync off waited for the disk
/// anyway (../shared/bench on a journaled ext4, 20000 messages, FSYNC=no initial: about
/// 2.4 s against 1.2 s). SQLite is not set to `synchronous=OFF`: its commits would then
/// reach the disk in any order with the message files they record, and a record whose
/// file a power loss took would make the next run delete that message from the server
/// (OfflineIMAP, which keeps SQLite's default, promises only duplicates with fsync off).
#[derive(Debug)]
pub struct SqliteStatus {
    pub(crate) conn: Connection,
    path: PathBuf,
    fsync: bool,
    in_transaction: bool,
    /// The open transaction records upload markers: its commit must survive a power loss.
    pub(crate) durable: bool,
    created: bool,
    remote_validity: PathBuf,
    local_validity: PathBuf,
    /// A [`StatusStore::commit_aside`] whose future was dropped before its end: the
    /// connection is still lent to it. Every operation, and the drop, first waits for it
    /// and takes the connection back ([`SqliteStatus::settle_aside`]).
    aside: Option<OffThread<Lent>>,
    /// What [`crate::StatusDir::read_ahead`] read of this file, taken item by item in place
    /// of reading it again; an item is dropped by a write to what it describes.
    pub(crate) read_ahead: Option<ReadAhead>,
}

/// What a commit's thread gives back: the connection and [`commit_on`]'s outcome.
type Lent = (Connection, (bool, Result<(), StoreError>));

impl Drop for SqliteStatus {
    fn drop(&mut self) {
        // Ends (and so finishes) a commit left running; its error has no one to go to.
        let _ = self.settle_aside();
    }
}

impl SqliteStatus {
    pub(crate) fn open(
        path: PathBuf,
        legacy: &Path,
        remote_validity: PathBuf,
        local_validity: PathBuf,
        fsync: bool,
    ) -> Result<SqliteStatus, StatusError> {
        if let Some(dir) = path.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_at(dir))?;
        }
        let sql = |source| StatusError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sql)?;
        // Python's sqlite3 waits 5 s for a locked database; so do we.
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        // Each folder's file is read once from start to end and written in batches: a
        // small page cache (512 KiB, not SQLite's 2 MiB) costs nothing but memory saved,
        // and two folders are open at once.
        conn.execute_batch("PRAGMA cache_size = -512")
            .map_err(sql)?;
        let mut status = SqliteStatus {
            conn,
            path: path.clone(),
            fsync,
            in_transaction: false,
            durable: false,
            created: false,
            remote_validity,
            local_validity,
            aside: None,
            read_ahead: None,
        };
        status.prepare_schema(legacy)?;
        // The reads that start a folder's sync (its records, cached listings, pending
        // uploads, each after a look at sqlite_master) run in one transaction that the
        // first commit ends: outside one, every statement takes and drops the file's shared
        // lock and checks for a hot journal again (about ten lock cycles and their fcntl,
        // stat and pread calls per folder, which showed in syncs of many small folders).
        // Only this connection writes the file while the account is locked.
        status.begin()?;
        Ok(status)
    }

    /// Takes what was read of this file ahead (see [`crate::ahead`]).
    pub(crate) fn use_read_ahead(&mut self, read: ReadAhead) {
        self.read_ahead = Some(read);
    }

    /// Waits for a commit left running by a dropped [`StatusStore::commit_aside`] and takes
    /// the connection back; its outcome is this call's.
    fn settle_aside(&mut self) -> Result<(), StoreError> {
        match self.aside.take() {
            Some(job) => {
                let (conn, (ended, outcome)) = job.wait();
                self.conn = conn;
                self.committed(ended);
                outcome
            }
            None => Ok(()),
        }
    }

    /// After [`commit_on`]: an ended transaction takes its durability request with it.
    fn committed(&mut self, ended: bool) {
        if ended {
            self.in_transaction = false;
            self.durable = false;
        }
    }

    fn begin(&mut self) -> Result<(), StatusError> {
        if !self.in_transaction {
            self.conn.execute_batch("BEGIN").map_err(self.sql())?;
            self.in_transaction = true;
        }
        Ok(())
    }

    /// Our own table of uploads in flight. OfflineIMAP reads only `metadata` and `status`
    /// and ignores other tables, so the file stays its LocalStatus; created on first use.
    fn pending_table(&mut self) -> Result<(), StatusError> {
        self.conn
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS offlineimap_rs_pending_upload \
                 (marker TEXT PRIMARY KEY, source TEXT NOT NULL)",
            )
            .map_err(self.sql())
    }

    /// Whether one of our own tables exists (reads never create them).
    fn has_table(&self, name: &str) -> Result<bool, StatusError> {
        table_exists(&self.conn, name).map_err(self.sql())
    }

    /// In the rollback-journal mode that OfflineIMAP's files use, a COMMIT is done when
    /// the journal file is deleted, and at the default `synchronous=FULL` SQLite does not
    /// fsync the directory after that unlink: after a power loss the journal can come
    /// back and the next open rolls the transaction back. For most records that is
    /// harmless (the engine never needs a record to be durable: see the type's comment),
    /// but a rolled-back record of upload markers lets a message already APPENDed be
    /// uploaded a second time. So after the commit of a transaction that records
    /// markers the directory is synced too (with `fsync` on), which is what SQLite's
    /// `synchronous=EXTRA` does for every commit (it cannot be switched inside an open
    /// transaction); the other commits keep the cheaper default.
    fn need_durable_commit(&mut self) -> Result<(), StatusError> {
        self.durable |= self.fsync;
        Ok(())
    }

    fn sql(&self) -> impl FnOnce(rusqlite::Error) -> StatusError {
        let path = self.path.clone();
        move |source| StatusError::Sqlite { path, source }
    }

    /// OfflineIMAP's `openfiles`: a missing `metadata` table means a new (or empty) file
    /// and the schema is created; an old version is upgraded. A file that is not a
    /// database at all is an error, as in OfflineIMAP (its "recreate" path fails on such
    /// a file too), so the user's file is never overwritten behind their back.
    fn prepare_schema(&mut self, legacy: &Path) -> Result<(), StatusError> {
        let version: Result<Option<String>, rusqlite::Error> = self
            .conn
            .query_row(
                "SELECT value from metadata WHERE key='db_version'",
                [],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten);
        match version {
            Ok(Some(v)) => {
                let n: u32 = v.trim().parse().map_err(|_| StatusError::BadDatabase {
                    path: self.path.clone(),
                    reason: format!("db_version is {v:?}"),
                })?;
                if n < 2 {
                    self.conn.execute_batch(UPGRADE_V1).map_err(self.sql())?;
                }
                Ok(())
            }
            Ok(None) => Err(StatusError::BadDatabase {
                path: self.path.clone(),
                reason: "no db_version in the metadata table".to_owned(),
            }),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::NotADatabase => {
                Err(self.sql()(rusqlite::Error::SqliteFailure(e, None)))
            }
            Err(_) => self.create(legacy),
        }
    }

    /// Creates the schema and, in the same transaction, imports a legacy plain-text
    /// LocalStatus if one is there. (OfflineIMAP 8 has code for that import, but it asks
    /// "is the SQLite folder new?" before the database is opened, so it never runs; doing
    /// it spares a user of a very old setup nothing worse than a flag-only resync.)
    fn create(&mut self, legacy: &Path) -> Result<(), StatusError> {
        let rows = plain::read(legacy).unwrap_or_default();
        let path = self.path.clone();
        let sql = |source| StatusError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute_batch(CREATE_V2).map_err(sql)?;
        {
            let mut ins = tx
                .prepare("INSERT OR REPLACE INTO status (id,flags,mtime,labels) VALUES (?,?,?,?)")
                .map_err(sql)?;
            for r in &rows {
                ins.execute(params![r.uid, r.flags, r.mtime, r.labels])
                    .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        self.created = true;
        Ok(())
    }

    /// True when this open created the database (first sync of the folder, or the file
    /// was missing).
    pub fn is_new(&self) -> bool {
        self.created
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, sql: &str, args: impl rusqlite::Params) -> Result<(), StatusError> {
        self.begin()?;
        // The same few statements run once per message: parse each once per connection.
        self.conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute(args))
            .map_err(self.sql())?;
        Ok(())
    }

    fn validity_file(&self, side: Side) -> &Path {
        match side {
            Side::Remote => &self.remote_validity,
            Side::Local => &self.local_validity,
        }
    }

    fn read_validity(&self, side: Side) -> Result<Option<UidValidity>, StatusError> {
        let path = self.validity_file(side);
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_at(path)(e)),
        };
        // OfflineIMAP: int(file.readline().strip())
        let line = text.lines().next().unwrap_or("").trim();
        line.parse::<u32>()
            .map(|v| Some(UidValidity(v)))
            .map_err(|_| StatusError::BadValidity {
                path: path.to_owned(),
                content: line.to_owned(),
            })
    }

    /// Writes `<file>.tmp` then renames it over `<file>`, as OfflineIMAP does, with fsyncs
    /// when configured so the rename never exposes an empty file after a crash.
    fn write_validity(&self, side: Side, value: UidValidity) -> Result<(), StatusError> {
        let path = self.validity_file(side);
        let dir = path.parent().unwrap_or(Path::new("."));
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_at(dir))?;
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let mut f = File::create(&tmp).map_err(io_at(&tmp))?;
        f.write_all(format!("{}\n", value.0).as_bytes())
            .map_err(io_at(&tmp))?;
        if self.fsync {
            f.sync_all().map_err(io_at(&tmp))?;
        }
        drop(f);
        fs::rename(&tmp, path).map_err(io_at(path))?;
        if self.fsync {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_at(dir))?;
        }
        Ok(())
    }

    fn do_load(&mut self) -> Result<BTreeMap<Uid, Flags>, StatusError> {
        if let Some(records) = self.read_ahead.as_mut().and_then(|r| r.records.take()) {
            return Ok(records);
        }
        read_records(&self.conn).map_err(self.sql())
    }

    /// A write to the records: what was read of them ahead no longer holds.
    fn records_change(&mut self) {
        if let Some(r) = self.read_ahead.as_mut() {
            r.records = None;
        }
    }
}

/// A status file opened only to read it, creating, upgrading and locking nothing
/// beyond SQLite's shared lock of each read.
pub(crate) fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    use rusqlite::OpenFlags;
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

/// Every record of a status file.
pub(crate) fn read_records(conn: &Connection) -> rusqlite::Result<BTreeMap<Uid, Flags>> {
    let mut stmt = conn.prepare("SELECT id,flags FROM status")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?))
    })?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (id, flags) = row?;
        // OfflineIMAP never stores the negative placeholders of unsynced messages; a row
        // that is not a valid UID cannot name a message on either side.
        if let Some(uid) = u32::try_from(id).ok().and_then(Uid::new) {
            out.insert(uid, Flags::from_maildir(flags.as_deref().unwrap_or("")));
        }
    }
    Ok(out)
}

/// Whether a table exists in a status file.
pub(crate) fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    let found: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type='table' AND name=?",
            [name],
            |r| r.get(0),
        )
        .optional()?;
    Ok(found.is_some())
}

/// The row of the listing kept for `side`: its token and encoded messages (`None` without
/// our table, which reads never create).
pub(crate) fn read_listing_row(
    conn: &Connection,
    side: Side,
) -> rusqlite::Result<Option<ListingRow>> {
    if !table_exists(conn, LISTING_TABLE)? {
        return Ok(None);
    }
    conn.query_row(
        "SELECT token, data FROM offlineimap_rs_listing WHERE side=?",
        [side_key(side)],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// A commit: the COMMIT of the open transaction, then the directory sync of a durable one
/// (see `need_durable_commit`). True first when the transaction ended (the directory sync
/// may still have failed).
fn commit_on(
    conn: &Connection,
    path: &Path,
    in_transaction: bool,
    durable: bool,
) -> (bool, Result<(), StoreError>) {
    if in_transaction && let Err(source) = conn.execute_batch("COMMIT") {
        let e = StatusError::Sqlite {
            path: path.to_owned(),
            source,
        };
        return (false, Err(e.into()));
    }
    if durable {
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
            return (true, Err(io_at(dir)(e).into()));
        }
    }
    (true, Ok(()))
}

/// The token of the listing kept for `side` (see [`StatusStore::cached_token`]); `None`
/// without our table, as [`read_listing_row`].
pub(crate) fn kept_token(conn: &Connection, side: Side) -> rusqlite::Result<Option<String>> {
    if !table_exists(conn, LISTING_TABLE)? {
        return Ok(None);
    }
    conn.query_row(
        "SELECT token FROM offlineimap_rs_listing WHERE side=?",
        [side_key(side)],
        |r| r.get(0),
    )
    .optional()
}

fn side_key(side: Side) -> &'static str {
    match side {
        Side::Remote => "remote",
        Side::Local => "local",
    }
}

impl StatusStore for SqliteStatus {
    fn load(&mut self) -> Result<BTreeMap<Uid, Flags>, StoreError> {
        self.settle_aside()?;
        Ok(self.do_load()?)
    }

    fn set(&mut self, uid: Uid, flags: Flags) -> Result<(), StoreError> {
        self.settle_aside()?;
        self.records_change();
        // OfflineIMAP inserts new rows with mtime 0 and empty labels, and updates only the
        // flags of existing ones (Gmail labels and their mtimes stay).
        Ok(self.write(
            "INSERT INTO status (id,flags,mtime,labels) VALUES (?1,?2,0,'') \
             ON CONFLICT(id) DO UPDATE SET flags=excluded.flags",
            params![uid.get(), flags.to_maildir()],
        )?)
    }

    fn remove(&mut self, uid: Uid) -> Result<(), StoreError> {
        self.settle_aside()?;
        self.records_change();
        Ok(self.write("DELETE FROM status WHERE id=?", params![uid.get()])?)
    }

    fn pending_uploads(&mut self) -> Result<Vec<PendingUpload>, StoreError> {
        self.settle_aside()?;
        if !self.has_table("offlineimap_rs_pending_upload")? {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare("SELECT marker, source FROM offlineimap_rs_pending_upload")
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(self.sql())?;
        let mut out = Vec::new();
        for row in rows {
            let (marker, source) = row.map_err(self.sql())?;
            // A row we cannot read names no message we could match: skip it.
            if let Some(source) = MsgRef::from_text(&source) {
                out.push(PendingUpload { marker, source });
            }
        }
        Ok(out)
    }

    fn add_pending_upload(&mut self, pending: &PendingUpload) -> Result<(), StoreError> {
        self.settle_aside()?;
        self.pending_table()?;
        self.need_durable_commit()?;
        Ok(self.write(
            "INSERT OR REPLACE INTO offlineimap_rs_pending_upload (marker, source) VALUES (?, ?)",
            params![pending.marker, pending.source.to_text()],
        )?)
    }

    fn clear_pending_upload(&mut self, marker: &str) -> Result<(), StoreError> {
        self.settle_aside()?;
        self.pending_table()?;
        Ok(self.write(
            "DELETE FROM offlineimap_rs_pending_upload WHERE marker=?",
            params![marker],
        )?)
    }

    /// A side's listing is one row of our own table `offlineimap_rs_listing` (OfflineIMAP
    /// ignores it): the store's token and the messages in [`CachedListing`]'s binary form,
    /// one blob, so that reading a 20000-message folder's listing costs one row.
    fn cached_listing(&mut self, side: Side) -> Result<Option<CachedListing>, StoreError> {
        self.settle_aside()?;
        let ahead = self
            .read_ahead
            .as_mut()
            .and_then(|r| r.listings[side.index()].take());
        let row = match ahead {
            Some(row) => row,
            None => read_listing_row(&self.conn, side).map_err(self.sql())?,
        };
        // A row we cannot read is no cache: the store lists in full and it is rewritten.
        Ok(row.and_then(|(token, data)| {
            CachedListing::decode_messages(&data).map(|listing| CachedListing { token, listing })
        }))
    }

    fn cached_token(&mut self, side: Side) -> Result<Option<String>, StoreError> {
        self.settle_aside()?;
        if let Some(token) = self.read_ahead.as_ref().and_then(|r| r.token(side)) {
            return Ok(token);
        }
        Ok(kept_token(&self.conn, side).map_err(self.sql())?)
    }

    fn save_listing(
        &mut self,
        side: Side,
        cached: Option<&CachedListing>,
    ) -> Result<(), StoreError> {
        self.settle_aside()?;
        if let Some(r) = self.read_ahead.as_mut() {
            r.listings[side.index()] = None;
        }
        match cached {
            Some(c) => {
                self.conn
                    .execute_batch(
                        "CREATE TABLE IF NOT EXISTS offlineimap_rs_listing \
                         (side TEXT PRIMARY KEY, token TEXT NOT NULL, data BLOB NOT NULL)",
                    )
                    .map_err(self.sql())?;
                Ok(self.write(
                    "INSERT OR REPLACE INTO offlineimap_rs_listing (side, token, data) \
                     VALUES (?, ?, ?)",
                    params![
                        side_key(side),
                        c.token,
                        CachedListing::encode_messages(&c.listing)
                    ],
                )?)
            }
            None if self.has_table(LISTING_TABLE)? => Ok(self.write(
                "DELETE FROM offlineimap_rs_listing WHERE side=?",
                params![side_key(side)],
            )?),
            None => Ok(()),
        }
    }

    fn checkpoint_commit(&mut self) -> Result<(), StoreError> {
        if self.fsync { self.commit() } else { Ok(()) }
    }

    async fn checkpoint_commit_aside(&mut self) -> Result<(), StoreError> {
        if self.fsync {
            self.commit_aside().await
        } else {
            Ok(())
        }
    }

    /// The COMMIT (and the directory sync of a durable one) on a thread of its own, the
    /// connection lent to it meanwhile (an empty in-memory database stands in).
    async fn commit_aside(&mut self) -> Result<(), StoreError> {
        self.settle_aside()?;
        if !self.in_transaction && !self.durable {
            return Ok(());
        }
        // A transaction that only read (a folder with nothing to record, as in a no-op
        // run) ends without touching the disk: here, rather than on a thread started for
        // it (a hundred folders: a hundred threads, about 10 ms of CPU).
        let wrote = self
            .conn
            .transaction_state(Some(rusqlite::MAIN_DB))
            .map_or(true, |t| t == rusqlite::TransactionState::Write);
        if !wrote && !self.durable {
            return self.commit();
        }
        let stand_in = Connection::open_in_memory().map_err(self.sql())?;
        let conn = std::mem::replace(&mut self.conn, stand_in);
        let in_transaction = self.in_transaction;
        let durable = self.durable;
        let path = self.path.clone();
        let job = self
            .aside
            .insert(oi_core::off_thread("status-commit", move || {
                let outcome = commit_on(&conn, &path, in_transaction, durable);
                (conn, outcome)
            }));
        let (conn, (committed, outcome)) = job.await;
        self.aside = None;
        self.conn = conn;
        self.committed(committed);
        outcome
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.settle_aside()?;
        let (committed, outcome) =
            commit_on(&self.conn, &self.path, self.in_transaction, self.durable);
        self.committed(committed);
        outcome
    }

    fn saved_validity(&self, side: Side) -> Result<Option<UidValidity>, StoreError> {
        Ok(self.read_validity(side)?)
    }

    fn save_validity(&mut self, side: Side, value: UidValidity) -> Result<(), StoreError> {
        Ok(self.write_validity(side, value)?)
    }

    fn start_uid(&self, side: Side) -> Result<Option<u32>, StoreError> {
        Ok(crate::startuid::read(self.validity_file(side))?)
    }

    fn save_start_uid(&mut self, side: Side, uid: u32) -> Result<(), StoreError> {
        Ok(crate::startuid::write(
            self.validity_file(side),
            uid,
            self.fsync,
        )?)
    }
}
