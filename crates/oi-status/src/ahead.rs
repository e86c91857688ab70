//! LocalStatus files read ahead, while the server answers the folder LIST.
//!
//! A folder's sync starts by reading its status: every record (`SELECT id,flags FROM
//! status`) and the listings kept for both sides. For 20000 messages in 10 folders that is
//! about 5 ms of CPU after the LIST answer, on the task every folder shares, in a no-change
//! sync whose whole client side is about 15 ms. The files are all known before the LIST
//! (one per folder in `LocalStatus-sqlite/`), and the account lock keeps anyone else from
//! writing them, so [`crate::StatusDir::read_ahead`] reads them on a thread during the wait
//! and the folder's own opening takes what was read instead of reading it again.
//!
//! What was read is used only if the file is still the one read, checked after the
//! folder's own opening (which may upgrade it): same device, inode, size, modification
//! time and SQLite file change counter (which every commit in rollback-journal mode
//! increments; a file in WAL mode is not read ahead), and no rollback journal or WAL next
//! to it then or when it was read (a hot journal is rolled back by the first writer,
//! changing the content). Each item is taken once; a write to what it describes drops it
//! (see `SqliteStatus`).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use oi_core::{Flags, Side, Uid};

/// At most this many records are held read ahead, all files together: the memory they
/// take (with the kept listings' bytes) is on top of the folders under way, about 1 MiB
/// for 20000 messages. Files are read in name order until one would go over. (At 100000
/// messages the peak RSS is within 1 MiB of 30; the bound is 32.)
const AHEAD_RECORDS: usize = 20_000;
/// At most this many bytes of kept listings are held read ahead.
const AHEAD_LISTING_BYTES: usize = 1 << 20;

/// Which file a reading was made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    /// The file change counter of the database header.
    changes: u32,
}

/// The identity of the file at `path`, `None` when it is missing or has a rollback journal
/// or WAL beside it.
pub(crate) fn identity(path: &Path) -> Option<Identity> {
    for suffix in ["-journal", "-wal"] {
        let mut beside = path.as_os_str().to_owned();
        beside.push(suffix);
        if fs::symlink_metadata(&beside).is_ok() {
            return None;
        }
    }
    let mut file = File::open(path).ok()?;
    let m = file.metadata().ok()?;
    // The database header: the magic string, the file format versions at 18 and 19 (1 for
    // rollback journal, 2 for WAL), the file change counter at 24 (big-endian).
    let mut header = [0u8; 28];
    file.read_exact(&mut header).ok()?;
    let (magic, rest) = header.split_at(16);
    if magic != b"SQLite format 3\0" || rest.get(2..4) != Some(&[1, 1][..]) {
        return None;
    }
    let counter: [u8; 4] = rest.get(8..12)?.try_into().ok()?;
    Some(Identity {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        changes: u32::from_be_bytes(counter),
    })
}

/// A kept listing's row: its token and encoded messages.
pub(crate) type ListingRow = (String, Vec<u8>);

/// One status file as read ahead. `None` in a slot: taken, or dropped by a write.
#[derive(Debug, Default)]
pub(crate) struct ReadAhead {
    /// Every record.
    pub(crate) records: Option<BTreeMap<Uid, Flags>>,
    /// Each side's kept listing row: its token and encoded messages (`Some(None)`: none
    /// kept). Indexed by [`Side::index`].
    pub(crate) listings: [Option<Option<ListingRow>>; 2],
}

impl ReadAhead {
    /// The token of the listing kept for `side` (`Some(None)`: none kept), unless taken.
    pub(crate) fn token(&self, side: Side) -> Option<Option<String>> {
        let row = self.listings[side.index()].as_ref()?;
        Some(row.as_ref().map(|(token, _)| token.clone()))
    }
}

/// The files read ahead, by path, each with the identity it was read at.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shelf(Arc<Mutex<HashMap<PathBuf, (Identity, ReadAhead)>>>);

impl Shelf {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (Identity, ReadAhead)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What was read of `path`, if the file is still the one read; taken off the shelf.
    pub(crate) fn take(&self, path: &Path) -> Option<ReadAhead> {
        let (read_at, read) = self.lock().remove(path)?;
        (identity(path)? == read_at).then_some(read)
    }

    /// The token of the listing kept for `side` in `path` as read ahead (`Some(None)`: read,
    /// and none kept), if the file is still the one read; left on the shelf.
    pub(crate) fn token(&self, path: &Path, side: Side) -> Option<Option<String>> {
        let shelf = self.lock();
        let (read_at, read) = shelf.get(path)?;
        if identity(path).as_ref() != Some(read_at) {
            return None;
        }
        read.token(side)
    }

    /// Forgets `path` (its file is being removed).
    pub(crate) fn forget(&self, path: &Path) {
        self.lock().remove(path);
    }

    /// Reads the files of `dir`, in name order, within the budget; for
    /// [`crate::StatusDir::read_ahead`].
    pub(crate) fn fill(&self, dir: &Path) {
        // What an earlier sync of this run read and no folder took goes: only this
        // reading counts towards the budget.
        self.lock().clear();
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .filter(|p| {
                // SQLite's own files beside the databases.
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                !(name.ends_with("-journal") || name.ends_with("-wal") || name.ends_with("-shm"))
            })
            .collect();
        paths.sort();
        let (mut records, mut bytes) = (0usize, 0usize);
        for path in paths {
            let Some(read_at) = identity(&path) else {
                continue;
            };
            let Some(read) = read_file(&path) else {
                continue;
            };
            records += read.records.as_ref().map_or(0, BTreeMap::len);
            bytes += read
                .listings
                .iter()
                .flatten()
                .flatten()
                .map(|(token, data)| token.len() + data.len())
                .sum::<usize>();
            if records > AHEAD_RECORDS || bytes > AHEAD_LISTING_BYTES {
                break;
            }
            // Read while a journal appeared (a writer we do not expect): not kept.
            if identity(&path).as_ref() != Some(&read_at) {
                continue;
            }
            self.lock().insert(path, (read_at, read));
        }
    }
}

/// Reads one status file read-only; `None` on any trouble (the folder's own opening then
/// reads it, and reports what is wrong).
fn read_file(path: &Path) -> Option<ReadAhead> {
    let conn = crate::sqlite::open_read_only(path).ok()?;
    // Read once from start to end: SQLite's 2 MiB page cache would only leave its memory
    // free in this thread's heap arena.
    conn.execute_batch("PRAGMA cache_size = -256").ok()?;
    // One read transaction: the three reads see one state of the file.
    conn.execute_batch("BEGIN").ok()?;
    let records = crate::sqlite::read_records(&conn).ok()?;
    let mut listings: [Option<Option<ListingRow>>; 2] = [None, None];
    for side in Side::BOTH {
        listings[side.index()] = Some(crate::sqlite::read_listing_row(&conn, side).ok()?);
    }
    Some(ReadAhead {
        records: Some(records),
        listings,
    })
}
