//! The sans-I/O IMAP client session: bytes in, bytes and events out.
//!
//! The session owns tag generation, the queue of commands not yet sent, the pending map of
//! commands in flight (at most `pipeline_depth`), and the gating of synchronizing literals
//! and SASL continuations: a command part that must wait for `+` stops the output until the
//! server sends it, and no other command is interleaved meanwhile (RFC 3501 §7.5). Framing
//! is check-then-parse: a response is handed to the parser only once its line and every
//! literal it announces are complete, and an absurd literal size is an error before any
//! allocation.

use std::collections::VecDeque;

use crate::ImapError;
use crate::response::{self, Outcome, RespCode, Response, Untagged};

/// One part of a command.
#[derive(Clone, PartialEq, Eq)]
pub enum Part {
    /// Protocol text (command name, atoms, sequence sets, parentheses), sent as is.
    Raw(Vec<u8>),
    /// Text sent as is but shown as `<redacted>` in the trace (a SASL initial response).
    Sensitive(Vec<u8>),
    /// A string argument: sent quoted when it is plain 7-bit text, else as a literal.
    Str {
        /// The bytes.
        bytes: Vec<u8>,
        /// True for passwords: the trace shows `<redacted>`.
        secret: bool,
    },
    /// A literal whatever its contents (message bodies for APPEND).
    Literal(Vec<u8>),
    /// A literal of this many bytes that the driver writes itself, straight from a file,
    /// when [`Session::stream_pending`] says so (large message bodies for APPEND).
    Stream(u64),
    /// Ends the current line, waits for `+`, then sends these bytes (a SASL response).
    Continuation {
        /// The bytes (already base64).
        bytes: Vec<u8>,
        /// True when the trace must not show them.
        secret: bool,
    },
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Raw(b) => write!(f, "Raw({})", b.escape_ascii()),
            Part::Sensitive(_) => f.write_str("<redacted>"),
            Part::Str { secret: true, .. } | Part::Continuation { secret: true, .. } => {
                f.write_str("<redacted>")
            }
            Part::Str { bytes, .. } => write!(f, "Str({})", bytes.escape_ascii()),
            Part::Literal(b) => write!(f, "Literal({} bytes)", b.len()),
            Part::Stream(n) => write!(f, "Stream({n} bytes)"),
            Part::Continuation { bytes, .. } => write!(f, "Continuation({})", bytes.escape_ascii()),
        }
    }
}

/// A command without its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Command name for errors and traces (`UID FETCH`).
    pub name: String,
    /// Its parts after the tag.
    pub parts: Vec<Part>,
}

impl Command {
    /// A command made of one raw line (no strings needing quoting).
    pub fn raw(text: impl Into<String>) -> Command {
        let text = text.into();
        let name = text
            .split(' ')
            .take(if text.starts_with("UID ") { 2 } else { 1 })
            .collect::<Vec<_>>()
            .join(" ");
        Command {
            name,
            parts: vec![Part::Raw(text.into_bytes())],
        }
    }
}

/// What the session tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The greeting arrived.
    Greeting(Response),
    /// Untagged data.
    Untagged(Untagged),
    /// A literal of a FETCH response larger than [`Session::set_stream_over`] begins: its
    /// bytes follow as [`Event::LiteralData`], then the response that holds it, as
    /// [`Event::Untagged`] with [`crate::response::FetchData::streamed`] set.
    LiteralStart {
        /// Its length.
        len: u64,
    },
    /// The next bytes of the literal announced by [`Event::LiteralStart`].
    LiteralData(Vec<u8>),
    /// A command completed.
    Done {
        /// Its tag.
        tag: String,
        /// Its name.
        command: String,
        /// OK, NO or BAD.
        outcome: Outcome,
        /// Response code.
        code: Option<RespCode>,
        /// Text.
        text: String,
    },
}

/// Settings of a session.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// How many commands may be in flight at once (at least 1).
    pub pipeline_depth: usize,
    /// The largest literal the server may send us.
    pub max_literal: u64,
    /// The longest response line (without literals).
    pub max_line: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            pipeline_depth: 8,
            max_literal: 512 * 1024 * 1024,
            max_line: 1024 * 1024,
        }
    }
}

/// What is left to send of a command.
#[derive(Debug)]
enum Step {
    Part(Part),
    /// Literal or SASL bytes whose header already went out.
    Data {
        bytes: Vec<u8>,
        secret: bool,
    },
    /// A streamed literal whose header already went out.
    StreamData(u64),
}

/// A streamed literal the driver is to write, and what follows it.
#[derive(Debug)]
struct Streaming {
    len: u64,
    tag: String,
    rest: VecDeque<Step>,
}

