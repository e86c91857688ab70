//! Maildir repository for offlineimap, file-compatible with OfflineIMAP 8.
//!
//! Implements `oi_core::Repository` and `oi_core::Folder` over a tree of Maildir folders,
//! using OfflineIMAP's file names (`<time>_<seq>.<pid>.<host>,U=<uid>,FMD5=<md5>:2,<flags>`,
//! see [`name`]) so that a Maildir written by OfflineIMAP is continued without
//! re-downloading, and the other way round. Messages are written to `tmp/` with `O_EXCL`,
//! optionally fsynced, then renamed into `new/` (unseen) or `cur/` (seen).
//!
//! This crate depends on `oi-core` only: it must not know about IMAP, the LocalStatus
//! database, the sync engine or the configuration file format. Nametrans is the binary's
//! business: it hands us the visible name through
//! [`MaildirRepository::open_folder_with_visible_name`].
#![deny(missing_docs)]

pub mod date;
mod error;
mod folder;
pub mod name;
mod unique;

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oi_core::{Access, Repository, StoreError};

pub use error::MaildirError;
pub use folder::{MAILDIR_UID_VALIDITY, MaildirFolder};

use error::folder_io;
use unique::Namer;

/// The three directories that make a directory a Maildir folder.
const MAILDIR_SUBDIRS: [&str; 3] = ["cur", "new", "tmp"];

/// Guard against symlink loops when walking a nested (`sep = /`) tree.
const MAX_DEPTH: usize = 64;
/// How many bytes of directories [`Repository::prepare_many`] reads ahead at most.
const AHEAD_BUDGET: u64 = 3 << 20;
/// How many folders [`Repository::prepare_many`] reads ahead at most.
const AHEAD_FOLDERS: usize = 16;

/// One folder to read ahead, and where its index goes.
struct AheadJob {
    dir: PathBuf,
    fmd5: String,
    info_sep: char,
    done: std::sync::mpsc::Sender<Result<folder::ReadAhead, MaildirError>>,
}

impl AheadJob {
    /// Reads the folder and hands its index over.
    fn run(self) {
        let read = folder::read_ahead(&self.dir, &self.fmd5, self.info_sep);
        // The folder may be gone (closed without reading): nothing to tell.
        let _ = self.done.send(read);
    }
}

/// Reads the folders of `jobs`, in their order, on up to `threads` threads. A folder opened
/// before its turn waits for it (its receiver); one whose thread could not start reads
/// itself on open (the sender is dropped).
fn run_ahead(jobs: Vec<AheadJob>, threads: usize) {
    if jobs.is_empty() {
        return;
    }
    let threads = threads.clamp(1, jobs.len());
    let queue = Arc::new(std::sync::Mutex::new(jobs.into_iter()));
    for _ in 0..threads {
        let queue = Arc::clone(&queue);
        let _ = std::thread::Builder::new()
            .name("maildir-ahead".into())
            .spawn(move || {
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                    let Some(job) = next else { break };
                    job.run();
                }
            });
    }
}

/// What a Maildir repository needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildirConfig {
    /// `localfolders`, already tilde/env expanded.
    pub root: PathBuf,
    /// `sep`: `.` (flat, `INBOX.Sent` directories) or `/` (nested directories).
    pub sep: char,
    /// `[general] fsync`: fsync message files and directories after writes and renames.
    pub fsync: bool,
}

/// OfflineIMAP's optional Maildir behaviours; the default is what OfflineIMAP does with
/// none of them configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MaildirOptions {
    /// `maildir-windows-compatible` (an *account* option in OfflineIMAP): `!` instead of `:`
    /// before `2,<flags>`, in names written and names read.
    pub windows_compatible: bool,
    /// `restoreatime`: give `cur/` and `new/` back the access time they had when the folder
    /// was opened, when it is closed (so that mail notifiers watching atime stay quiet).
    pub restore_atime: bool,
    /// `utime_from_header` (default from `[general]`): set a written file's access and
    /// modification time to its `Date` header.
    pub utime_from_header: bool,
    /// `filename_use_mail_timestamp` (default from `[general]`): the time prefix of a new
    /// name is the `Date` header (else `Delivery-date`), not the clock.
    pub filename_use_mail_timestamp: bool,
}

impl MaildirOptions {
    /// The info separator these options write and read.
    pub fn info_sep(&self) -> char {
        if self.windows_compatible {
            name::WINDOWS_INFO_SEP
        } else {
            name::INFO_SEP
        }
    }
}

/// A tree of Maildir folders under one root.
#[derive(Debug, Clone)]
pub struct MaildirRepository {
    config: MaildirConfig,
    options: MaildirOptions,
    namer: Arc<Namer>,
    /// Directory listings started ahead by [`Repository::prepare`], by folder path.
    ahead: Arc<std::sync::Mutex<std::collections::HashMap<PathBuf, folder::Ahead>>>,
    /// The thread that reads the folders of [`Repository::prepare`] ahead, one after the
    /// other, as they are asked for (see [`MaildirRepository::start_ahead`]).
    worker: Arc<std::sync::Mutex<Option<std::sync::mpsc::Sender<AheadJob>>>>,
}

impl MaildirRepository {
    /// A repository over `config.root`. Nothing is touched until a method is called.
    pub fn new(config: MaildirConfig) -> MaildirRepository {
        MaildirRepository {
            config,
            options: MaildirOptions::default(),
            namer: Arc::new(Namer::new()),
            ahead: Arc::default(),
            worker: Arc::default(),
        }
    }

    /// The same repository with OfflineIMAP's optional behaviours.
    pub fn with_options(mut self, options: MaildirOptions) -> MaildirRepository {
        self.options = options;
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.config.root
    }

