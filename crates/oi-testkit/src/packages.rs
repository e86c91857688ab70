//! Finding the server binaries of Debian packages that cannot be installed side by side.
//!
//! `dovecot-imapd`, `cyrus-imapd` and `courier-imap` all `Provide` and `Conflict` with
//! `imap-server`, so one machine can install only one of them. The other two are used
//! unpacked: their libraries come from installable packages (`cyrus-common`,
//! `courier-base`), and only the conflicting package's files are extracted with
//! `apt-get download` + `dpkg -x` into a cache directory, never installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::StartError;

/// Where unpacked packages live: `$OI_TESTKIT_PACKAGES`, else `/var/cache/oi-testkit`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("OI_TESTKIT_PACKAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/oi-testkit"))
}

/// True under CI, where a missing server is a failure and never a skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The file `rel` (e.g. `usr/lib/cyrus/bin/imapd`) of package `pkg`: the installed one
/// when `/rel` exists, else the unpacked copy, which is made now when missing (the
/// package lists must be current: `apt-get update`).
pub fn package_file(pkg: &str, rel: &str) -> Result<PathBuf, StartError> {
    let installed = Path::new("/").join(rel);
    if installed.exists() {
        return Ok(installed);
    }
    let root = cache_dir().join(pkg);
    let unpacked = root.join(rel);
    if unpacked.exists() {
        return Ok(unpacked);
    }
    unpack(pkg, &root)?;
    if unpacked.exists() {
        Ok(unpacked)
    } else {
        Err(StartError::Failed(format!(
            "package {pkg} has no {rel} after unpacking into {}",
            root.display()
        )))
    }
}

/// Downloads and unpacks `pkg` into `root`. Concurrent tests each unpack into their own
/// directory and rename it into place; the loser of that race uses the winner's copy.
fn unpack(pkg: &str, root: &Path) -> Result<(), StartError> {
    let parent = root
        .parent()
        .ok_or_else(|| StartError::Failed(format!("no parent for {}", root.display())))?;
    std::fs::create_dir_all(parent)?;
    let work = tempfile::Builder::new()
        .prefix(&format!(".{pkg}."))
        .tempdir_in(parent)?;
    let out = Command::new("apt-get")
        .args(["download", "-q", pkg])
        .current_dir(work.path())
        .stdin(Stdio::null())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(_) => return Err(StartError::NotInstalled),
    };
    if !out.status.success() {
        return Err(StartError::Failed(format!(
            "apt-get download {pkg} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let deb = std::fs::read_dir(work.path())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| StartError::Failed(format!("apt-get download {pkg}: no .deb")))?;
    let tree = work.path().join("tree");
    let out = Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(&tree)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(StartError::Failed(format!(
            "dpkg -x {} failed: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    // dpkg -x leaves the tree root 0700 on some versions; servers run unprivileged.
    crate::chmod(&tree, "a+rx")?;
    if std::fs::rename(&tree, root).is_err() && !root.exists() {
        return Err(StartError::Failed(format!(
            "could not move the unpacked {pkg} to {}",
            root.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_files_win() {
        // /bin/sh exists on every machine this runs on, so no download is attempted.
        assert_eq!(
            package_file("no-such-package", "bin/sh").unwrap(),
            PathBuf::from("/bin/sh")
        );
    }
}
