//! Unique parts of new file names: `<time>_<seq>.<pid>.<host>`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::name;

/// Hands out `(time, seq)` pairs the way OfflineIMAP's `_gettimeseq` does: the sequence
/// restarts at 0 for every new second and counts up within a second. One `Namer` is shared
/// by a repository and all folders it opens, so names stay unique within the process
/// without global state; a collision with another writer is caught by `O_EXCL` and the
/// caller simply asks for the next name.
///
/// Times taken from a message's Date header (`filename_use_mail_timestamp`) are counted
/// per timestamp, as `_gettimeseq(date)` does with its dict: they arrive in any order.
#[derive(Debug)]
pub(crate) struct Namer {
    last: Mutex<(i64, u64)>,
    by_date: Mutex<HashMap<i64, u64>>,
    pid: u32,
    host: String,
}

impl Namer {
    pub(crate) fn new() -> Namer {
        Namer {
            last: Mutex::new((i64::MIN, 0)),
            by_date: Mutex::new(HashMap::new()),
            pid: std::process::id(),
            host: name::safe_hostname(&hostname()),
        }
    }

    /// A new name for a message with this UID, FMD5 and flag letters.
    #[cfg(test)]
    pub(crate) fn next(&self, uid: u32, fmd5: &str, letters: &str) -> String {
        self.next_with(uid, fmd5, letters, name::INFO_SEP, None)
    }

    /// A new name with this info separator, its time prefix taken from `date` (seconds
    /// since the epoch) instead of the clock when given.
    pub(crate) fn next_with(
        &self,
        uid: u32,
        fmd5: &str,
        letters: &str,
        info_sep: char,
        date: Option<i64>,
    ) -> String {
        let (time, seq) = match date {
            Some(date) => {
                // Poisoning: see below.
                let mut map = self.by_date.lock().unwrap_or_else(|p| p.into_inner());
                let seq = map.entry(date).and_modify(|s| *s += 1).or_insert(0);
                (date, *seq)
            }
            None => self.now_seq(),
        };
        name::format_with_sep(
            &name::NewName {
                time,
                seq,
                pid: self.pid,
                host: &self.host,
                uid,
                fmd5,
                flags: letters,
            },
            info_sep,
        )
    }

    fn now_seq(&self) -> (i64, u64) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        {
            // A poisoned lock only means another thread panicked while holding a counter;
            // the counter itself is still a valid pair.
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.0 == now {
                last.1 += 1;
            } else {
                *last = (now, 0);
            }
            *last
        }
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
    fn mail_dates_count_per_date() {
        let n = Namer::new();
        let a = n.next_with(1, "f", "", '!', Some(1000));
        let b = n.next_with(2, "f", "", '!', Some(2000));
        let c = n.next_with(3, "f", "", '!', Some(1000));
        assert!(a.starts_with("1000_0."), "{a}");
        assert!(b.starts_with("2000_0."), "{b}");
        assert!(c.starts_with("1000_1."), "{c}");
        assert!(a.ends_with("!2,"));
    }

    #[test]
    fn hostname_is_never_empty() {
        assert!(!hostname().is_empty());
    }
}
