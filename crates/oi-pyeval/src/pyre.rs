//! Python `re` semantics on top of fancy-regex.
//!
//! Python patterns are translated token by token into fancy-regex syntax. Every construct
//! whose behaviour we have not pinned against CPython makes the translation fail with an
//! "unsupported" reason, so that the caller falls back to real Python instead of guessing.

use std::rc::Rc;

use fancy_regex::Regex;

/// Why the native path declined; never shown as a Python error.
pub type Unsupported = String;

/// `re.IGNORECASE`
pub const I: i64 = 2;
/// `re.MULTILINE`
pub const M: i64 = 8;
/// `re.DOTALL`
pub const S: i64 = 16;
/// `re.UNICODE`
pub const U: i64 = 32;
/// `re.VERBOSE`
pub const X: i64 = 64;

/// A compiled Python pattern.
#[derive(Debug)]
pub struct PyRegex {
    search: Regex,
    anchored: Regex,
    full: Regex,
    /// Number of capture groups, group 0 excluded.
    pub groups: usize,
    /// Group names with their numbers.
    pub names: Vec<(String, usize)>,
    /// Uses `\w`, `\b`, `\d` or IGNORECASE, whose Unicode tables differ between CPython and
    /// Rust: only ASCII subjects are evaluated natively.
    unicode_sensitive: bool,
    /// IGNORECASE: CPython adds its own equivalences (`i`/`ı`, `s`/`ſ`, `k`/Kelvin sign) to
    /// Unicode simple case folding, so subjects with characters that case-map to ASCII
    /// are left to CPython (the pattern itself must be ASCII).
    ignorecase: bool,
    /// Can only ever match the empty string (`^`, `$`, lookarounds), so Python's "must
    /// advance" retry after an empty match can never find a longer alternative.
    always_empty: bool,
}

/// Where a match was found: byte spans per group in the subject.
#[derive(Debug, Clone)]
pub struct MatchData {
    /// Subject string.
    pub subject: Rc<str>,
    /// Byte spans, index 0 = whole match.
    pub spans: Vec<Option<(usize, usize)>>,
    /// Group names of the pattern.
    pub names: Vec<(String, usize)>,
}

impl MatchData {
    /// Text of a group, None when it did not take part.
    pub fn group(&self, i: usize) -> Option<&str> {
        self.spans
            .get(i)
            .copied()
            .flatten()
            .and_then(|(a, b)| self.subject.get(a..b))
    }

    /// Number of a named group.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().find(|(n, _)| n == name).map(|(_, i)| *i)
    }

    /// Code point offset of a byte offset, as Python reports positions.
    pub fn char_pos(&self, byte: usize) -> usize {
        self.subject
            .get(..byte)
            .map(|s| s.chars().count())
            .unwrap_or(0)
    }
}

impl PyRegex {
    /// Compiles `pattern` with `flags` like `re.compile`.
    pub fn compile(pattern: &str, flags: i64) -> Result<PyRegex, Unsupported> {
        crate::native::spend(1000 + pattern.len() as u64)?;
        let tr = translate(pattern, flags)?;
        let build = |s: &str| {
            fancy_regex::RegexBuilder::new(s)
                .backtrack_limit(BACKTRACK_LIMIT)
                .build()
                .map_err(|e| format!("fancy-regex rejected {s:?}: {e}"))
        };
        let search = build(&format!("{}{}", tr.prefix, tr.body))?;
        let anchored = build(&format!("{}\\A(?:{})", tr.prefix, tr.body))?;
        let full = build(&format!("{}\\A(?:{})\\z", tr.prefix, tr.body))?;
        if search.captures_len() != tr.groups + 1 {
            return Err("group count mismatch after translation".into());
        }
        Ok(PyRegex {
            search,
            anchored,
            full,
            groups: tr.groups,
            names: tr.names,
            unicode_sensitive: tr.unicode_sensitive,
            ignorecase: tr.ignorecase,
            always_empty: !tr.consumes,
        })
    }