/// A FETCH response whose large literal goes out as [`Event::LiteralData`].
#[derive(Debug)]
struct Incoming {
    /// The response up to the literal, its announcement rewritten as `{0}`: parsed with
    /// the rest once the literal is through.
    prefix: Vec<u8>,
    /// The literal's length.
    len: u64,
    /// Literal bytes not yet received.
    left: u64,
}

/// A command being sent: the remaining steps wait for a `+`.
#[derive(Debug)]
struct InProgress {
    tag: String,
    rest: VecDeque<Step>,
}

/// Input buffer capacity kept between responses.
const INPUT_KEEP: usize = 256 * 1024;

/// The sans-I/O client session.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    input: Vec<u8>,
    /// Bytes at the front of `input` already returned as responses.
    consumed: usize,
    output: Vec<u8>,
    next_tag: u64,
    queue: VecDeque<(String, Command)>,
    in_flight: Vec<(String, String)>,
    waiting: Option<InProgress>,
    greeted: bool,
    trace_line: Vec<u8>,
    literal_plus: bool,
    literal_minus: bool,
    /// The tag of an IDLE in flight (RFC 2177): nothing else is sent until it completes.
    idle_tag: Option<String>,
    /// The server accepted the IDLE (`+`) and has not been told `DONE` yet.
    idling: bool,
    /// A streamed literal due from the driver: nothing else is sent meanwhile.
    streaming: Option<Streaming>,
    /// FETCH literals longer than this are handed out in pieces ([`Event::LiteralData`]).
    stream_over: Option<u64>,
    /// The FETCH response whose literal is being handed out.
    incoming: Option<Incoming>,
}

/// Whether a string can travel as a quoted string (RFC 3501 §9 `quoted`).
fn quotable(b: &[u8]) -> bool {
    b.len() < 1024
        && b.iter()
            .all(|&c| c.is_ascii() && c != 0 && c != b'\r' && c != b'\n')
}

fn push_quoted(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b'"');
    for &c in b {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
}

impl Session {
    /// A new session that waits for the greeting.
    pub fn new(config: SessionConfig) -> Session {
        Session {
            config: SessionConfig {
                pipeline_depth: config.pipeline_depth.max(1),
                ..config
            },
            input: Vec::new(),
            consumed: 0,
            output: Vec::new(),
            next_tag: 1,
            queue: VecDeque::new(),
            in_flight: Vec::new(),
            waiting: None,
            greeted: false,
            trace_line: Vec::new(),
            literal_plus: false,
            literal_minus: false,
            idle_tag: None,
            idling: false,
            streaming: None,
            stream_over: None,
            incoming: None,
        }
    }

    /// From now on, a literal longer than `over` bytes in an untagged FETCH response is not
    /// buffered: it comes out in pieces as they arrive ([`Event::LiteralStart`],
    /// [`Event::LiteralData`]), so that a message body can go to a file with memory
    /// bounded by a read. `None` (the default) buffers every response whole.
    pub fn set_stream_over(&mut self, over: Option<u64>) {
        self.stream_over = over;
    }

    /// The length of a [`Part::Stream`] literal the driver must write now (after the
    /// output taken so far), then report with [`Session::stream_sent`].
    pub fn stream_pending(&self) -> Option<u64> {
        self.streaming.as_ref().map(|s| s.len)
    }

    /// The driver wrote the streamed literal: the rest of its command follows.
    pub fn stream_sent(&mut self) {
        if let Some(st) = self.streaming.take() {
            let note = format!("<{} bytes streamed>", st.len);
            self.trace_line.extend_from_slice(note.as_bytes());
            self.emit_parts(st.tag, st.rest);
            self.pump();
        }
    }

    /// Starts IDLE (RFC 2177) once the commands before it are done; returns its tag. The
    /// server's `+` puts the session in the idling state ([`Session::is_idling`]); untagged
    /// data keeps arriving as events; [`Session::done`] ends it. Nothing else is sent
    /// until the IDLE completes.
    pub fn idle(&mut self) -> String {
        let tag = self.enqueue(Command::raw("IDLE"));
        self.idle_tag = Some(tag.clone());
        tag
    }

    /// True between the server's `+` for IDLE and [`Session::done`].
    pub fn is_idling(&self) -> bool {
        self.idling
    }

    /// Ends IDLE: sends `DONE`. The IDLE's tagged completion follows as an event.
    pub fn done(&mut self) {
        if self.idling {
            self.idling = false;
            self.output_traced(b"DONE\r\n", None);
        }
    }

