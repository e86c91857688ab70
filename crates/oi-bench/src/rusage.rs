//! Waiting for a child with wait4(2), which also reports the child's peak RSS.

use std::io;
use std::process::Child;
use std::time::{Duration, Instant};

/// How a child ended.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// The exit status, `None` when killed by a signal.
    pub exit: Option<i32>,
    /// The child's peak resident set size (ru_maxrss), KiB.
    pub max_rss_kib: u64,
    /// True when it ran past the timeout and was killed.
    pub timed_out: bool,
}

/// Waits for the child (polling every millisecond, so the wall time stays accurate), killing
/// it after `timeout`. The child is reaped here; `child` must not be waited for again.
pub fn wait_with_rusage(mut child: Child, timeout: Duration) -> io::Result<Finished> {
    let pid = libc::pid_t::try_from(child.id())
        .map_err(|_| io::Error::other("child pid out of range"))?;
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        #[allow(unsafe_code)]
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are to live, writable locals of the right types, and pid is
        // our own unreaped child.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if rc == pid {
            let exit = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            return Ok(Finished {
                exit,
                max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
                timed_out,
            });
        }
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        if !timed_out && Instant::now() > deadline {
            timed_out = true;
            child.kill()?;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn exit_status_and_rss() {
        let c = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        let f = wait_with_rusage(c, Duration::from_secs(30)).unwrap();
        assert_eq!(f.exit, Some(3));
        assert!(f.max_rss_kib > 0);
        assert!(!f.timed_out);
        let c = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let f = wait_with_rusage(c, Duration::from_millis(50)).unwrap();
        assert!(f.timed_out);
        assert_eq!(f.exit, None);
    }
}