    fn check_subject(&self, s: &str) -> Result<(), Unsupported> {
        if s.is_ascii() {
            return Ok(());
        }
        if self.unicode_sensitive && !s.chars().all(word_safe) {
            return Err("\\w, \\b or \\d on characters whose Unicode class may differ".into());
        }
        if self.ignorecase && !s.chars().all(fold_safe) {
            return Err("IGNORECASE on a character that case-maps to ASCII".into());
        }
        Ok(())
    }

    fn run(&self, re: &Regex, s: &Rc<str>, pos: usize) -> Result<Option<MatchData>, Unsupported> {
        // A run may backtrack up to BACKTRACK_LIMIT steps: charged generously, so that a
        // hostile pattern over many matches runs out of fuel instead of time.
        crate::native::spend(
            1000 + ((s.len() - pos.min(s.len())) / 16) as u64 + self.groups as u64,
        )?;
        let caps = re
            .captures_from_pos(&**s, pos)
            .map_err(|e| format!("regex run failed: {e}"))?;
        Ok(caps.map(|c| MatchData {
            subject: s.clone(),
            spans: (0..=self.groups)
                .map(|i| c.get(i).map(|m| (m.start(), m.end())))
                .collect(),
            names: self.names.clone(),
        }))
    }

    /// `re.search`
    pub fn search(&self, s: &Rc<str>) -> Result<Option<MatchData>, Unsupported> {
        self.check_subject(s)?;
        self.run(&self.search, s, 0)
    }

    /// `re.match`
    pub fn match_start(&self, s: &Rc<str>) -> Result<Option<MatchData>, Unsupported> {
        self.check_subject(s)?;
        self.run(&self.anchored, s, 0)
    }

    /// `re.fullmatch`
    pub fn fullmatch(&self, s: &Rc<str>) -> Result<Option<MatchData>, Unsupported> {
        self.check_subject(s)?;
        self.run(&self.full, s, 0)
    }

    /// The matches `re.sub`, `re.split` and `re.findall` visit, with CPython's rule since 3.7:
    /// an empty match is allowed right after a non-empty one, but not at the position where
    /// the previous empty match was found.
    pub fn iter(&self, s: &Rc<str>, count: usize) -> Result<Vec<MatchData>, Unsupported> {
        self.check_subject(s)?;
        let mut out = Vec::new();
        let mut pos = 0;
        let mut must_advance = false;
        while count == 0 || out.len() < count {
            if pos > s.len() {
                break;
            }
            let Some(mut m) = self.run(&self.search, s, pos)? else {
                break;
            };
            let (a, b) = m.spans[0].unwrap_or((pos, pos));
            if must_advance && a == pos && b == pos {
                if !self.always_empty {
                    return Err("empty match retry that may backtrack differently".into());
                }
                let Some(c) = s.get(pos..).and_then(|t| t.chars().next()) else {
                    break;
                };
                match self.run(&self.search, s, pos + c.len_utf8())? {
                    Some(next) => m = next,
                    None => break,
                }
            }
            let (a, b) = m.spans[0].unwrap_or((pos, pos));
            must_advance = a == b;
            pos = b;
            out.push(m);
        }
        Ok(out)
    }
}

/// Characters on which CPython's `\\w` (str.isalnum() or `_`) and Rust's Unicode `\\w`
/// agree and that have had the same class for many Unicode versions: letters of the
/// Latin, Greek, Cyrillic, CJK, kana and Hangul blocks and Latin-1 punctuation. Excluded on
/// purpose: combining marks (Rust `\\w`, not Python), superscript digits and vulgar
/// fractions (Python `\\w`, not Rust), and joiners.
fn word_safe(c: char) -> bool {
    let u = c as u32;
    c.is_ascii()
        || ((0xA0..=0xFF).contains(&u) && !matches!(u, 0xB2 | 0xB3 | 0xB9 | 0xBC..=0xBE))
        || (0x100..=0x24F).contains(&u)
        || (0x386..=0x3CE).contains(&u) && u != 0x387
        || (0x400..=0x481).contains(&u)
        || (0x48A..=0x4FF).contains(&u)
        || (0x3041..=0x3096).contains(&u)
        || (0x30A1..=0x30FA).contains(&u)
        || (0x4E00..=0x9FFF).contains(&u)
        || (0xAC00..=0xD7A3).contains(&u)
}