    /// Tells the session which non-synchronizing literals the server offers
    /// (RFC 7888: LITERAL+ for any size, LITERAL- up to 4096 bytes).
    pub fn set_literal_capabilities(&mut self, plus: bool, minus: bool) {
        self.literal_plus = plus;
        self.literal_minus = minus;
    }

    /// Queues a command; returns its tag. It is sent when the pipeline has room.
    pub fn enqueue(&mut self, command: Command) -> String {
        let tag = format!("A{}", self.next_tag);
        self.next_tag += 1;
        self.queue.push_back((tag.clone(), command));
        self.pump();
        tag
    }

    /// Commands queued or in flight.
    pub fn pending(&self) -> usize {
        self.queue.len() + self.in_flight.len()
    }

    /// Bytes already received but not yet part of a complete response.
    pub fn buffered_input(&self) -> usize {
        self.input.len() - self.consumed
    }

    /// Bytes to write to the server (the caller writes all of them).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Feeds bytes received from the server.
    pub fn feed(&mut self, bytes: &[u8]) {
        // Consumed responses are dropped from the front in one move per read, not one per
        // response: a read of a thousand short FETCH lines would otherwise shift the rest
        // of the buffer a thousand times.
        if self.consumed > 0 {
            self.input.drain(..self.consumed);
            self.consumed = 0;
        }
        // A large literal grew the buffer: give the memory back once it is consumed, so
        // that the peak of one big message does not stay for the rest of the run.
        if self.input.is_empty() && self.input.capacity() > INPUT_KEEP {
            self.input = Vec::with_capacity(INPUT_KEEP.min(bytes.len().max(4096)));
        }
        self.input.extend_from_slice(bytes);
    }

