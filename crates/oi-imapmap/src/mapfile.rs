//! OfflineIMAP's `Repository-<local>/UIDMapping/<folder>` file and our append journal.
//!
//! The file format is OfflineIMAP's (`folder/UIDMaps.py`): one `localuid:remoteuid` line
//! per mapped message, decimal, `\n`-terminated, in no particular order. OfflineIMAP writes
//! it whole to `<file>.tmp` (fsync when `[general] fsync` is on) and renames it over the
//! file, holding `fcntl.lockf` on `<file>.lock` meanwhile; when it finds a `<file>.tmp` at
//! load it warns that a previous run may have been interrupted and deletes it. We do the
//! same, so that either program can carry on from the other's state.
//!
//! The journal (`<file>.oi-pending`) is ours and OfflineIMAP ignores it: before each APPEND
//! to the local server it records the sync UID and a digest of the message, so that a
//! crash between the APPEND and the mapping write can be repaired by finding the stored
//! copy instead of uploading it back as a new message (see [`crate::MappedImapFolder`]).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use oi_core::Uid;

use crate::error::{MapError, io_at};

/// The file name OfflineIMAP gives a folder's state files (`BaseFolder.getfolderbasename`):
/// `/` becomes `.`, and a name that would be `.` or empty becomes `dot`.
pub fn folder_basename(name: &str) -> String {
    let base = name.replace('/', ".");
    if base.is_empty() || base == "." {
        "dot".to_owned()
    } else {
        base
    }
}

/// The mapping between local UIDs and sync (remote) UIDs of one folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UidMap {
    l2r: BTreeMap<Uid, Uid>,
    r2l: BTreeMap<Uid, Uid>,
}

impl UidMap {
    /// Parses the text of a mapping file. Blank lines are skipped (OfflineIMAP would choke
    /// on them, but we never write them). When two lines name the same UID, the later
    /// line wins, as it does in OfflineIMAP's dictionaries; the earlier local message then
    /// is unmapped and shows up as new.
    pub fn parse(text: &str, path: &Path) -> Result<UidMap, MapError> {
        let mut map = UidMap::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let corrupt = || MapError::Corrupt {
                path: path.to_owned(),
                line_no: i + 1,
                line: raw.to_owned(),
            };
            let (l, r) = line.split_once(':').ok_or_else(corrupt)?;
            let number = |s: &str| {
                s.trim()
                    .parse::<u32>()
                    .ok()
                    .and_then(Uid::new)
                    .ok_or_else(corrupt)
            };
            map.insert_replacing(number(l)?, number(r)?);
        }
        Ok(map)
    }

    /// The file's text: one `local:remote` line per entry, by local UID.
    pub fn render(&self) -> String {
        self.l2r.iter().map(|(l, r)| format!("{l}:{r}\n")).collect()
    }

    fn insert_replacing(&mut self, local: Uid, remote: Uid) {
        if let Some(old_remote) = self.l2r.insert(local, remote) {
            self.r2l.remove(&old_remote);
        }
        if let Some(old_local) = self.r2l.insert(remote, local)
            && old_local != local
        {
            self.l2r.remove(&old_local);
        }
    }

    /// Maps `local` to `remote`; refuses when `remote` is already another message's.
    pub fn insert(&mut self, local: Uid, remote: Uid) -> Result<(), MapError> {
        match self.r2l.get(&remote) {
            Some(&holder) if holder != local => Err(MapError::Taken {
                uid: remote,
                local: holder,
            }),
            _ => {
                self.insert_replacing(local, remote);
                Ok(())
            }
        }
    }

    /// The local UID of a sync UID.
    pub fn local_of(&self, remote: Uid) -> Option<Uid> {
        self.r2l.get(&remote).copied()
    }

    /// The sync UID of a local UID.
    pub fn remote_of(&self, local: Uid) -> Option<Uid> {
        self.l2r.get(&local).copied()
    }

    /// Drops the entry of a local UID.
    pub fn remove_local(&mut self, local: Uid) -> Option<Uid> {
        let remote = self.l2r.remove(&local)?;
        self.r2l.remove(&remote);
        Some(remote)
    }

    /// Keeps only the entries whose local UID passes `keep`; true when any was dropped.
    pub fn retain_locals(&mut self, mut keep: impl FnMut(Uid) -> bool) -> bool {
        let gone: Vec<Uid> = self.l2r.keys().copied().filter(|l| !keep(*l)).collect();
        for l in &gone {
            self.remove_local(*l);
        }
        !gone.is_empty()
    }

    /// How many messages are mapped.
    pub fn len(&self) -> usize {
        self.l2r.len()
    }

    /// True when nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.l2r.is_empty()
    }

    /// Every `(local, remote)` pair, by local UID.
    pub fn entries(&self) -> impl Iterator<Item = (Uid, Uid)> + '_ {
        self.l2r.iter().map(|(l, r)| (*l, *r))
    }
}

