//! Deterministic test mail: a seeded generator of realistic messages (mostly small text,
//! some HTML alternatives, a share with a large base64 attachment depending on the profile).

/// How much attachment-carrying mail a data set has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Only text and HTML messages (2–20 KB).
    Text,
    /// 2% of the messages carry a 100 KB–2 MB attachment.
    Mixed,
    /// 10% of the messages carry a 100 KB–2 MB attachment.
    Heavy,
}

impl Profile {
    /// Parses `text`, `mixed` or `heavy`.
    pub fn parse(s: &str) -> Option<Profile> {
        match s {
            "text" => Some(Profile::Text),
            "mixed" => Some(Profile::Mixed),
            "heavy" => Some(Profile::Heavy),
            _ => None,
        }
    }

    /// The profile's name.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Text => "text",
            Profile::Mixed => "mixed",
            Profile::Heavy => "heavy",
        }
    }

    fn attachment_share(self) -> f64 {
        match self {
            Profile::Text => 0.0,
            Profile::Mixed => 0.02,
            Profile::Heavy => 0.10,
        }
    }
}

/// SplitMix64: small, fast and good enough for test data; the same seed gives the same mail.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for this seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n) (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Picks index k with weight 1/(k+1) (Zipf-like: the first is the most likely).
    pub fn zipf(&mut self, n: usize) -> usize {
        let total: f64 = (0..n).map(|k| 1.0 / (k as f64 + 1.0)).sum();
        let mut x = self.unit() * total;
        for k in 0..n {
            x -= 1.0 / (k as f64 + 1.0);
            if x < 0.0 {
                return k;
            }
        }
        n.saturating_sub(1)
    }
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "with",
    "was",
    "on",
    "be",
    "by",
    "this",
    "are",
    "from",
    "at",
    "or",
    "an",
    "have",
    "not",
    "mail",
    "sync",
    "folder",
    "server",
    "message",
    "client",
    "maildir",
    "flag",
    "seen",
    "answered",
    "draft",
    "release",
    "build",
    "test",
    "patch",
    "review",
    "meeting",
    "report",
    "invoice",
    "schedule",
    "update",
    "question",
    "thanks",
    "regards",
    "please",
    "tomorrow",
    "today",
    "week",
    "project",
    "team",
    "list",
    "thread",
    "reply",
    "forward",
    "archive",
    "note",
    "plan",
    "café",
    "naïve",
    "Grüße",
    "señor",
    "smörgåsbord",
    "déjà-vu",
];
const SENDERS: &[&str] = &[
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "list-bounces",
];
const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Populated mail is dated over three years from 2021-01-01.
pub const EPOCH: i64 = 1_609_459_200;
/// The span of the populated mail's dates, seconds.
pub const SPAN: i64 = 3 * 365 * 86_400;

/// A deterministic message factory.
#[derive(Debug)]
pub struct Gen {
    /// The generator's random source (also used by callers for flags and folders).
    pub rng: Rng,
    profile: Profile,
    corpus: String,
    blob: Vec<u8>,
}

impl Gen {
    /// A factory for this seed and profile.
    pub fn new(seed: u64, profile: Profile) -> Gen {
        let mut rng = Rng::new(seed);
        let mut corpus = String::with_capacity(1 << 20);
        let mut line = 0;
        while corpus.len() < (1 << 20) {
            let w = WORDS[rng.below(WORDS.len())];
            corpus.push_str(w);
            line += w.len() + 1;
            if line > 68 {
                corpus.push('\n');
                if rng.unit() < 0.15 {
                    corpus.push('\n');
                }
                line = 0;
            } else {
                corpus.push(' ');
            }
        }
        let blob = if profile == Profile::Text {
            Vec::new()
        } else {
            (0..(2 << 20) / 8)
                .flat_map(|_| rng.next_u64().to_le_bytes())
                .collect()
        };
        Gen {
            rng,
            profile,
            corpus,
            blob,
        }
    }

    /// About `size` bytes of text, whole lines.
    fn text(&mut self, size: usize) -> String {
        let c = self.corpus.as_bytes();
        let max = c.len().saturating_sub(size + 200).max(1);
        let mut start = self.rng.below(max);
        while start < c.len() && c[start] != b'\n' {
            start += 1;
        }
        start = (start + 1).min(c.len());
        let mut end = (start + size).min(c.len());
        while end > start && c[end - 1] != b'\n' {
            end -= 1;
        }
        // Lines are ASCII-separated, so these are char boundaries.
        let mut s = self.corpus.get(start..end).unwrap_or_default().to_string();
        s.push('\n');
        s
    }

