//! The protocol floor of a scenario: the least IMAP conversation that makes the server do
//! that scenario's work, on one connection, with every answer read and thrown away (no
//! parsing beyond finding the end of a response, no local side, no process to start).
//!
//! A sync tool on one connection cannot take less time than this, whatever it does on its
//! own side: a ratio target below `floor / mbsync` cannot be met against this server. It
//! extends `../shared/bench/floor` (which does the initial sync only) to noop, flags and
//! new. Push has no floor here: its server work is the APPENDs, which need the messages.

use crate::harness::Scenario;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// What one server conversation does, per folder, for a scenario:
/// - initial: SELECT, then every message whole (`UID FETCH 1:* (UID FLAGS INTERNALDATE
///   BODY.PEEK[])`);
/// - noop: SELECT only (what tells a tool that nothing changed);
/// - flags: SELECT and every message's flags (`UID FETCH 1:* (UID FLAGS)`);
/// - new: as flags, plus the messages at or above the folder's UIDNEXT before the change
///   (`base`), whole.
///
/// Returns the number of bytes the server sent.
pub fn run(
    port: u16,
    user: &str,
    pass: &str,
    scenario: Scenario,
    base: &BTreeMap<String, u32>,
) -> io::Result<u64> {
    if scenario == Scenario::Push {
        return Err(io::Error::other("the floor has no push scenario"));
    }
    let mut c = Conn::login(port, user, pass)?;
    let listed = c.command("LIST \"\" \"*\"", true)?;
    let folders: Vec<String> = listed.iter().filter_map(|l| list_name(l)).collect();
    let mut with_new = 0;
    for folder in &folders {
        let selected = c.command(&format!("SELECT {}", quoted(folder)), true)?;
        match scenario {
            Scenario::Noop | Scenario::Push => {}
            Scenario::Initial => {
                c.command("UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])", false)?;
            }
            Scenario::Flags => {
                c.command("UID FETCH 1:* (UID FLAGS)", false)?;
            }
            Scenario::New => {
                c.command("UID FETCH 1:* (UID FLAGS)", false)?;
                let next = selected.iter().find_map(|l| code_number(l, b"UIDNEXT"));
                let from = base.get(folder).copied().unwrap_or(1);
                // `n:*` names the last message even when no UID is n or above.
                if next.is_some_and(|n| n > from) {
                    with_new += 1;
                    c.command(
                        &format!("UID FETCH {from}:* (UID FLAGS INTERNALDATE BODY.PEEK[])"),
                        false,
                    )?;
                }
            }
        }
    }
    c.command("LOGOUT", false)?;
    if scenario == Scenario::New && with_new == 0 {
        return Err(io::Error::other(
            "no folder has messages above its UIDNEXT from before the change",
        ));
    }
    Ok(c.bytes)
}

/// Makes the server keep a modification sequence per message in every folder, as a server
/// does once a CONDSTORE client (RFC 7162: most mail clients today, and us) has selected
/// them: Dovecot starts keeping them at the first such SELECT, and until then a change
/// gives every message of the folder a new one, so that "changed since" means everything.
pub fn enable_condstore(port: u16, user: &str, pass: &str) -> io::Result<()> {
    let mut c = Conn::login(port, user, pass)?;
    c.command("ENABLE CONDSTORE", false)?;
    let listed = c.command("LIST \"\" \"*\"", true)?;
    for folder in listed.iter().filter_map(|l| list_name(l)) {
        c.command(&format!("SELECT {}", quoted(&folder)), false)?;
    }
    c.command("LOGOUT", false)?;
    Ok(())
}

struct Conn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    tag: u32,
    bytes: u64,
}

impl Conn {
    /// Connects to 127.0.0.1:`port`, reads the greeting, logs in.
    fn login(port: u16, user: &str, pass: &str) -> io::Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            writer: stream.try_clone()?,
            reader: BufReader::with_capacity(64 * 1024, stream),
            tag: 0,
            bytes: 0,
        };
        let mut greeting = Vec::new();
        c.bytes += c.reader.read_until(b'\n', &mut greeting)? as u64;
        c.command(&format!("LOGIN {user} {pass}"), false)?;
        Ok(c)
    }

    /// Sends one command and reads up to its tagged answer, which must be OK. `keep`:
    /// returns the untagged responses (literals left out).
    fn command(&mut self, command: &str, keep: bool) -> io::Result<Vec<Vec<u8>>> {
        self.tag += 1;
        let tag = format!("f{}", self.tag);
        self.writer
            .write_all(format!("{tag} {command}\r\n").as_bytes())?;
        let (kept, n) = read_response(&mut self.reader, tag.as_bytes(), keep)
            .map_err(|e| io::Error::new(e.kind(), format!("{command}: {e}")))?;
        self.bytes += n;
        Ok(kept)
    }
}

