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

/// `oi-bench --measure OUT TIMEOUT_MS PROGRAM [ARGS…]`: runs PROGRAM with this process's
/// stdio, waits for it with [`wait_with_rusage`] and writes `exit max_rss_kib timed_out
/// wall_ns` to OUT.
///
/// The timed tools are started through this small process rather than straight from the
/// benchmark: a child started by posix_spawn (vfork) or fork inherits its parent's peak
/// RSS in its own `ru_maxrss` (Linux keeps the larger of the old and new memory's peaks
/// across exec), and the benchmark itself peaks at well over 100 MiB while it writes the
/// mail. This launcher is a fresh exec, a few MiB.
pub fn measure_main(args: &[String]) -> io::Result<i32> {
    let [out, timeout_ms, program, rest @ ..] = args else {
        return Err(io::Error::other(
            "usage: oi-bench --measure OUT TIMEOUT_MS PROGRAM [ARGS...]",
        ));
    };
    let timeout = Duration::from_millis(
        timeout_ms
            .parse()
            .map_err(|_| io::Error::other("TIMEOUT_MS must be a number"))?,
    );
    let start = Instant::now();
    let child = std::process::Command::new(program).args(rest).spawn()?;
    let f = wait_with_rusage(child, timeout)?;
    let wall = start.elapsed();
    std::fs::write(
        out,
        format!(
            "{} {} {} {}\n",
            f.exit.map_or(-1, |c| c),
            f.max_rss_kib,
            u8::from(f.timed_out),
            wall.as_nanos()
        ),
    )?;
    Ok(f.exit.unwrap_or(1))
}

/// Reads what [`measure_main`] wrote: the tool's end and its own wall time.
pub fn read_measured(out: &std::path::Path) -> io::Result<(Finished, Duration)> {
    let text = std::fs::read_to_string(out)?;
    let bad = || io::Error::other(format!("bad measure output {text:?}"));
    let mut it = text.split_whitespace();
    let mut next = || it.next().ok_or_else(bad);
    let exit: i32 = next()?.parse().map_err(|_| bad())?;
    let max_rss_kib: u64 = next()?.parse().map_err(|_| bad())?;
    let timed_out: u8 = next()?.parse().map_err(|_| bad())?;
    let wall: u64 = next()?.parse().map_err(|_| bad())?;
    Ok((
        Finished {
            exit: (exit >= 0).then_some(exit),
            max_rss_kib,
            timed_out: timed_out == 1,
        },
        Duration::from_nanos(wall),
    ))
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

    #[test]
    fn measured_output_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("m");
        let args: Vec<String> = [out.to_str().unwrap(), "30000", "sh", "-c", "exit 4"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(measure_main(&args).unwrap(), 4);
        let (f, wall) = read_measured(&out).unwrap();
        assert_eq!(f.exit, Some(4));
        assert!(f.max_rss_kib > 0 && !f.timed_out);
        assert!(wall > Duration::ZERO);
        std::fs::write(&out, "garbage").unwrap();
        assert!(read_measured(&out).is_err());
    }
}
