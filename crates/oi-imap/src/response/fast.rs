//! A fast path for the one response a flag listing is made of:
//! `* 12 FETCH (UID 34 FLAGS (\Seen $Label) MODSEQ (56))`, with `RFC822.SIZE` for new
//! messages.
//!
//! Why not imap-codec alone: it takes about 700 ns for such a line, so a listing of 20000
//! messages (a full flag scan, or `CHANGEDSINCE` after the server renumbered its
//! mod-sequences) spends 14 ms of CPU in it, more than the rest of our side of a no-change
//! sync together. This reader takes about a tenth of that.
//!
//! It is deliberately narrow, and it never decides anything on its own: it accepts only
//! the exact canonical spelling of those four items (upper case, single spaces, system
//! flags as RFC 3501 writes them, keywords made of letters, digits and `$_-.`, numbers
//! without leading zeros and in range), and returns `None` for anything else, which then
//! goes to imap-codec exactly as before. The tests compare the two on generated lines,
//! canonical and not: whatever this path accepts, imap-codec reads the same way.
//! It reads with `get`, never by index, so no input can make it panic.

use super::{FetchData, Response, Untagged};

/// The response in `bytes` if it is a FETCH of that narrow shape, else `None`.
pub(super) fn fetch(bytes: &[u8]) -> Option<Response> {
    let mut r = Reader { rest: bytes };
    r.expect(b"* ")?;
    let seq = r.number(u64::from(u32::MAX)).filter(|&n| n > 0)?;
    r.expect(b" FETCH (")?;
    let mut f = FetchData {
        seq: u32::try_from(seq).ok()?,
        ..FetchData::default()
    };
    let mut modseq = false;
    loop {
        // Each item at most once (checked before its name is read): a repeated one is for
        // imap-codec to judge.
        if f.uid.is_none() && r.eat(b"UID ") {
            let uid = r.number(u64::from(u32::MAX)).filter(|&n| n > 0)?;
            f.uid = Some(u32::try_from(uid).ok()?);
        } else if f.flags.is_none() && r.eat(b"FLAGS (") {
            f.flags = Some(r.flags()?);
        } else if f.size.is_none() && r.eat(b"RFC822.SIZE ") {
            f.size = Some(u32::try_from(r.number(u64::from(u32::MAX))?).ok()?);
        } else if !modseq && r.eat(b"MODSEQ (") {
            // RFC 7162: a positive 63-bit value; we do not keep it per message.
            r.number(i64::MAX as u64).filter(|&n| n > 0)?;
            r.expect(b")")?;
            modseq = true;
        } else {
            return None;
        }
        if r.eat(b" ") {
            continue;
        }
        r.expect(b")\r\n")?;
        break;
    }
    r.rest
        .is_empty()
        .then_some(Response::Untagged(Untagged::Fetch(f)))
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    /// Consumes `prefix` if the input starts with it.
    fn eat(&mut self, prefix: &[u8]) -> bool {
        match self.rest.strip_prefix(prefix) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, prefix: &[u8]) -> Option<()> {
        self.eat(prefix).then_some(())
    }

    /// Decimal digits without a leading zero (bar `0` itself), at most `max`.
    fn number(&mut self, max: u64) -> Option<u64> {
        let digits = self.rest.iter().take_while(|c| c.is_ascii_digit()).count();
        let (text, rest) = self.rest.split_at_checked(digits)?;
        if text.is_empty() || text.len() > 19 || (text.len() > 1 && text.first() == Some(&b'0')) {
            return None;
        }
        let n = text.iter().try_fold(0u64, |n, &c| {
            n.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        })?;
        self.rest = rest;
        (n <= max).then_some(n)
    }

    /// The flags after `FLAGS (`, through the closing parenthesis; `\Recent` left out as
    /// the codec path leaves it out.
    fn flags(&mut self) -> Option<Vec<String>> {
        let mut out = Vec::new();
        if self.eat(b")") {
            return Some(out);
        }
        loop {
            let len = self
                .rest
                .iter()
                .take_while(|&&c| c.is_ascii_alphanumeric() || b"\\$_-.".contains(&c))
                .count();
            let (word, rest) = self.rest.split_at_checked(len)?;
            match word {
                b"\\Recent" => {}
                b"\\Seen" | b"\\Answered" | b"\\Flagged" | b"\\Deleted" | b"\\Draft" => {
                    out.push(String::from_utf8(word.to_vec()).ok()?)
                }
                // A keyword: an atom, here only of the plainest characters.
                _ if !word.is_empty() && !word.contains(&b'\\') => {
                    out.push(String::from_utf8(word.to_vec()).ok()?)
                }
                _ => return None,
            }
            self.rest = rest;
            if self.eat(b" ") {
                continue;
            }
            self.expect(b")")?;
            return Some(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{map_response, parse_response, tolerant};
    use super::fetch;
    use imap_codec::ResponseCodec;
    use imap_codec::decode::Decoder;
    use proptest::prelude::*;

    /// What the codec path makes of `bytes` (`None` where it refuses them).
    fn codec(bytes: &[u8]) -> Option<super::Response> {
        match ResponseCodec::default().decode(bytes) {
            Ok((b"", r)) => Some(map_response(r)),
            _ => None,
        }
    }

    /// Whatever the fast path accepts, the codec reads the same way.
    fn agrees(bytes: &[u8]) -> Result<(), TestCaseError> {
        if let Some(fast) = fetch(bytes) {
            prop_assert_eq!(
                Some(fast),
                codec(bytes),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        Ok(())
    }

    #[test]
    fn reads_the_lines_of_a_flag_listing() {
        for line in [
            &b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) MODSEQ (30))\r\n"[..],
            b"* 7 FETCH (UID 4294967295 FLAGS () MODSEQ (9223372036854775807))\r\n",
            b"* 3 FETCH (FLAGS (\\Answered \\Flagged \\Deleted \\Draft $Label1 Junk) UID 9)\r\n",
            b"* 3439 FETCH (UID 3439 FLAGS (\\Recent) RFC822.SIZE 0)\r\n",
            b"* 2 FETCH (UID 2 MODSEQ (5))\r\n",
            b"* 2 FETCH (FLAGS (\\Seen))\r\n",
        ] {
            let fast = fetch(line);
            assert!(fast.is_some(), "{}", String::from_utf8_lossy(line));
            assert_eq!(fast, codec(line), "{}", String::from_utf8_lossy(line));
            assert_eq!(parse_response(line).ok(), fast);
        }
    }

    #[test]
    fn leaves_everything_else_to_the_codec() {
        for line in [
            // Other spellings the codec accepts, and reads its own way.
            &b"* 1 FETCH (uid 1 FLAGS (\\Seen))\r\n"[..],
            b"* 1 FETCH (UID 1 FLAGS (\\SEEN))\r\n",
            b"* 1 FETCH (UID 1 FLAGS (\\Seen $Forwarded \\Extension))\r\n",
            b"* 1 FETCH (UID 01 FLAGS (\\Seen))\r\n",
            b"* 1 FETCH (UID 1  FLAGS (\\Seen))\r\n",
            b"* 1 FETCH (UID 1 UID 2)\r\n",
            b"* 1 FETCH (UID 1 UID FLAGS (\\Seen))\r\n",
            b"* 1 FETCH (FLAGS () FLAGS UID 2)\r\n",
            b"* 1 FETCH (UID 1 FLAGS (\\Seen))\n",
            // Items the fast path does not read.
            b"* 1 FETCH (UID 1 X-GM-LABELS (\\Inbox))\r\n",
            b"* 1 FETCH (UID 1 BODY[] {3}\r\nabc)\r\n",
            b"* 1 FETCH (UID 1 INTERNALDATE \"17-Jul-1996 02:44:25 -0700\")\r\n",
            // Out of range, or not a response at all.
            b"* 0 FETCH (UID 1)\r\n",
            b"* 1 FETCH (UID 0)\r\n",
            b"* 1 FETCH (UID 4294967296)\r\n",
            b"* 1 FETCH (UID 1 MODSEQ (0))\r\n",
            b"* 1 FETCH (UID 1 MODSEQ (9223372036854775808))\r\n",
            b"* 1 FETCH (UID 1 RFC822.SIZE 99999999999999999999)\r\n",
            b"* 1 FETCH ()\r\n",
            b"* 1 FETCH (UID 1)\r\ntrailing",
            b"* 1 EXISTS\r\n",
            b"A1 OK done\r\n",
            b"",
        ] {
            assert_eq!(fetch(line), None, "{}", String::from_utf8_lossy(line));
            // And the whole parser still reads them as before the fast path.
            let before = match ResponseCodec::default().decode(line) {
                Ok((_, r)) => Some(map_response(r)),
                Err(_) => tolerant::parse(line).ok(),
            };
            assert_eq!(
                parse_response(line).ok(),
                before,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    /// Mostly what a server sends, now and then what it may send instead.
    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => (1u32..).prop_map(|n| n.to_string()),
            1 => prop::sample::select(vec![
                "0",
                "00",
                "01",
                "4294967295",
                "4294967296",
                "9223372036854775807",
                "9223372036854775808",
                "18446744073709551616",
                "99999999999999999999",
            ])
            .prop_map(String::from),
        ]
    }

    fn flag() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => prop::sample::select(vec![
                "\\Seen",
                "\\Answered",
                "\\Flagged",
                "\\Deleted",
                "\\Draft",
                "\\Recent",
            ])
            .prop_map(String::from),
            3 => "[A-Za-z$][A-Za-z0-9$_.-]{0,8}",
            2 => prop::sample::select(vec![
                "\\seen",
                "\\SEEN",
                "\\recent",
                "\\*",
                "\\Other",
                "NIL",
                "nil",
                "Seen",
                "\\",
                "a\\b",
                "",
            ])
            .prop_map(String::from),
            1 => "[A-Za-z0-9$_.\\-\\\\%*\\]\"{(]{1,6}",
        ]
    }

    fn item() -> impl Strategy<Value = String> {
        let flags = prop::collection::vec(flag(), 0..5).prop_map(|f| f.join(" "));
        prop_oneof![
            4 => number().prop_map(|n| format!("UID {n}")),
            4 => flags.prop_map(|f| format!("FLAGS ({f})")),
            2 => number().prop_map(|n| format!("RFC822.SIZE {n}")),
            2 => number().prop_map(|n| format!("MODSEQ ({n})")),
            1 => prop::sample::select(vec![
                "uid 5",
                "Flags (\\Seen)",
                "MODSEQ 7",
                "FLAGS \\Seen",
                "INTERNALDATE \"17-Jul-1996 02:44:25 -0700\"",
                "X-GM-LABELS (\\Inbox)",
                "UID",
                "FLAGS",
                "MODSEQ",
            ])
            .prop_map(String::from),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn accepts_only_what_the_codec_reads_alike(
            seq in number(),
            items in prop::collection::vec(item(), 0..5),
            sep in prop_oneof![9 => Just(" "), 1 => Just("  ")],
            end in prop_oneof![
                9 => Just(")\r\n"),
                1 => prop::sample::select(vec![")\n", ") \r\n", ")\r\nx", "\r\n"]),
            ],
        ) {
            let line = format!("* {seq} FETCH ({}{end}", items.join(sep));
            agrees(line.as_bytes())?;
        }

        #[test]
        fn reads_every_canonical_listing_line(
            seq in 1u32..,
            uid in 1u32..,
            flags in prop::collection::vec(prop_oneof![
                prop::sample::select(vec!["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent"]).prop_map(String::from),
                "[A-Za-z$][A-Za-z0-9$_.-]{0,10}",
            ], 0..6),
            modseq in 1u64..=i64::MAX as u64,
            size in prop::option::of(any::<u32>()),
        ) {
            let size = size.map(|s| format!(" RFC822.SIZE {s}")).unwrap_or_default();
            let line = format!("* {seq} FETCH (UID {uid} FLAGS ({}){size} MODSEQ ({modseq}))\r\n", flags.join(" "));
            let fast = fetch(line.as_bytes());
            prop_assert!(fast.is_some(), "{}", line);
            agrees(line.as_bytes())?;
        }

        #[test]
        fn any_bytes_are_read_alike_or_left_alone(
            prefix in prop::sample::select(vec!["", "* 1 FETCH (", "* 1 FETCH (UID 5 FLAGS ("]),
            tail in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut line = prefix.as_bytes().to_vec();
            line.extend_from_slice(&tail);
            agrees(&line)?;
        }
    }
}
