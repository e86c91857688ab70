//! Unique parts of new file names: `<time>_<seq>.<pid>.<host>`.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::name;

/// Hands out `(time, seq)` pairs the way OfflineIMAP's `_gettimeseq` does: the sequence
/// restarts at 0 for every new second and counts up within a second. One `Namer` is shared
/// by a repository and all folders it opens, so names stay unique within the process
/// without global state; a collision with another writer is caught by `O_EXCL` and the
/// caller simply asks for the next name.
#[derive(Debug)]
pub(crate) struct Namer {
    last: Mutex<(i64, u64)>,
    pid: u32,
    host: String,
}

impl Namer {
    pub(crate) fn new() -> Namer {
        Namer {
            last: Mutex::new((i64::MIN, 0)),
            pid: std::process::id(),
            host: name::safe_hostname(&hostname()),
        }
    }

    /// A new name for a message with this UID, FMD5 and flag letters.
    pub(crate) fn next(&self, uid: u32, fmd5: &str, letters: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let (time, seq) = {
            // A poisoned lock only means another thread panicked while holding a counter;
            // the counter itself is still a valid pair.
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.0 == now {
                last.1 += 1;
            } else {
                *last = (now, 0);
            }
            *last
        };
        name::format(&name::NewName {
            time,
            seq,
            pid: self.pid,
            host: &self.host,
            uid,
            fmd5,
            flags: letters,
        })
    }
}

/// The host name as Python's `socket.gethostname()` returns it; "localhost" if the system
/// will not say.
#[allow(unsafe_code)]
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call; gethostname
    // writes at most `len` bytes and we look only up to the first NUL inside the buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match String::from_utf8_lossy(&buf[..end]) {
        h if h.is_empty() => "localhost".to_owned(),
        h => h.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_counts_within_a_second_and_names_differ() {
        let n = Namer::new();
        let a = n.next(1, "f", "S");
        let b = n.next(1, "f", "S");
        assert_ne!(a, b);
        let pa = name::parse(&a);
        assert_eq!(pa.uid, Some(1));
        assert!(pa.unique.contains(&format!(".{}.", std::process::id())));
    }

    #[test]
    fn hostname_is_never_empty() {
        assert!(!hostname().is_empty());
    }
}
