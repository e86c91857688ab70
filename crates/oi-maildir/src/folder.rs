//! One Maildir folder: scanning, reading, writing and renaming message files.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oi_core::{
    Access, FlagUpdate, Flags, Folder, FolderMeta, Listing, Message, MessageMeta, MsgRef,
    StoreError, Uid, UidValidity, UnsyncedMessage,
};

use crate::MaildirOptions;
use crate::date::message_date;
use crate::error::{MaildirError, folder_io, msg_io};
use crate::name;
use crate::unique::Namer;
use oi_core::OffThread;

/// OfflineIMAP's UIDVALIDITY for every Maildir folder (`folder/Maildir.py`).
pub const MAILDIR_UID_VALIDITY: UidValidity = UidValidity(42);

/// How long a file of ours may sit in `tmp/` before a sync removes it: the Maildir
/// convention's 36 hours, after which a file in `tmp/` counts as abandoned.
const TMP_ABANDONED: Duration = Duration::from_secs(36 * 3600);

/// Removes the files that a sync killed mid-way (SIGKILL, a crash, a power cut) left in a
/// folder's `tmp/`, and returns how many it removed: spool files
/// (`.offlineimap-spool-*`) and message files named the OfflineIMAP way (`,FMD5=`) that
/// have not changed for [`TMP_ABANDONED`]. Their messages were never recorded in the
/// status, so a later sync fetched them again: what is left is only disk space, up to a
/// spooled attachment's worth per file. A younger file may belong to a sync still running
/// (another account storing into the same folder), and other programs' files are theirs
/// to clean. The age is the inode change time: `utime_from_header` gives a file an old
/// mtime, never an old ctime. Best effort: a file that cannot be removed stays.
pub(crate) fn remove_abandoned_tmp(folder: &Path, now: SystemTime) -> usize {
    use std::os::unix::fs::MetadataExt;
    let Some(before) = now
        .checked_sub(TMP_ABANDONED)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
    else {
        return 0;
    };
    let Ok(entries) = fs::read_dir(folder.join("tmp")) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with(oi_core::SPOOL_PREFIX) || name.contains(",FMD5=")) {
            continue;
        }
        let abandoned = entry
            .metadata()
            .is_ok_and(|m| m.is_file() && i128::from(m.ctime()) < i128::from(before.as_secs()));
        if abandoned && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// How often a new name is tried when `tmp/<name>` already exists.
const CREATE_TRIES: usize = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    New,
    Cur,
}

