//! IMAP modified UTF-7 (RFC 3501 §5.1.3), the encoding of mailbox names on the wire.
//!
//! Used for OfflineIMAP's account option `utf8foldernames`: local folder names are UTF-8,
//! remote ones are modified UTF-7, and every name crossing to the server is encoded while
//! every name listed by the server is decoded. The decoder is strict where OfflineIMAP 8's
//! (`imaputil.utf7m_decode`) is lenient: it refuses every spelling that [`encode`] would not
//! produce (base64 of printable ASCII, two adjacent shifts, non-zero padding bits, a missing
//! `-`). A name that decodes therefore re-encodes to exactly the bytes the server sent, so
//! a folder found by LIST is always selected under its real name again.

/// Why a mailbox name is not valid modified UTF-7.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mailbox name {name:?} is not valid modified UTF-7 at byte {at}: {reason}")]
pub struct Utf7Error {
    /// The name as given.
    pub name: String,
    /// Byte offset of the problem.
    pub at: usize,
    /// What is wrong.
    pub reason: &'static str,
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn printable(c: char) -> bool {
    (' '..='~').contains(&c)
}

/// Encodes a UTF-8 folder name for the server. Never fails: every Unicode string has a
/// modified UTF-7 form. Same output as OfflineIMAP's `imaputil.utf8_IMAP`.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    for c in name.chars() {
        if printable(c) {
            flush_base64(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush_base64(&mut pending, &mut out);
    out
}

fn flush_base64(units: &mut Vec<u16>, out: &mut String) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let bytes: Vec<u8> = units.iter().flat_map(|u| u.to_be_bytes()).collect();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        // 1 byte → 2 characters, 2 → 3, 3 → 4; no `=` padding in the modified form.
        for i in 0..=chunk.len() {
            let idx = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(ALPHABET[idx as usize]));
        }
    }
    out.push('-');
    units.clear();
}

fn sextet(b: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == b).map(|p| p as u32)
}

/// Decodes a server mailbox name into UTF-8 (OfflineIMAP's `imaputil.IMAP_utf8`, made
/// strict; see the module documentation).
pub fn decode(name: &str) -> Result<String, Utf7Error> {
    let err = |at: usize, reason: &'static str| Utf7Error {
        name: name.to_owned(),
        at,
        reason,
    };
    let bytes = name.as_bytes();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    // Where the previous base64 run ended: a run right after another is not canonical.
    let mut last_run_end = None;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'&' {
            if !(0x20..=0x7e).contains(&b) {
                return Err(err(i, "only printable ASCII may appear outside &…-"));
            }
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let start = i;
        let Some(len) = bytes[i + 1..].iter().position(|&c| c == b'-') else {
            return Err(err(start, "& without a closing -"));
        };
        let run = &bytes[i + 1..i + 1 + len];
        i += len + 2;
        if run.is_empty() {
            out.push('&');
            continue;
        }
        if last_run_end == Some(start) {
            return Err(err(start, "two adjacent base64 runs"));
        }
        last_run_end = Some(i);
        let mut acc: u32 = 0;
        let mut bits = 0;
        let mut units: Vec<u16> = Vec::new();
        for (k, &c) in run.iter().enumerate() {
            let v =
                sextet(c).ok_or_else(|| err(start + 1 + k, "not a modified base64 character"))?;
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 16 {
                bits -= 16;
                units.push((acc >> bits) as u16);
                acc &= (1 << bits) - 1;
            }
        }
        if bits >= 6 || acc != 0 {
            return Err(err(start, "base64 run does not end on a UTF-16 boundary"));
        }
        for c in char::decode_utf16(units.iter().copied()) {
            let c = c.map_err(|_| err(start, "unpaired UTF-16 surrogate"))?;
            if printable(c) {
                return Err(err(start, "printable ASCII must not be base64 encoded"));
            }
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Output of OfflineIMAP 8's `imaputil.utf8_IMAP` (python3), and RFC 3501's example.
    const VECTORS: &[(&str, &str)] = &[
        ("INBOX", "INBOX"),
        ("Entwürfe & Co/日本", "Entw&APw-rfe &- Co/&ZeVnLA-"),
        ("été", "&AOk-t&AOk-"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("&", "&-"),
        ("&&", "&-&-"),
        ("", ""),
        ("😀", "&2D3eAA-"),
        ("a\tb", "a&AAk-b"),
        ("Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
    ];

    #[test]
    fn known_vectors() {
        for (utf8, mutf7) in VECTORS {
            assert_eq!(encode(utf8), *mutf7, "{utf8}");
            assert_eq!(decode(mutf7).as_deref(), Ok(*utf8), "{mutf7}");
        }
    }

    #[test]
    fn invalid_input_is_an_error() {
        for bad in [
            "&",
            "&AOk",
            "&Jjo!-",
            "&AGE-",
            "&2D3-",
            "&2D0-",
            "&AOk-&AOk-",
            "&A-",
            "&AOl-",
            "\u{7f}",
            "tab\there",
            "é",
            "&ZeVnLA",
        ] {
            let e = decode(bad).unwrap_err();
            assert_eq!(e.name, bad);
            assert!(e.at <= bad.len(), "{e}");
        }
        // A leading shift followed by a legal one separated by ASCII is fine.
        assert_eq!(decode("&AOk-x&AOk-").unwrap(), "éxé");
    }

    proptest! {
        #[test]
        fn round_trip(s in "\\PC{0,40}") {
            let e = encode(&s);
            prop_assert!(e.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            prop_assert_eq!(decode(&e), Ok(s));
        }

        #[test]
        fn any_unicode_round_trips(s in any::<String>()) {
            prop_assert_eq!(decode(&encode(&s)), Ok(s));
        }

        #[test]
        fn decoding_is_canonical_and_never_panics(s in "[A-Za-z0-9+,&. -]{0,30}") {
            if let Ok(d) = decode(&s) {
                prop_assert_eq!(encode(&d), s);
            }
        }
    }
}