fn fold_safe(c: char) -> bool {
    c.is_ascii()
        || !(c.to_lowercase().any(|l| l.is_ascii()) || c.to_uppercase().any(|l| l.is_ascii()))
}

/// Result of translating a Python pattern.
struct Translated {
    prefix: String,
    body: String,
    groups: usize,
    names: Vec<(String, usize)>,
    unicode_sensitive: bool,
    ignorecase: bool,
    consumes: bool,
}

/// What the previous token was, for Python's "nothing to repeat" / "multiple repeat" errors.
#[derive(PartialEq, Clone, Copy)]
enum Prev {
    Nothing,
    Item,
    Assertion,
    Repeat,
}

/// Backtracking steps one regex run may take before it gives up (and the expression goes
/// to CPython); fancy-regex's default is 1,000,000.
const BACKTRACK_LIMIT: usize = 100_000;

const SPECIAL: &str = "\\.+*?()|[]{}^$#&-~";

fn push_lit(out: &mut String, c: char) {
    if c.is_ascii_punctuation() || c.is_whitespace() || c.is_control() {
        out.push_str(&format!("\\x{{{:X}}}", c as u32));
    } else if SPECIAL.contains(c) {
        out.push('\\');
        out.push(c);
    } else {
        out.push(c);
    }
}

fn hex(chars: &[char], i: &mut usize, n: usize) -> Result<char, Unsupported> {
    let s: String = chars.iter().skip(*i).take(n).collect();
    if s.len() != n || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("bad hex escape".into());
    }
    *i += n;
    u32::from_str_radix(&s, 16)
        .ok()
        .and_then(char::from_u32)
        .ok_or_else(|| "escape is not a valid character".into())
}

fn octal(chars: &[char], i: &mut usize, first: char, more: usize) -> Result<char, Unsupported> {
    let mut v = first.to_digit(8).ok_or("bad octal")?;
    for _ in 0..more {
        match chars.get(*i).and_then(|c| c.to_digit(8)) {
            Some(d) => {
                v = v * 8 + d;
                *i += 1;
            }
            None => break,
        }
    }
    if v > 0o377 {
        return Err("octal escape out of range".into());
    }
    char::from_u32(v).ok_or_else(|| "bad octal".into())
}

/// A literal escape valid both in and out of classes (`\n`, `\x41`, `\u00e4`, `\.`).
fn simple_escape(chars: &[char], i: &mut usize, c: char) -> Result<Option<char>, Unsupported> {
    Ok(Some(match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'f' => '\x0c',
        'v' => '\x0b',
        'a' => '\x07',
        'x' => hex(chars, i, 2)?,
        'u' => hex(chars, i, 4)?,
        'U' => hex(chars, i, 8)?,
        c if c.is_ascii_alphanumeric() => return Ok(None),
        c => c,
    }))
}

