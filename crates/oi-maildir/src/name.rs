//! The OfflineIMAP Maildir file name codec.
//!
//! OfflineIMAP 8 (`folder/Maildir.py`, `new_message_filename`) names a message
//! `<time>_<seq>.<pid>.<host>,U=<uid>,FMD5=<md5>:2,<flags>`:
//! - `<time>` is `int(time.time())` (or the Date header with `filename_use_mail_timestamp`);
//! - `<seq>` counts messages named within that same second by this process, from 0;
//! - `<host>` is `socket.gethostname()`; OfflineIMAP then replaces every `/` of the whole
//!   name with `-`;
//! - `<md5>` is the lowercase hex MD5 of the folder's visible name, so a file moved into
//!   another folder by a mail client is recognised as new there;
//! - the info part `:2,` is always written, even with no flags, and the flag letters are
//!   sorted by code point (Python's `sorted`).
//!
//! Parsing is deliberately lenient, because mail clients and other tools write names too
//! (Dovecot adds `,S=<size>`, mutt keeps unknown parts): anything not understood is kept
//! verbatim in the unique part.

use md5::{Digest, Md5};

/// Separator between a Maildir name's unique part and its info.
pub const INFO_SEP: char = ':';

/// The separator with `maildir-windows-compatible = yes` (Windows forbids `:` in names).
/// OfflineIMAP then writes and recognises only `!2,`; a `:2,` name is a name without flags.
pub const WINDOWS_INFO_SEP: char = '!';

/// The info prefix that precedes the flag letters.
pub const INFO_PREFIX: &str = ":2,";

/// A Maildir file name taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedName<'a> {
    /// Everything before the info part (`<time>_<seq>.<pid>.<host>,U=…,FMD5=…`): the name
    /// of the message with flags stripped, stable across flag changes.
    pub base: &'a str,
    /// The unique part: up to the first `,` or `:`.
    pub unique: &'a str,
    /// The `U=` value: as OfflineIMAP's `,U=(\d+)` search, the digits after the first
    /// `,U=` that is followed by one (so `,U=12a` is 12); `None` if there is none or it
    /// does not fit in `u32`. Only the base is searched, so that a flag change can never
    /// change a message's UID.
    pub uid: Option<u32>,
    /// The `FMD5=` value, if present.
    pub fmd5: Option<&'a str>,
    /// The `S=` value (Dovecot and others record the size there), if present.
    pub size: Option<u64>,
    /// The flag letters after `:2,`; `None` when the name carries no info part (a message a
    /// mail client delivered into `new/`).
    pub flags: Option<&'a str>,
}

/// Takes a file name apart. Never fails: a name with no recognisable field is simply a
/// message with no UID and no flags.
pub fn parse(name: &str) -> ParsedName<'_> {
    parse_with_sep(name, INFO_SEP)
}

/// [`parse`] with another info separator ([`WINDOWS_INFO_SEP`]).
pub fn parse_with_sep(name: &str, info_sep: char) -> ParsedName<'_> {
    let prefix = format!("{info_sep}2,");
    // OfflineIMAP searches for the first ":2," (`re_flagmatch`), and takes `\w*` after it.
    let (base, flags) = match name.find(prefix.as_str()) {
        Some(i) => {
            let rest = &name[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&name[..i], Some(&rest[..end]))
        }
        None => match name.find(info_sep) {
            // Some other info version (`:1,…`): keep it out of the base as well, so that
            // the base stays a plain unique name.
            Some(i) => (&name[..i], None),
            None => (name, None),
        },
    };
    let unique_end = base.find(',').unwrap_or(base.len());
    let unique = &base[..unique_end];
    let mut parsed = ParsedName {
        base,
        unique,
        uid: None,
        fmd5: None,
        size: None,
        flags,
    };
    parsed.uid = offlineimap_uid(base).and_then(|n| u32::try_from(n).ok());
    for field in base[unique_end..].split(',').skip(1) {
        if let Some(v) = field.strip_prefix("FMD5=") {
            parsed.fmd5 = Some(v);
        } else if let Some(v) = field.strip_prefix("S=") {
            parsed.size = parse_decimal(v);
        }
    }
    parsed
}

