//! IMAP keywords ↔ Maildir custom flag letters (`customflag_a` … `customflag_z` of the
//! Maildir repository).
//!
//! The engine and the Maildir only ever see letters (`Flags` holds `a`..`z`); the IMAP
//! store translates at its edge: FETCH FLAGS → [`KeywordMap::flags_from_imap`], and STORE /
//! APPEND flag lists ← [`KeywordMap::imap_flag_names`].
//!
//! OfflineIMAP 8 only maps one way (IMAP keywords become Maildir letters when syncing to
//! the Maildir; letters are dropped by `flagsmaildir2imap` on the way up). Mapping both
//! ways is what makes a keyword removed locally disappear on the server too; with an empty
//! map both functions behave exactly as the system-flag-only code did.

use oi_core::Flags;

/// The configured keyword of each custom letter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeywordMap {
    by_letter: Vec<(char, String)>,
}

impl KeywordMap {
    /// A map from `(letter, keyword)` pairs. Letters outside `a`..`z` and keywords that
    /// are empty, system flags (`\…`) or contain IMAP atom-specials are refused.
    pub fn new(pairs: impl IntoIterator<Item = (char, String)>) -> Result<KeywordMap, String> {
        let mut by_letter: Vec<(char, String)> = Vec::new();
        for (letter, keyword) in pairs {
            if !letter.is_ascii_lowercase() {
                return Err(format!("customflag_{letter}: not a letter a-z"));
            }
            let bad = keyword.is_empty()
                || keyword
                    .bytes()
                    .any(|b| b <= b' ' || b >= 0x7f || b"(){%*\"\\]".contains(&b));
            if bad {
                return Err(format!(
                    "customflag_{letter} = {keyword:?}: not an IMAP keyword (an atom without \\, spaces or brackets)"
                ));
            }
            by_letter.retain(|(l, _)| *l != letter);
            by_letter.push((letter, keyword));
        }
        by_letter.sort();
        Ok(KeywordMap { by_letter })
    }

    /// True when no keyword is mapped.
    pub fn is_empty(&self) -> bool {
        self.by_letter.is_empty()
    }

    /// The flags of a FETCH FLAGS list: system flags, plus the letters of mapped keywords
    /// (matched ASCII case-insensitively, as RFC 3501 makes flags). Returns also the
    /// keywords that have no letter, which OfflineIMAP reports as "Unknown keywords
    /// skipped". When two letters name the same keyword the last (`z`-most) wins, as with
    /// OfflineIMAP's dict.
    pub fn flags_from_imap<S: AsRef<str>>(&self, names: &[S]) -> (Flags, Vec<String>) {
        let mut flags = Flags::EMPTY;
        let mut unknown = Vec::new();
        for name in names {
            let name = name.as_ref();
            if let Some(f) = Flags::from_imap_system(name) {
                flags |= f;
                continue;
            }
            if name.starts_with('\\') {
                // \Recent and other system flags are not keywords.
                continue;
            }
            let letter = self
                .by_letter
                .iter()
                .rev()
                .find(|(_, k)| k.eq_ignore_ascii_case(name))
                .and_then(|(l, _)| Flags::from_letter(*l));
            match letter {
                Some(f) => flags |= f,
                None => unknown.push(name.to_owned()),
            }
        }
        (flags, unknown)
    }

    /// The IMAP names for a set of flags: system flags, then the keywords of mapped custom
    /// letters; unmapped letters are left out (the server cannot hold them).
    pub fn imap_flag_names(&self, flags: Flags) -> Vec<String> {
        let mut out: Vec<String> = flags.imap_system_names().map(str::to_owned).collect();
        for letter in flags.custom().letters() {
            if let Some((_, k)) = self.by_letter.iter().find(|(l, _)| *l == letter) {
                out.push(k.clone());
            }
        }
        out
    }

    /// The custom letters that have a keyword: the ones worth comparing with the server.
    pub fn mapped_letters(&self) -> Flags {
        self.by_letter
            .iter()
            .filter_map(|(l, _)| Flags::from_letter(*l))
            .fold(Flags::EMPTY, |a, f| a | f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map() -> KeywordMap {
        KeywordMap::new([('a', "$Forwarded".to_string()), ('j', "$Junk".to_string())]).unwrap()
    }

    #[test]
    fn translates_both_ways() {
        let m = map();
        let (f, unknown) = m.flags_from_imap(&["\\Seen", "$forwarded", "\\Recent", "Other"]);
        assert_eq!(f, Flags::SEEN | Flags::from_letter('a').unwrap());
        assert_eq!(unknown, ["Other"]);
        let letters = Flags::from_maildir("Sajz");
        assert_eq!(
            m.imap_flag_names(letters),
            ["\\Seen", "$Forwarded", "$Junk"]
        );
        assert_eq!(m.mapped_letters(), Flags::from_maildir("aj"));
        // No map: only system flags, as before.
        let none = KeywordMap::default();
        assert_eq!(none.imap_flag_names(letters), ["\\Seen"]);
        assert_eq!(none.flags_from_imap(&["$Junk"]).0, Flags::EMPTY);
    }

    #[test]
    fn refuses_bad_keywords() {
        assert!(KeywordMap::new([('A', "x".to_string())]).is_err());
        assert!(KeywordMap::new([('a', "\\Seen".to_string())]).is_err());
        assert!(KeywordMap::new([('a', "two words".to_string())]).is_err());
        assert!(KeywordMap::new([('a', String::new())]).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(bits in 0u32..(1 << 31)) {
            let m = map();
            let flags = Flags::from_bits(bits);
            let names = m.imap_flag_names(flags);
            let (back, unknown) = m.flags_from_imap(&names);
            prop_assert!(unknown.is_empty());
            let kept = flags.minus(flags.custom()) | (flags.custom() & m.mapped_letters());
            prop_assert_eq!(back, kept);
        }
    }
}