/// A message about to be appended to the local server under a sync UID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingAppend {
    /// The sync UID it will be mapped to.
    pub sync_uid: Uid,
    /// [`fingerprint`] of the message.
    pub fingerprint: (u64, u64),
    /// The highest local UID listed before the APPEND: the stored copy, if any, has a
    /// higher one (UIDs only grow, RFC 3501 §2.3.1.1), which keeps the repair from reading
    /// the whole folder.
    pub floor: u32,
}

/// Identifies a message's content across an APPEND and a later FETCH: the length and the
/// 64-bit FNV-1a digest of the message with CRs removed (servers may store LF and serve
/// CRLF) and without `X-OfflineIMAP` header lines (the IMAP store adds one when the server
/// lacks UIDPLUS, with a value we do not see).
pub fn fingerprint(body: &[u8]) -> (u64, u64) {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut len = 0u64;
    let mut in_header = true;
    for line in body.split_inclusive(|&b| b == b'\n') {
        let bare: Vec<u8> = line.iter().copied().filter(|&b| b != b'\r').collect();
        if in_header {
            if bare == b"\n" {
                in_header = false;
            } else if bare.len() >= 14 && bare[..14].eq_ignore_ascii_case(b"x-offlineimap:") {
                continue;
            }
        }
        for b in bare {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
            len += 1;
        }
    }
    (len, hash)
}

/// The on-disk state of one folder: the mapping file, its lock and tmp files, the journal.
#[derive(Debug, Clone)]
pub struct MapFile {
    path: PathBuf,
    fsync: bool,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl MapFile {
    /// The state of `folder` (the local folder's name) in the repository directory
    /// `Repository-<name>`.
    pub fn new(repository_dir: &Path, folder: &str, fsync: bool) -> MapFile {
        MapFile {
            path: repository_dir
                .join("UIDMapping")
                .join(folder_basename(folder)),
            fsync,
        }
    }

    /// The mapping file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tmp_path(&self) -> PathBuf {
        with_suffix(&self.path, ".tmp")
    }

    fn lock_path(&self) -> PathBuf {
        with_suffix(&self.path, ".lock")
    }

    /// The journal of appends in flight.
    pub fn journal_path(&self) -> PathBuf {
        with_suffix(&self.path, ".oi-pending")
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Takes OfflineIMAP's lock on `<file>.lock`, waiting for it. Needs the directory.
    fn lock(&self) -> Result<File, MapError> {
        let path = self.lock_path();
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_at(&path))?;
        wait_write_lock(&file).map_err(io_at(&path))?;
        Ok(file)
    }