impl Sub {
    fn dir(self) -> &'static str {
        match self {
            Sub::New => "new",
            Sub::Cur => "cur",
        }
    }

    /// OfflineIMAP's rule (`savemessageflags`): a seen message lives in `cur/`, any other
    /// in `new/`, whatever its other flags.
    fn for_flags(letters: &str) -> Sub {
        if letters.contains('S') {
            Sub::Cur
        } else {
            Sub::New
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    sub: Sub,
    name: String,
    /// The raw flag letters of the name (including letters [`Flags`] cannot express, such
    /// as `P`, which are kept on every rename).
    letters: String,
    size: Option<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    synced: HashMap<u32, Entry>,
    unsynced: HashMap<String, Entry>,
}

/// A folder of a [`crate::MaildirRepository`].
#[derive(Debug)]
pub struct MaildirFolder {
    path: PathBuf,
    fmd5: String,
    access: Access,
    fsync: bool,
    options: MaildirOptions,
    namer: Arc<Namer>,
    /// A listing of `new/` and `cur/` read ahead on another thread, for the first scan.
    ahead: Option<Ahead>,
    index: Option<Index>,
    /// With `restoreatime`: the access times of `new/` and `cur/` at open, put back at close.
    atimes: Vec<(Sub, SystemTime)>,
    /// Directories that received new files, or saw renames or removals, since the last
    /// [`Folder::flush`]: appends fsync each file but leave the directory fsync to the
    /// flush, so that a batch of messages costs one directory fsync instead of one each;
    /// flag changes and deletions leave theirs to it too. The engine flushes before it
    /// commits the status, which is the only thing that must not get ahead of them.
    unflushed: Vec<Sub>,
    /// New messages written to `tmp/` whose fsync and rename into `new/` or `cur/` wait for
    /// [`MaildirFolder::settle`] (with `fsync` on): their writeback is started as each is
    /// written, so that a batch of files reaches the disk together and the fsyncs that
    /// follow find their data there, instead of one write-and-wait per message.
    pending: Vec<Pending>,
    /// A [`Folder::flush_aside`] under way, with the directories it syncs: its future may
    /// have been dropped before the end, so every other operation waits for it first.
    aside: Option<Aside>,
}

/// A flush under way on its thread, and the directories it syncs.
type Aside = (OffThread<Result<(), Lost>>, Vec<Sub>);

impl Drop for MaildirFolder {
    /// New messages still waiting in `tmp/` (a sync stopped between storing and flushing)
    /// go into place, as they would have before the next flush.
    fn drop(&mut self) {
        if !self.pending.is_empty() || self.aside.is_some() {
            let _ = self.settle();
        }
    }
}

/// A new message in `tmp/` on its way to `sub`.
#[derive(Debug)]
struct Pending {
    file: File,
    name: String,
    sub: Sub,
    uid: u32,
}

/// How many new messages may wait in `tmp/` for their fsync (each holds a descriptor).
const PENDING_MAX: usize = 128;

/// Messages [`settle_files`] could not put in place, and why.
#[derive(Debug)]
struct Lost {
    error: MaildirError,
    uids: Vec<u32>,
}

/// Fsyncs new messages waiting in `folder`'s `tmp/` and renames them into place, in order.
/// When one fails, it and the ones after it are removed from `tmp/` and reported lost.
fn settle_files(folder: &Path, pending: Vec<Pending>) -> Result<(), Lost> {
    let tmp = |name: &str| folder.join("tmp").join(name);
    let synced = sync_all_files(&pending);
    let mut pending = pending.into_iter().zip(synced);
    while let Some((p, synced)) = pending.next() {
        let dest = folder.join(p.sub.dir()).join(&p.name);
        let done = synced
            .map_err(msg_io(tmp(&p.name)))
            .and_then(|()| fs::rename(tmp(&p.name), &dest).map_err(folder_io(dest)));
        drop(p.file);
        if let Err(error) = done {
            let mut uids = Vec::new();
            for (name, uid) in
                std::iter::once((p.name, p.uid)).chain(pending.map(|(q, _)| (q.name, q.uid)))
            {
                let _ = fs::remove_file(tmp(&name));
                uids.push(uid);
            }
            return Err(Lost { error, uids });
        }
    }
    Ok(())
}

/// At most how many threads fsync one batch of new messages ([`sync_all_files`]).
const FSYNC_THREADS: usize = 4;
/// The fewest files worth a thread of their own: starting one costs about what a tenth
/// of an fsync does.
const FSYNC_PER_THREAD: usize = 8;

/// Fsyncs every file of a batch; the outcome of each, in order.
///
/// The fsyncs run on up to [`FSYNC_THREADS`] threads at once: a journaling file system
/// commits the fsyncs that wait together in one journal commit, where one after the other
/// each waits for a commit of its own. 64 files of 8 KB on this machine's ext4: 9.3 ms one
/// after the other, 5.2 ms on 4 threads (16 threads: no better). ../shared/bench, 20000
/// messages on a journaled ext4, 3 interleaved pairs: initial 4.82-4.90 s -> 3.56-3.74 s,
/// new 0.169-0.178 s -> 0.154-0.166 s. The renames that follow stay in order, on the
/// caller's thread.
fn sync_all_files(pending: &[Pending]) -> Vec<io::Result<()>> {
    let threads = (pending.len() / FSYNC_PER_THREAD).min(FSYNC_THREADS);
    if threads < 2 {
        return pending.iter().map(|p| p.file.sync_all()).collect();
    }
    let per = pending.len().div_ceil(threads);
    let sync_part = |part: &[Pending]| part.iter().map(|p| p.file.sync_all()).collect::<Vec<_>>();
    std::thread::scope(|s| {
        let parts: Vec<_> = pending
            .chunks(per)
            .map(|part| {
                let job = std::thread::Builder::new()
                    .name("maildir-fsync".into())
                    .spawn_scoped(s, move || sync_part(part));
                (part, job)
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|(part, job)| match job {
                // A thread that could not be started: its part is synced here.
                Err(_) => sync_part(part),
                Ok(handle) => handle.join().unwrap_or_else(|_| {
                    part.iter()
                        .map(|_| Err(io::Error::other("fsync thread panicked")))
                        .collect()
                }),
            })
            .collect()
    })
}

/// Fsyncs a directory, so that the renames into it survive a power loss.
pub(crate) fn fsync_dir(dir: PathBuf) -> Result<(), MaildirError> {
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(folder_io(dir))
}

/// Asks the kernel to start writing a file's data now, without waiting for it.
fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range only reads the descriptor, which `file` keeps open for
        // the call; a failure only means the fsync later does all the work.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

impl MaildirFolder {
    pub(crate) fn new(
        path: PathBuf,
        visible_name: &str,
        access: Access,
        fsync: bool,
        options: MaildirOptions,
        namer: Arc<Namer>,
    ) -> MaildirFolder {
        let mut atimes = Vec::new();
        if options.restore_atime {
            for sub in [Sub::New, Sub::Cur] {
                // A directory whose atime cannot be read has nothing to restore.
                if let Ok(t) = fs::metadata(path.join(sub.dir())).and_then(|m| m.accessed()) {
                    atimes.push((sub, t));
                }
            }
        }
        MaildirFolder {
            path,
            fmd5: name::fmd5(visible_name),
            access,
            fsync,
            options,
            namer,
            index: None,
            ahead: None,
            atimes,
            unflushed: Vec::new(),
            pending: Vec::new(),
            aside: None,
        }
    }

    /// Fsyncs the new messages waiting in `tmp/` and renames them into place (their
    /// directories are fsynced by the next flush). Every operation other than storing new
    /// messages settles first, so that files are where the index says. When one fails,
    /// it and the ones after it are removed from `tmp/` and from the index: the status
    /// records new messages only after a flush, so the next run fetches them again.
    fn settle(&mut self) -> Result<(), MaildirError> {
        self.finish_aside()?;
        let pending = self.take_pending();
        let settled = settle_files(&self.path, pending);
        self.forget_lost(settled)
    }

    /// The new messages waiting in `tmp/`, taken to be settled; their directories are
    /// marked for the next flush's fsync.
    fn take_pending(&mut self) -> Vec<Pending> {
        let pending = std::mem::take(&mut self.pending);
        for p in &pending {
            self.mark_unflushed(p.sub);
        }
        pending
    }

    /// Whether the next flush fsyncs `cur/` (for tests).
    #[cfg(test)]
    pub(crate) fn cur_unflushed(&self) -> bool {
        self.unflushed.contains(&Sub::Cur)
    }

    /// `sub` received a file: the next flush fsyncs it.
    fn mark_unflushed(&mut self, sub: Sub) {
        if !self.unflushed.contains(&sub) {
            self.unflushed.push(sub);
        }
    }

    /// Waits for a [`Folder::flush_aside`] whose future was dropped before its end, and
    /// takes in its outcome.
    fn finish_aside(&mut self) -> Result<(), MaildirError> {
        match self.aside.take() {
            Some((job, subs)) => self.aside_done(job.wait(), subs),
            None => Ok(()),
        }
    }

    /// Takes in the outcome of a [`Folder::flush_aside`]: on failure its directories still
    /// want their fsync (some renames may have happened), and its lost messages leave the
    /// index.
    fn aside_done(
        &mut self,
        settled: Result<(), Lost>,
        subs: Vec<Sub>,
    ) -> Result<(), MaildirError> {
        if settled.is_err() {
            for sub in subs {
                self.mark_unflushed(sub);
            }
        }
        self.forget_lost(settled)
    }

    /// Drops the messages a [`settle_files`] lost from the index, and passes its error on.
    fn forget_lost(&mut self, settled: Result<(), Lost>) -> Result<(), MaildirError> {
        let Err(lost) = settled else {
            return Ok(());
        };
        if let Some(index) = self.index.as_mut() {
            for uid in &lost.uids {
                index.synced.remove(uid);
            }
        }
        Err(lost.error)
    }

    /// Renames a new message from `tmp/` into `sub`, whose directory the next flush fsyncs.
    fn place(&mut self, name: &str, sub: Sub) -> Result<(), MaildirError> {
        let dest = self.path.join(sub.dir()).join(name);
        fs::rename(self.path.join("tmp").join(name), &dest).map_err(folder_io(dest))?;
        self.mark_unflushed(sub);
        Ok(())
    }

    /// OfflineIMAP's `restore_atime`: the saved access times go back, modification times
    /// stay as they are now.
    fn restore_atimes(&mut self) -> Result<(), MaildirError> {
        for (sub, atime) in std::mem::take(&mut self.atimes) {
            let dir = self.path.join(sub.dir());
            File::open(&dir)
                .and_then(|d| d.set_times(fs::FileTimes::new().set_accessed(atime)))
                .map_err(folder_io(dir))?;
        }
        Ok(())
    }

    /// The directory of the folder (holding `cur`, `new`, `tmp`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The FMD5 this folder writes into names and accepts as its own.
    pub fn fmd5(&self) -> &str {
        &self.fmd5
    }

    fn file(&self, e: &Entry) -> PathBuf {
        self.path.join(e.sub.dir()).join(&e.name)
    }

    fn writable(&self) -> Result<(), MaildirError> {
        match self.access {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly => Err(MaildirError::ReadOnly),
        }
    }

    /// Uses an index read ahead on another thread (see [`read_index`]) for the first scan.
    pub(crate) fn take_ahead(&mut self, ahead: Ahead) {
        self.ahead = Some(ahead);
    }

    fn scan(&mut self) -> Result<Index, MaildirError> {
        Ok(self.scan_listed()?.0)
    }

    /// [`MaildirFolder::scan`], with the listing made on the read-ahead thread when the
    /// index comes from there.
    fn scan_listed(&mut self) -> Result<(Index, Option<Listing>), MaildirError> {
        self.settle()?;
        match self.ahead.take().and_then(|rx| rx.recv().ok()) {
            // Read for the FMD5 this folder has (a nametrans can give it another).
            Some(Ok((fmd5, index, listing))) if fmd5 == self.fmd5 => Ok((index, Some(listing))),
            // The thread's error is read again, with the folder's own context.
            _ => Ok((
                read_index(&self.path, &self.fmd5, self.options.info_sep())?,
                None,
            )),
        }
    }

    fn index(&mut self) -> Result<&mut Index, MaildirError> {
        if self.index.is_none() {
            self.index = Some(self.scan()?);
        }
        // Just filled above when it was empty.
        self.index
            .as_mut()
            .ok_or(MaildirError::NoSuchFolder(self.path.display().to_string()))
    }

    fn sync_dir(&self, sub: &str) -> Result<(), MaildirError> {
        if self.fsync {
            fsync_dir(self.path.join(sub))?;
        }
        Ok(())
    }

    fn read_entry(&self, e: &Entry) -> io::Result<(Vec<u8>, Option<i64>)> {
        let path = self.file(e);
        let body = fs::read(&path)?;
        // OfflineIMAP's getmessagetime is the file's mtime.
        let mtime = fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok());
        Ok((body, mtime))
    }

    fn lookup(&mut self, r: &MsgRef) -> Result<Option<Entry>, MaildirError> {
        let index = self.index()?;
        Ok(match r {
            MsgRef::Uid(u) => index.synced.get(&u.get()).cloned(),
            MsgRef::Unsynced(k) => index.unsynced.get(k).cloned(),
        })
    }

    fn do_fetch(&mut self, which: &[MsgRef]) -> Result<Vec<Message>, MaildirError> {
        let mut out = Vec::with_capacity(which.len());
        let mut rescanned = false;
        for r in which {
            let Some(mut e) = self.lookup(r)? else {
                continue;
            };
            let read = match self.read_entry(&e) {
                Err(err) if err.kind() == io::ErrorKind::NotFound && !rescanned => {
                    // A mail client renamed it since the scan (flag change): look again once.
                    rescanned = true;
                    self.index = Some(self.scan()?);
                    match self.lookup(r)? {
                        Some(again) => {
                            e = again;
                            self.read_entry(&e)
                        }
                        None => continue,
                    }
                }
                other => other,
            };
            let (body, internal_date) = match read {
                Ok(v) => v,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(msg_io(self.file(&e))(err)),
            };
            out.push(Message {
                source: r.clone(),
                body,
                flags: Flags::from_maildir(&e.letters),
                internal_date,
            });
        }
        Ok(out)
    }

    /// Writes `tmp/<name>` exclusively, then renames it into `new/` or `cur/`.
    fn do_append(
        &mut self,
        message: &Message,
        flags: Flags,
        uid: Option<Uid>,
    ) -> Result<Option<Uid>, MaildirError> {
        let size = message.body.len() as u64;
        self.store_new(&message.body, size, flags, uid, None, |f| {
            f.write_all(&message.body)
        })
    }

    /// The large-message twin of [`Self::do_append`]: the file is written from the
    /// message's reader, a buffer at a time.
    fn do_append_large(
        &mut self,
        message: &mut oi_core::LargeMessage,
        marker: Option<&str>,
        flags: Flags,
        uid: Option<Uid>,
    ) -> Result<Option<Uid>, MaildirError> {
        let tmp_dir = self.path.join("tmp");
        // The header is read only for the options that take a date from it.
        let head = if self.options.filename_use_mail_timestamp || self.options.utime_from_header {
            message.header().map_err(msg_io(tmp_dir.clone()))?
        } else {
            Vec::new()
        };
        let spooled_here = message
            .spool
            .as_deref()
            .is_some_and(|p| p.parent() == Some(tmp_dir.as_path()));
        if spooled_here && marker.is_none() && message.drop_headers.is_empty() {
            // Spooled into our own tmp/ exactly as it is to be stored: renamed, not copied.
            let len = message.len;
            return self.store_new(&head, len, flags, uid, Some(message), |_| Ok(()));
        }
        let (len, mut reader) = message.reader(marker).map_err(msg_io(tmp_dir))?;
        self.store_new(&head, len, flags, uid, None, |f| {
            let mut w = io::BufWriter::with_capacity(256 * 1024, f);
            let copied = io::copy(&mut reader, &mut w)?;
            w.flush()?;
            if copied != len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the message ended after {copied} of {len} bytes"),
                ));
            }
            Ok(())
        })
    }

    /// Stores a new message under `uid`: `head` (at least the header section) supplies the
    /// dates of `filename_use_mail_timestamp` and `utime_from_header`, `write` fills the
    /// file in `tmp/`, which is then renamed into `new/` or `cur/`. With `adopt`, the
    /// message's spool file (in this `tmp/`) becomes that file instead, and `write` has
    /// nothing left to do.
    fn store_new(
        &mut self,
        head: &[u8],
        size: u64,
        flags: Flags,
        uid: Option<Uid>,
        adopt: Option<&mut oi_core::LargeMessage>,
        write: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<Option<Uid>, MaildirError> {
        self.writable()?;
        let uid = uid.ok_or(MaildirError::NoUid)?;
        if self.index()?.synced.contains_key(&uid.get()) {
            // OfflineIMAP's savemessage: "We already have it, just update flags."
            self.settle()?;
            let touched = self.set_letters(uid.get(), flags)?;
            // The rename's directory is fsynced by the flush before the status records it.
            self.mark_touched(&touched.into_iter().flatten().collect::<Vec<_>>());
            return Ok(Some(uid));
        }
        let letters = flags.to_maildir();
        let name_time = if self.options.filename_use_mail_timestamp {
            // An unusable date falls back to the clock, as in OfflineIMAP (which warns).
            message_date(head, "Date").or_else(|| message_date(head, "Delivery-date"))
        } else {
            None
        };
        let file_time = if self.options.utime_from_header {
            message_date(head, "Date").and_then(epoch_time)
        } else {
            None
        };
        let tmp_dir = self.path.join("tmp");
        let mut attempt = 0;
        let (file_name, mut file) = loop {
            attempt += 1;
            let file_name = self.namer.next_with(
                uid.get(),
                &self.fmd5,
                &letters,
                self.options.info_sep(),
                name_time,
            );
            let tmp = tmp_dir.join(&file_name);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o666)
                .open(&tmp)
            {
                Ok(f) => break (file_name, f),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < CREATE_TRIES => {}
                Err(e) => return Err(msg_io(tmp)(e)),
            }
        };
        if let Some(message) = adopt {
            // The name is ours (created exclusively above): the spool file replaces it.
            let tmp = tmp_dir.join(&file_name);
            let adopted = match message.spool.as_deref() {
                Some(spool) => fs::rename(spool, &tmp).and_then(|()| message.file.try_clone()),
                None => Err(io::Error::other("the message has no spool file")),
            };
            match adopted {
                Ok(f) => {
                    file = f;
                    // Now under its Maildir name: nothing left to remove when it drops.
                    if let Some(spool) = message.spool.take() {
                        let _ = spool.keep();
                    }
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(msg_io(tmp)(e));
                }
            }
        }
        let tmp = tmp_dir.join(&file_name);
        let written = write(&mut file).and_then(|()| match file_time {
            Some(t) => file.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t)),
            None => Ok(()),
        });
        if let Err(e) = written {
            drop(file);
            // A partial file in tmp/ would be cleaned by nobody; remove it now.
            let _ = fs::remove_file(&tmp);
            return Err(msg_io(tmp)(e));
        }
        let sub = Sub::for_flags(&letters);
        if self.fsync {
            // Fsynced and renamed into place by settle(), before the next flush.
            start_writeback(&file);
            self.pending.push(Pending {
                file,
                name: file_name.clone(),
                sub,
                uid: uid.get(),
            });
        } else {
            drop(file);
            if let Err(e) = self.place(&file_name, sub) {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        }
        let size = Some(size);
        self.index()?.synced.insert(
            uid.get(),
            Entry {
                sub,
                name: file_name,
                letters,
                size,
            },
        );
        if self.pending.len() >= PENDING_MAX {
            self.settle()?;
        }
        Ok(Some(uid))
    }

    /// Gives a synced message exactly these flags (keeping letters [`Flags`] cannot
    /// express), renaming and moving it between `new/` and `cur/` as OfflineIMAP does.
    /// Returns the directories touched.
    fn set_letters(&mut self, uid: u32, flags: Flags) -> Result<[Option<Sub>; 2], MaildirError> {
        let old = self
            .index()?
            .synced
            .get(&uid)
            .cloned()
            .ok_or(MaildirError::UnknownUid(uid))?;
        let foreign: String = old
            .letters
            .chars()
            .filter(|&c| Flags::from_letter(c).is_none())
            .collect();
        let letters = name::sorted_letters(&format!("{foreign}{}", flags.to_maildir()));
        let sub = Sub::for_flags(&letters);
        let new_name = if letters == name::sorted_letters(&old.letters) {
            old.name.clone()
        } else {
            name::with_flags_sep(&old.name, &letters, self.options.info_sep())
        };
        if sub == old.sub && new_name == old.name {
            return Ok([None, None]);
        }
        let from = self.file(&old);
        let to = self.path.join(sub.dir()).join(&new_name);
        fs::rename(&from, &to).map_err(folder_io(from))?;
        let entry = Entry {
            sub,
            name: new_name,
            letters,
            size: old.size,
        };
        self.index()?.synced.insert(uid, entry);
        Ok([Some(old.sub), Some(sub)])
    }

    /// Renames and removals in these directories: the next flush fsyncs them, before the
    /// status that records them is committed (the engine flushes before every commit), so
    /// that a folder whose connection went on to the next folder waits for the disk on a
    /// thread ([`Folder::flush_aside`]) rather than in the task both share.
    fn mark_touched(&mut self, touched: &[Sub]) {
        for sub in [Sub::New, Sub::Cur] {
            if touched.contains(&sub) {
                self.mark_unflushed(sub);
            }
        }
    }

    fn do_set_flags(&mut self, updates: &[FlagUpdate]) -> Result<(), MaildirError> {
        self.writable()?;
        let mut touched = Vec::new();
        let mut first_err = None;
        for u in updates {
            let current = match self.index()?.synced.get(&u.uid.get()) {
                Some(e) => Flags::from_maildir(&e.letters),
                None => {
                    first_err.get_or_insert(MaildirError::UnknownUid(u.uid.get()));
                    continue;
                }
            };
            let wanted = (current | u.add).minus(u.remove);
            match self.set_letters(u.uid.get(), wanted) {
                Ok(subs) => touched.extend(subs.into_iter().flatten()),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        self.mark_touched(&touched);
        first_err.map_or(Ok(()), Err)
    }

    fn do_delete(&mut self, uids: &[Uid]) -> Result<(), MaildirError> {
        self.writable()?;
        let mut touched = Vec::new();
        for uid in uids {
            let Some(e) = self.index()?.synced.get(&uid.get()).cloned() else {
                // Already gone: deleting is idempotent, so a replayed plan step is harmless.
                continue;
            };
            let path = self.file(&e);
            match fs::remove_file(&path) {
                Ok(()) => touched.push(e.sub),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    // Renamed by a mail client since the scan: OfflineIMAP rescans and
                    // tries the new name.
                    let fresh = self.scan()?;
                    if let Some(e2) = fresh.synced.get(&uid.get()) {
                        let p2 = self.file(e2);
                        fs::remove_file(&p2).map_err(msg_io(p2))?;
                        touched.push(e2.sub);
                    }
                    self.index = Some(fresh);
                }
                Err(err) => return Err(msg_io(path)(err)),
            }
            self.index()?.synced.remove(&uid.get());
        }
        self.mark_touched(&touched);
        Ok(())
    }

    fn do_assign_uid(&mut self, which: &MsgRef, uid: Uid) -> Result<(), MaildirError> {
        self.writable()?;
        let index = self.index()?;
        let old = match which {
            MsgRef::Unsynced(key) => index.unsynced.get(key).cloned(),
            MsgRef::Uid(old) if *old == uid => return Ok(()),
            MsgRef::Uid(old) => index.synced.get(&old.get()).cloned(),
        };
        let old = old.ok_or_else(|| MaildirError::UnknownKey(format!("{which:?}")))?;
        if index.synced.contains_key(&uid.get()) {
            // Two files with one UID would hide one of them from every later scan.
            return Err(MaildirError::UidInUse(uid.get()));
        }
        // Like OfflineIMAP's change_message_uid: a whole new name in the same directory,
        // keeping the flag letters.
        let from = self.file(&old);
        let mut attempt = 0;
        let (new_name, to) = loop {
            attempt += 1;
            // Like OfflineIMAP, a renamed message gets the clock's time even with
            // filename_use_mail_timestamp (it does not reread the message).
            let n = self.namer.next_with(
                uid.get(),
                &self.fmd5,
                &old.letters,
                self.options.info_sep(),
                None,
            );
            let to = self.path.join(old.sub.dir()).join(&n);
            // rename(2) would silently replace an existing file; never overwrite a message.
            if !to.exists() || attempt >= CREATE_TRIES {
                break (n, to);
            }
        };
        fs::rename(&from, &to).map_err(folder_io(from))?;
        self.sync_dir(old.sub.dir())?;
        let index = self.index()?;
        match which {
            MsgRef::Unsynced(key) => index.unsynced.remove(key).map(|_| ()),
            MsgRef::Uid(old) => index.synced.remove(&old.get()).map(|_| ()),
        };
        index.synced.insert(
            uid.get(),
            Entry {
                name: new_name,
                letters: name::sorted_letters(&old.letters),
                ..old
            },
        );
        Ok(())
    }

    fn do_list(&mut self) -> Result<Listing, MaildirError> {
        let (index, listing) = self.scan_listed()?;
        let listing = listing.unwrap_or_else(|| listing_of(&index));
        self.index = Some(index);
        Ok(listing)
    }
}