    /// The next event from the input received so far, `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, ImapError> {
        loop {
            if self.incoming.is_some() {
                return self.next_incoming();
            }
            let start = self.consumed;
            let stream_over = if self.greeted { self.stream_over } else { None };
            let len = match frame_streaming(&self.input[start..], &self.config, stream_over)? {
                None => return Ok(None),
                Some(Framed::Whole(len)) => len,
                Some(Framed::Literal { brace, end, len }) => {
                    let mut prefix = self.input[start..start + brace].to_vec();
                    prefix.extend_from_slice(b"{0}\r\n");
                    self.consumed = start + end;
                    trace_in(&self.input[start..start + end]);
                    self.incoming = Some(Incoming {
                        prefix,
                        len,
                        left: len,
                    });
                    return Ok(Some(Event::LiteralStart { len }));
                }
            };
            self.consumed += len;
            // Parsed in place: a response holding a large literal is not copied first.
            let bytes = &self.input[start..start + len];
            trace_in(bytes);
            if !self.greeted {
                self.greeted = true;
                let g = response::parse_greeting(bytes)?;
                self.pump();
                return Ok(Some(Event::Greeting(g)));
            }
            let parsed = response::parse_response(bytes)?;
            match parsed {
                Response::Continue(_) if self.waiting.is_none() && self.idle_tag.is_some() => {
                    // The server accepted IDLE.
                    self.idling = true;
                    continue;
                }
                Response::Continue(_) => {
                    let Some(w) = self.waiting.as_mut() else {
                        return Err(ImapError::Protocol(
                            "continuation request while no command waits for one".into(),
                        ));
                    };
                    let rest = std::mem::take(&mut w.rest);
                    let tag = w.tag.clone();
                    self.waiting = None;
                    self.emit_parts(tag, rest);
                    self.pump();
                    // A continuation is internal to the session; read on.
                    continue;
                }
                Response::Tagged {
                    tag,
                    outcome,
                    code,
                    text,
                } => {
                    let Some(pos) = self.in_flight.iter().position(|(t, _)| *t == tag) else {
                        return Err(ImapError::Protocol(format!(
                            "completion for unknown tag {tag}"
                        )));
                    };
                    let (_, command) = self.in_flight.remove(pos);
                    // A NO/BAD instead of `+` abandons the rest of that command.
                    if self.waiting.as_ref().is_some_and(|w| w.tag == tag) {
                        self.waiting = None;
                    }
                    if self.streaming.as_ref().is_some_and(|w| w.tag == tag) {
                        self.streaming = None;
                    }
                    if self.idle_tag.as_ref() == Some(&tag) {
                        self.idle_tag = None;
                        self.idling = false;
                    }
                    self.pump();
                    return Ok(Some(Event::Done {
                        tag,
                        command,
                        outcome,
                        code,
                        text,
                    }));
                }
                Response::Untagged(u) => return Ok(Some(Event::Untagged(u))),
                Response::Greeting { .. } => {
                    return Err(ImapError::Protocol("second greeting".into()));
                }
            }
        }
    }

    /// The next piece of a literal being handed out, or the response that held it.
    fn next_incoming(&mut self) -> Result<Option<Event>, ImapError> {
        let Some(inc) = self.incoming.as_mut() else {
            return Ok(None);
        };
        let available = self.input.len() - self.consumed;
        if inc.left > 0 {
            if available == 0 {
                return Ok(None);
            }
            let n = usize::try_from(inc.left).map_or(available, |left| left.min(available));
            let piece = self.input[self.consumed..self.consumed + n].to_vec();
            self.consumed += n;
            inc.left -= n as u64;
            return Ok(Some(Event::LiteralData(piece)));
        }
        // The rest of the response (usually `)`), buffered whole.
        let Some(len) = frame(&self.input[self.consumed..], &self.config)? else {
            return Ok(None);
        };
        let rest = &self.input[self.consumed..self.consumed + len];
        trace_in(rest);
        let mut bytes = std::mem::take(&mut inc.prefix);
        bytes.extend_from_slice(rest);
        let streamed = inc.len;
        self.consumed += len;
        self.incoming = None;
        match response::parse_response(&bytes)? {
            Response::Untagged(Untagged::Fetch(mut f)) => {
                f.body = None;
                f.streamed = Some(streamed);
                Ok(Some(Event::Untagged(Untagged::Fetch(f))))
            }
            _ => Err(ImapError::Protocol(
                "a streamed literal was not part of a FETCH response".into(),
            )),
        }
    }

    /// Sends queued commands while the pipeline has room and nothing waits for `+`.
    fn pump(&mut self) {
        while self.greeted
            && self.waiting.is_none()
            && self.streaming.is_none()
            && self.in_flight.len() < self.config.pipeline_depth
        {
            // Nothing may follow IDLE until it completes (RFC 2177 §3).
            if self
                .idle_tag
                .as_ref()
                .is_some_and(|t| self.in_flight.iter().any(|(f, _)| f == t))
            {
                return;
            }
            let Some((tag, command)) = self.queue.pop_front() else {
                return;
            };
            self.in_flight.push((tag.clone(), command.name.clone()));
            let mut head = tag.clone().into_bytes();
            head.push(b' ');
            self.output_traced(&head, None);
            self.emit_parts(tag, command.parts.into_iter().map(Step::Part).collect());
        }
    }

    /// Writes parts until one needs a `+`; the rest are parked in `waiting`.
    fn emit_parts(&mut self, tag: String, mut steps: VecDeque<Step>) {
        while let Some(step) = steps.pop_front() {
            let (bytes, secret, needs_plus) = match step {
                Step::Data { bytes, secret } => {
                    self.output_data(&bytes, secret);
                    continue;
                }
                Step::StreamData(len) => {
                    self.streaming = Some(Streaming {
                        len,
                        tag,
                        rest: steps,
                    });
                    return;
                }
                Step::Part(Part::Stream(len)) => {
                    if self.literal_header(len) {
                        steps.push_front(Step::StreamData(len));
                    } else {
                        steps.push_front(Step::StreamData(len));
                        self.waiting = Some(InProgress { tag, rest: steps });
                        return;
                    }
                    continue;
                }
                Step::Part(Part::Raw(b)) => {
                    self.output_traced(&b, None);
                    continue;
                }
                Step::Part(Part::Sensitive(b)) => {
                    self.output_traced(&b, Some(b"<redacted>"));
                    continue;
                }
                Step::Part(Part::Str { bytes, secret }) if quotable(&bytes) => {
                    let mut q = Vec::new();
                    push_quoted(&mut q, &bytes);
                    self.output_traced(&q, secret.then_some(b"\"<redacted>\"".as_slice()));
                    continue;
                }
                Step::Part(Part::Str { bytes, secret }) => {
                    let sync = !self.literal_header(bytes.len() as u64);
                    (bytes, secret, sync)
                }
                Step::Part(Part::Literal(bytes)) => {
                    let sync = !self.literal_header(bytes.len() as u64);
                    (bytes, false, sync)
                }
                Step::Part(Part::Continuation { bytes, secret }) => {
                    self.output_traced(b"\r\n", None);
                    (bytes, secret, true)
                }
            };
            if needs_plus {
                steps.push_front(Step::Data { bytes, secret });
                self.waiting = Some(InProgress { tag, rest: steps });
                return;
            }
            self.output_data(&bytes, secret);
        }
        self.output_traced(b"\r\n", None);
    }

    /// Literal or SASL data: redacted when secret, summarised when long.
    fn output_data(&mut self, bytes: &[u8], secret: bool) {
        if secret {
            self.output_traced(bytes, Some(b"<redacted>"));
        } else if bytes.len() > 200 {
            let note = format!("<{} bytes>", bytes.len());
            self.output_traced(bytes, Some(note.as_bytes()));
        } else {
            self.output_traced(bytes, None);
        }
    }

    /// Writes `{n}` / `{n+}` and the line end; true when the data may follow at once.
    fn literal_header(&mut self, len: u64) -> bool {
        let non_sync = self.literal_plus || (self.literal_minus && len <= 4096);
        let head = if non_sync {
            format!("{{{len}+}}\r\n")
        } else {
            format!("{{{len}}}\r\n")
        };
        self.output_traced(head.as_bytes(), None);
        non_sync
    }

    /// Appends to the output; the trace gets whole lines, with `redacted` shown in place
    /// of secret bytes.
    fn output_traced(&mut self, bytes: &[u8], redacted: Option<&[u8]>) {
        self.trace_line.extend_from_slice(redacted.unwrap_or(bytes));
        if bytes.ends_with(b"\n") {
            tracing::trace!(target: "imap", "C: {}", self.trace_line.escape_ascii());
            self.trace_line.clear();
        }
        self.output.extend_from_slice(bytes);
    }
}