    /// One message with this Message-ID (`<…>`) and date (seconds since the epoch).
    pub fn message(&mut self, msgid: &str, ts: i64) -> Vec<u8> {
        let nwords = 3 + self.rng.below(7);
        let subject: Vec<&str> = (0..nwords)
            .map(|_| WORDS[self.rng.below(WORDS.len())])
            .collect();
        let sender = SENDERS[self.rng.below(SENDERS.len())];
        let date = rfc2822(ts);
        let mut m = format!(
            "Return-Path: <{sender}@example.org>\n\
             Received: from mx.example.org by imap.bench.invalid with ESMTPS id {:012x}\n\
             \tfor <bench@bench.invalid>; {date}\n\
             Date: {date}\n\
             From: {sender} <{sender}@example.org>\n\
             To: Bench User <bench@bench.invalid>\n\
             Subject: {}\n\
             Message-ID: {msgid}\n\
             MIME-Version: 1.0\n",
            self.rng.next_u64() >> 16,
            subject.join(" "),
        );
        // 2–20 KB, log-uniform.
        let size = (2048.0 * 10f64.powf(self.rng.unit())) as usize;
        let body = self.text(size);
        let kind = self.rng.unit();
        if kind < self.profile.attachment_share() {
            let raw = (100_000.0 * 20f64.powf(self.rng.unit()) * 0.75) as usize;
            let off = self.rng.below(self.blob.len().saturating_sub(raw).max(1));
            let data = self.blob.get(off..off + raw).unwrap_or(&self.blob);
            let b = format!("=_bench_{:016x}", self.rng.next_u64());
            m.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"{b}\"\n\n\
                 --{b}\nContent-Type: text/plain; charset=utf-8\n\
                 Content-Transfer-Encoding: 8bit\n\n{body}\
                 --{b}\nContent-Type: application/octet-stream; name=\"data{}.bin\"\n\
                 Content-Disposition: attachment\nContent-Transfer-Encoding: base64\n\n",
                self.rng.below(999)
            ));
            m.push_str(&base64_lines(data));
            m.push_str(&format!("--{b}--\n"));
        } else if kind < self.profile.attachment_share() + 0.15 {
            // An HTML mail with its plain-text alternative.
            let b = format!("=_alt_{:016x}", self.rng.next_u64());
            let html: String = body
                .split("\n\n")
                .map(|p| {
                    format!(
                        "<p>{}</p>\n",
                        p.trim().replace('&', "&amp;").replace('<', "&lt;")
                    )
                })
                .collect();
            m.push_str(&format!(
                "Content-Type: multipart/alternative; boundary=\"{b}\"\n\n\
                 --{b}\nContent-Type: text/plain; charset=utf-8\n\
                 Content-Transfer-Encoding: 8bit\n\n{body}\
                 --{b}\nContent-Type: text/html; charset=utf-8\n\
                 Content-Transfer-Encoding: 8bit\n\n<html><body>\n{html}</body></html>\n--{b}--\n"
            ));
        } else {
            m.push_str(
                "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n",
            );
            m.push_str(&body);
        }
        m.into_bytes()
    }
}

fn base64_lines(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 + 4);
    for line in data.chunks(57) {
        for c in line.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
                if i <= c.len() {
                    out.push(A[((n >> shift) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out.push('\n');
    }
    out
}

/// `Thu, 01 Jan 2021 00:00:00 +0000`.
pub fn rfc2822(ts: i64) -> String {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dates_and_base64() {
        assert_eq!(rfc2822(EPOCH), "Fri, 01 Jan 2021 00:00:00 +0000");
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc2822(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(base64_lines(b"hello"), "aGVsbG8=\n");
        assert_eq!(base64_lines(b"hi"), "aGk=\n");
        assert_eq!(base64_lines(b"abc"), "YWJj\n");
    }

    #[test]
    fn same_seed_same_mail() {
        let a = Gen::new(7, Profile::Heavy).message("<x@y>", EPOCH);
        let b = Gen::new(7, Profile::Heavy).message("<x@y>", EPOCH);
        let c = Gen::new(8, Profile::Heavy).message("<x@y>", EPOCH);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let text = String::from_utf8(a).unwrap();
        assert!(text.contains("Message-ID: <x@y>\n"));
    }
}
