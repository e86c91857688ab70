//! A fault-injecting TCP proxy (a mock network, not a server): it listens on 127.0.0.1,
//! forwards every connection to a real test server, watches the client's commands and,
//! when one matches a [`Trigger`], injects a [`Fault`]: the connection drops (before the
//! command reaches the server, or after the server has run it and part of the reply was
//! sent), goes silent, or the client gets a `NO` or a `BYE` the server never said.
//!
//! Everything else is forwarded untouched, so the server behind it stays the judge of what
//! was really stored. The proxy never prints what passes through (LOGIN carries a password).
//!
//! Both byte streams are cut into IMAP units (a line together with the literals it
//! announces, RFC 3501 §4.3), so that a command is recognised by its first line only (never
//! by text inside a message body) and an injected response never lands inside a server one.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Which client commands set off the fault.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// Texts that must all occur (ASCII case-insensitive) in the command line after its tag.
    contains: Vec<String>,
    /// Only while this mailbox is selected (by SELECT or EXAMINE on the same connection).
    folder: Option<String>,
}

impl Trigger {
    /// A command whose line contains every one of `texts` (case-insensitive).
    pub fn command(texts: &[&str]) -> Trigger {
        Trigger {
            contains: texts.iter().map(|t| t.to_ascii_uppercase()).collect(),
            folder: None,
        }
    }

    /// `UID FETCH` of message bodies: a folder's download, or a listing of new messages
    /// that brings their bodies along (not a listing of flags and sizes only).
    pub fn fetch_bodies() -> Trigger {
        Trigger::command(&["UID FETCH", "BODY.PEEK[]"])
    }

    /// `APPEND`.
    pub fn append() -> Trigger {
        Trigger::command(&[" APPEND "])
    }

    /// `UID STORE` (flag changes and `\Deleted` marks).
    pub fn store() -> Trigger {
        Trigger::command(&["UID STORE"])
    }

    /// `EXPUNGE` or `UID EXPUNGE`.
    pub fn expunge() -> Trigger {
        Trigger::command(&["EXPUNGE"])
    }

    /// Restricts the trigger to commands sent while `folder` is selected.
    pub fn in_folder(mut self, folder: &str) -> Trigger {
        self.folder = Some(folder.to_string());
        self
    }

    fn matches(&self, line_after_tag: &str, selected: Option<&str>) -> bool {
        let upper = line_after_tag.to_ascii_uppercase();
        let padded = format!(" {upper}");
        self.contains.iter().all(|t| padded.contains(t.as_str()))
            && self.folder.as_deref().is_none_or(|f| selected == Some(f))
    }
}

/// What happens to a command that matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Both sides are closed at once; the command never reaches the server.
    Drop,
    /// The command reaches the server, which runs it; the client gets only the first `n`
    /// bytes of what the server sends next, then both sides are closed.
    DropAfterReply(usize),
    /// Nothing more is forwarded either way; the sockets stay open (a dead NAT entry).
    Stall,
    /// The client gets `<tag> NO [fault] injected`; the server never sees the command.
    No,
    /// The client gets `* BYE [fault] injected` and both sides are closed.
    Bye,
    /// The command reaches the server this long after it came (and what the client sends
    /// after it waits as long): a slow link, which leaves a test time to act mid-sync.
    Delay(std::time::Duration),
}

/// How often the fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Times {
    /// At the first matching command of any connection; a plain forwarder afterwards.
    Once,
    /// At every matching command, until [`FaultProxy::disarm`].
    Always,
}

struct Shared {
    trigger: Trigger,
    fault: Fault,
    times: Times,
    armed: AtomicBool,
    fired: AtomicU32,
}

impl Shared {
    /// Decides whether this command fires the fault (and counts it).
    fn fire(&self, line_after_tag: &str, selected: Option<&str>) -> bool {
        if !self.armed.load(Ordering::SeqCst) || !self.trigger.matches(line_after_tag, selected) {
            return false;
        }
        if self.times == Times::Once && !self.armed.swap(false, Ordering::SeqCst) {
            return false;
        }
        self.fired.fetch_add(1, Ordering::SeqCst);
        true
    }
}