/// Finds the length of the first complete response in `buf`, `None` if incomplete.
pub(crate) fn frame(buf: &[u8], config: &SessionConfig) -> Result<Option<usize>, ImapError> {
    Ok(frame_streaming(buf, config, None)?.map(|f| match f {
        Framed::Whole(len) | Framed::Literal { end: len, .. } => len,
    }))
}

/// How the first response in a buffer ends.
#[derive(Debug, PartialEq, Eq)]
enum Framed {
    /// The whole response is this many bytes.
    Whole(usize),
    /// A FETCH response announces a literal of `len` bytes above the streaming threshold:
    /// its `{` is at `brace`, and its bytes start at `end`.
    Literal { brace: usize, end: usize, len: u64 },
}

/// True for the first line of an untagged FETCH response (`* 12 FETCH (`).
fn is_fetch_line(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"* ") else {
        return false;
    };
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    digits > 0
        && rest[digits..]
            .get(..7)
            .is_some_and(|w| w.eq_ignore_ascii_case(b" FETCH "))
}

/// [`frame`], stopping at the first FETCH literal longer than `stream_over`.
fn frame_streaming(
    buf: &[u8],
    config: &SessionConfig,
    stream_over: Option<u64>,
) -> Result<Option<Framed>, ImapError> {
    let mut pos = 0usize;
    let mut line_bytes = 0usize;
    loop {
        let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) else {
            if line_bytes + (buf.len() - pos) > config.max_line {
                return Err(ImapError::Protocol(format!(
                    "response line longer than {} bytes",
                    config.max_line
                )));
            }
            return Ok(None);
        };
        let line_end = pos + nl + 1;
        line_bytes += nl + 1;
        if line_bytes > config.max_line {
            return Err(ImapError::Protocol(format!(
                "response line longer than {} bytes",
                config.max_line
            )));
        }
        let line = &buf[pos..pos + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match trailing_literal(line)? {
            Some(n) => {
                if n > config.max_literal {
                    return Err(ImapError::LiteralTooLarge(n));
                }
                if stream_over.is_some_and(|over| n > over) && is_fetch_line(buf) {
                    let brace = pos + memchr::memrchr(b'{', line).unwrap_or(0);
                    return Ok(Some(Framed::Literal {
                        brace,
                        end: line_end,
                        len: n,
                    }));
                }
                // n fits in usize: it is below max_literal, itself a sane size.
                let need = line_end.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
                if buf.len() < need {
                    return Ok(None);
                }
                pos = need;
            }
            None => return Ok(Some(Framed::Whole(line_end))),
        }
    }
}

/// The size of a literal announced at the end of a line (`{123}`), if any.
fn trailing_literal(line: &[u8]) -> Result<Option<u64>, ImapError> {
    let Some(body) = line.strip_suffix(b"}") else {
        return Ok(None);
    };
    let Some(open) = memchr::memrchr(b'{', body) else {
        return Ok(None);
    };
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Ok(None);
    }
    if digits.len() > 19 {
        return Err(ImapError::LiteralTooLarge(u64::MAX));
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse::<u64>().ok())
        .map(Some)
        .ok_or(ImapError::LiteralTooLarge(u64::MAX))
}