impl Folder for MaildirFolder {
    async fn meta(&mut self) -> Result<FolderMeta, StoreError> {
        Ok(FolderMeta {
            uid_validity: MAILDIR_UID_VALIDITY,
            exists: None,
        })
    }

    async fn list(&mut self) -> Result<Listing, StoreError> {
        self.settle()?;
        Ok(self.do_list()?)
    }

    async fn fetch(&mut self, which: &[MsgRef]) -> Result<Vec<Message>, StoreError> {
        self.settle()?;
        Ok(self.do_fetch(which)?)
    }

    async fn append(
        &mut self,
        message: &Message,
        flags: Flags,
        uid: Option<Uid>,
    ) -> Result<Option<Uid>, StoreError> {
        Ok(self.do_append(message, flags, uid)?)
    }

    fn keeps_dates(&self) -> bool {
        false
    }

    fn spool_dir(&self) -> Option<PathBuf> {
        Some(self.path.join("tmp"))
    }

    /// The message file itself, opened: nothing is copied.
    async fn fetch_large(
        &mut self,
        which: &MsgRef,
        _spool_dir: &Path,
    ) -> Result<Option<oi_core::LargeMessage>, StoreError> {
        self.settle()?;
        let mut rescanned = false;
        loop {
            let Some(e) = self.lookup(which)? else {
                return Ok(None);
            };
            let path = self.file(&e);
            let opened = File::open(&path).and_then(|f| f.metadata().map(|m| (f, m)));
            let (file, meta) = match opened {
                Ok(v) => v,
                // A mail client renamed it since the scan (flag change): look again once.
                Err(err) if err.kind() == io::ErrorKind::NotFound && !rescanned => {
                    rescanned = true;
                    self.index = Some(self.scan()?);
                    continue;
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(err) => return Err(msg_io(path)(err).into()),
            };
            let internal_date = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_secs()).ok());
            return Ok(Some(oi_core::LargeMessage {
                source: which.clone(),
                file,
                len: meta.len(),
                flags: Flags::from_maildir(&e.letters),
                internal_date,
                spool: None,
                drop_headers: Vec::new(),
            }));
        }
    }

    async fn append_large(
        &mut self,
        message: &mut oi_core::LargeMessage,
        marker: Option<&str>,
        flags: Flags,
        uid: Option<Uid>,
    ) -> Result<Option<Uid>, StoreError> {
        Ok(self.do_append_large(message, marker, flags, uid)?)
    }

    async fn set_flags(&mut self, updates: &[FlagUpdate]) -> Result<(), StoreError> {
        self.settle()?;
        Ok(self.do_set_flags(updates)?)
    }

    async fn delete(&mut self, uids: &[Uid]) -> Result<(), StoreError> {
        self.settle()?;
        Ok(self.do_delete(uids)?)
    }

    async fn assign_uid(&mut self, which: &MsgRef, uid: Uid) -> Result<(), StoreError> {
        self.settle()?;
        Ok(self.do_assign_uid(which, uid)?)
    }

    async fn identities(&mut self) -> Result<Vec<(MsgRef, oi_core::Identity)>, StoreError> {
        self.settle()?;
        let index = self.scan()?;
        let mut out = Vec::new();
        let entries = index
            .synced
            .iter()
            .filter_map(|(uid, e)| Uid::new(*uid).map(|u| (MsgRef::Uid(u), e)))
            .chain(
                index
                    .unsynced
                    .iter()
                    .map(|(k, e)| (MsgRef::Unsynced(k.clone()), e)),
            );
        for (r, e) in entries {
            // One file at a time: recovery reads every message once, memory stays bounded
            // by the largest message.
            match identity_of_file(&self.file(e)) {
                Ok(id) => out.push((r, id)),
                // Removed by a mail client since the scan: nothing to pair.
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(msg_io(self.file(e))(err).into()),
            }
        }
        self.index = Some(index);
        Ok(out)
    }

    async fn messages_since(
        &mut self,
        since: oi_core::AgeCutoff,
    ) -> Result<Option<Vec<MsgRef>>, StoreError> {
        self.settle()?;
        let index = self.index()?;
        let within = |e: &Entry| name_time(&e.name).is_none_or(|t| t >= i128::from(since.epoch));
        let mut out: Vec<MsgRef> = index
            .synced
            .iter()
            .filter(|(_, e)| within(e))
            .filter_map(|(uid, _)| Uid::new(*uid).map(MsgRef::Uid))
            .collect();
        out.extend(
            index
                .unsynced
                .iter()
                .filter(|(_, e)| within(e))
                .map(|(k, _)| MsgRef::Unsynced(k.clone())),
        );
        Ok(Some(out))
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        self.settle()?;
        for sub in std::mem::take(&mut self.unflushed) {
            self.sync_dir(sub.dir())?;
        }
        Ok(())
    }

    /// With `fsync`, the fsyncs (of the new messages waiting in `tmp/`, and of the
    /// directories that received files) run on a thread of their own: they mostly wait for
    /// the disk, and meanwhile the engine's task goes on with the next folder's exchange
    /// with the server. ../shared/bench, 20000 messages, "new" (about 200 new messages to
    /// fsync), 5 pairs: 0.169 -> 0.159 s. As every flush (an initial download on a
    /// journaled ext4, where nothing else runs meanwhile), 4.4 -> 4.7 s.
    async fn flush_aside(&mut self) -> Result<(), StoreError> {
        self.finish_aside()?;
        let pending = self.take_pending();
        let subs = std::mem::take(&mut self.unflushed);
        if !self.fsync || (pending.is_empty() && subs.is_empty()) {
            // Without fsync nothing waits in tmp/ (see store_new).
            return Ok(());
        }
        let dirs: Vec<PathBuf> = subs.iter().map(|s| self.path.join(s.dir())).collect();
        let path = self.path.clone();
        let job = oi_core::off_thread("maildir-flush", move || {
            settle_files(&path, pending)?;
            for dir in dirs {
                fsync_dir(dir).map_err(|error| Lost {
                    error,
                    uids: Vec::new(),
                })?;
            }
            Ok(())
        });
        // Kept in the folder while it runs: see `aside`.
        let (job, _) = self.aside.insert((job, subs));
        let settled = job.await;
        let subs = self.aside.take().map(|(_, subs)| subs).unwrap_or_default();
        Ok(self.aside_done(settled, subs)?)
    }

    async fn close(&mut self) -> Result<(), StoreError> {
        self.flush().await?;
        self.index = None;
        self.restore_atimes()?;
        Ok(())
    }
}