    /// The directory of a folder; checks that the name cannot escape the root.
    pub fn folder_path(&self, name: &str) -> Result<PathBuf, MaildirError> {
        let name = self.canonical(name);
        check_name(name, self.config.sep)?;
        Ok(if name.is_empty() {
            self.config.root.clone()
        } else {
            self.config.root.join(name)
        })
    }

    /// OfflineIMAP treats a folder named exactly like the separator as the root (`''`).
    fn canonical<'a>(&self, name: &'a str) -> &'a str {
        let mut buf = [0u8; 4];
        if name == self.config.sep.encode_utf8(&mut buf) {
            ""
        } else {
            name
        }
    }

    /// Opens a folder whose visible (nametrans-translated) name differs from its name on
    /// disk. OfflineIMAP's FMD5 is the MD5 of the *visible* name of the local folder
    /// (`md5(self.getvisiblename())`), i.e. the result of the local repository's
    /// `nametrans` applied to the on-disk name (with this repository's separator). Without
    /// a local `nametrans` it is the on-disk name itself, which is what
    /// [`Repository::open_folder`] uses.
    pub fn open_folder_with_visible_name(
        &self,
        name: &str,
        visible_name: &str,
        access: Access,
    ) -> Result<MaildirFolder, MaildirError> {
        let path = self.folder_path(name)?;
        if !is_maildir(&path) {
            return Err(MaildirError::NoSuchFolder(name.to_owned()));
        }
        if access == Access::ReadWrite {
            folder::remove_abandoned_tmp(&path, std::time::SystemTime::now());
        }
        let visible = self.canonical(visible_name);
        let ahead = self
            .ahead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&path);
        let mut folder = MaildirFolder::new(
            path,
            visible,
            access,
            self.config.fsync,
            self.options,
            Arc::clone(&self.namer),
        );
        if let Some(ahead) = ahead {
            folder.take_ahead(ahead);
        }
        Ok(folder)
    }

    /// Starts listing a folder's `new/` and `cur/` on another thread (see
    /// [`Repository::prepare`]). Not with `restoreatime`: reading the directories early
    /// would change the access times the folder restores.
    /// Reads one folder ahead, on the repository's reading thread: one thread for the
    /// whole run rather than one per folder (a hundred folders: a hundred threads started
    /// and ended, about 5 ms of CPU). The engine asks for the next folder while one syncs,
    /// so the reads come in the order the folders are opened.
    fn start_ahead(&self, name: &str) {
        let Some(job) = self.ahead_job(name) else {
            return;
        };
        let mut worker = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        let job = match worker.as_ref() {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                // The thread is gone (it cannot panic, but then): another one.
                Err(std::sync::mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = std::sync::mpsc::channel::<AheadJob>();
        let started = std::thread::Builder::new()
            .name("maildir-ahead".into())
            .spawn(move || {
                for job in rx {
                    job.run();
                }
            });
        // A thread that could not start drops the job: the folder reads itself on open.
        if started.is_ok() && tx.send(job).is_ok() {
            *worker = Some(tx);
        }
    }

    /// The reading of one folder ahead, registered for [`Self::open_folder_with_visible_name`]
    /// to wait for; `None` when it is not to be read ahead (already registered, not a
    /// Maildir, `restoreatime`).
    fn ahead_job(&self, name: &str) -> Option<AheadJob> {
        if self.options.restore_atime {
            return None;
        }
        let path = self.folder_path(name).ok()?;
        let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        if ahead.contains_key(&path) || !is_maildir(&path) {
            return None;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        ahead.insert(path.clone(), rx);
        Some(AheadJob {
            // For the FMD5 the folder has without a nametrans; another is read again on open.
            fmd5: name::fmd5(self.canonical(name)),
            info_sep: self.options.info_sep(),
            dir: path,
            done: tx,
        })
    }

    fn do_list(&self) -> Result<Vec<String>, MaildirError> {
        let root = &self.config.root;
        if !root.is_dir() {
            // OfflineIMAP creates the root when the repository is set up.
            mkdirs(root).map_err(|source| MaildirError::RootIo {
                path: root.clone(),
                source,
            })?;
        }
        let mut out = Vec::new();
        self.scan_dir(None, 0, &mut out)?;
        Ok(out)
    }

    /// OfflineIMAP's `_getfolders_scandir`: every directory that has `cur`, `new` and `tmp`
    /// is a folder (the root itself included, as `""`); with `sep = /` every directory
    /// other than `cur`/`new`/`tmp` is searched recursively, folder or not.
    fn scan_dir(
        &self,
        ext: Option<&str>,
        depth: usize,
        out: &mut Vec<String>,
    ) -> Result<(), MaildirError> {
        let top = match ext {
            Some(e) => self.config.root.join(e),
            None => self.config.root.clone(),
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(&top).map_err(folder_io(&top))? {
            let entry = entry.map_err(folder_io(&top))?;
            if let Ok(n) = entry.file_name().into_string() {
                names.push(n);
            }
        }
        names.sort_unstable();
        if ext.is_none() && is_maildir(&top) {
            out.push(String::new());
        }
        for dir in names {
            if MAILDIR_SUBDIRS.contains(&dir.as_str()) {
                continue;
            }
            let full = top.join(&dir);
            if !full.is_dir() {
                continue;
            }
            let folder = match ext {
                Some(e) => format!("{e}/{dir}"),
                None => dir,
            };
            if is_maildir(&full) {
                out.push(folder.clone());
            }
            if self.config.sep == '/' && depth < MAX_DEPTH {
                self.scan_dir(Some(&folder), depth + 1, out)?;
            }
        }
        Ok(())
    }

    fn do_create(&self, name: &str) -> Result<(), MaildirError> {
        let path = self.folder_path(name)?;
        mkdirs(&path).map_err(folder_io(&path))?;
        for sub in MAILDIR_SUBDIRS {
            let p = path.join(sub);
            match DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && p.is_dir() => {}
                Err(e) => return Err(folder_io(p)(e)),
            }
        }
        if self.config.fsync {
            // Make the new directory entries themselves durable.
            for dir in [path.as_path(), path.parent().unwrap_or(&self.config.root)] {
                folder::fsync_dir(dir.to_path_buf())?;
            }
        }
        Ok(())
    }
}

fn mkdirs(path: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(path)
}

fn is_maildir(path: &Path) -> bool {
    MAILDIR_SUBDIRS.iter().all(|s| path.join(s).is_dir())
}

/// OfflineIMAP's `makefolder` sanity checks, plus the ones that keep a name inside the
/// root whatever the separator.
fn check_name(name: &str, sep: char) -> Result<(), MaildirError> {
    let bad = |reason| {
        Err(MaildirError::BadFolderName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.starts_with('/') {
        return bad("folder names may not begin with /");
    }
    if name.contains('\0') {
        return bad("folder names may not contain NUL");
    }
    if name.is_empty() {
        return Ok(());
    }
    if sep != '/' && name.contains('/') {
        // OfflineIMAP would create nested directories that its own flat scan never finds.
        return bad("folder names may not contain / unless sep is /");
    }
    for component in name.split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return bad("folder names may not contain empty, . or .. components");
        }
        if sep == '/' && MAILDIR_SUBDIRS.contains(&component) {
            return bad("with sep = / folder names may not contain cur, new or tmp");
        }
    }
    if sep != '/' && MAILDIR_SUBDIRS.contains(&name) {
        return bad("a folder may not be named cur, new or tmp");
    }
    Ok(())
}

impl Repository for MaildirRepository {
    type Folder = MaildirFolder;

    fn separator(&self) -> char {
        self.config.sep
    }

    async fn list_folders(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.do_list()?)
    }

    async fn create_folder(&self, name: &str) -> Result<(), StoreError> {
        Ok(self.do_create(name)?)
    }

    fn prepare(&self, name: &str) {
        self.start_ahead(name);
    }

    /// The folder's `tmp/` (see [`MaildirFolder`]'s `spool_dir`), when it is a Maildir.
    fn spool_dir(&self, name: &str) -> Option<PathBuf> {
        let path = self.folder_path(name).ok()?;
        is_maildir(&path).then(|| path.join("tmp"))
    }

    /// Starts reading folders ahead, in order, while the directories of those started
    /// add up to at most [`AHEAD_BUDGET`] bytes (the names read take about as much memory),
    /// and at most [`AHEAD_FOLDERS`] of them, on half the machine's cores (at least one
    /// thread): reading directories is kernel work that competes for the CPU with the
    /// server's answer to the folder LIST the engine waits for meanwhile, and the server is
    /// on this machine more often than not in tests and benchmarks (and with a tunnel).
    fn prepare_many(&self, names: &[String]) {
        let mut jobs = Vec::new();
        let mut total = 0u64;
        for name in names.iter().take(AHEAD_FOLDERS) {
            let Ok(path) = self.folder_path(name) else {
                continue;
            };
            let size: u64 = ["new", "cur"]
                .iter()
                .filter_map(|sub| fs::metadata(path.join(sub)).ok())
                .map(|m| m.len())
                .sum();
            total += size;
            if total > AHEAD_BUDGET {
                break;
            }
            jobs.extend(self.ahead_job(name));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        run_ahead(jobs, (cores / 2).max(1));
    }

    async fn open_folder(&self, name: &str, access: Access) -> Result<MaildirFolder, StoreError> {
        Ok(self.open_folder_with_visible_name(name, name, access)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oi_core::{FlagUpdate, Flags, Folder, Message, MsgRef, Severity, Uid};
    use std::fs::File;

    fn repo(dir: &Path, sep: char) -> MaildirRepository {
        MaildirRepository::new(MaildirConfig {
            root: dir.join("mail"),
            sep,
            fsync: true,
        })
    }

    fn uid(n: u32) -> Uid {
        Uid::new(n).unwrap()
    }

    fn msg(body: &str) -> Message {
        Message {
            source: MsgRef::Uid(uid(1)),
            body: body.as_bytes().to_vec(),
            flags: Flags::EMPTY,
            internal_date: None,
        }
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    /// The test of [`new_messages_wait_in_tmp_until_flushed_and_a_failed_one_is_forgotten`]
    /// for one of the two flushes.
    async fn flushed(f: &mut MaildirFolder, aside: bool) -> Result<(), oi_core::StoreError> {
        if aside {
            f.flush_aside().await
        } else {
            f.flush().await
        }
    }

    #[tokio::test]
    async fn new_messages_wait_in_tmp_until_flushed_and_a_failed_one_is_forgotten() {
        // The same with the flush that waits for the disk on a thread of its own.
        for aside in [false, true] {
            new_messages_flushed(aside).await;
        }
    }

    /// An INBOX (with fsync) to which seen messages `m1`..`m<n>` were appended under
    /// UIDs 1..=n, not yet flushed; with its directory.
    async fn inbox_with(n: u32) -> (tempfile::TempDir, PathBuf, MaildirFolder) {
        let tmp = tempfile::tempdir().unwrap();
        let r = repo(tmp.path(), '.');
        r.create_folder("INBOX").await.unwrap();
        let dir = tmp.path().join("mail/INBOX");
        let mut f = r.open_folder("INBOX", Access::ReadWrite).await.unwrap();
        for n in 1..=n {
            f.append(&msg(&format!("m{n}")), Flags::SEEN, Some(uid(n)))
                .await
                .unwrap();
        }
        (tmp, dir, f)
    }

    async fn new_messages_flushed(aside: bool) {
        let (_tmp, dir, mut f) = inbox_with(3).await;
        // Written and on their way to the disk, not yet in cur/.
        assert_eq!(files(&dir.join("tmp")).len(), 3);
        assert!(files(&dir.join("cur")).is_empty());
        // A flush puts them in place.
        flushed(&mut f, aside).await.unwrap();
        assert_eq!(files(&dir.join("cur")).len(), 3, "aside={aside}");
        assert!(files(&dir.join("tmp")).is_empty());
        for n in 4..=5 {
            f.append(&msg(&format!("m{n}")), Flags::SEEN, Some(uid(n)))
                .await
                .unwrap();
        }
        // Anything that reads the folder finds them in place.
        let listed = f.list().await.unwrap();
        assert_eq!(listed.messages.len(), 5);
        assert_eq!(files(&dir.join("cur")).len(), 5);
        assert!(files(&dir.join("tmp")).is_empty());

        // A message whose file vanishes from tmp/ before the flush: the flush fails, and
        // it and the ones after it are neither in place nor in the index.
        for n in 6..=8 {
            f.append(&msg(&format!("m{n}")), Flags::SEEN, Some(uid(n)))
                .await
                .unwrap();
        }
        let waiting = files(&dir.join("tmp"));
        assert_eq!(waiting.len(), 3);
        let seventh = waiting
            .iter()
            .find(|n| name::parse(n).uid == Some(7))
            .unwrap();
        fs::remove_file(dir.join("tmp").join(seventh)).unwrap();
        assert!(flushed(&mut f, aside).await.is_err(), "aside={aside}");
        assert!(files(&dir.join("tmp")).is_empty(), "tmp/ cleaned");
        let listed = f.list().await.unwrap();
        let uids: Vec<u32> = listed.messages.keys().map(|u| u.get()).collect();
        assert_eq!(uids, vec![1, 2, 3, 4, 5, 6], "aside={aside}");
        assert_eq!(files(&dir.join("cur")).len(), 6);
        flushed(&mut f, aside).await.unwrap();
    }

    /// A message stored again under a UID the folder has (OfflineIMAP's "we already have
    /// it, just update flags") is renamed for its flags, and its directory is fsynced by
    /// the next flush, before the status records the flags.
    #[tokio::test]
    async fn a_message_stored_again_gets_its_flags_and_its_directory_synced() {
        let (_tmp, dir, mut f) = inbox_with(1).await;
        f.flush().await.unwrap();
        assert!(!f.cur_unflushed());
        f.append(&msg("m1"), Flags::SEEN | Flags::FLAGGED, Some(uid(1)))
            .await
            .unwrap();
        let names = files(&dir.join("cur"));
        assert_eq!(names.len(), 1);
        assert!(names[0].ends_with(":2,FS"), "{names:?}");
        assert!(
            f.cur_unflushed(),
            "the rename's directory left out of the flush"
        );
        f.flush().await.unwrap();
        assert!(!f.cur_unflushed());
    }

    #[tokio::test]
    async fn a_flush_aside_dropped_before_its_end_is_finished_by_the_next_operation() {
        use std::future::Future;
        let (_tmp, dir, mut f) = inbox_with(40).await;
        // The twentieth cannot be put in place: it and the ones after it are lost.
        let twentieth = files(&dir.join("tmp"))
            .into_iter()
            .find(|n| name::parse(n).uid == Some(20))
            .unwrap();
        fs::remove_file(dir.join("tmp").join(twentieth)).unwrap();
        // Polled once and dropped, as a cancelled sync would drop it.
        let first = {
            let mut flush = std::pin::pin!(f.flush_aside());
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            flush.as_mut().poll(&mut cx)
        };
        // Whether it got to the end in that one poll or not, its failure is told once,
        // and the next operation finds the folder as the failure left it.
        match first {
            std::task::Poll::Ready(r) => assert!(r.is_err()),
            std::task::Poll::Pending => assert!(f.flush().await.is_err()),
        }
        assert!(files(&dir.join("tmp")).is_empty(), "tmp/ cleaned");
        let listed = f.list().await.unwrap();
        let uids: Vec<u32> = listed.messages.keys().map(|u| u.get()).collect();
        assert_eq!(uids, (1..=19).collect::<Vec<_>>());
        assert_eq!(files(&dir.join("cur")).len(), 19);
        f.flush().await.unwrap();
    }

    #[tokio::test]
    async fn folders_read_ahead_together_each_get_their_own_listing() {
        let tmp = tempfile::tempdir().unwrap();
        let r = repo(tmp.path(), '.');
        let names: Vec<String> = (0..6).map(|i| format!("F{i}")).collect();
        let mut plain = Vec::new();
        for (i, name) in names.iter().enumerate() {
            r.create_folder(name).await.unwrap();
            let mut f = r.open_folder(name, Access::ReadWrite).await.unwrap();
            for n in 1..=(i as u32 + 1) {
                f.append(&msg(name), Flags::SEEN, Some(uid(n)))
                    .await
                    .unwrap();
            }
            f.flush().await.unwrap();
            plain.push(f.list().await.unwrap());
        }
        // Read ahead in name order (on however many threads), opened in the reverse one:
        // a folder opened before its turn waits for it, and each gets its own listing.
        r.prepare_many(&names);
        for (i, name) in names.iter().enumerate().rev() {
            let mut f = r.open_folder(name, Access::ReadWrite).await.unwrap();
            assert_eq!(f.list().await.unwrap(), plain[i], "{name}");
        }
        // Each was handed over once: nothing is left waiting.
        assert!(r.ahead.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn folders_read_ahead_one_by_one_on_one_thread_each_get_their_own_listing() {
        let tmp = tempfile::tempdir().unwrap();
        let r = repo(tmp.path(), '.');
        let mut plain = Vec::new();
        for i in 0..5u32 {
            let name = format!("G{i}");
            r.create_folder(&name).await.unwrap();
            let mut f = r.open_folder(&name, Access::ReadWrite).await.unwrap();
            for n in 1..=i + 1 {
                f.append(&msg(&name), Flags::SEEN, Some(uid(n)))
                    .await
                    .unwrap();
            }
            f.flush().await.unwrap();
            plain.push(f.list().await.unwrap());
        }
        // Asked for one at a time, as the account sync asks for the next folder: queued on
        // the repository's one reading thread, each opened folder gets its own listing.
        for i in 0..5 {
            r.prepare(&format!("G{i}"));
        }
        assert!(r.worker.lock().unwrap().is_some(), "no reading thread");
        for (i, want) in plain.iter().enumerate() {
            let mut f = r
                .open_folder(&format!("G{i}"), Access::ReadWrite)
                .await
                .unwrap();
            assert_eq!(&f.list().await.unwrap(), want, "G{i}");
        }
        assert!(r.ahead.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_listing_read_ahead_equals_one_read_on_open() {
        let tmp = tempfile::tempdir().unwrap();
        let r = repo(tmp.path(), '.');
        r.create_folder("A").await.unwrap();
        let mut f = r.open_folder("A", Access::ReadWrite).await.unwrap();
        for n in 1..=5 {
            f.append(&msg("x"), Flags::SEEN, Some(uid(n)))
                .await
                .unwrap();
        }
        fs::write(
            tmp.path().join("mail/A/new/123.new.host"),
            "Subject: n\n\nb",
        )
        .unwrap();
        let plain = r
            .open_folder("A", Access::ReadWrite)
            .await
            .unwrap()
            .list()
            .await
            .unwrap();
        r.prepare("A");
        r.prepare("no such folder");
        let mut ahead = r.open_folder("A", Access::ReadWrite).await.unwrap();
        assert_eq!(ahead.list().await.unwrap(), plain);
        // Only the first scan uses it: a message added since is seen by the next one.
        fs::write(
            tmp.path().join("mail/A/new/124.new.host"),
            "Subject: m\n\nb",
        )
        .unwrap();
        assert_eq!(ahead.list().await.unwrap().unsynced.len(), 2);

        // Read ahead for the FMD5 of its own name, a folder opened under another visible
        // name (a nametrans) reads itself again: its messages carry the other FMD5.
        r.create_folder("C").await.unwrap();
        {
            let mut c = r
                .open_folder_with_visible_name("C", "Vis", Access::ReadWrite)
                .unwrap();
            for n in 1..=3 {
                c.append(&msg("x"), Flags::SEEN, Some(uid(n)))
                    .await
                    .unwrap();
            }
            c.flush().await.unwrap();
        }
        r.prepare("C");
        let mut c = r
            .open_folder_with_visible_name("C", "Vis", Access::ReadWrite)
            .unwrap();
        let listing = c.list().await.unwrap();
        assert_eq!(listing.messages.len(), 3);
        assert!(listing.unsynced.is_empty());
    }

    #[tokio::test]
    async fn flat_folders_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let r = repo(tmp.path(), '.');
        assert!(r.list_folders().await.unwrap().is_empty());
        r.create_folder("INBOX").await.unwrap();
        r.create_folder("INBOX.Sent").await.unwrap();
        // Creating again is fine, as in OfflineIMAP.
        r.create_folder("INBOX").await.unwrap();
        fs::create_dir(tmp.path().join("mail/not-a-folder")).unwrap();
        assert_eq!(r.list_folders().await.unwrap(), ["INBOX", "INBOX.Sent"]);

        let mut f = r
            .open_folder("INBOX.Sent", Access::ReadWrite)
            .await
            .unwrap();
        assert_eq!(f.meta().await.unwrap().uid_validity, MAILDIR_UID_VALIDITY);
        assert_eq!(f.fmd5(), name::fmd5("INBOX.Sent"));
        let got = f
            .append(&msg("seen"), Flags::SEEN | Flags::FLAGGED, Some(uid(7)))
            .await;
        assert_eq!(got.unwrap(), Some(uid(7)));
        f.append(&msg("unseen"), Flags::ANSWERED, Some(uid(8)))
            .await
            .unwrap();
        f.append(&msg("none"), Flags::EMPTY, Some(uid(9)))
            .await
            .unwrap();

        // Seen goes to cur/, everything else to new/, and the info part is always there
        // (new files are in place once flushed).
        f.flush().await.unwrap();
        let dir = tmp.path().join("mail/INBOX.Sent");
        let cur = files(&dir.join("cur"));
        let new = files(&dir.join("new"));
        assert_eq!(cur.len(), 1);
        assert!(
            cur[0].ends_with(&format!(",U=7,FMD5={}:2,FS", f.fmd5())),
            "{cur:?}"
        );
        assert_eq!(new.len(), 2);
        assert!(new.iter().any(|n| n.ends_with(":2,R")), "{new:?}");
        assert!(new.iter().any(|n| n.ends_with(":2,")), "{new:?}");
        assert!(files(&dir.join("tmp")).is_empty());

        // A fresh folder object sees the same thing on disk.
        let mut g = r
            .open_folder("INBOX.Sent", Access::ReadWrite)
            .await
            .unwrap();
        let l = g.list().await.unwrap();
        assert_eq!(l.messages.len(), 3);
        assert_eq!(l.messages[&uid(7)].flags, Flags::SEEN | Flags::FLAGGED);
        assert_eq!(l.messages[&uid(8)].flags, Flags::ANSWERED);
        assert!(l.unsynced.is_empty());
        let fetched = g
            .fetch(&[MsgRef::Uid(uid(8)), MsgRef::Uid(uid(99))])
            .await
            .unwrap();
        assert_eq!(fetched.len(), 1);
        assert_eq!(fetched[0].body, b"unseen");
        assert_eq!(fetched[0].flags, Flags::ANSWERED);
        assert!(fetched[0].internal_date.is_some());

        // Seeing 8 moves it to cur/; unseeing 7 moves it to new/.
        g.set_flags(&[
            FlagUpdate {
                uid: uid(8),
                add: Flags::SEEN,
                remove: Flags::EMPTY,
            },
            FlagUpdate {
                uid: uid(7),
                add: Flags::EMPTY,
                remove: Flags::SEEN,
            },
        ])
        .await
        .unwrap();
        let cur = files(&dir.join("cur"));
        assert_eq!(cur.len(), 1);
        assert!(
            cur[0].contains(",U=8,") && cur[0].ends_with(":2,RS"),
            "{cur:?}"
        );
        assert!(
            files(&dir.join("new"))
                .iter()
                .any(|n| n.contains(",U=7,") && n.ends_with(":2,F"))
        );

        g.delete(&[uid(9), uid(9), uid(1234)]).await.unwrap();
        let l = g.list().await.unwrap();
        assert_eq!(
            l.messages.keys().copied().collect::<Vec<_>>(),
            [uid(7), uid(8)]
        );
        assert_eq!(l.messages[&uid(8)].flags, Flags::ANSWERED | Flags::SEEN);

        // Appending a UID that is already there only updates its flags.
        g.append(&msg("again"), Flags::SEEN, Some(uid(8)))
            .await
            .unwrap();
        let fetched = g.fetch(&[MsgRef::Uid(uid(8))]).await.unwrap();
        assert_eq!(fetched[0].body, b"unseen");
        assert_eq!(fetched[0].flags, Flags::SEEN);
    }

    #[tokio::test]
    async fn unsynced_messages_and_assign_uid() {
        let tmp = tempfile::tempdir().unwrap();
        let r = repo(tmp.path(), '.');
        r.create_folder("INBOX").await.unwrap();
        r.create_folder("Other").await.unwrap();
        let dir = tmp.path().join("mail/INBOX");
        let other_md5 = name::fmd5("Other");
        // Delivered by an MDA (no info), saved by a client with flags, and moved in from
        // another folder (foreign FMD5), plus a dot file that is not a message.
        fs::write(dir.join("new/1700000000.M1P2.host"), "mda").unwrap();
        fs::write(dir.join("cur/1700000001.M3P4.host,S=6:2,SP"), "client").unwrap();
        let moved = format!("1700000002_0.5.host,U=3,FMD5={other_md5}:2,S");
        fs::write(dir.join("cur").join(&moved), "moved").unwrap();
        fs::write(dir.join("cur/.hidden"), "x").unwrap();

        let mut f = r.open_folder("INBOX", Access::ReadWrite).await.unwrap();
        let l = f.list().await.unwrap();
        assert!(l.messages.is_empty());
        let keys: Vec<_> = l.unsynced.iter().map(|u| u.key.as_str()).collect();
        let moved_base = moved.trim_end_matches(":2,S");
        assert_eq!(
            keys,
            [
                "1700000000.M1P2.host",
                "1700000001.M3P4.host,S=6",
                moved_base
            ]
        );
        assert_eq!(l.unsynced[0].flags, Flags::EMPTY);
        assert_eq!(l.unsynced[1].flags, Flags::SEEN);
        assert_eq!(l.unsynced[1].size, Some(6));

        let fetched = f
            .fetch(&[MsgRef::Unsynced(keys[1].to_owned())])
            .await
            .unwrap();
        assert_eq!(fetched[0].body, b"client");

        f.assign_uid(
            &MsgRef::Unsynced("1700000001.M3P4.host,S=6".into()),
            uid(100),
        )
        .await
        .unwrap();
        f.assign_uid(&MsgRef::Unsynced("1700000000.M1P2.host".into()), uid(101))
            .await
            .unwrap();
        assert_eq!(
            f.assign_uid(&MsgRef::Unsynced("nope".into()), uid(102))
                .await
                .unwrap_err()
                .severity(),
            Severity::Message
        );
        assert!(
            f.assign_uid(&MsgRef::Unsynced(moved_base.into()), uid(100))
                .await
                .is_err(),
            "UID in use"
        );

        let cur = files(&dir.join("cur"));
        // Unknown flag letters (P) survive the rename.
        assert!(
            cur.iter()
                .any(|n| n.ends_with(&format!(",U=100,FMD5={}:2,PS", f.fmd5()))),
            "{cur:?}"
        );
        // The MDA message stays in new/ and gains an (empty) info part.
        let new = files(&dir.join("new"));
        assert_eq!(new.len(), 1);
        assert!(
            new[0].ends_with(&format!(",U=101,FMD5={}:2,", f.fmd5())),
            "{new:?}"
        );

        let mut g = r.open_folder("INBOX", Access::ReadWrite).await.unwrap();
        let l = g.list().await.unwrap();
        assert_eq!(
            l.messages.keys().copied().collect::<Vec<_>>(),
            [uid(100), uid(101)]
        );
        assert_eq!(l.unsynced.len(), 1);
        // Flag changes keep letters we do not model.
        g.set_flags(&[FlagUpdate {
            uid: uid(100),
            add: Flags::FLAGGED,
            remove: Flags::SEEN,
        }])
        .await
        .unwrap();
        assert!(
            files(&dir.join("new"))
                .iter()
                .any(|n| n.contains(",U=100,") && n.ends_with(":2,FP"))
        );
    }

    #[tokio::test]
    async fn duplicate_uid_prefers_cur_and_last_name() {
        let tmp = tempfile::tempdir().unwrap();
        let r = repo(tmp.path(), '.');
        r.create_folder("INBOX").await.unwrap();
        let dir = tmp.path().join("mail/INBOX");
        let md5 = name::fmd5("INBOX");
        fs::write(dir.join(format!("new/1_0.1.h,U=5,FMD5={md5}:2,")), "a").unwrap();
        fs::write(dir.join(format!("cur/2_0.1.h,U=5,FMD5={md5}:2,S")), "b").unwrap();
        fs::write(dir.join(format!("cur/3_0.1.h,U=5,FMD5={md5}:2,F")), "c").unwrap();
        let mut f = r.open_folder("INBOX", Access::ReadWrite).await.unwrap();
        let l = f.list().await.unwrap();
        assert_eq!(l.messages.len(), 1);
        assert!(l.unsynced.is_empty());
        assert_eq!(l.messages[&uid(5)].flags, Flags::FLAGGED);
        assert_eq!(f.fetch(&[MsgRef::Uid(uid(5))]).await.unwrap()[0].body, b"c");
    }

    #[tokio::test]
    async fn nested_folders_with_slash() {
        let tmp = tempfile::tempdir().unwrap();
        let r = repo(tmp.path(), '/');
        r.create_folder("INBOX/Sub/Deep").await.unwrap();
        r.create_folder("INBOX").await.unwrap();
        r.create_folder("Archive").await.unwrap();
        assert_eq!(
            r.list_folders().await.unwrap(),
            ["Archive", "INBOX", "INBOX/Sub/Deep"]
        );
        assert!(tmp.path().join("mail/INBOX/Sub/Deep/cur").is_dir());
        assert!(r.create_folder("INBOX/new").await.is_err());
        assert!(r.create_folder("../escape").await.is_err());
        assert!(r.create_folder("/abs").await.is_err());
        assert!(r.open_folder("INBOX/Sub", Access::ReadWrite).await.is_err());

        // FMD5 is computed over the name with the Maildir's own separator.
        let mut f = r
            .open_folder("INBOX/Sub/Deep", Access::ReadWrite)
            .await
            .unwrap();
        assert_eq!(f.fmd5(), name::fmd5("INBOX/Sub/Deep"));
        f.append(&msg("x"), Flags::SEEN, Some(uid(1)))
            .await
            .unwrap();
        assert_eq!(f.list().await.unwrap().messages.len(), 1);

        // With nametrans the visible name decides the FMD5.
        let g = r
            .open_folder_with_visible_name("INBOX/Sub/Deep", "Deep", Access::ReadOnly)
            .unwrap();
        assert_eq!(g.fmd5(), name::fmd5("Deep"));
    }

    #[tokio::test]
    async fn flat_sep_rejects_slash_and_lists_root_maildir() {
        let tmp = tempfile::tempdir().unwrap();
        let r = repo(tmp.path(), '.');
        assert!(r.create_folder("a/b").await.is_err());
        r.create_folder(".").await.unwrap();
        r.create_folder("INBOX").await.unwrap();
        assert_eq!(r.list_folders().await.unwrap(), ["", "INBOX"]);
    }

    #[tokio::test]
    async fn read_only_folder_refuses_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let r = repo(tmp.path(), '.');
        r.create_folder("INBOX").await.unwrap();
        let mut f = r.open_folder("INBOX", Access::ReadOnly).await.unwrap();
        let e = f
            .append(&msg("x"), Flags::EMPTY, Some(uid(1)))
            .await
            .unwrap_err();
        assert_eq!(e.severity(), Severity::Folder);
        assert!(f.list().await.unwrap().messages.is_empty());
    }

    fn mtime(p: &Path) -> i64 {
        let t = fs::metadata(p).unwrap().modified().unwrap();
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    }

    #[tokio::test]
    async fn windows_compatible_names() {
        let tmp = tempfile::tempdir().unwrap();
        let r = repo(tmp.path(), '.').with_options(MaildirOptions {
            windows_compatible: true,
            ..MaildirOptions::default()
        });
        r.create_folder("INBOX").await.unwrap();
        let mut f = r.open_folder("INBOX", Access::ReadWrite).await.unwrap();
        f.append(&msg("a"), Flags::SEEN | Flags::FLAGGED, Some(uid(1)))
            .await
            .unwrap();
        f.flush().await.unwrap();
        let dir = tmp.path().join("mail/INBOX");
        let cur = files(&dir.join("cur"));
        assert!(
            cur[0].ends_with("!2,FS") && !cur[0].contains(':'),
            "{cur:?}"
        );
        let mut g = r.open_folder("INBOX", Access::ReadWrite).await.unwrap();
        let l = g.list().await.unwrap();
        assert_eq!(l.messages[&uid(1)].flags, Flags::SEEN | Flags::FLAGGED);
        g.set_flags(&[FlagUpdate {
            uid: uid(1),
            add: Flags::ANSWERED,
            remove: Flags::SEEN,
        }])
        .await
        .unwrap();
        let new = files(&dir.join("new"));
        assert!(new[0].ends_with("!2,FR"), "{new:?}");
        // The same tree read without the option: `!2,FR` is not an info part, so the
        // FMD5 field does not match and the file is a stranger.
        let plain = repo(tmp.path(), '.');
        let mut h = plain.open_folder("INBOX", Access::ReadOnly).await.unwrap();
        let l = h.list().await.unwrap();
        assert!(l.messages.is_empty());
        assert_eq!(l.unsynced.len(), 1);
    }

    const DATED: &str = "From: a@example.com\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\nbody";

    #[tokio::test]
    async fn mail_timestamp_names_and_file_times() {
        let tmp = tempfile::tempdir().unwrap();
        let r = repo(tmp.path(), '.').with_options(MaildirOptions {
            utime_from_header: true,
            filename_use_mail_timestamp: true,
            ..MaildirOptions::default()
        });
        r.create_folder("INBOX").await.unwrap();
        let mut f = r.open_folder("INBOX", Access::ReadWrite).await.unwrap();
        f.append(&msg(DATED), Flags::SEEN, Some(uid(1)))
            .await
            .unwrap();
        f.append(&msg(DATED), Flags::SEEN, Some(uid(2)))
            .await
            .unwrap();
        // Delivery-date is the fallback for the name only.
        let delivered = "Delivery-date: Tue, 14 Nov 2023 22:13:21 +0000\n\nx";
        f.append(&msg(delivered), Flags::SEEN, Some(uid(3)))
            .await
            .unwrap();
        f.append(&msg("no date"), Flags::SEEN, Some(uid(4)))
            .await
            .unwrap();
        f.flush().await.unwrap();
        let dir = tmp.path().join("mail/INBOX/cur");
        let cur = files(&dir);
        let by_uid = |u: u32| {
            cur.iter()
                .find(|n| name::parse(n).uid == Some(u))
                .unwrap()
                .clone()
        };
        assert!(by_uid(1).starts_with("1700000000_0."), "{cur:?}");
        assert!(by_uid(2).starts_with("1700000000_1."), "{cur:?}");
        assert!(by_uid(3).starts_with("1700000001_0."), "{cur:?}");
        assert!(!by_uid(4).starts_with("17000000"), "{cur:?}");
        assert_eq!(mtime(&dir.join(by_uid(1))), 1_700_000_000);
        assert_ne!(mtime(&dir.join(by_uid(3))), 1_700_000_001);
        let got = f.fetch(&[MsgRef::Uid(uid(2))]).await.unwrap();
        assert_eq!(got[0].internal_date, Some(1_700_000_000));

        // Without the options the clock decides both.
        let plain = repo(tmp.path(), '.');
        plain.create_folder("Other").await.unwrap();
        let mut g = plain.open_folder("Other", Access::ReadWrite).await.unwrap();
        g.append(&msg(DATED), Flags::SEEN, Some(uid(1)))
            .await
            .unwrap();
        g.flush().await.unwrap();
        let odir = tmp.path().join("mail/Other/cur");
        let other = files(&odir);
        assert!(!other[0].starts_with("1700000000_"), "{other:?}");
        assert_ne!(mtime(&odir.join(&other[0])), 1_700_000_000);
    }

    #[tokio::test]
    async fn restoreatime_puts_directory_atimes_back_at_close() {
        let tmp = tempfile::tempdir().unwrap();
        let r = repo(tmp.path(), '.').with_options(MaildirOptions {
            restore_atime: true,
            ..MaildirOptions::default()
        });
        r.create_folder("INBOX").await.unwrap();
        let dir = tmp.path().join("mail/INBOX");
        let then = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        let atime = |sub: &str| fs::metadata(dir.join(sub)).unwrap().accessed().unwrap();
        let set_atime = |sub: &str, t| {
            File::open(dir.join(sub))
                .unwrap()
                .set_times(fs::FileTimes::new().set_accessed(t))
                .unwrap();
        };
        set_atime("new", then);
        set_atime("cur", then);
        let mut f = r.open_folder("INBOX", Access::ReadWrite).await.unwrap();
        f.append(&msg("x"), Flags::EMPTY, Some(uid(1)))
            .await
            .unwrap();
        f.list().await.unwrap();
        // Whatever the mount's atime policy, something read the directories meanwhile.
        let now = std::time::SystemTime::now();
        set_atime("new", now);
        set_atime("cur", now);
        f.close().await.unwrap();
        assert_eq!(atime("new"), then);
        assert_eq!(atime("cur"), then);
        // The modification time is left alone: the new message changed new/.
        assert!(mtime(&dir.join("new")) > 1_000_000_000);

        // Without the option nothing is restored.
        let plain = repo(tmp.path(), '.');
        let mut g = plain.open_folder("INBOX", Access::ReadWrite).await.unwrap();
        set_atime("new", now);
        g.close().await.unwrap();
        assert_eq!(atime("new"), now);
    }

    #[tokio::test]
    async fn append_without_uid_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let r = repo(tmp.path(), '.');
        r.create_folder("INBOX").await.unwrap();
        let mut f = r.open_folder("INBOX", Access::ReadWrite).await.unwrap();
        let e = f.append(&msg("x"), Flags::EMPTY, None).await.unwrap_err();
        assert_eq!(e.severity(), Severity::Message);
        assert!(files(&tmp.path().join("mail/INBOX/tmp")).is_empty());
        assert!(files(&tmp.path().join("mail/INBOX/new")).is_empty());
    }

    #[tokio::test]
    async fn what_a_killed_sync_left_in_tmp_goes_once_abandoned_and_only_ours() {
        let tmp = tempfile::tempdir().unwrap();
        let r = repo(tmp.path(), '.');
        r.create_folder("INBOX").await.unwrap();
        let dir = tmp.path().join("mail/INBOX");
        let ours = [
            ".offlineimap-spool-Ab12Cd",
            "1700000000_0.123.host,U=7,FMD5=0123456789abcdef0123456789abcdef:2,S",
        ];
        for n in ours.iter().chain(&["1700000000.M1P2.host", "notes.txt"]) {
            fs::write(dir.join("tmp").join(n), "x").unwrap();
        }
        fs::create_dir(dir.join("tmp/.offlineimap-spool-dir")).unwrap();
        let all = files(&dir.join("tmp"));
        assert_eq!(all.len(), 5);

        // Young files may belong to a sync still running: opening keeps them.
        let now = std::time::SystemTime::now();
        assert_eq!(folder::remove_abandoned_tmp(&dir, now), 0);
        drop(r.open_folder("INBOX", Access::ReadWrite).await.unwrap());
        assert_eq!(files(&dir.join("tmp")), all);

        // 36 hours is not yet abandoned; past it, ours go and the rest stays.
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(folder::remove_abandoned_tmp(&dir, now + 35 * hour), 0);
        assert_eq!(folder::remove_abandoned_tmp(&dir, now + 37 * hour), 2);
        let left = files(&dir.join("tmp"));
        assert_eq!(
            left,
            [
                ".offlineimap-spool-dir",
                "1700000000.M1P2.host",
                "notes.txt"
            ]
        );
        assert!(ours.iter().all(|n| !left.contains(&n.to_string())));
    }
}