fn trace_in(bytes: &[u8]) {
    let line_end = memchr::memchr(b'\n', bytes).unwrap_or(bytes.len());
    if line_end + 1 < bytes.len() {
        tracing::trace!(target: "imap", "S: {} <+{} bytes>", bytes[..line_end].escape_ascii(), bytes.len() - line_end - 1);
    } else {
        tracing::trace!(target: "imap", "S: {}", bytes.escape_ascii());
    }
}

#[cfg(test)]
mod idle_tests {
    use super::*;

    fn drain(s: &mut Session) -> Vec<Event> {
        let mut v = Vec::new();
        while let Some(e) = s.next_event().unwrap() {
            v.push(e);
        }
        v
    }

    #[test]
    fn idle_waits_for_plus_holds_other_commands_and_ends_with_done() {
        let mut s = Session::new(SessionConfig::default());
        s.feed(b"* OK ready\r\n");
        drain(&mut s);
        let tag = s.idle();
        assert_eq!(s.take_output(), format!("{tag} IDLE\r\n").into_bytes());
        let noop = s.enqueue(Command::raw("NOOP"));
        assert!(s.take_output().is_empty(), "a command was sent during IDLE");
        s.feed(b"+ idling\r\n* 4 EXISTS\r\n");
        let events = drain(&mut s);
        assert!(s.is_idling());
        assert_eq!(events, vec![Event::Untagged(Untagged::Exists(4))]);
        s.done();
        assert_eq!(s.take_output(), b"DONE\r\n");
        s.feed(format!("{tag} OK done\r\n").as_bytes());
        let events = drain(&mut s);
        assert!(matches!(&events[0], Event::Done { tag: t, .. } if *t == tag));
        assert_eq!(s.take_output(), format!("{noop} NOOP\r\n").into_bytes());
        assert!(!s.is_idling());
    }