fn translate(pattern: &str, flags: i64) -> Result<Translated, Unsupported> {
    if flags & !(I | M | S | U | X) != 0 {
        return Err(format!("regex flags {flags} not supported"));
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut flags = flags;
    let mut i = 0;
    // Python 3.11 accepts global inline flags only at the very start.
    if chars.len() > 2 && chars[0] == '(' && chars[1] == '?' {
        let mut j = 2;
        let mut f = 0;
        while let Some(&c) = chars.get(j) {
            f |= match c {
                'i' => I,
                'm' => M,
                's' => S,
                'x' => X,
                'u' => U,
                _ => break,
            };
            j += 1;
        }
        if j > 2 && chars.get(j) == Some(&')') {
            flags |= f;
            i = j + 1;
        }
    }
    let verbose = flags & X != 0;
    let mut t = Translated {
        prefix: String::new(),
        body: String::new(),
        groups: 0,
        names: Vec::new(),
        unicode_sensitive: false,
        ignorecase: flags & I != 0,
        consumes: false,
    };
    if flags & I != 0 {
        if !pattern.is_ascii() {
            return Err("IGNORECASE with a non-ASCII pattern".into());
        }
        t.prefix.push_str("(?i)");
    }
    if flags & M != 0 {
        t.prefix.push_str("(?m)");
    }
    if flags & S != 0 {
        t.prefix.push_str("(?s)");
    }
    let multiline = flags & M != 0;
    let out = &mut t.body;
    let mut prev = Prev::Nothing;
    // Open groups: (capture number or 0, is lookaround, is lookbehind).
    let mut stack: Vec<(usize, bool, bool)> = Vec::new();
    let mut closed: Vec<usize> = Vec::new();
    let in_lookbehind = |stack: &Vec<(usize, bool, bool)>| stack.iter().any(|g| g.2);
    let in_lookaround = |stack: &Vec<(usize, bool, bool)>| stack.iter().any(|g| g.1);
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if verbose {
            if c.is_whitespace() && c.is_ascii() || c == '\x0b' {
                continue;
            }
            if c == '#' {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
        }
        match c {
            '\\' => {
                let Some(&e) = chars.get(i) else {
                    return Err("trailing backslash".into());
                };
                i += 1;
                match e {
                    'A' => {
                        out.push_str("\\A");
                        prev = Prev::Assertion;
                        continue;
                    }
                    'Z' => {
                        out.push_str("\\z");
                        prev = Prev::Assertion;
                        continue;
                    }
                    'b' | 'B' => {
                        out.push('\\');
                        out.push(e);
                        t.unicode_sensitive = true;
                        prev = Prev::Assertion;
                        continue;
                    }
                    'd' | 'D' | 'w' | 'W' => {
                        out.push('\\');
                        out.push(e);
                        t.unicode_sensitive = true;
                    }
                    // Python's str.isspace also counts the ASCII separators 0x1c-0x1f.
                    's' => out.push_str("[\\s\\x{1C}-\\x{1F}]"),
                    'S' => out.push_str("[^\\s\\x{1C}-\\x{1F}]"),
                    '0' => push_lit(out, octal(&chars, &mut i, '0', 2)?),
                    '1'..='9' => {
                        let mut num = e.to_digit(10).unwrap_or(0) as usize;
                        if let Some(d) = chars.get(i).and_then(|c| c.to_digit(10)) {
                            let third = chars.get(i + 1).and_then(|c| c.to_digit(8));
                            if e.is_digit(8) && d < 8 && third.is_some() {
                                return Err("three-digit octal escape".into());
                            }
                            num = num * 10 + d as usize;
                            i += 1;
                        }
                        if !closed.contains(&num) || in_lookbehind(&stack) {
                            return Err("backreference to an open or missing group".into());
                        }
                        out.push_str(&format!("(?:\\{num})"));
                    }
                    _ => match simple_escape(&chars, &mut i, e)? {
                        Some(l) => push_lit(out, l),
                        None => return Err(format!("bad escape \\{e}")),
                    },
                }
            }
            '.' => out.push('.'),
            '^' => {
                out.push('^');
                prev = Prev::Assertion;
                continue;
            }
            '$' => {
                // Without MULTILINE Python's `$` also matches before a final newline.
                out.push_str(if multiline { "$" } else { "(?=\\n?\\z)" });
                prev = Prev::Assertion;
                continue;
            }
            '|' => {
                if in_lookbehind(&stack) {
                    return Err("alternation inside lookbehind".into());
                }
                out.push('|');
                prev = Prev::Nothing;
                continue;
            }
            '(' => {
                if chars.get(i) == Some(&'?') {
                    let rest: String = chars[i + 1..].iter().take(3).collect();
                    if rest.starts_with(':') {
                        i += 2;
                        out.push_str("(?:");
                        stack.push((0, false, false));
                    } else if rest.starts_with('=') || rest.starts_with('!') {
                        out.push_str(&format!("(?{}", &rest[..1]));
                        i += 2;
                        stack.push((0, true, false));
                    } else if rest.starts_with("<=") || rest.starts_with("<!") {
                        out.push_str(&format!("(?{}", &rest[..2]));
                        i += 3;
                        stack.push((0, true, true));
                    } else if rest.starts_with("P<") {
                        i += 3;
                        let mut name = String::new();
                        while let Some(&c) = chars.get(i) {
                            i += 1;
                            if c == '>' {
                                break;
                            }
                            name.push(c);
                        }
                        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                        if !valid || t.names.iter().any(|(n, _)| *n == name) {
                            return Err("bad group name".into());
                        }
                        if in_lookaround(&stack) {
                            return Err("group inside lookaround".into());
                        }
                        t.groups += 1;
                        t.names.push((name.clone(), t.groups));
                        out.push_str(&format!("(?P<{name}>"));
                        stack.push((t.groups, false, false));
                    } else if rest.starts_with("P=") {
                        i += 3;
                        let mut name = String::new();
                        while let Some(&c) = chars.get(i) {
                            i += 1;
                            if c == ')' {
                                break;
                            }
                            name.push(c);
                        }
                        let num = t
                            .names
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, n)| *n)
                            .ok_or("unknown group name")?;
                        if !closed.contains(&num) || in_lookbehind(&stack) {
                            return Err("backreference to an open group".into());
                        }
                        out.push_str(&format!("(?:\\{num})"));
                        prev = Prev::Item;
                        t.consumes = true;
                        continue;
                    } else if rest.starts_with('#') {
                        while let Some(&c) = chars.get(i) {
                            i += 1;
                            if c == ')' {
                                break;
                            }
                        }
                        continue;
                    } else {
                        return Err("unsupported group kind".into());
                    }
                } else {
                    if in_lookaround(&stack) {
                        return Err("group inside lookaround".into());
                    }
                    t.groups += 1;
                    out.push('(');
                    stack.push((t.groups, false, false));
                }
                prev = Prev::Nothing;
                continue;
            }
            ')' => {
                let Some((num, look, _)) = stack.pop() else {
                    return Err("unbalanced parenthesis".into());
                };
                out.push(')');
                if num > 0 {
                    closed.push(num);
                }
                // Python can repeat a lookaround; fancy-regex may not, so refuse below.
                prev = if look { Prev::Assertion } else { Prev::Item };
                continue;
            }
            '*' | '+' | '?' | '{' => {
                let mut q = String::new();
                if c == '{' {
                    let start = i;
                    let mut lo = String::new();
                    let mut hi = String::new();
                    while let Some(d) = chars.get(i).filter(|d| d.is_ascii_digit()) {
                        lo.push(*d);
                        i += 1;
                    }
                    let comma = chars.get(i) == Some(&',');
                    if comma {
                        i += 1;
                        while let Some(d) = chars.get(i).filter(|d| d.is_ascii_digit()) {
                            hi.push(*d);
                            i += 1;
                        }
                    }
                    if chars.get(start) == Some(&'}') || chars.get(i) != Some(&'}') {
                        i = start;
                        push_lit(out, '{');
                        prev = Prev::Item;
                        t.consumes = true;
                        continue;
                    }
                    i += 1;
                    let lo_n: u32 = if lo.is_empty() {
                        0
                    } else {
                        lo.parse().map_err(|_| "big")?
                    };
                    let hi_n: Option<u32> = if comma {
                        if hi.is_empty() {
                            None
                        } else {
                            Some(hi.parse().map_err(|_| "big")?)
                        }
                    } else {
                        Some(lo_n)
                    };
                    if lo_n > 1000 || hi_n.is_some_and(|h| h > 1000 || h < lo_n) {
                        return Err("repeat bounds".into());
                    }
                    q = match hi_n {
                        None => format!("{{{lo_n},}}"),
                        Some(h) => format!("{{{lo_n},{h}}}"),
                    };
                } else {
                    q.push(c);
                }
                if prev != Prev::Item {
                    return Err("nothing to repeat / multiple repeat".into());
                }
                if in_lookbehind(&stack) {
                    return Err("repeat inside lookbehind".into());
                }
                match chars.get(i) {
                    Some('?') => {
                        i += 1;
                        q.push('?');
                    }
                    Some('+') => return Err("possessive repeat".into()),
                    _ => {}
                }
                out.push_str(&q);
                prev = Prev::Repeat;
                continue;
            }
            '[' => {
                class(&chars, &mut i, out, &mut t.unicode_sensitive)?;
            }
            c => {
                push_lit(out, c);
            }
        }
        if !in_lookaround(&stack) {
            t.consumes = true;
        }
        prev = Prev::Item;
    }
    if !stack.is_empty() {
        return Err("missing )".into());
    }
    Ok(t)
}

