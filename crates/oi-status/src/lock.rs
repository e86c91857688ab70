//! The per-account lock file, `<metadata>/<account>.lock`.
//!
//! OfflineIMAP 8 (`accounts.py`, `SyncableAccount.__lock`) opens the file for writing and
//! takes `fcntl.lockf(fd, LOCK_EX | LOCK_NB)`, a POSIX record lock over the whole file (it
//! would use `portalocker` if installed, which on Unix is also `fcntl.lockf`). A BSD
//! `flock` (what `std::fs::File::try_lock` takes) does not conflict with that on Linux, so
//! we take a record lock too. On Linux it is an open-file-description lock
//! (`F_OFD_SETLK`): it conflicts with OfflineIMAP's classic record lock, but unlike a
//! classic one it also conflicts with a second lock taken inside this same process, and
//! closing some unrelated descriptor of the file does not drop it.
//!
//! OfflineIMAP unlinks the file after unlocking. We leave it in place: unlinking a lock
//! file races with a process that has just opened it (two holders of two different
//! inodes), and an empty leftover file is harmless to both programs.
//!
//! Beware (observed with OfflineIMAP 8.0.1): when OfflineIMAP *fails* to take the lock,
//! its cleanup still closes and unlinks the lock file, so the path no longer names the
//! inode we hold locked and a third process could lock a fresh file. Call
//! [`AccountLock::refresh`] at safe points (between folders) to put a locked file back.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{StatusError, io_at};

/// An exclusive lock on one account's metadata, released when dropped.
#[derive(Debug)]
pub struct AccountLock {
    // Held only for their locks: closing a descriptor releases its lock. More than one
    // when `refresh` had to lock a re-created file.
    files: Vec<File>,
    account: String,
    path: PathBuf,
}

impl AccountLock {
    /// Takes the lock without waiting; [`StatusError::Locked`] if another process (ours
    /// or OfflineIMAP) or another `AccountLock` of this process holds it.
    pub fn acquire(metadata: &Path, account: &str) -> Result<AccountLock, StatusError> {
        fs::create_dir_all(metadata).map_err(io_at(metadata))?;
        let path = metadata.join(format!("{account}.lock"));
        let file = lock_path(&path, account)?;
        Ok(AccountLock {
            files: vec![file],
            account: account.to_owned(),
            path,
        })
    }

    /// Makes sure the lock file on disk is still one we hold locked; if someone unlinked
    /// or replaced it, locks the file now at the path as well. [`StatusError::Locked`]
    /// means another process got hold of the new file first: stop syncing the account.
    pub fn refresh(&mut self) -> Result<(), StatusError> {
        use std::os::unix::fs::MetadataExt;
        if let Ok(on_disk) = fs::metadata(&self.path) {
            let held = self.files.iter().any(|f| {
                f.metadata()
                    .map(|m| m.dev() == on_disk.dev() && m.ino() == on_disk.ino())
                    .unwrap_or(false)
            });
            if held {
                return Ok(());
            }
        }
        let file = lock_path(&self.path, &self.account)?;
        self.files.push(file);
        Ok(())
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn lock_path(path: &Path, account: &str) -> Result<File, StatusError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_at(path))?;
    match try_write_lock(&file) {
        Ok(()) => Ok(file),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => {
            Err(StatusError::Locked {
                account: account.to_owned(),
                path: path.to_owned(),
            })
        }
        Err(e) => Err(io_at(path)(e)),
    }
}

#[cfg(target_os = "linux")]
const SET_LOCK: libc::c_int = libc::F_OFD_SETLK;
#[cfg(not(target_os = "linux"))]
const SET_LOCK: libc::c_int = libc::F_SETLK;

/// A non-blocking write lock over the whole file (start 0, length 0 = to the end and
/// beyond), exactly the range `fcntl.lockf` locks.
#[allow(unsafe_code)]
fn try_write_lock(file: &File) -> io::Result<()> {
    // SAFETY: `flock` is a plain C struct for which all-zero bytes are a valid value
    // (and `l_pid` must be 0 for F_OFD_SETLK); fcntl reads it through a pointer that is
    // valid for the duration of the call, on a descriptor `file` keeps open.
    let rc = unsafe {
        let mut fl: libc::flock = std::mem::zeroed();
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        libc::fcntl(file.as_raw_fd(), SET_LOCK, &fl as *const libc::flock)
    };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    #[test]
    fn second_acquire_conflicts_until_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let a = AccountLock::acquire(tmp.path(), "acc").unwrap();
        assert_eq!(a.path(), tmp.path().join("acc.lock"));
        let e = AccountLock::acquire(tmp.path(), "acc").unwrap_err();
        assert!(matches!(e, StatusError::Locked { .. }), "{e}");
        assert!(e.to_string().contains("another instance"));
        // Other accounts are independent.
        let _b = AccountLock::acquire(tmp.path(), "other").unwrap();
        drop(a);
        AccountLock::acquire(tmp.path(), "acc").unwrap();
    }

    #[test]
    fn refresh_relocks_an_unlinked_lock_file() {
        let tmp = tempfile::tempdir().unwrap();
        let mut a = AccountLock::acquire(tmp.path(), "acc").unwrap();
        a.refresh().unwrap();
        assert_eq!(a.files.len(), 1, "nothing to do while the file is ours");
        // What a failed OfflineIMAP does on its way out.
        fs::remove_file(a.path()).unwrap();
        AccountLock::acquire(tmp.path(), "acc").unwrap(); // the gap refresh closes
        a.refresh().unwrap();
        assert!(a.path().exists());
        assert!(matches!(
            AccountLock::acquire(tmp.path(), "acc"),
            Err(StatusError::Locked { .. })
        ));
        // Someone else holding the re-created file wins.
        let tmp2 = tempfile::tempdir().unwrap();
        let mut b = AccountLock::acquire(tmp2.path(), "acc").unwrap();
        fs::remove_file(b.path()).unwrap();
        let _c = AccountLock::acquire(tmp2.path(), "acc").unwrap();
        assert!(matches!(b.refresh(), Err(StatusError::Locked { .. })));
    }

    const PY_HOLD: &str = "import fcntl,sys\nf=open(sys.argv[1],'w')\nfcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB)\nprint('locked', flush=True)\nsys.stdin.read()\n";
    const PY_TRY: &str = "import fcntl,sys\nf=open(sys.argv[1],'w')\ntry:\n fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB)\nexcept OSError:\n sys.exit(3)\n";

    fn python() -> Option<Command> {
        let ok = Command::new("python3")
            .arg("-c")
            .arg("import fcntl")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("python3 is missing: SKIPPING the OfflineIMAP lock interop test");
            return None;
        }
        Some(Command::new("python3"))
    }

    #[test]
    fn conflicts_with_offlineimap_style_lockf_holder() {
        let Some(mut py) = python() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("acc.lock");
        let mut child = py
            .arg("-c")
            .arg(PY_HOLD)
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        let e = AccountLock::acquire(tmp.path(), "acc").unwrap_err();
        assert!(matches!(e, StatusError::Locked { .. }), "{e}");
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
        let ours = AccountLock::acquire(tmp.path(), "acc").unwrap();

        // And the other way round: OfflineIMAP cannot take it while we hold it.
        let st = python()
            .unwrap()
            .arg("-c")
            .arg(PY_TRY)
            .arg(&path)
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(3));
        drop(ours);
        let st = python()
            .unwrap()
            .arg("-c")
            .arg(PY_TRY)
            .arg(&path)
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(0));
    }
}