/// OfflineIMAP's `re_uidmatch.search`: a name another tool rewrote (`,U=12a`, two `U=`)
/// must give the UID OfflineIMAP would read, or the same message is seen twice.
fn offlineimap_uid(base: &str) -> Option<u64> {
    let mut rest = base;
    while let Some(i) = rest.find(",U=") {
        rest = &rest[i + 3..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            return parse_decimal(&rest[..digits]);
        }
    }
    None
}

fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The parts from which a new file name is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewName<'a> {
    /// Seconds since the epoch.
    pub time: i64,
    /// Sequence number within that second.
    pub seq: u64,
    /// Process id.
    pub pid: u32,
    /// Host name (already made safe with [`safe_hostname`]).
    pub host: &'a str,
    /// The sync UID.
    pub uid: u32,
    /// The folder's FMD5.
    pub fmd5: &'a str,
    /// Flag letters, in any order (they are sorted here).
    pub flags: &'a str,
}

/// Builds a file name the way OfflineIMAP does.
pub fn format(n: &NewName<'_>) -> String {
    format_with_sep(n, INFO_SEP)
}

/// [`format`] with another info separator ([`WINDOWS_INFO_SEP`]).
pub fn format_with_sep(n: &NewName<'_>, info_sep: char) -> String {
    format!(
        "{}_{}.{}.{},U={},FMD5={}{}2,{}",
        n.time,
        n.seq,
        n.pid,
        n.host,
        n.uid,
        n.fmd5,
        info_sep,
        sorted_letters(n.flags)
    )
}

/// Replaces the info part (or appends one) with the given flag letters, keeping the base.
pub fn with_flags(name: &str, letters: &str) -> String {
    with_flags_sep(name, letters, INFO_SEP)
}

/// [`with_flags`] with another info separator ([`WINDOWS_INFO_SEP`]).
pub fn with_flags_sep(name: &str, letters: &str, info_sep: char) -> String {
    let base = parse_with_sep(name, info_sep).base;
    format!("{base}{info_sep}2,{}", sorted_letters(letters))
}

/// Sorts and de-duplicates flag letters by code point, as OfflineIMAP's
/// `''.join(sorted(flags))` over a set does.
pub fn sorted_letters(letters: &str) -> String {
    let mut v: Vec<char> = letters.chars().collect();
    v.sort_unstable();
    v.dedup();
    v.into_iter().collect()
}

/// Makes a host name safe inside a file name.
///
/// OfflineIMAP replaces `/` by `-` in the whole name. We also replace `:` and `,`, which
/// OfflineIMAP leaves alone, because either would make the name unparsable (`:` starts the
/// info part, `,` starts a field); real host names never contain them, so names stay
/// identical to OfflineIMAP's in practice.
pub fn safe_hostname(host: &str) -> String {
    host.chars()
        .map(|c| match c {
            '/' | ':' | ',' => '-',
            c => c,
        })
        .collect()
}

/// The FMD5 of a folder: lowercase hex MD5 of its visible name's UTF-8 bytes.
pub fn fmd5(visible_name: &str) -> String {
    let digest = Md5::digest(visible_name.as_bytes());
    let mut out = String::with_capacity(32);
    for b in digest.iter() {
        out.push(hex_digit(b >> 4));
        out.push(hex_digit(b & 0xf));
    }
    out
}