    /// Reads the mapping (empty when there is no file). With `writable`, also creates the
    /// directory and removes a leftover `<file>.tmp`; the return's flag tells whether one
    /// was found (the caller warns, as OfflineIMAP does).
    pub fn load(&self, writable: bool) -> Result<(UidMap, bool), MapError> {
        let tmp = self.tmp_path();
        let leftover = tmp.exists();
        let _lock = if writable {
            fs::create_dir_all(self.dir()).map_err(io_at(self.dir()))?;
            let lock = self.lock()?;
            if leftover {
                // An interrupted save: the file itself is still the last complete one.
                fs::remove_file(&tmp).map_err(io_at(&tmp))?;
            }
            Some(lock)
        } else {
            None
        };
        let text = match fs::read(&self.path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_at(&self.path)(e)),
        };
        Ok((UidMap::parse(&text, &self.path)?, leftover))
    }

    /// Replaces the mapping file atomically: write `<file>.tmp`, fsync, rename, fsync the
    /// directory (so that the rename itself survives a power loss), all under the lock.
    pub fn save(&self, map: &UidMap) -> Result<(), MapError> {
        fs::create_dir_all(self.dir()).map_err(io_at(self.dir()))?;
        let _lock = self.lock()?;
        let tmp = self.tmp_path();
        write_file(&tmp, map.render().as_bytes(), self.fsync).map_err(io_at(&tmp))?;
        fs::rename(&tmp, &self.path).map_err(io_at(&self.path))?;
        if self.fsync {
            sync_dir(self.dir()).map_err(io_at(self.dir()))?;
        }
        Ok(())
    }

    /// Reads the journal; unreadable lines (a torn write) are skipped.
    pub fn read_journal(&self) -> Result<Vec<PendingAppend>, MapError> {
        let path = self.journal_path();
        let text = match fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at(&path)(e)),
        };
        Ok(text
            .lines()
            .filter_map(|line| {
                let mut it = line.split_ascii_whitespace();
                let sync_uid = Uid::new(it.next()?.parse().ok()?)?;
                let len = it.next()?.parse().ok()?;
                let hash = u64::from_str_radix(it.next()?, 16).ok()?;
                let floor = it.next()?.parse().ok()?;
                Some(PendingAppend {
                    sync_uid,
                    fingerprint: (len, hash),
                    floor,
                })
            })
            .collect())
    }

    /// Replaces the journal with these entries, durably before returning (it must be on
    /// disk before the APPEND it announces); an empty list removes the file.
    pub fn write_journal(&self, entries: &[PendingAppend]) -> Result<(), MapError> {
        let path = self.journal_path();
        if entries.is_empty() {
            return match fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_at(&path)(e)),
            };
        }
        fs::create_dir_all(self.dir()).map_err(io_at(self.dir()))?;
        let text: String = entries
            .iter()
            .map(|p| {
                format!(
                    "{} {} {:x} {}\n",
                    p.sync_uid, p.fingerprint.0, p.fingerprint.1, p.floor
                )
            })
            .collect();
        // Written in place: a torn journal only loses the repair of one crash, and the
        // lines that are whole still parse.
        write_file(&path, text.as_bytes(), self.fsync).map_err(io_at(&path))
    }

    /// Removes the mapping file and the journal (the local folder was created anew, so
    /// any earlier mapping describes messages that are gone).
    pub fn purge(&self) -> Result<(), MapError> {
        for path in [self.path.clone(), self.journal_path()] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(&path)(e)),
            }
        }
        Ok(())
    }
}

fn write_file(path: &Path, bytes: &[u8], fsync: bool) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    if fsync {
        f.sync_all()?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(target_os = "linux")]
const SET_LOCK_WAIT: libc::c_int = libc::F_OFD_SETLKW;
#[cfg(not(target_os = "linux"))]
const SET_LOCK_WAIT: libc::c_int = libc::F_SETLKW;