/// The delivery time OfflineIMAP reads from a file name for `maxage`: the first run of
/// digits anywhere in it (its `re.search(r'(\d+)')`); `None` when there is none, which
/// OfflineIMAP counts as within the window. Absurdly long runs saturate (always within).
fn name_time(name: &str) -> Option<i128> {
    let start = name.find(|c: char| c.is_ascii_digit())?;
    let digits = &name[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    Some(digits[..end].parse().unwrap_or(i128::MAX))
}

/// Seconds since the epoch as a file time; `None` for times the system cannot represent.
fn epoch_time(secs: i64) -> Option<SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

/// [`oi_core::Identity::of_message`] of a file, read a buffer at a time: the Message-ID
/// from the header section, the size counted as with CRLF line ends.
fn identity_of_file(path: &Path) -> io::Result<oi_core::Identity> {
    use std::io::Read;
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut head: Vec<u8> = Vec::new();
    let mut head_done = false;
    let (mut size, mut prev) = (0u64, 0u8);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            if b == b'\n' && prev != b'\r' {
                size += 1;
            }
            prev = b;
        }
        size += n as u64;
        if !head_done {
            head.extend_from_slice(&buf[..n]);
            head_done = oi_core::marker::has_header_end(&head)
                || head.len() as u64 >= oi_core::LARGE_HEAD_MAX;
        }
    }
    Ok(oi_core::Identity {
        message_id: oi_core::message_id_of(&head),
        size: Some(size),
    })
}