/// Reads responses up to the one tagged `tag`, skipping literals (`{n}` at the end of a
/// line, then n bytes). Fails unless the tagged one is OK. Returns the untagged responses
/// when `keep` (each without its literals' contents), and the bytes read.
pub fn read_response<R: BufRead>(
    r: &mut R,
    tag: &[u8],
    keep: bool,
) -> io::Result<(Vec<Vec<u8>>, u64)> {
    let mut kept = Vec::new();
    let mut bytes = 0u64;
    let mut response = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        bytes += n as u64;
        if let Some(len) = literal_length(&line) {
            let skipped = io::copy(&mut r.take(len), &mut io::sink())?;
            bytes += skipped;
            if skipped < len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection inside a literal",
                ));
            }
            if keep {
                response.extend_from_slice(&line);
            }
            continue;
        }
        response.extend_from_slice(&line);
        let whole = std::mem::take(&mut response);
        if whole.starts_with(tag) && whole.get(tag.len()) == Some(&b' ') {
            let status = &whole[tag.len() + 1..];
            if status.starts_with(b"OK") {
                return Ok((kept, bytes));
            }
            return Err(io::Error::other(format!(
                "the server answered {}",
                String::from_utf8_lossy(&whole).trim_end()
            )));
        }
        if keep {
            kept.push(whole);
        }
    }
}

/// The n of a line ending in `{n}\r\n` (or `{n+}`).
fn literal_length(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r\n").or(line.strip_suffix(b"\n"))?;
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The mailbox name of a `* LIST (...) "." name` response (an atom or a quoted string).
fn list_name(line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(line);
    let rest = text.strip_prefix("* LIST ")?.trim_end();
    let rest = &rest[rest.find(')')? + 1..];
    let rest = rest.trim_start();
    // The delimiter: NIL or a quoted character.
    let rest = if let Some(r) = rest.strip_prefix("NIL") {
        r
    } else {
        let r = rest.strip_prefix('"')?;
        let end = if r.starts_with('\\') { 2 } else { 1 };
        r.get(end..)?.strip_prefix('"')?
    };
    let name = rest.trim();
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(q) => Some(q.replace("\\\"", "\"").replace("\\\\", "\\")),
        None => Some(name.to_string()),
    }
}

/// A mailbox name as a quoted string.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The number of a response code such as `[UIDNEXT 42]` in an untagged line.
fn code_number(line: &[u8], code: &[u8]) -> Option<u32> {
    let mut open = Vec::with_capacity(code.len() + 2);
    open.push(b'[');
    open.extend_from_slice(code);
    open.push(b' ');
    let at = line
        .windows(open.len())
        .position(|w| w == open.as_slice())?;
    let digits: String = line[at + open.len()..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| char::from(b))
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn responses_are_read_to_their_tag_across_literals() {
        let wire = b"* 1 FETCH (UID 7 BODY[] {11}\r\nline\r\n{3}\r\nab)\r\n\
                     * 2 FETCH (UID 8 FLAGS (\\Seen))\r\n\
                     f1 OK done\r\n\
                     f2 NO [NONEXISTENT] gone\r\n";
        let mut r = Cursor::new(&wire[..]);
        let (kept, n) = read_response(&mut r, b"f1", true).unwrap();
        assert_eq!(kept.len(), 2, "{kept:?}");
        // The literal's contents (which hold a line that looks like another literal) are
        // skipped; the rest of its response is kept.
        assert_eq!(kept[0], b"* 1 FETCH (UID 7 BODY[] {11}\r\nab)\r\n");
        assert_eq!(
            n as usize,
            wire.len() - b"f2 NO [NONEXISTENT] gone\r\n".len()
        );
        let err = read_response(&mut r, b"f2", false).unwrap_err();
        assert!(err.to_string().contains("NONEXISTENT"), "{err}");
        // A literal cut short, and a connection closed before the tag, are errors.
        let err = read_response(
            &mut Cursor::new(&b"* 1 FETCH (BODY[] {9}\r\nab"[..]),
            b"f1",
            false,
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = read_response(&mut Cursor::new(&b"* OK x\r\n"[..]), b"f1", false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn list_names_codes_and_quoting() {
        assert_eq!(
            list_name(b"* LIST (\\HasNoChildren) \".\" INBOX\r\n").as_deref(),
            Some("INBOX")
        );
        assert_eq!(
            list_name(b"* LIST () \"/\" \"My \\\"Box\\\"\"\r\n").as_deref(),
            Some("My \"Box\"")
        );
        assert_eq!(
            list_name(b"* LIST () NIL Flat\r\n").as_deref(),
            Some("Flat")
        );
        assert_eq!(list_name(b"* OK hello\r\n"), None);
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(
            code_number(b"* OK [UIDNEXT 3439] Predicted next UID\r\n", b"UIDNEXT"),
            Some(3439)
        );
        assert_eq!(code_number(b"* OK [UIDVALIDITY 5] x\r\n", b"UIDNEXT"), None);
        assert_eq!(literal_length(b"* 1 FETCH (BODY[] {42}\r\n"), Some(42));
        assert_eq!(literal_length(b"A1 APPEND x {7+}\r\n"), Some(7));
        assert_eq!(literal_length(b"* OK {no}\r\n"), None);
    }
}