fn class(
    chars: &[char],
    i: &mut usize,
    out: &mut String,
    sensitive: &mut bool,
) -> Result<(), Unsupported> {
    out.push('[');
    if chars.get(*i) == Some(&'^') {
        out.push('^');
        *i += 1;
    }
    let start = *i;
    // One class member: a literal char, or a category already written.
    let member = |i: &mut usize,
                  out: &mut String,
                  sensitive: &mut bool|
     -> Result<Option<char>, Unsupported> {
        let Some(&c) = chars.get(*i) else {
            return Err("unterminated class".into());
        };
        *i += 1;
        if c != '\\' {
            return Ok(Some(c));
        }
        let Some(&e) = chars.get(*i) else {
            return Err("unterminated class".into());
        };
        *i += 1;
        match e {
            'd' | 'w' | 'D' | 'W' => {
                *sensitive = true;
                out.push('\\');
                out.push(e);
                Ok(None)
            }
            's' => {
                out.push_str("\\s\\x{1C}-\\x{1F}");
                Ok(None)
            }
            'b' => Ok(Some('\x08')),
            '0'..='7' => octal(chars, i, e, 2).map(Some),
            _ => match simple_escape(chars, i, e)? {
                Some(l) => Ok(Some(l)),
                None => Err(format!("bad class escape \\{e}")),
            },
        }
    };
    loop {
        match chars.get(*i) {
            None => return Err("unterminated class".into()),
            Some(']') if *i > start => {
                *i += 1;
                break;
            }
            _ => {}
        }
        let Some(lo) = member(i, out, sensitive)? else {
            if chars.get(*i) == Some(&'-') && chars.get(*i + 1).is_some_and(|c| *c != ']') {
                return Err("range from a category".into());
            }
            continue;
        };
        if chars.get(*i) == Some(&'-') && chars.get(*i + 1).is_some_and(|c| *c != ']') {
            *i += 1;
            let Some(hi) = member(i, out, sensitive)? else {
                return Err("range to a category".into());
            };
            if hi < lo {
                return Err("bad character range".into());
            }
            out.push_str(&format!("\\x{{{:X}}}-\\x{{{:X}}}", lo as u32, hi as u32));
        } else {
            out.push_str(&format!("\\x{{{:X}}}", lo as u32));
        }
    }
    out.push(']');
    Ok(())
}