/// A folder's index being read ahead on another thread (see [`ReadAhead`]).
pub(crate) type Ahead = std::sync::mpsc::Receiver<Result<ReadAhead, MaildirError>>;

/// What a read-ahead thread hands over: the FMD5 it read for, the index, and the listing
/// made from it (made there, so that the engine's thread only takes it).
pub(crate) type ReadAhead = (String, Index, Listing);

/// Reads a folder ahead: [`read_index`], and the listing of that index.
pub(crate) fn read_ahead(
    path: &Path,
    fmd5: &str,
    info_sep: char,
) -> Result<ReadAhead, MaildirError> {
    let index = read_index(path, fmd5, info_sep)?;
    let listing = listing_of(&index);
    Ok((fmd5.to_owned(), index, listing))
}

/// The listing of an index: the synced messages by UID, the others by key.
fn listing_of(index: &Index) -> Listing {
    let messages = index
        .synced
        .iter()
        .filter_map(|(&uid, e)| {
            let meta = MessageMeta {
                flags: Flags::from_maildir(&e.letters),
                size: e.size,
            };
            Uid::new(uid).map(|u| (u, meta))
        })
        .collect();
    let mut unsynced: Vec<UnsyncedMessage> = index
        .unsynced
        .iter()
        .map(|(k, e)| UnsyncedMessage {
            key: k.clone(),
            flags: Flags::from_maildir(&e.letters),
            size: e.size,
        })
        .collect();
    // Names start with the delivery time, so this uploads roughly oldest first.
    unsynced.sort_by(|a, b| a.key.cmp(&b.key));
    Listing { messages, unsynced }
}