fn hex_digit(n: u8) -> char {
    char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_offlineimap_name() {
        let n = "1700000000_3.4242.host.example,U=17,FMD5=7e33429f656f1e6e9d79b29c3f82c57e:2,RS";
        let p = parse(n);
        assert_eq!(p.unique, "1700000000_3.4242.host.example");
        assert_eq!(
            p.base,
            "1700000000_3.4242.host.example,U=17,FMD5=7e33429f656f1e6e9d79b29c3f82c57e"
        );
        assert_eq!(p.uid, Some(17));
        assert_eq!(p.fmd5, Some("7e33429f656f1e6e9d79b29c3f82c57e"));
        assert_eq!(p.flags, Some("RS"));
        assert_eq!(p.size, None);
    }

    #[test]
    fn parses_foreign_names() {
        let p = parse("1700000000.M1P2Q3.host,S=1234,W=1260:2,S");
        assert_eq!(p.uid, None);
        assert_eq!(p.size, Some(1234));
        assert_eq!(p.flags, Some("S"));
        assert_eq!(p.unique, "1700000000.M1P2Q3.host");

        let p = parse("1700000000.M1P2Q3.host");
        assert_eq!(p.flags, None);
        assert_eq!(p.base, "1700000000.M1P2Q3.host");

        // Empty info is still info: OfflineIMAP always writes ":2," even with no flags.
        assert_eq!(parse("x,U=1:2,").flags, Some(""));
        // A bad U= is no UID rather than an error.
        assert_eq!(parse("x,U=99999999999,FMD5=f:2,").uid, None);
        assert_eq!(parse("x,U=,FMD5=f").uid, None);
        assert_eq!(parse("x,U=a1:2,,U=3").uid, None);
    }

    #[test]
    fn uid_is_read_like_offlineimap_re_uidmatch() {
        // `,U=(\d+)` searched: the first ",U=" followed by digits, and only the digits.
        assert_eq!(parse("x,U=12a,FMD5=f:2,").uid, Some(12));
        assert_eq!(parse("x,U=1,U=2,FMD5=f:2,S").uid, Some(1));
        assert_eq!(parse("x,U=,U=7:2,S").uid, Some(7));
        assert_eq!(parse("x,S=5,U=9").uid, Some(9));
    }

    #[test]
    fn fmd5_matches_python_hashlib() {
        // python3 -c "import hashlib;print(hashlib.md5(b'INBOX').hexdigest())"
        assert_eq!(fmd5("INBOX"), "7e33429f656f1e6e9d79b29c3f82c57e");
        assert_eq!(fmd5(""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn formats_like_offlineimap() {
        let name = format(&NewName {
            time: 1700000000,
            seq: 0,
            pid: 77,
            host: "vm",
            uid: 5,
            fmd5: "abc",
            flags: "SFa",
        });
        assert_eq!(name, "1700000000_0.77.vm,U=5,FMD5=abc:2,FSa");
        assert_eq!(
            with_flags(&name, "T"),
            "1700000000_0.77.vm,U=5,FMD5=abc:2,T"
        );
        assert_eq!(with_flags("plain", "S"), "plain:2,S");
        assert_eq!(safe_hostname("a/b:c,d"), "a-b-c-d");
    }

    #[test]
    fn windows_separator() {
        let n = NewName {
            time: 1,
            seq: 0,
            pid: 2,
            host: "h",
            uid: 5,
            fmd5: "abc",
            flags: "SF",
        };
        let name = format_with_sep(&n, WINDOWS_INFO_SEP);
        assert_eq!(name, "1_0.2.h,U=5,FMD5=abc!2,FS");
        let p = parse_with_sep(&name, WINDOWS_INFO_SEP);
        assert_eq!((p.uid, p.fmd5, p.flags), (Some(5), Some("abc"), Some("FS")));
        assert_eq!(
            with_flags_sep(&name, "R", WINDOWS_INFO_SEP),
            "1_0.2.h,U=5,FMD5=abc!2,R"
        );
        // In Windows mode a ':' name has no flags; in normal mode a '!' name has none.
        assert_eq!(parse_with_sep("x,U=1:2,S", WINDOWS_INFO_SEP).flags, None);
        assert_eq!(parse(&name).flags, None);
        assert_eq!(parse(&name).uid, Some(5));
    }

    proptest! {
        #[test]
        fn round_trip(
            time in 0i64..=4_000_000_000,
            seq in 0u64..1000,
            pid in 1u32..=4_194_304,
            host in "[a-zA-Z0-9.-]{1,20}",
            uid in 1u32..,
            md5 in "[0-9a-f]{32}",
            flags in "[DFRSTPa-z]{0,8}",
        ) {
            let name = format(&NewName { time, seq, pid, host: &host, uid, fmd5: &md5, flags: &flags });
            let p = parse(&name);
            let unique = std::format!("{time}_{seq}.{pid}.{host}");
            prop_assert_eq!(p.uid, Some(uid));
            prop_assert_eq!(p.fmd5, Some(md5.as_str()));
            prop_assert_eq!(p.unique, unique.as_str());
            let sorted = sorted_letters(&flags);
            prop_assert_eq!(p.flags, Some(sorted.as_str()));
            prop_assert_eq!(with_flags(&name, &flags), name.clone());
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,60}") {
            let p = parse(&s);
            prop_assert!(s.starts_with(p.base));
        }
    }
}