/// One piece of a parsed replacement template.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Literal text.
    Lit(String),
    /// A group's text (empty when the group did not take part).
    Group(usize),
}

/// Parses a `re.sub` replacement template the way CPython 3.11's `parse_template` does.
pub fn parse_template(t: &str, re: &PyRegex) -> Result<Vec<Piece>, Unsupported> {
    let chars: Vec<char> = t.chars().collect();
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    let group = |lit: &mut String, out: &mut Vec<Piece>, n: usize| -> Result<(), Unsupported> {
        if n > re.groups {
            return Err("invalid group reference".into());
        }
        if !lit.is_empty() {
            out.push(Piece::Lit(std::mem::take(lit)));
        }
        out.push(Piece::Group(n));
        Ok(())
    };
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '\\' {
            lit.push(c);
            continue;
        }
        let Some(&e) = chars.get(i) else {
            return Err("bad escape (end of pattern)".into());
        };
        i += 1;
        match e {
            'g' => {
                if chars.get(i) != Some(&'<') {
                    return Err("missing <".into());
                }
                i += 1;
                let mut name = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err("missing >".into()),
                        Some('>') => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            name.push(c);
                            i += 1;
                        }
                    }
                }
                let n = if !name.is_empty() && name.chars().all(|c| c.is_ascii_digit()) {
                    name.parse::<usize>().map_err(|_| "bad group number")?
                } else {
                    re.names
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, n)| *n)
                        .ok_or("unknown group name")?
                };
                group(&mut lit, &mut out, n)?;
            }
            '0' => lit.push(octal(&chars, &mut i, '0', 2)?),
            '1'..='9' => {
                let mut n = e.to_digit(10).unwrap_or(0) as usize;
                if let Some(d) = chars.get(i).and_then(|c| c.to_digit(10)) {
                    let third = chars.get(i + 1).and_then(|c| c.to_digit(8));
                    if let (Some(hi), true, Some(lo)) = (e.to_digit(8), d < 8, third) {
                        let v = hi * 64 + d * 8 + lo;
                        if v > 0o377 {
                            return Err("octal escape out of range".into());
                        }
                        lit.push(char::from_u32(v).ok_or("bad octal")?);
                        i += 2;
                        continue;
                    }
                    n = n * 10 + d as usize;
                    i += 1;
                }
                group(&mut lit, &mut out, n)?;
            }
            'a' => lit.push('\x07'),
            'b' => lit.push('\x08'),
            'f' => lit.push('\x0c'),
            'n' => lit.push('\n'),
            'r' => lit.push('\r'),
            't' => lit.push('\t'),
            'v' => lit.push('\x0b'),
            '\\' => lit.push('\\'),
            e if e.is_ascii_alphabetic() => return Err(format!("bad escape \\{e}")),
            e => {
                lit.push('\\');
                lit.push(e);
            }
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    Ok(out)
}