/// Reads `new/` then `cur/` of the folder at `path` (one readdir each, no stat per file
/// except for the few messages without a UID): the messages carrying `fmd5` by UID, the
/// others by name.
///
/// Two files with the same UID and this folder's FMD5: OfflineIMAP keeps whichever it
/// meets last in a dict keyed by UID (`new/` is read before `cur/`, in readdir order) and
/// ignores the other, which stays on disk untouched. We do the same but make the choice
/// deterministic: `cur/` wins over `new/`, and within one directory the name that sorts
/// last wins.
pub(crate) fn read_index(path: &Path, fmd5: &str, info_sep: char) -> Result<Index, MaildirError> {
    let mut index = Index::default();
    for sub in [Sub::New, Sub::Cur] {
        let dir = path.join(sub.dir());
        for file_name in list_names(&dir)? {
            let p = name::parse_with_sep(&file_name, info_sep);
            let (letters, size) = (p.flags.unwrap_or("").to_owned(), p.size);
            let ours = p.uid.filter(|&u| u != 0 && p.fmd5 == Some(fmd5));
            let base = match ours {
                Some(_) => String::new(),
                None => p.base.to_owned(),
            };
            let entry = Entry {
                sub,
                letters,
                size,
                name: file_name,
            };
            match ours {
                Some(uid) => {
                    index.synced.insert(uid, entry);
                }
                None => {
                    // New local mail is few and about to be uploaded: its size (one
                    // stat each) picks the messages to stream and applies maxsize.
                    let mut entry = entry;
                    if entry.size.is_none() {
                        entry.size = fs::metadata(dir.join(&entry.name)).ok().map(|m| m.len());
                    }
                    let mut key = base;
                    if index.unsynced.contains_key(&key) {
                        // The same base in new/ and cur/; '/' cannot occur in a name.
                        key = format!("{}/{}", sub.dir(), key);
                    }
                    index.unsynced.insert(key, entry);
                }
            }
        }
    }
    Ok(index)
}