/// The proxy; it stops accepting when dropped (open connections end with their peers).
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("port", &self.port)
            .field("fault", &self.shared.fault)
            .field("trigger", &self.shared.trigger)
            .finish()
    }
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 in front of `127.0.0.1:target`.
    pub fn start(target: u16, trigger: Trigger, fault: Fault, times: Times) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            trigger,
            fault,
            times,
            armed: AtomicBool::new(true),
            fired: AtomicU32::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = proxy_connection(client, target, s);
                });
            }
        });
        Ok(FaultProxy { port, shared, stop })
    }

    /// The port to configure as `remoteport`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many times the fault was injected so far.
    pub fn fired(&self) -> u32 {
        self.shared.fired.load(Ordering::SeqCst)
    }

    /// From now on, forward everything untouched.
    pub fn disarm(&self) {
        self.shared.armed.store(false, Ordering::SeqCst);
    }

    /// Fires again (at the next match, or at every one for [`Times::Always`]).
    pub fn rearm(&self) {
        self.shared.armed.store(true, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the stop flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The state of one connection that both directions share.
struct Conn {
    /// Writes to the client, one whole server unit (or injected response) at a time.
    client: Mutex<TcpStream>,
    client_raw: TcpStream,
    server: TcpStream,
    /// Nothing is forwarded any more, either way.
    stalled: AtomicBool,
    /// Bytes of the server's output still to forward before closing (DropAfterReply).
    reply_budget: Mutex<Option<usize>>,
}

impl Conn {
    fn close(&self) {
        let _ = self.client_raw.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }

    fn to_client(&self, bytes: &[u8]) -> io::Result<()> {
        let mut c = self.client.lock().unwrap_or_else(|p| p.into_inner());
        c.write_all(bytes)
    }
}

fn proxy_connection(client: TcpStream, target: u16, shared: Arc<Shared>) -> io::Result<()> {
    let server = TcpStream::connect(("127.0.0.1", target))?;
    let conn = Arc::new(Conn {
        client: Mutex::new(client.try_clone()?),
        client_raw: client.try_clone()?,
        server: server.try_clone()?,
        stalled: AtomicBool::new(false),
        reply_budget: Mutex::new(None),
    });
    let down = conn.clone();
    let server_reader = server.try_clone()?;
    std::thread::spawn(move || server_to_client(server_reader, &down));
    client_to_server(client, server, &conn, &shared);
    Ok(())
}

/// `(n, synchronizing)` when the line ends with `{n}` (synchronizing) or `{n+}`.
fn literal_len(line: &[u8]) -> Option<(usize, bool)> {
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let digits = &line[open + 1..];
    let (digits, sync) = match digits.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (digits, true),
    };
    Some((std::str::from_utf8(digits).ok()?.parse().ok()?, sync))
}

/// The complete server units at the front of `buf` (a line with the literals it announces),
/// removed from it.
fn complete_units(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut at = 0;
    loop {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at + 2;
        match literal_len(&buf[at..end - 2]) {
            Some((n, _)) if buf.len() >= end + n => at = end + n,
            Some(_) => return None,
            None => return Some(buf.drain(..end).collect()),
        }
    }
}

fn server_to_client(mut server: TcpStream, conn: &Conn) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => {
                // Whatever is left is an incomplete unit: pass it on, then end.
                let _ = conn.to_client(&pending);
                let _ = conn.client_raw.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        if conn.stalled.load(Ordering::SeqCst) {
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        loop {
            let budget = *conn.reply_budget.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(left) = budget {
                // DropAfterReply: forward up to the budget, whole units or not, then close.
                let k = left.min(pending.len());
                let _ = conn.to_client(&pending[..k]);
                pending.drain(..k);
                if k == left {
                    conn.close();
                    return;
                }
                *conn.reply_budget.lock().unwrap_or_else(|p| p.into_inner()) = Some(left - k);
                break;
            }
            let Some(unit) = complete_units(&mut pending) else {
                break;
            };
            if conn.to_client(&unit).is_err() {
                return;
            }
        }
    }
}

/// A command's tag and the rest of its first line.
struct CommandLine {
    tag: String,
    rest: String,
}

fn parse_command(line: &[u8]) -> Option<CommandLine> {
    let text = String::from_utf8_lossy(line);
    let (tag, rest) = text.split_once(' ')?;
    if tag.is_empty() || tag == "*" || tag == "+" {
        return None;
    }
    Some(CommandLine {
        tag: tag.to_string(),
        rest: rest.to_string(),
    })
}

/// The mailbox argument of `SELECT name` / `EXAMINE "name"` (quotes and escapes removed).
fn mailbox_arg(rest: &str) -> String {
    let arg = rest.split_once(' ').map_or("", |(_, a)| a).trim();
    let arg = arg.split(" (").next().unwrap_or(arg);
    match arg.strip_prefix('"').and_then(|a| a.strip_suffix('"')) {
        Some(q) => q.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => arg.to_string(),
    }
}

/// Where the client stream is.
enum Reading {
    /// In a line; `first` when it starts a command.
    Line { first: bool },
    /// Inside a literal with this many bytes to go.
    Literal(usize),
}

/// Injects the fault for the command `tag`; true when the connection is finished.
fn inject(fault: Fault, tag: &str, conn: &Conn) -> bool {
    match fault {
        Fault::Drop => {
            conn.close();
            true
        }
        Fault::DropAfterReply(n) => {
            // The server thread closes once `n` bytes passed (at its first reply for 0, so
            // that the command has surely been run).
            *conn.reply_budget.lock().unwrap_or_else(|p| p.into_inner()) = Some(n);
            false
        }
        Fault::Stall => {
            conn.stalled.store(true, Ordering::SeqCst);
            false
        }
        Fault::No => {
            let _ = conn.to_client(format!("{tag} NO [fault] injected\r\n").as_bytes());
            false
        }
        Fault::Bye => {
            let _ = conn.to_client(b"* BYE [fault] injected\r\n");
            conn.close();
            true
        }
        Fault::Delay(d) => {
            std::thread::sleep(d);
            false
        }
    }
}

fn client_to_server(mut client: TcpStream, mut server: TcpStream, conn: &Conn, shared: &Shared) {
    let mut state = Reading::Line { first: true };
    let mut line = Vec::new();
    let mut selected: Option<String> = None;
    // The current command fired `No`: the server never hears of it.
    let mut swallow = false;
    let mut buf = [0u8; 16384];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = server.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        if conn.stalled.load(Ordering::SeqCst) {
            continue;
        }
        let mut data = &buf[..n];
        while !data.is_empty() {
            match state {
                Reading::Literal(left) => {
                    let k = left.min(data.len());
                    if !swallow && server.write_all(&data[..k]).is_err() {
                        return;
                    }
                    data = &data[k..];
                    state = if k == left {
                        Reading::Line { first: false }
                    } else {
                        Reading::Literal(left - k)
                    };
                }
                Reading::Line { first } => {
                    let Some(pos) = data.iter().position(|&b| b == b'\n') else {
                        line.extend_from_slice(data);
                        break;
                    };
                    line.extend_from_slice(&data[..=pos]);
                    data = &data[pos + 1..];
                    let text = line.strip_suffix(b"\r\n").unwrap_or(&line).to_vec();
                    if first && let Some(cmd) = parse_command(&text) {
                        swallow = false;
                        let verb = cmd
                            .rest
                            .split(' ')
                            .next()
                            .unwrap_or("")
                            .to_ascii_uppercase();
                        if verb == "SELECT" || verb == "EXAMINE" {
                            selected = Some(mailbox_arg(&cmd.rest));
                        }
                        if shared.fire(&cmd.rest, selected.as_deref()) {
                            if inject(shared.fault, &cmd.tag, conn) {
                                return;
                            }
                            match shared.fault {
                                Fault::Stall => {
                                    line.clear();
                                    break;
                                }
                                Fault::No => swallow = true,
                                _ => {}
                            }
                        }
                    }
                    if !swallow && server.write_all(&line).is_err() {
                        return;
                    }
                    line.clear();
                    state = match literal_len(&text) {
                        // After a refused command the client does not send a literal it
                        // had to be invited for; a non-synchronizing one comes anyway.
                        Some((_, true)) if swallow => Reading::Line { first: true },
                        Some((0, _)) => Reading::Line { first: false },
                        Some((n, _)) => Reading::Literal(n),
                        None => Reading::Line { first: true },
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_announcements() {
        assert_eq!(literal_len(b"A1 APPEND INBOX {12}"), Some((12, true)));
        assert_eq!(literal_len(b"A1 APPEND INBOX {12+}"), Some((12, false)));
        assert_eq!(literal_len(b"A1 NOOP"), None);
        assert_eq!(literal_len(b"A1 LOGIN {x}"), None);
    }

    #[test]
    fn selected_mailbox_and_triggers() {
        assert_eq!(mailbox_arg("SELECT \"Beta\""), "Beta");
        assert_eq!(mailbox_arg("EXAMINE INBOX (CONDSTORE)"), "INBOX");
        let t = Trigger::fetch_bodies().in_folder("Beta");
        let fetch = "UID FETCH 4:5 (UID FLAGS INTERNALDATE BODY.PEEK[])";
        assert!(t.matches(fetch, Some("Beta")));
        assert!(!t.matches(fetch, Some("INBOX")));
        assert!(!t.matches("UID FETCH 1:* (UID FLAGS RFC822.SIZE)", Some("Beta")));
        assert!(Trigger::append().matches("APPEND \"Beta\" () {5+}", None));
        assert!(Trigger::expunge().matches("UID EXPUNGE 3", None));
    }

    #[test]
    fn server_units_keep_literals_whole() {
        let mut buf = b"* 1 FETCH (BODY[] {5}\r\nab\r\nc)\r\nA1 OK".to_vec();
        assert_eq!(
            complete_units(&mut buf).as_deref(),
            Some(&b"* 1 FETCH (BODY[] {5}\r\nab\r\nc)\r\n"[..])
        );
        assert_eq!(complete_units(&mut buf), None);
        assert_eq!(buf, b"A1 OK");
    }
}
