//! A tiny scripted IMAP client over std I/O, for servers that have no `doveadm`.
//!
//! It is deliberately independent of oi-imap: tests use it to put messages in and read them
//! back on the server side, so it must not share code (or bugs) with the client under test.
//! It understands just enough of IMAP for that: tagged commands, synchronizing literals in
//! both directions, and the FETCH items `UID`, `FLAGS`, `INTERNALDATE` and `BODY[]`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::Duration;

use crate::{ServerMessage, StartError, days_from_civil};

/// One untagged response: its text pieces, with the literals that followed them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Untagged {
    /// The line text without literals; a literal is replaced by `{}`.
    pub text: String,
    /// The literals in order.
    pub literals: Vec<Vec<u8>>,
}

/// A scripted IMAP session (already past the greeting).
pub struct Script {
    reader: Box<dyn BufRead + Send>,
    writer: Box<dyn Write + Send>,
    child: Option<Child>,
    tag: u32,
    /// The greeting line.
    pub greeting: String,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script")
            .field("greeting", &self.greeting)
            .finish_non_exhaustive()
    }
}

fn failed(s: impl Into<String>) -> StartError {
    StartError::Failed(s.into())
}

/// `{123}` or `{123+}` at the end of a line (CRLF already stripped).
fn trailing_literal(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl Script {
    /// A session on a TCP connection to 127.0.0.1.
    pub fn tcp(port: u16) -> Result<Script, StartError> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let r = s.try_clone()?;
        Script::new(Box::new(BufReader::new(r)), Box::new(s), None)
    }

    /// A session on a child process's stdin/stdout (a preauth tunnel).
    pub fn child(mut child: Child) -> Result<Script, StartError> {
        let out = child
            .stdout
            .take()
            .ok_or_else(|| failed("child has no stdout"))?;
        let inp = child
            .stdin
            .take()
            .ok_or_else(|| failed("child has no stdin"))?;
        Script::new(Box::new(BufReader::new(out)), Box::new(inp), Some(child))
    }

    fn new(
        reader: Box<dyn BufRead + Send>,
        writer: Box<dyn Write + Send>,
        child: Option<Child>,
    ) -> Result<Script, StartError> {
        let mut s = Script {
            reader,
            writer,
            child,
            tag: 0,
            greeting: String::new(),
        };
        let g = s.line()?;
        s.greeting = String::from_utf8_lossy(&g).into_owned();
        if !(s.greeting.starts_with("* OK") || s.greeting.starts_with("* PREAUTH")) {
            return Err(failed(format!("bad greeting: {}", s.greeting)));
        }
        Ok(s)
    }

    fn line(&mut self) -> Result<Vec<u8>, StartError> {
        let mut buf = Vec::new();
        self.reader.read_until(b'\n', &mut buf)?;
        if buf.is_empty() {
            return Err(failed("server closed the connection"));
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        Ok(buf)
    }

    /// Reads one whole response (a line and any literals it announces).
    fn response(&mut self) -> Result<Untagged, StartError> {
        let mut u = Untagged::default();
        loop {
            let line = self.line()?;
            match trailing_literal(&line) {
                Some(n) => {
                    let open = line.iter().rposition(|&b| b == b'{').unwrap_or(0);
                    u.text.push_str(&String::from_utf8_lossy(&line[..open]));
                    u.text.push_str("{}");
                    let mut lit = vec![0; n];
                    self.reader.read_exact(&mut lit)?;
                    u.literals.push(lit);
                }
                None => {
                    u.text.push_str(&String::from_utf8_lossy(&line));
                    return Ok(u);
                }
            }
        }
    }

    /// Runs one command; its pieces are joined, each literal sent synchronizing. Returns
    /// the untagged responses; a NO or BAD is an error with the server's text.
    pub fn run(&mut self, pieces: &[Piece<'_>]) -> Result<Vec<Untagged>, StartError> {
        self.tag += 1;
        let tag = format!("s{}", self.tag);
        let mut untagged = Vec::new();
        let mut out = format!("{tag} ").into_bytes();
        for p in pieces {
            match p {
                Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                Piece::Literal(data) => {
                    out.extend_from_slice(format!("{{{}}}\r\n", data.len()).as_bytes());
                    self.writer.write_all(&out)?;
                    self.writer.flush()?;
                    out.clear();
                    loop {
                        let r = self.response()?;
                        if r.text.starts_with('+') {
                            break;
                        }
                        if r.text.starts_with(&tag) {
                            return Err(failed(format!("literal refused: {}", r.text)));
                        }
                        untagged.push(r);
                    }
                    out.extend_from_slice(data);
                }
            }
        }
        out.extend_from_slice(b"\r\n");
        self.writer.write_all(&out)?;
        self.writer.flush()?;
        loop {
            let r = self.response()?;
            if let Some(rest) = r.text.strip_prefix(&format!("{tag} ")) {
                if rest.starts_with("OK") {
                    return Ok(untagged);
                }
                return Err(failed(format!("{}: {}", command_name(pieces), r.text)));
            }
            untagged.push(r);
        }
    }

    /// Runs a command that is only text.
    pub fn cmd(&mut self, text: &str) -> Result<Vec<Untagged>, StartError> {
        self.run(&[Piece::Text(text)])
    }

    /// Runs a command that is only text and throws its answers away as they come, literals
    /// included, without holding any of them: a FETCH of every body takes no memory. A NO
    /// or BAD is an error with the server's text.
    pub fn cmd_discard(&mut self, text: &str) -> Result<(), StartError> {
        self.tag += 1;
        let tag = format!("s{} ", self.tag);
        self.writer
            .write_all(format!("{tag}{text}\r\n").as_bytes())?;
        self.writer.flush()?;
        loop {
            let line = self.line()?;
            if let Some(n) = trailing_literal(&line) {
                let n = n as u64;
                if std::io::copy(&mut (&mut self.reader).take(n), &mut std::io::sink())? < n {
                    return Err(failed("server closed the connection inside a literal"));
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix(tag.as_bytes()) {
                if rest.starts_with(b"OK") {
                    return Ok(());
                }
                let name = text.split(' ').take(2).collect::<Vec<_>>().join(" ");
                return Err(failed(format!(
                    "{name}: {}",
                    String::from_utf8_lossy(&line)
                )));
            }
        }
    }

    /// Logs in with LOGIN (the test servers all allow plaintext on loopback).
    pub fn login(&mut self, user: &str, password: &str) -> Result<(), StartError> {
        self.cmd(&format!("LOGIN {} {}", quote(user), quote(password)))
            .map(|_| ())
    }

    /// Every mailbox name LIST returns.
    pub fn list(&mut self) -> Result<Vec<String>, StartError> {
        let rs = self.cmd("LIST \"\" \"*\"")?;
        let mut names = Vec::new();
        for r in rs {
            let Some(rest) = r.text.strip_prefix("* LIST ") else {
                continue;
            };
            if let Some(lit) = r.literals.first() {
                names.push(String::from_utf8_lossy(lit).into_owned());
                continue;
            }
            // (attrs) delim name: the name is the last token, maybe quoted.
            let after_attrs = rest.split_once(") ").map(|x| x.1).unwrap_or(rest);
            let after_delim = skip_token(after_attrs).trim_start();
            names.push(unquote(after_delim));
        }
        Ok(names)
    }

    /// APPENDs a message and returns the APPENDUID UID when the server gives one.
    pub fn append(
        &mut self,
        mailbox: &str,
        flags: &[&str],
        message: &[u8],
    ) -> Result<Option<u32>, StartError> {
        let head = format!("APPEND {} ({}) ", quote(mailbox), flags.join(" "));
        // The tagged OK is not returned by run(); ask for the UID with a cheap trick:
        // compare UIDNEXT before and after, which works with or without UIDPLUS.
        let before = self.uidnext(mailbox)?;
        self.run(&[Piece::Text(&head), Piece::Literal(message)])?;
        let after = self.uidnext(mailbox)?;
        Ok(match (before, after) {
            (Some(b), Some(a)) if a == b + 1 => Some(b),
            _ => None,
        })
    }

    /// UIDNEXT of a mailbox, from STATUS.
    pub fn uidnext(&mut self, mailbox: &str) -> Result<Option<u32>, StartError> {
        let rs = self.cmd(&format!("STATUS {} (UIDNEXT)", quote(mailbox)))?;
        Ok(rs.iter().find_map(|r| number_after(&r.text, "UIDNEXT ")))
    }

    /// Every message of a mailbox, read with EXAMINE (so `\Seen` is not set) in UID order.
    pub fn messages(&mut self, mailbox: &str) -> Result<Vec<ServerMessage>, StartError> {
        let rs = self.cmd(&format!("EXAMINE {}", quote(mailbox)))?;
        let exists = rs
            .iter()
            .find_map(|r| {
                let t = r.text.strip_prefix("* ")?;
                let (n, rest) = t.split_once(' ')?;
                (rest.eq_ignore_ascii_case("EXISTS")).then(|| n.parse::<u32>().ok())?
            })
            .unwrap_or(0);
        let mut msgs = Vec::new();
        if exists > 0 {
            for r in self.cmd("UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])")? {
                if r.text.contains(" FETCH (") {
                    msgs.push(parse_fetch(&r)?);
                }
            }
        }
        self.cmd("CLOSE")?;
        msgs.sort_by_key(|m| m.uid);
        Ok(msgs)
    }

    /// Ends the session politely.
    pub fn logout(mut self) -> Result<(), StartError> {
        self.cmd("LOGOUT").map(|_| ())
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Closing stdin first lets a tunnelled server end by itself.
            self.writer = Box::new(std::io::sink());
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One piece of a scripted command.
#[derive(Debug, Clone, Copy)]
pub enum Piece<'a> {
    /// Raw command text.
    Text(&'a str),
    /// A synchronizing literal.
    Literal(&'a [u8]),
}

fn command_name(pieces: &[Piece<'_>]) -> String {
    match pieces.first() {
        Some(Piece::Text(t)) => t.split(' ').take(2).collect::<Vec<_>>().join(" "),
        _ => "command".into(),
    }
}

/// An IMAP quoted string.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    match s.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => s.to_string(),
    }
}

/// Skips one atom, quoted string or NIL.
fn skip_token(s: &str) -> &str {
    if let Some(rest) = s.strip_prefix('"') {
        let mut esc = false;
        for (i, c) in rest.char_indices() {
            match c {
                '\\' if !esc => esc = true,
                '"' if !esc => return &rest[i + 1..],
                _ => esc = false,
            }
        }
        ""
    } else {
        s.split_once(' ').map(|x| x.1).unwrap_or("")
    }
}

/// The number right after `key` in `text` (`key` in upper case; `text` in any case).
pub fn number_after(text: &str, key: &str) -> Option<u32> {
    let upper = text.to_ascii_uppercase();
    let at = upper.find(key)? + key.len();
    let digits: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

fn parse_fetch(r: &Untagged) -> Result<ServerMessage, StartError> {
    let bad = || failed(format!("unexpected FETCH: {}", r.text));
    let uid = number_after(&r.text, "UID ").ok_or_else(bad)?;
    let upper = r.text.to_ascii_uppercase();
    let flags = match upper.find("FLAGS (") {
        Some(at) => {
            let rest = &r.text[at + 7..];
            let end = rest.find(')').ok_or_else(bad)?;
            rest[..end]
                .split_whitespace()
                .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                .map(str::to_string)
                .collect()
        }
        None => Vec::new(),
    };
    let internal_date = upper.find("INTERNALDATE \"").and_then(|at| {
        let rest = &r.text[at + 14..];
        parse_imap_date(&rest[..rest.find('"')?])
    });
    // The body is the literal announced right after BODY[]; it is the only literal here.
    let body = if upper.contains("BODY[] {}") {
        r.literals.first().cloned().ok_or_else(bad)?
    } else if let Some(at) = upper.find("BODY[] \"") {
        unquote(&r.text[at + 7..])
            .trim_end_matches(')')
            .as_bytes()
            .to_vec()
    } else {
        return Err(bad());
    };
    Ok(ServerMessage {
        uid,
        flags,
        internal_date,
        body,
    })
}

/// IMAP `date-time`: ` 7-Jul-1996 02:44:25 -0700` (day may be space-padded).
pub fn parse_imap_date(s: &str) -> Option<i64> {
    let mut it = s.split_whitespace();
    let date = it.next()?;
    let time = it.next()?;
    let zone = it.next()?;
    let mut dp = date.split('-');
    let day: i64 = dp.next()?.parse().ok()?;
    let mon = dp.next()?.to_ascii_lowercase();
    let year: i64 = dp.next()?.parse().ok()?;
    let month = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|m| *m == mon)? as i64
        + 1;
    let mut tp = time.split(':').map(|x| x.parse::<i64>());
    let (h, m, sec) = (tp.next()?.ok()?, tp.next()?.ok()?, tp.next()?.ok()?);
    let (sign, z) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    if z.len() != 4 {
        return None;
    }
    let zh: i64 = z[..2].parse().ok()?;
    let zm: i64 = z[2..].parse().ok()?;
    let local = days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + sec;
    Some(local - sign * (zh * 3600 + zm * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session reading `wire` (after a greeting), and what it writes.
    fn scripted(wire: &[u8]) -> Script {
        let mut input = b"* OK ready\r\n".to_vec();
        input.extend_from_slice(wire);
        Script::new(
            Box::new(std::io::Cursor::new(input)),
            Box::new(std::io::sink()),
            None,
        )
        .unwrap()
    }

    #[test]
    fn discarded_answers_are_read_to_their_tag_across_literals() {
        // The literal holds a line that looks like the command's own tagged answer.
        let mut s = scripted(
            b"* 1 FETCH (UID 7 BODY[] {12}\r\ns1 NO fake\r\n)\r\n\
              * 2 FETCH (UID 8 FLAGS (\\Seen))\r\n\
              s1 OK done\r\n\
              s2 NO [NONEXISTENT] gone\r\n\
              * 3 FETCH (BODY[] {9}\r\nab",
        );
        s.cmd_discard("UID FETCH 1:* (BODY.PEEK[])").unwrap();
        let err = s.cmd_discard("SELECT x").unwrap_err().to_string();
        assert!(
            err.contains("SELECT x") && err.contains("NONEXISTENT"),
            "{err}"
        );
        // A literal cut short, and a connection closed before the tag, are errors.
        let err = s.cmd_discard("UID FETCH 1 (BODY.PEEK[])").unwrap_err();
        assert!(err.to_string().contains("inside a literal"), "{err}");
        let err = scripted(b"* OK x\r\n").cmd_discard("NOOP").unwrap_err();
        assert!(err.to_string().contains("closed"), "{err}");
        assert_eq!(
            number_after("* OK [UIDNEXT 3439] next", "[UIDNEXT "),
            Some(3439)
        );
        assert_eq!(number_after("* OK [uidnext 5] x", "[UIDNEXT "), Some(5));
        assert_eq!(number_after("* OK [UIDVALIDITY 5] x", "[UIDNEXT "), None);
    }

    #[test]
    fn literal_at_line_end() {
        assert_eq!(trailing_literal(b"* 1 FETCH (BODY[] {12}"), Some(12));
        assert_eq!(trailing_literal(b"a APPEND x {3+}"), Some(3));
        assert_eq!(trailing_literal(b"* OK {x}"), None);
        assert_eq!(trailing_literal(b"* OK done"), None);
    }

    #[test]
    fn fetch_items_in_any_order() {
        let r = Untagged {
            text: "* 2 FETCH (FLAGS (\\Seen \\Recent $Label1) BODY[] {} UID 7 INTERNALDATE \"17-Jul-1996 02:44:25 -0700\")".into(),
            literals: vec![b"Subject: x\r\n\r\nhi\r\n".to_vec()],
        };
        let m = parse_fetch(&r).unwrap();
        assert_eq!(m.uid, 7);
        assert_eq!(m.flags, vec!["\\Seen", "$Label1"]);
        assert_eq!(m.internal_date, Some(837596665));
        assert_eq!(m.body, b"Subject: x\r\n\r\nhi\r\n");
        let bad = Untagged {
            text: "* 2 FETCH (FLAGS ())".into(),
            literals: vec![],
        };
        assert!(parse_fetch(&bad).is_err());
    }

    #[test]
    fn dates_and_names() {
        assert_eq!(parse_imap_date(" 1-Jan-1970 00:00:10 +0000"), Some(10));
        assert_eq!(parse_imap_date("01-Jan-1970 01:00:00 +0100"), Some(0));
        assert_eq!(parse_imap_date("01-Foo-1970 01:00:00 +0100"), None);
        assert_eq!(unquote("\"a \\\"b\\\"\""), "a \"b\"");
        assert_eq!(skip_token("\"/\" INBOX"), " INBOX");
        assert_eq!(skip_token("NIL Work"), "Work");
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
    }
}