/// The names of the message files of one directory, sorted.
fn list_names(dir: &Path) -> Result<Vec<String>, MaildirError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(folder_io(dir))? {
        let entry = entry.map_err(folder_io(dir))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        // Names that are not UTF-8 were written by neither OfflineIMAP nor us, and could
        // not be renamed back through a `String`: leave them alone.
        let Ok(file_name) = entry.file_name().into_string() else {
            continue;
        };
        // Dot files are not messages (OfflineIMAP skips them too).
        if file_name.starts_with('.') {
            continue;
        }
        names.push(file_name);
    }
    names.sort_unstable();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::{Lost, Pending, Sub, name_time, settle_files, sync_all_files};
    use std::fs::{self, File};

    /// `n` new messages waiting in `dir/tmp/` for `dir/cur/`, named `m<i>` with UID `i`,
    /// except that the one at `bad` is a pipe, which fsync refuses (EINVAL).
    fn waiting(dir: &std::path::Path, n: u32, bad: Option<u32>) -> Vec<Pending> {
        for sub in ["tmp", "cur"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        (0..n)
            .map(|i| {
                let name = format!("m{i}");
                let file = if Some(i) == bad {
                    let (_, writer) = std::io::pipe().unwrap();
                    File::from(std::os::fd::OwnedFd::from(writer))
                } else {
                    let path = dir.join("tmp").join(&name);
                    fs::write(&path, format!("message {i}")).unwrap();
                    File::open(path).unwrap()
                };
                Pending {
                    file,
                    name,
                    sub: Sub::Cur,
                    uid: i,
                }
            })
            .collect()
    }

    #[test]
    fn fsyncs_on_several_threads_report_each_file_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        // 40 files: 4 threads of 10. The refused one is in the third part.
        let pending = waiting(tmp.path(), 40, Some(25));
        let synced = sync_all_files(&pending);
        assert_eq!(synced.len(), 40);
        let failed: Vec<usize> = (0..40).filter(|&i| synced[i].is_err()).collect();
        assert_eq!(failed, vec![25]);
    }

    #[test]
    fn a_batch_settled_on_several_threads_stops_at_the_first_refused_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let Err(Lost { uids, .. }) = settle_files(dir, waiting(dir, 40, Some(25))) else {
            panic!("a refused fsync must fail the batch");
        };
        // Those before it are in place, in order; it and those after it are lost and gone
        // from tmp/ (the pipe never was there).
        assert_eq!(uids, (25..40).collect::<Vec<_>>());
        let mut cur: Vec<String> = fs::read_dir(dir.join("cur"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        cur.sort_by_key(|n| n[1..].parse::<u32>().unwrap());
        assert_eq!(cur, (0..25).map(|i| format!("m{i}")).collect::<Vec<_>>());
        assert_eq!(
            fs::read_to_string(dir.join("cur/m24")).unwrap(),
            "message 24"
        );
        assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 0);

        // And a batch without a refusal lands whole.
        let other = tempfile::tempdir().unwrap();
        assert!(settle_files(other.path(), waiting(other.path(), 40, None)).is_ok());
        assert_eq!(fs::read_dir(other.path().join("cur")).unwrap().count(), 40);
    }

    #[test]
    fn name_time_is_the_first_digit_run() {
        assert_eq!(
            name_time("1700000000_0.123.host,U=5,FMD5=ab:2,S"),
            Some(1_700_000_000)
        );
        assert_eq!(name_time("msg-42.eml"), Some(42));
        assert_eq!(name_time("no-digits"), None);
        // As in OfflineIMAP, the info part counts when nothing comes before it.
        assert_eq!(name_time("no-digits:2,S"), Some(2));
        assert_eq!(name_time(&"9".repeat(60)), Some(i128::MAX));
    }
}