/// A blocking write lock over the whole file, the range `fcntl.lockf(fd, LOCK_EX)` takes,
/// so that it conflicts with OfflineIMAP's lock (a BSD `flock`, which is what std offers,
/// would not on Linux). An open-file-description lock on Linux, so that two folders of
/// this process exclude each other too. Held briefly, around one read or one rename; the
/// account lock already keeps other processes out, so the wait is never long.
#[allow(unsafe_code)]
fn wait_write_lock(file: &File) -> io::Result<()> {
    loop {
        // SAFETY: `flock` is a plain C struct for which all-zero bytes are a valid value
        // (and `l_pid` must be 0 for F_OFD_SETLKW); fcntl reads it through a pointer that
        // is valid for the duration of the call, on a descriptor `file` keeps open.
        let rc = unsafe {
            let mut fl: libc::flock = std::mem::zeroed();
            fl.l_type = libc::F_WRLCK as libc::c_short;
            fl.l_whence = libc::SEEK_SET as libc::c_short;
            libc::fcntl(file.as_raw_fd(), SET_LOCK_WAIT, &fl as *const libc::flock)
        };
        if rc != -1 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(n: u32) -> Uid {
        Uid::new(n).unwrap()
    }

    #[test]
    fn basenames_follow_offlineimap() {
        assert_eq!(folder_basename("INBOX/Sent"), "INBOX.Sent");
        assert_eq!(folder_basename("INBOX.Sent"), "INBOX.Sent");
        assert_eq!(folder_basename(""), "dot");
        assert_eq!(folder_basename("."), "dot");
        assert_eq!(folder_basename("/"), "dot");
    }

    #[test]
    fn parse_and_render_offlineimap_lines() {
        let p = Path::new("m");
        let map = UidMap::parse("3:10\n1:7\n\n 2 : 8 \n", p).unwrap();
        assert_eq!(map.render(), "1:7\n2:8\n3:10\n");
        assert_eq!(map.local_of(uid(10)), Some(uid(3)));
        assert_eq!(map.remote_of(uid(2)), Some(uid(8)));
        assert_eq!(map.local_of(uid(3)), None);
        for bad in ["1", "1:2:3", "a:1", "0:5", "5:0", "-1:2", "1:"] {
            let e = UidMap::parse(&format!("1:1\n{bad}\n"), p).unwrap_err();
            assert!(
                matches!(e, MapError::Corrupt { line_no: 2, .. }),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn later_duplicate_lines_win() {
        let map = UidMap::parse("1:7\n2:7\n3:9\n3:8\n", Path::new("m")).unwrap();
        assert_eq!(map.render(), "2:7\n3:8\n");
        assert_eq!(map.local_of(uid(9)), None);
    }

    #[test]
    fn insert_refuses_a_taken_uid_and_remaps() {
        let mut map = UidMap::default();
        map.insert(uid(1), uid(5)).unwrap();
        let e = map.insert(uid(2), uid(5)).unwrap_err();
        assert!(matches!(e, MapError::Taken { .. }));
        map.insert(uid(1), uid(6)).unwrap();
        assert_eq!(map.local_of(uid(5)), None);
        assert_eq!(map.render(), "1:6\n");
        assert!(map.retain_locals(|l| l != uid(1)));
        assert!(map.is_empty());
        assert!(!map.retain_locals(|_| false));
    }

    #[test]
    fn save_load_and_leftover_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let mf = MapFile::new(&dir.path().join("Repository-L"), "INBOX/Sub", true);
        assert_eq!(
            mf.path(),
            dir.path().join("Repository-L/UIDMapping/INBOX.Sub")
        );
        let (map, leftover) = mf.load(false).unwrap();
        assert!(map.is_empty() && !leftover);
        let mut map = UidMap::default();
        map.insert(uid(4), uid(40)).unwrap();
        map.insert(uid(2), uid(20)).unwrap();
        mf.save(&map).unwrap();
        assert_eq!(fs::read_to_string(mf.path()).unwrap(), "2:20\n4:40\n");
        assert!(mf.lock_path().exists());
        // An interrupted save left a tmp file: the mapping itself is intact.
        fs::write(mf.tmp_path(), "2:2").unwrap();
        let (read_only, leftover) = mf.load(false).unwrap();
        assert!(leftover && mf.tmp_path().exists());
        assert_eq!(read_only, map);
        let (loaded, leftover) = mf.load(true).unwrap();
        assert!(leftover && !mf.tmp_path().exists());
        assert_eq!(loaded, map);
        mf.purge().unwrap();
        assert!(!mf.path().exists());
        mf.purge().unwrap();
    }

    #[test]
    fn journal_round_trip_skips_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mf = MapFile::new(dir.path(), "INBOX", false);
        assert!(mf.read_journal().unwrap().is_empty());
        let entries = [
            PendingAppend {
                sync_uid: uid(7),
                fingerprint: (12, 0xdead_beef),
                floor: 0,
            },
            PendingAppend {
                sync_uid: uid(9),
                fingerprint: (1, u64::MAX),
                floor: 4_000_000_000,
            },
        ];
        mf.write_journal(&entries).unwrap();
        assert_eq!(mf.read_journal().unwrap(), entries);
        let mut text = fs::read_to_string(mf.journal_path()).unwrap();
        text.push_str("11 4 ab");
        fs::write(mf.journal_path(), text).unwrap();
        assert_eq!(mf.read_journal().unwrap(), entries);
        mf.write_journal(&[]).unwrap();
        assert!(!mf.journal_path().exists());
    }

    #[test]
    fn fingerprint_ignores_line_ends_and_offlineimap_header() {
        let a = fingerprint(b"Subject: x\r\nX-OfflineIMAP: 1-2\r\n\r\nbody\r\n");
        assert_eq!(a, fingerprint(b"Subject: x\n\nbody\n"));
        assert_eq!(a, fingerprint(b"Subject: x\nx-offlineimap: 9-9\n\nbody\n"));
        assert_ne!(a, fingerprint(b"Subject: y\n\nbody\n"));
        // Only in the header: the same line in the body counts.
        assert_ne!(
            fingerprint(b"S: x\n\nX-OfflineIMAP: 1\n"),
            fingerprint(b"S: x\n\n")
        );
    }
}