/// Expands a parsed template for one match.
pub fn expand(pieces: &[Piece], m: &MatchData) -> String {
    let mut s = String::new();
    for p in pieces {
        match p {
            Piece::Lit(l) => s.push_str(l),
            Piece::Group(n) => s.push_str(m.group(*n).unwrap_or("")),
        }
    }
    s
}

/// `re.escape` of Python 3.7+.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "()[]{}?*+-|^$\\.&~# \t\n\r\x0b\x0c".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(p: &str, r: &str, s: &str) -> String {
        let re = PyRegex::compile(p, 0).unwrap();
        let t = parse_template(r, &re).unwrap();
        let s: Rc<str> = s.into();
        let ms = re.iter(&s, 0).unwrap();
        let mut out = String::new();
        let mut last = 0;
        for m in &ms {
            let (a, b) = m.spans[0].unwrap();
            out.push_str(&s[last..a]);
            out.push_str(&expand(&t, m));
            last = b;
        }
        out.push_str(&s[last..]);
        out
    }

    #[test]
    fn python_sub_semantics() {
        assert_eq!(sub("^INBOX\\.", "", "INBOX.Sent"), "Sent");
        assert_eq!(sub("(a)(?P<x>b)", "\\g<x>\\1\\g<0>", "ab"), "baab");
        assert_eq!(sub("foo$", "X", "foo\n"), "X\n");
        assert_eq!(sub("foo\\Z", "X", "foo\n"), "foo\n");
        assert_eq!(sub("^", "p.", "a"), "p.a");
        assert_eq!(sub("$", "!", "a"), "a!");
        assert_eq!(sub("a", "\\n", "a"), "\n");
        assert_eq!(sub("a", "\\.", "a"), "\\.");
        assert_eq!(sub("[.]", "/", "a.b.c"), "a/b/c");
        assert_eq!(sub("a{", "x", "a{"), "x");
    }

    #[test]
    fn refuses_what_it_cannot_match_exactly() {
        assert!(PyRegex::compile("a++", 0).is_err());
        assert!(PyRegex::compile("*a", 0).is_err());
        assert!(PyRegex::compile("(?<=a+)b", 0).is_err());
        assert!(PyRegex::compile("\\q", 0).is_err());
        assert!(PyRegex::compile("(a", 0).is_err());
        let re = PyRegex::compile("x*", 0).unwrap();
        assert!(re.iter(&Rc::from("abxd"), 0).is_err());
        let re = PyRegex::compile("\\w+", 0).unwrap();
        assert!(re.search(&Rc::from("Gelöschte")).is_ok());
        assert!(re.search(&Rc::from("Ge\u{301}")).is_err());
        // CPython's IGNORECASE matches `i` against U+0130; Rust's simple folding does not.
        let re = PyRegex::compile("i", I).unwrap();
        assert!(re.search(&Rc::from("\u{130}")).is_err());
        assert!(re.search(&Rc::from("Gelöschte")).is_ok());
    }

    #[test]
    fn escape_matches_python() {
        assert_eq!(escape("a.b c&d-é"), "a\\.b\\ c\\&d\\-é");
    }
}
