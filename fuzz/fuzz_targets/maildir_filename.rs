//! The Maildir file name codec: `parse` on arbitrary names, and `format` → `parse` round
//! trips for structured input.
//!
//! Input: byte 0 chooses the mode. Even: the rest is a file name (lossy UTF-8). Odd: the
//! rest is cut into the fields of a new OfflineIMAP name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oi_maildir::name::{
    INFO_PREFIX, NewName, fmd5, format, parse, safe_hostname, sorted_letters, with_flags,
};

/// OfflineIMAP reads the flags as `\w*` after `:2,`.
fn is_flag_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn check_arbitrary(name: &str) {
    let p = parse(name);
    assert!(name.starts_with(p.base));
    assert!(p.base.starts_with(p.unique));
    assert!(!p.unique.contains(','));
    if let Some(flags) = p.flags {
        assert!(flags.chars().all(is_flag_char));
        assert!(name[p.base.len()..].starts_with(INFO_PREFIX));
    } else {
        assert!(!name.contains(INFO_PREFIX));
    }
    // Re-flagging keeps what identifies the message and sets exactly the new flags.
    for letters in ["", "S", "FRST", "zaS"] {
        let renamed = with_flags(name, letters);
        let q = parse(&renamed);
        assert_eq!(q.base, p.base, "{name:?} -> {renamed:?}");
        assert_eq!(q.uid, p.uid, "{name:?} -> {renamed:?}");
        assert_eq!(q.fmd5, p.fmd5, "{name:?} -> {renamed:?}");
        assert_eq!(q.size, p.size, "{name:?} -> {renamed:?}");
        let sorted = sorted_letters(letters);
        assert_eq!(q.flags, Some(sorted.as_str()), "{name:?} -> {renamed:?}");
        assert_eq!(with_flags(&renamed, letters), renamed);
    }
}

fn take<'a>(parts: &mut impl Iterator<Item = &'a [u8]>) -> &'a [u8] {
    parts.next().unwrap_or(&[])
}

fn number(b: &[u8]) -> u64 {
    b.iter()
        .take(8)
        .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

fn check_round_trip(data: &[u8]) {
    // Fields separated by 0xff, which never occurs in UTF-8.
    let mut parts = data.split(|&b| b == 0xff);
    let time = number(take(&mut parts)) as i64;
    let seq = number(take(&mut parts));
    let pid = number(take(&mut parts)) as u32;
    let uid = number(take(&mut parts)) as u32;
    let host = safe_hostname(&String::from_utf8_lossy(take(&mut parts)));
    let folder = String::from_utf8_lossy(take(&mut parts)).into_owned();
    let flags: String = String::from_utf8_lossy(take(&mut parts))
        .chars()
        .filter(|&c| is_flag_char(c))
        .collect();
    let md5 = fmd5(&folder);
    let n = NewName {
        time,
        seq,
        pid,
        host: &host,
        uid,
        fmd5: &md5,
        flags: &flags,
    };
    let name = format(&n);
    let p = parse(&name);
    let unique = std::format!("{time}_{seq}.{pid}.{host}");
    // A host name containing ":2," cannot survive safe_hostname, so the info part is ours.
    assert_eq!(p.unique, unique.as_str(), "{name:?}");
    assert_eq!(p.uid, Some(uid), "{name:?}");
    assert_eq!(p.fmd5, Some(md5.as_str()), "{name:?}");
    assert_eq!(p.size, None, "{name:?}");
    let sorted = sorted_letters(&flags);
    assert_eq!(p.flags, Some(sorted.as_str()), "{name:?}");
    assert_eq!(with_flags(&name, &flags), name);
    check_arbitrary(&name);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        check_arbitrary(&String::from_utf8_lossy(rest));
    } else {
        check_round_trip(rest);
    }
});