    #[test]
    fn idle_refused_returns_to_normal() {
        let mut s = Session::new(SessionConfig::default());
        s.feed(b"* OK ready\r\n");
        drain(&mut s);
        let tag = s.idle();
        s.take_output();
        s.feed(format!("{tag} BAD no idle here\r\n").as_bytes());
        drain(&mut s);
        assert!(!s.is_idling());
        s.enqueue(Command::raw("NOOP"));
        assert!(!s.take_output().is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut Session) -> Vec<Event> {
        let mut v = Vec::new();
        while let Some(e) = s.next_event().unwrap() {
            v.push(e);
        }
        v
    }

    const SERVER: &[u8] = b"* OK ready\r\n* 1 FETCH (UID 7 FLAGS (\\Seen) BODY[] {12}\r\nline1\r\n{3}\r\n)\r\n* 2 FETCH (UID 8 X-GM-MSGID 1 FLAGS ())\r\nA1 OK done\r\nA2 NO [TRYCREATE] nope\r\n";

    #[test]
    fn transcript_split_at_every_offset_gives_same_events() {
        let mut whole = Session::new(SessionConfig::default());
        whole.enqueue(Command::raw("NOOP"));
        whole.enqueue(Command::raw("SELECT x"));
        whole.feed(SERVER);
        let expected = drain(&mut whole);
        assert_eq!(expected.len(), 5, "{expected:?}");
        let Event::Untagged(Untagged::Fetch(f)) = &expected[1] else {
            panic!()
        };
        assert_eq!(f.body.as_deref(), Some(&b"line1\r\n{3}\r\n"[..]));
        for cut in 0..=SERVER.len() {
            let mut s = Session::new(SessionConfig::default());
            s.enqueue(Command::raw("NOOP"));
            s.enqueue(Command::raw("SELECT x"));
            let mut got = Vec::new();
            s.feed(&SERVER[..cut]);
            got.extend(drain(&mut s));
            s.feed(&SERVER[cut..]);
            got.extend(drain(&mut s));
            // Tags complete commands we enqueued; compare after the first run for shape.
            assert_eq!(got.len(), expected.len(), "cut at {cut}");
            assert_eq!(got, expected, "cut at {cut}");
            assert!(
                matches!(&got[4], Event::Done { tag, outcome: Outcome::No, command, .. } if tag == "A2" && command == "SELECT"),
                "cut at {cut}: {:?}",
                got[4]
            );
        }
    }

    /// A transcript with a large FETCH literal, a small one, and a literal-bearing
    /// non-FETCH response (never streamed).
    const BIG: &[u8] = b"* OK ready\r\n* 1 FETCH (UID 7 FLAGS (\\Seen) BODY[] {21}\r\n0123456789\r\n{3}\r\nabcd INTERNALDATE \"01-Jan-2020 00:00:00 +0000\")\r\n* 2 FETCH (UID 8 BODY[] {4}\r\nwxyz)\r\n* LIST () \"/\" {22}\r\nfolder-with-a-long-nam\r\nA1 OK done\r\n";

    /// Events of a session fed `BIG` in two pieces cut at `cut`, with streamed pieces
    /// glued together so that events compare whatever the cut.
    fn streamed_events(cut: usize) -> Vec<Event> {
        let mut s = Session::new(SessionConfig::default());
        s.set_stream_over(Some(10));
        s.enqueue(Command::raw("UID FETCH 7:8 BODY.PEEK[]"));
        let mut got: Vec<Event> = Vec::new();
        for piece in [&BIG[..cut], &BIG[cut..]] {
            s.feed(piece);
            while let Some(e) = s.next_event().unwrap_or_else(|e| panic!("cut {cut}: {e}")) {
                match (got.last_mut(), e) {
                    (Some(Event::LiteralData(have)), Event::LiteralData(more)) => {
                        have.extend_from_slice(&more)
                    }
                    (_, e) => got.push(e),
                }
            }
        }
        got
    }

    #[test]
    fn large_fetch_literals_come_out_in_pieces_wherever_the_input_is_cut() {
        let expected = streamed_events(BIG.len());
        assert_eq!(expected.len(), 7, "{expected:?}");
        assert_eq!(expected[1], Event::LiteralStart { len: 21 });
        assert_eq!(
            expected[2],
            Event::LiteralData(b"0123456789\r\n{3}\r\nabcd".to_vec())
        );
        let Event::Untagged(Untagged::Fetch(f)) = &expected[3] else {
            panic!("{expected:?}")
        };
        assert_eq!(
            (f.uid, f.body.as_ref(), f.streamed),
            (Some(7), None, Some(21))
        );
        assert_eq!(f.internal_date, Some(1_577_836_800));
        assert_eq!(f.flags.as_deref(), Some(&["\\Seen".to_string()][..]));
        let Event::Untagged(Untagged::Fetch(small)) = &expected[4] else {
            panic!("{expected:?}")
        };
        assert_eq!(
            (small.body.as_deref(), small.streamed),
            (Some(&b"wxyz"[..]), None)
        );
        assert!(
            matches!(&expected[5], Event::Untagged(Untagged::List { .. })),
            "{expected:?}"
        );
        for cut in 0..=BIG.len() {
            assert_eq!(streamed_events(cut), expected, "cut at {cut}");
        }
        // Without a threshold nothing is streamed.
        let mut s = Session::new(SessionConfig::default());
        s.enqueue(Command::raw("UID FETCH 7:8 BODY.PEEK[]"));
        s.feed(BIG);
        let plain = drain(&mut s);
        assert!(
            matches!(&plain[1], Event::Untagged(Untagged::Fetch(f)) if f.body.as_ref().map(Vec::len) == Some(21)),
            "{plain:?}"
        );
    }

    #[test]
    fn a_streamed_literal_in_a_broken_response_is_an_error() {
        let mut s = Session::new(SessionConfig::default());
        s.set_stream_over(Some(2));
        s.enqueue(Command::raw("UID FETCH 1 BODY.PEEK[]"));
        s.feed(b"* OK hi\r\n* 1 FETCH (UID 1 BODY[] {4}\r\nabcd UID)\r\n");
        assert!(matches!(s.next_event(), Ok(Some(Event::Greeting(_)))));
        assert_eq!(
            s.next_event().unwrap(),
            Some(Event::LiteralStart { len: 4 })
        );
        assert_eq!(
            s.next_event().unwrap(),
            Some(Event::LiteralData(b"abcd".to_vec()))
        );
        assert!(s.next_event().is_err());
    }

    #[test]
    fn pipeline_depth_limits_commands_in_flight() {
        let mut s = Session::new(SessionConfig {
            pipeline_depth: 2,
            ..SessionConfig::default()
        });
        for i in 0..4 {
            s.enqueue(Command::raw(format!(
                "UID STORE {} +FLAGS.SILENT (\\Seen)",
                i + 1
            )));
        }
        // Nothing before the greeting.
        assert!(s.take_output().is_empty());
        s.feed(b"* OK hi\r\n");
        drain(&mut s);
        assert_eq!(
            s.take_output(),
            b"A1 UID STORE 1 +FLAGS.SILENT (\\Seen)\r\nA2 UID STORE 2 +FLAGS.SILENT (\\Seen)\r\n"
        );
        s.feed(b"A2 OK\r\n");
        let ev = drain(&mut s);
        assert!(
            matches!(&ev[0], Event::Done { tag, command, .. } if tag == "A2" && command == "UID STORE")
        );
        assert_eq!(
            s.take_output(),
            b"A3 UID STORE 3 +FLAGS.SILENT (\\Seen)\r\n"
        );
        assert_eq!(s.pending(), 3);
    }

    #[test]
    fn synchronizing_literal_waits_for_continuation() {
        let mut s = Session::new(SessionConfig::default());
        s.feed(b"* OK hi\r\n");
        drain(&mut s);
        s.enqueue(Command {
            name: "APPEND".into(),
            parts: vec![
                Part::Raw(b"APPEND ".to_vec()),
                Part::Str {
                    bytes: b"a b".to_vec(),
                    secret: false,
                },
                Part::Raw(b" (\\Seen) ".to_vec()),
                Part::Literal(b"hello".to_vec()),
            ],
        });
        s.enqueue(Command::raw("NOOP"));
        assert_eq!(s.take_output(), b"A1 APPEND \"a b\" (\\Seen) {5}\r\n");
        s.feed(b"+ go\r\n");
        assert_eq!(drain(&mut s), vec![]);
        assert_eq!(s.take_output(), b"hello\r\nA2 NOOP\r\n");

        let mut s = Session::new(SessionConfig::default());
        s.set_literal_capabilities(true, false);
        s.feed(b"* OK hi\r\n");
        drain(&mut s);
        s.enqueue(Command {
            name: "LOGIN".into(),
            parts: vec![
                Part::Raw(b"LOGIN u ".to_vec()),
                Part::Str {
                    bytes: "pä\"ss".as_bytes().to_vec(),
                    secret: true,
                },
            ],
        });
        assert_eq!(s.take_output(), "A1 LOGIN u {6+}\r\npä\"ss\r\n".as_bytes());
    }

    #[test]
    fn no_instead_of_continuation_abandons_the_command() {
        let mut s = Session::new(SessionConfig::default());
        s.feed(b"* OK hi\r\n");
        drain(&mut s);
        s.enqueue(Command {
            name: "APPEND".into(),
            parts: vec![
                Part::Raw(b"APPEND x ".to_vec()),
                Part::Literal(b"hello".to_vec()),
            ],
        });
        s.enqueue(Command::raw("NOOP"));
        s.take_output();
        s.feed(b"A1 NO too big\r\n");
        let ev = drain(&mut s);
        assert!(matches!(
            &ev[0],
            Event::Done {
                outcome: Outcome::No,
                ..
            }
        ));
        assert_eq!(s.take_output(), b"A2 NOOP\r\n");
    }

    #[test]
    fn sasl_continuation() {
        let mut s = Session::new(SessionConfig::default());
        s.feed(b"* OK hi\r\n");
        drain(&mut s);
        s.enqueue(Command {
            name: "AUTHENTICATE".into(),
            parts: vec![
                Part::Raw(b"AUTHENTICATE PLAIN".to_vec()),
                Part::Continuation {
                    bytes: b"AGEAYg==".to_vec(),
                    secret: true,
                },
            ],
        });
        assert_eq!(s.take_output(), b"A1 AUTHENTICATE PLAIN\r\n");
        s.feed(b"+ \r\n");
        drain(&mut s);
        assert_eq!(s.take_output(), b"AGEAYg==\r\n");
    }

    #[test]
    fn absurd_literal_and_protocol_errors() {
        let cfg = SessionConfig {
            max_literal: 1000,
            ..SessionConfig::default()
        };
        let mut s = Session::new(cfg);
        s.feed(b"* OK hi\r\n* 1 FETCH (BODY[] {99999999999}\r\n");
        assert!(matches!(s.next_event(), Ok(Some(Event::Greeting(_)))));
        assert!(matches!(
            s.next_event(),
            Err(ImapError::LiteralTooLarge(99999999999))
        ));
        let mut s = Session::new(cfg);
        s.feed(b"* OK hi\r\n* 1 FETCH (BODY[] {123456789012345678901234567890}\r\n");
        s.next_event().unwrap();
        assert!(s.next_event().is_err());
        let mut s = Session::new(cfg);
        s.feed(b"* OK hi\r\nA9 OK who?\r\n");
        s.next_event().unwrap();
        assert!(matches!(s.next_event(), Err(ImapError::Protocol(_))));
        let mut s = Session::new(cfg);
        s.feed(b"* OK hi\r\n+ unexpected\r\n");
        s.next_event().unwrap();
        assert!(s.next_event().is_err());
        let mut s = Session::new(SessionConfig {
            max_line: 10,
            ..cfg
        });
        s.feed(b"* OK hi\r\n* OK a very long line without end");
        s.next_event().unwrap();
        assert!(s.next_event().is_err());
    }
}
