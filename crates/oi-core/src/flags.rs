use std::fmt;

/// A set of message flags in Maildir letters.
///
/// The five system flags (RFC 3501 §2.3.2) map to the Maildir letters OfflineIMAP uses:
/// `S` \Seen, `R` \Answered, `F` \Flagged, `T` \Deleted, `D` \Draft. The lowercase letters
/// `a`..`z` are custom keyword flags (`customflag_x`). The set is a bit mask so that
/// three-way merges are cheap; its text form is the sorted letter string that both the
/// Maildir filename (`:2,<flags>`) and the LocalStatus `flags` column hold.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Flags(u32);

/// Upper-case letters in ASCII order, which is the order OfflineIMAP sorts them in.
const SYSTEM: [(char, u32, &str); 5] = [
    ('D', 26, "\\Draft"),
    ('F', 27, "\\Flagged"),
    ('R', 28, "\\Answered"),
    ('S', 29, "\\Seen"),
    ('T', 30, "\\Deleted"),
];

impl Flags {
    /// No flags.
    pub const EMPTY: Flags = Flags(0);
    /// `\Seen` (`S`).
    pub const SEEN: Flags = Flags(1 << 29);
    /// `\Answered` (`R`).
    pub const ANSWERED: Flags = Flags(1 << 28);
    /// `\Flagged` (`F`).
    pub const FLAGGED: Flags = Flags(1 << 27);
    /// `\Deleted` (`T`, "trashed").
    pub const DELETED: Flags = Flags(1 << 30);
    /// `\Draft` (`D`).
    pub const DRAFT: Flags = Flags(1 << 26);

    /// The flag for one Maildir letter; `None` for letters that carry no flag we sync
    /// (such as `P`, "passed", which IMAP cannot express).
    pub fn from_letter(c: char) -> Option<Flags> {
        if c.is_ascii_lowercase() {
            return Some(Flags(1 << (c as u32 - 'a' as u32)));
        }
        SYSTEM
            .iter()
            .find(|(l, _, _)| *l == c)
            .map(|(_, bit, _)| Flags(1 << bit))
    }

    /// Parses the letters after `:2,` (or a LocalStatus `flags` value). Unknown letters are
    /// dropped, so that a foreign flag never turns into an IMAP change.
    pub fn from_maildir(letters: &str) -> Flags {
        letters
            .chars()
            .filter_map(Flags::from_letter)
            .fold(Flags::EMPTY, |acc, f| acc | f)
    }

    /// The sorted letter string (`"FRS"`, `"Sa"`).
    pub fn to_maildir(self) -> String {
        self.letters().collect()
    }

    /// The letters in sorted order.
    pub fn letters(self) -> impl Iterator<Item = char> {
        let upper = SYSTEM
            .iter()
            .filter(move |(_, bit, _)| self.0 & (1 << bit) != 0)
            .map(|(l, _, _)| *l);
        let lower = (0..26u32)
            .filter(move |bit| self.0 & (1 << bit) != 0)
            .filter_map(|bit| char::from_u32('a' as u32 + bit));
        upper.chain(lower)
    }

    /// The IMAP system flag for a name such as `\Seen` (ASCII case-insensitive, as RFC 3501
    /// §9 says atoms are); `None` for keywords and unknown flags.
    pub fn from_imap_system(name: &str) -> Option<Flags> {
        SYSTEM
            .iter()
            .find(|(_, _, n)| n.eq_ignore_ascii_case(name))
            .map(|(_, bit, _)| Flags(1 << bit))
    }

    /// The IMAP names of the system flags in this set (custom letters are not included:
    /// their keyword names come from the repository's `customflag_x` options).
    pub fn imap_system_names(self) -> impl Iterator<Item = &'static str> {
        SYSTEM
            .iter()
            .filter(move |(_, bit, _)| self.0 & (1 << bit) != 0)
            .map(|(_, _, n)| *n)
    }

    /// Only the custom (lowercase) letters of this set.
    pub fn custom(self) -> Flags {
        Flags(self.0 & ((1 << 26) - 1))
    }

    /// True when no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when every flag of `other` is in `self`.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags in `self` that are not in `other`.
    pub fn minus(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }

    /// The raw bit mask (for property tests and compact storage).
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Rebuilds a set from [`Flags::bits`]; bits that name no flag are dropped.
    pub fn from_bits(bits: u32) -> Flags {
        Flags(bits & ((1 << 31) - 1))
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl std::ops::BitAnd for Flags {
    type Output = Flags;
    fn bitand(self, rhs: Flags) -> Flags {
        Flags(self.0 & rhs.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags({:?})", self.to_maildir())
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_maildir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_letters_round_trip_sorted() {
        let f = Flags::from_maildir("TSaRFDz");
        assert_eq!(f.to_maildir(), "DFRSTaz");
        assert_eq!(Flags::from_maildir(&f.to_maildir()), f);
    }

    #[test]
    fn unknown_letters_are_dropped() {
        assert_eq!(Flags::from_maildir("PS"), Flags::SEEN);
        assert_eq!(Flags::from_maildir("1,"), Flags::EMPTY);
    }

    #[test]
    fn imap_names() {
        assert_eq!(Flags::from_imap_system("\\SEEN"), Some(Flags::SEEN));
        assert_eq!(Flags::from_imap_system("$Forwarded"), None);
        let names: Vec<_> = (Flags::SEEN | Flags::DRAFT).imap_system_names().collect();
        assert_eq!(names, ["\\Draft", "\\Seen"]);
    }

    #[test]
    fn set_algebra() {
        let a = Flags::SEEN | Flags::FLAGGED;
        assert!(a.contains(Flags::SEEN));
        assert_eq!(a.minus(Flags::SEEN), Flags::FLAGGED);
        assert_eq!(Flags::from_bits(a.bits()), a);
        assert_eq!(
            (a | Flags::from_maildir("b")).custom(),
            Flags::from_maildir("b")
        );
    }
}
