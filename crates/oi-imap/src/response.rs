//! Server responses: our own small owned model, filled by imap-codec where it accepts the
//! response and by a tolerant parser where it does not.
//!
//! imap-codec is strict: it rejects a whole FETCH response for one item it does not know
//! (Gmail's `X-GM-LABELS`, Dovecot's `SAVEDATE`, `EMAILID`…) and any untagged response
//! keyword outside its grammar. Losing a FETCH would lose a message, so FETCH falls back to
//! [`tolerant`], which reads the generic IMAP value grammar and picks the items we use.

use imap_codec::decode::Decoder;
use imap_codec::imap_types::core::NString;
use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::flag::{FlagFetch, FlagNameAttribute};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::{
    Code, Data, Greeting, GreetingKind, Response as CResponse, Status, StatusBody, StatusKind,
};
use imap_codec::imap_types::status::StatusDataItem;
use imap_codec::{GreetingCodec, ResponseCodec};

use crate::ImapError;

mod fast;

/// Outcome of a command or kind of an untagged status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// OK.
    Ok,
    /// NO: the operation failed.
    No,
    /// BAD: the command was malformed or not allowed now.
    Bad,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Ok => "OK",
            Outcome::No => "NO",
            Outcome::Bad => "BAD",
        })
    }
}

/// The response codes we act on (RFC 3501 §7.1, RFC 4315 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespCode {
    /// `[UIDVALIDITY n]`.
    UidValidity(u32),
    /// `[UIDNEXT n]`.
    UidNext(u32),
    /// `[APPENDUID validity uid]`.
    AppendUid {
        /// Destination UIDVALIDITY.
        uid_validity: u32,
        /// The new message's UID.
        uid: u32,
    },
    /// `[CAPABILITY …]`.
    Capability(Vec<String>),
    /// `[READ-ONLY]`.
    ReadOnly,
    /// `[APPENDUID validity uid-set]` of a MULTIAPPEND (RFC 3502, RFC 4315 §3): the new
    /// UIDs in the order of the messages, as ranges (never expanded here).
    AppendUidSet {
        /// Destination UIDVALIDITY.
        uid_validity: u32,
        /// The new messages' UIDs, as ranges `(first, last)` in order.
        uids: Vec<(u32, u32)>,
    },
    /// `[HIGHESTMODSEQ n]` (RFC 7162 §3.1.2.1).
    HighestModSeq(u64),
    /// `[NOMODSEQ]`: the mailbox keeps no mod-sequences (RFC 7162 §3.1.2.2).
    NoModSeq,
    /// `[NOTIFICATIONOVERFLOW]`: the server stopped sending NOTIFY events (RFC 5465 §5.8).
    NotificationOverflow,
    /// Any other code.
    Other,
}

/// What a FETCH response told about one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchData {
    /// Sequence number.
    pub seq: u32,
    /// UID.
    pub uid: Option<u32>,
    /// FLAGS, as IMAP names (`\Seen`, `$Label`), without `\Recent`.
    pub flags: Option<Vec<String>>,
    /// INTERNALDATE, seconds since the epoch.
    pub internal_date: Option<i64>,
    /// RFC822.SIZE.
    pub size: Option<u32>,
    /// BODY[] (or RFC822) contents.
    pub body: Option<Vec<u8>>,
    /// A header section (`BODY[HEADER.FIELDS (...)]`), as asked for by the identity
    /// fetch of UIDVALIDITY recovery.
    pub header: Option<Vec<u8>>,
    /// The body was handed out in pieces by the session ([`crate::session::Event::LiteralData`])
    /// instead of being kept in `body`: its length.
    pub streamed: Option<u64>,
}

/// An untagged response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untagged {
    /// `* OK/NO/BAD [code] text`.
    Status {
        /// OK, NO or BAD.
        outcome: Outcome,
        /// The response code.
        code: Option<RespCode>,
        /// The human-readable text.
        text: String,
    },
    /// `* BYE text`.
    Bye(String),
    /// `* CAPABILITY …`.
    Capability(Vec<String>),
    /// `* LIST (attrs) "delim" name`.
    List {
        /// Name attributes such as `\Noselect`.
        attributes: Vec<String>,
        /// Hierarchy delimiter, `None` for a flat namespace.
        delimiter: Option<char>,
        /// The mailbox name as the server sent it.
        name: String,
    },
    /// `* ENABLED …` (RFC 5161): the extensions ENABLE turned on.
    Enabled(Vec<String>),
    /// `* n EXISTS`.
    Exists(u32),
    /// `* n EXPUNGE`.
    Expunge(u32),
    /// `* SEARCH …`.
    Search(Vec<u32>),
    /// `* VANISHED [(EARLIER)] uid-set` (RFC 7162 §3.2.10): UIDs expunged, as inclusive
    /// ranges (never expanded: a hostile `1:4294967295` must not allocate).
    Vanished {
        /// Reported for the past (a `VANISHED` FETCH modifier or SELECT QRESYNC) rather
        /// than just now.
        earlier: bool,
        /// The UIDs, as ranges `(low, high)`.
        uids: Vec<(u32, u32)>,
    },
    /// `* n FETCH (…)`.
    Fetch(FetchData),
    /// `* STATUS mailbox (…)`: the answer to STATUS or to LIST-STATUS (RFC 5819), and under
    /// NOTIFY (RFC 5465 §5.4) how the server reports a change in a mailbox that is not
    /// selected.
    MailboxStatus {
        /// The mailbox's name, as LIST gives it.
        name: String,
        /// The items we act on, where sent.
        items: StatusItems,
    },
    /// Anything else that we do not need (FLAGS, RECENT, ENABLED, ID…).
    Other,
}

/// The items of a STATUS response that we act on (RFC 3501 §7.2.4, RFC 7162 §3.1.6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusItems {
    /// `MESSAGES`.
    pub messages: Option<u32>,
    /// `UIDNEXT`.
    pub uid_next: Option<u32>,
    /// `UIDVALIDITY`.
    pub uid_validity: Option<u32>,
    /// `HIGHESTMODSEQ` (0 for a mailbox without persistent mod-sequences).
    pub highest_modseq: Option<u64>,
}

/// One complete server response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The greeting.
    Greeting {
        /// OK, PREAUTH or BYE.
        kind: GreetingType,
        /// The response code (often CAPABILITY).
        code: Option<RespCode>,
        /// Text.
        text: String,
    },
    /// `+ …`: the server waits for more of the current command.
    Continue(Vec<u8>),
    /// An untagged response.
    Untagged(Untagged),
    /// The completion of a command.
    Tagged {
        /// The tag.
        tag: String,
        /// OK, NO or BAD.
        outcome: Outcome,
        /// The response code.
        code: Option<RespCode>,
        /// Text.
        text: String,
    },
}

/// The kind of greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GreetingType {
    /// Not yet authenticated.
    Ok,
    /// Already authenticated (a preauth tunnel).
    PreAuth,
    /// The server refuses the connection.
    Bye,
}

/// Parses the greeting (one complete line).
pub fn parse_greeting(bytes: &[u8]) -> Result<Response, ImapError> {
    match GreetingCodec::default().decode(bytes) {
        Ok((_, g)) => Ok(map_greeting(g)),
        Err(_) => Err(ImapError::Protocol(format!(
            "unparseable greeting: {}",
            printable(bytes)
        ))),
    }
}

fn map_greeting(g: Greeting<'_>) -> Response {
    Response::Greeting {
        kind: match g.kind {
            GreetingKind::Ok => GreetingType::Ok,
            GreetingKind::PreAuth => GreetingType::PreAuth,
            GreetingKind::Bye => GreetingType::Bye,
        },
        code: g.code.map(map_code),
        text: g.text.inner().to_string(),
    }
}

/// Parses one complete response (as found by the session's framing).
pub fn parse_response(bytes: &[u8]) -> Result<Response, ImapError> {
    // The lines of a flag listing, most of what a sync reads, take a shorter way.
    if let Some(r) = fast::fetch(bytes) {
        return Ok(r);
    }
    match ResponseCodec::default().decode(bytes) {
        Ok((_, r)) => Ok(map_response(r)),
        Err(_) => tolerant::parse(bytes),
    }
}

fn map_outcome(k: StatusKind) -> Outcome {
    match k {
        StatusKind::Ok => Outcome::Ok,
        StatusKind::No => Outcome::No,
        StatusKind::Bad => Outcome::Bad,
    }
}

fn map_code(c: Code<'_>) -> RespCode {
    match c {
        Code::UidValidity(n) => RespCode::UidValidity(n.get()),
        Code::UidNext(n) => RespCode::UidNext(n.get()),
        Code::AppendUid { uid_validity, uid } => RespCode::AppendUid {
            uid_validity: uid_validity.get(),
            uid: uid.get(),
        },
        Code::Capability(caps) => {
            RespCode::Capability(caps.as_ref().iter().map(|c| c.to_string()).collect())
        }
        Code::ReadOnly => RespCode::ReadOnly,
        Code::HighestModSeq(n) => RespCode::HighestModSeq(n.get()),
        Code::NoModSeq => RespCode::NoModSeq,
        Code::Other(o)
            if o.inner().len() >= 20
                && o.inner()[..20].eq_ignore_ascii_case(b"NOTIFICATIONOVERFLOW") =>
        {
            RespCode::NotificationOverflow
        }
        Code::Other(o) => append_uid_set(o.inner()).unwrap_or(RespCode::Other),
        _ => RespCode::Other,
    }
}

/// `APPENDUID <validity> <uid-set>` with a set (imap-codec reads only a single UID).
/// Ranges keep the server's order (`5:3` is 5, 4, 3) as RFC 4315 §3 defines for COPYUID.
fn append_uid_set(code: &[u8]) -> Option<RespCode> {
    let text = std::str::from_utf8(code).ok()?;
    let mut it = text.split(' ');
    if !it.next()?.eq_ignore_ascii_case("APPENDUID") {
        return None;
    }
    let uid_validity = it.next()?.parse().ok()?;
    let set = it.next()?;
    if it.next().is_some() {
        return None;
    }
    let mut uids = Vec::new();
    for part in set.split(',') {
        let n = |x: &str| x.parse::<u32>().ok().filter(|&n| n > 0);
        uids.push(match part.split_once(':') {
            Some((a, b)) => (n(a)?, n(b)?),
            None => (n(part)?, n(part)?),
        });
    }
    Some(RespCode::AppendUidSet { uid_validity, uids })
}

fn map_body(b: StatusBody<'_>) -> (Outcome, Option<RespCode>, String) {
    (
        map_outcome(b.kind),
        b.code.map(map_code),
        b.text.inner().to_string(),
    )
}

fn mailbox_name(m: &Mailbox<'_>) -> String {
    match m {
        Mailbox::Inbox => "INBOX".to_string(),
        Mailbox::Other(o) => String::from_utf8_lossy(o.inner().as_ref()).into_owned(),
    }
}

fn nstring(n: &NString<'_>) -> Option<Vec<u8>> {
    n.0.as_ref().map(|s| s.as_ref().to_vec())
}

fn map_response(r: CResponse<'_>) -> Response {
    match r {
        CResponse::CommandContinuationRequest(c) => {
            let text = match c {
                imap_codec::imap_types::response::CommandContinuationRequest::Basic(b) => {
                    b.text().inner().as_bytes().to_vec()
                }
                imap_codec::imap_types::response::CommandContinuationRequest::Base64(d) => {
                    d.to_vec()
                }
            };
            Response::Continue(text)
        }
        CResponse::Status(Status::Tagged(t)) => {
            let (outcome, code, text) = map_body(t.body);
            Response::Tagged {
                tag: t.tag.inner().to_string(),
                outcome,
                code,
                text,
            }
        }
        CResponse::Status(Status::Untagged(b)) => {
            let (outcome, code, text) = map_body(b);
            Response::Untagged(Untagged::Status {
                outcome,
                code,
                text,
            })
        }
        CResponse::Status(Status::Bye(b)) => {
            Response::Untagged(Untagged::Bye(b.text.inner().to_string()))
        }
        CResponse::Data(d) => Response::Untagged(match d {
            Data::Capability(caps) => {
                Untagged::Capability(caps.as_ref().iter().map(|c| c.to_string()).collect())
            }
            // LSUB answers the same way (subscribedonly).
            Data::List {
                items,
                delimiter,
                mailbox,
            }
            | Data::Lsub {
                items,
                delimiter,
                mailbox,
            } => Untagged::List {
                attributes: items
                    .iter()
                    .map(|a: &FlagNameAttribute<'_>| a.to_string())
                    .collect(),
                delimiter: delimiter.map(|d| d.inner()),
                name: mailbox_name(&mailbox),
            },
            Data::Enabled { capabilities } => {
                Untagged::Enabled(capabilities.iter().map(|c| c.to_string()).collect())
            }
            Data::Exists(n) => Untagged::Exists(n),
            Data::Expunge(n) => Untagged::Expunge(n.get()),
            Data::Search(uids, ..) => Untagged::Search(uids.iter().map(|n| n.get()).collect()),
            Data::Vanished {
                earlier,
                known_uids,
            } => {
                use imap_codec::imap_types::sequence::{SeqOrUid, Sequence};
                let n = |x: &SeqOrUid| match x {
                    SeqOrUid::Value(v) => v.get(),
                    SeqOrUid::Asterisk => u32::MAX,
                };
                Untagged::Vanished {
                    earlier,
                    uids: known_uids
                        .0
                        .as_ref()
                        .iter()
                        .map(|s| match s {
                            Sequence::Single(x) => (n(x), n(x)),
                            Sequence::Range(a, b) => (n(a).min(n(b)), n(a).max(n(b))),
                        })
                        .collect(),
                }
            }
            Data::Fetch { seq, items } => {
                let mut f = FetchData {
                    seq: seq.get(),
                    ..FetchData::default()
                };
                for item in items.as_ref() {
                    match item {
                        MessageDataItem::Uid(u) => f.uid = Some(u.get()),
                        MessageDataItem::Flags(fl) => {
                            f.flags = Some(
                                fl.iter()
                                    .filter_map(|x| match x {
                                        FlagFetch::Flag(fl) => Some(fl.to_string()),
                                        FlagFetch::Recent => None,
                                    })
                                    .collect(),
                            )
                        }
                        MessageDataItem::InternalDate(d) => {
                            f.internal_date = Some(d.as_ref().timestamp())
                        }
                        MessageDataItem::Rfc822Size(s) => f.size = Some(*s),
                        MessageDataItem::BodyExt {
                            section: None,
                            data,
                            ..
                        }
                        | MessageDataItem::Rfc822(data) => f.body = nstring(data),
                        MessageDataItem::BodyExt {
                            section: Some(_),
                            data,
                            ..
                        } => f.header = nstring(data),
                        _ => {}
                    }
                }
                Untagged::Fetch(f)
            }
            Data::Status { mailbox, items } => {
                let mut got = StatusItems::default();
                for item in items.iter() {
                    match item {
                        StatusDataItem::Messages(n) => got.messages = Some(*n),
                        StatusDataItem::UidNext(n) => got.uid_next = Some(n.get()),
                        StatusDataItem::UidValidity(n) => got.uid_validity = Some(n.get()),
                        StatusDataItem::HighestModSeq(n) => got.highest_modseq = Some(*n),
                        _ => {}
                    }
                }
                Untagged::MailboxStatus {
                    name: mailbox_name(&mailbox),
                    items: got,
                }
            }
            _ => Untagged::Other,
        }),
    }
}

/// Renders bytes for an error message: printable ASCII kept, the rest escaped, cut short.
pub(crate) fn printable(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(200)];
    let mut s = cut.escape_ascii().to_string();
    if bytes.len() > cut.len() {
        s.push('…');
    }
    s
}

/// The tolerant fallback parser: a generic reader of IMAP values (atoms, quoted strings,
/// literals, parenthesised lists) and an interpretation of the few responses we need.
pub(crate) mod tolerant {
    use super::*;

    /// A generic IMAP value.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Value {
        /// An atom or number (may contain `[...]` sections such as `BODY[]`).
        Atom(Vec<u8>),
        /// A quoted string or a literal.
        Str(Vec<u8>),
        /// A parenthesised list.
        List(Vec<Value>),
    }

    struct Reader<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl<'a> Reader<'a> {
        fn err(&self, what: &str) -> ImapError {
            ImapError::Protocol(format!(
                "{what} at byte {} of: {}",
                self.i,
                printable(self.b)
            ))
        }

        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }

        fn skip_sp(&mut self) {
            while self.peek() == Some(b' ') {
                self.i += 1;
            }
        }

        fn at_end(&self) -> bool {
            matches!(self.peek(), None | Some(b'\r') | Some(b'\n'))
        }

        fn value(&mut self, depth: usize) -> Result<Value, ImapError> {
            if depth > 32 {
                return Err(self.err("lists nested too deep"));
            }
            self.skip_sp();
            match self.peek() {
                None => Err(self.err("unexpected end")),
                Some(b'(') => {
                    self.i += 1;
                    let mut items = Vec::new();
                    loop {
                        self.skip_sp();
                        match self.peek() {
                            Some(b')') => {
                                self.i += 1;
                                return Ok(Value::List(items));
                            }
                            None | Some(b'\r') | Some(b'\n') => {
                                return Err(self.err("unterminated list"));
                            }
                            _ => items.push(self.value(depth + 1)?),
                        }
                    }
                }
                Some(b'"') => {
                    self.i += 1;
                    let mut s = Vec::new();
                    loop {
                        match self.peek() {
                            None | Some(b'\r') | Some(b'\n') => {
                                return Err(self.err("unterminated quoted string"));
                            }
                            Some(b'"') => {
                                self.i += 1;
                                return Ok(Value::Str(s));
                            }
                            Some(b'\\') => {
                                self.i += 1;
                                let c = self.peek().ok_or_else(|| self.err("bad escape"))?;
                                s.push(c);
                                self.i += 1;
                            }
                            Some(c) => {
                                s.push(c);
                                self.i += 1;
                            }
                        }
                    }
                }
                Some(b'{') => {
                    let close = self.b[self.i..]
                        .iter()
                        .position(|&c| c == b'}')
                        .ok_or_else(|| self.err("bad literal"))?;
                    let digits = &self.b[self.i + 1..self.i + close];
                    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
                    let n: usize = std::str::from_utf8(digits)
                        .ok()
                        .and_then(|d| d.parse().ok())
                        .ok_or_else(|| self.err("bad literal length"))?;
                    self.i += close + 1;
                    if self.b[self.i..].starts_with(b"\r\n") {
                        self.i += 2;
                    } else if self.b[self.i..].starts_with(b"\n") {
                        self.i += 1;
                    } else {
                        return Err(self.err("literal without line end"));
                    }
                    let end = self
                        .i
                        .checked_add(n)
                        .filter(|&e| e <= self.b.len())
                        .ok_or_else(|| self.err("truncated literal"))?;
                    let s = self.b[self.i..end].to_vec();
                    self.i = end;
                    Ok(Value::Str(s))
                }
                Some(_) => {
                    let start = self.i;
                    let mut bracket = 0usize;
                    while let Some(c) = self.peek() {
                        match c {
                            b'[' => bracket += 1,
                            b']' => bracket = bracket.saturating_sub(1),
                            b' ' | b'(' | b')' if bracket == 0 => break,
                            b'\r' | b'\n' => break,
                            _ => {}
                        }
                        self.i += 1;
                    }
                    if self.i == start {
                        return Err(self.err("unexpected character"));
                    }
                    // NIL stays an atom: only the item it stands in for knows whether it
                    // means "no value" (`BODY[] NIL`) or is a keyword (`FLAGS (NIL)`).
                    Ok(Value::Atom(self.b[start..self.i].to_vec()))
                }
            }
        }

        fn atom(&mut self) -> Result<Vec<u8>, ImapError> {
            match self.value(0)? {
                Value::Atom(a) => Ok(a),
                _ => Err(self.err("expected an atom")),
            }
        }
    }

    fn number(a: &[u8]) -> Option<u32> {
        std::str::from_utf8(a).ok()?.parse().ok()
    }

    /// Parses an IMAP date-time (`"17-Jul-1996 02:44:25 -0700"`).
    pub(crate) fn parse_date_time(s: &[u8]) -> Option<i64> {
        let s = std::str::from_utf8(s).ok()?.trim();
        chrono::DateTime::parse_from_str(s, "%d-%b-%Y %H:%M:%S %z")
            .ok()
            .map(|d| d.timestamp())
    }

    /// A tagged completion that imap-codec rejected (some servers omit the text, which
    /// RFC 3501 requires): the tag, the outcome, the rest as text without a code.
    fn tagged(bytes: &[u8]) -> Option<Response> {
        let line = std::str::from_utf8(bytes)
            .ok()?
            .trim_end_matches(['\r', '\n']);
        let mut it = line.splitn(3, ' ');
        let tag = it.next()?;
        if tag.is_empty() || !tag.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.') {
            return None;
        }
        let outcome = match it.next()?.to_ascii_uppercase().as_str() {
            "OK" => Outcome::Ok,
            "NO" => Outcome::No,
            "BAD" => Outcome::Bad,
            _ => return None,
        };
        Some(Response::Tagged {
            tag: tag.to_string(),
            outcome,
            code: None,
            text: it.next().unwrap_or("").to_string(),
        })
    }

    /// `LIST (attrs) delim name [extended data]` that imap-codec rejected (a NUL or 8-bit
    /// byte in the name, odd attributes): the name is kept as lossy UTF-8, so the folder
    /// is seen, and fails visibly if it cannot be selected.
    fn list(r: &mut Reader<'_>) -> Result<Response, ImapError> {
        let Value::List(attrs) = r.value(0)? else {
            return Err(r.err("LIST without attributes"));
        };
        let mut attributes = Vec::new();
        for a in attrs {
            let Value::Atom(a) = a else {
                return Err(r.err("bad LIST attribute"));
            };
            attributes.push(String::from_utf8_lossy(&a).into_owned());
        }
        let delimiter = match r.value(0)? {
            Value::Atom(a) if a.eq_ignore_ascii_case(b"NIL") => None,
            Value::Str(d) => {
                let d = std::str::from_utf8(&d).ok();
                let mut chars = d.into_iter().flat_map(str::chars);
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Some(c),
                    _ => return Err(r.err("bad LIST delimiter")),
                }
            }
            _ => return Err(r.err("bad LIST delimiter")),
        };
        let (Value::Atom(name) | Value::Str(name)) = r.value(0)? else {
            return Err(r.err("bad LIST mailbox name"));
        };
        // LIST-EXTENDED data may follow; it only has to be well formed.
        r.skip_sp();
        while !r.at_end() {
            r.value(0)?;
            r.skip_sp();
        }
        let name = String::from_utf8_lossy(&name).into_owned();
        Ok(Response::Untagged(Untagged::List {
            attributes,
            delimiter,
            name: if name.eq_ignore_ascii_case("INBOX") {
                "INBOX".to_string()
            } else {
                name
            },
        }))
    }

    /// `SEARCH n…` that imap-codec rejected (trailing space, a CONDSTORE `(MODSEQ n)`).
    fn search(r: &mut Reader<'_>) -> Result<Response, ImapError> {
        let mut found = Vec::new();
        r.skip_sp();
        while !r.at_end() {
            match r.value(0)? {
                Value::Atom(a) => {
                    found.push(
                        number(&a)
                            .filter(|&n| n > 0)
                            .ok_or_else(|| r.err("bad number in SEARCH"))?,
                    );
                }
                Value::List(_) => {}
                Value::Str(_) => return Err(r.err("string in SEARCH")),
            }
            r.skip_sp();
        }
        Ok(Response::Untagged(Untagged::Search(found)))
    }

    /// `VANISHED [(EARLIER)] uid-set` that imap-codec rejected: a lost VANISHED would keep
    /// expunged messages in a kept listing, so it is read here too.
    fn vanished(r: &mut Reader<'_>) -> Result<Response, ImapError> {
        let mut earlier = false;
        let mut set = r.value(0)?;
        if let Value::List(l) = &set {
            earlier =
                matches!(l.as_slice(), [Value::Atom(a)] if a.eq_ignore_ascii_case(b"EARLIER"));
            if !earlier {
                return Err(r.err("bad VANISHED modifier"));
            }
            set = r.value(0)?;
        }
        let Value::Atom(set) = set else {
            return Err(r.err("bad VANISHED set"));
        };
        r.skip_sp();
        if !r.at_end() {
            return Err(r.err("garbage after VANISHED"));
        }
        let mut uids = Vec::new();
        for part in set.split(|&b| b == b',') {
            let bound = |x: &[u8]| match x {
                b"*" => Some(u32::MAX),
                x => number(x).filter(|&n| n > 0),
            };
            let range = match part.iter().position(|&b| b == b':') {
                Some(c) => bound(&part[..c]).zip(bound(&part[c + 1..])),
                None => bound(part).map(|n| (n, n)),
            };
            let (a, b) = range.ok_or_else(|| r.err("bad UID in VANISHED"))?;
            uids.push((a.min(b), a.max(b)));
        }
        Ok(Response::Untagged(Untagged::Vanished { earlier, uids }))
    }

    /// Parses a response that imap-codec rejected. Only FETCH and unknown untagged data
    /// are accepted here; a tagged or continuation response that imap-codec rejected is a
    /// real protocol error.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Response, ImapError> {
        let mut r = Reader { b: bytes, i: 0 };
        if !bytes.starts_with(b"* ") {
            return tagged(bytes).ok_or_else(|| r.err("unparseable response"));
        }
        r.i = 2;
        let first = r.atom()?;
        // Responses we act on must not be dropped as "other": a lost LIST line hides a
        // folder, a lost SEARCH loses the UID of an appended message.
        if first.eq_ignore_ascii_case(b"LIST") || first.eq_ignore_ascii_case(b"LSUB") {
            return list(&mut r);
        }
        if first.eq_ignore_ascii_case(b"SEARCH") {
            return search(&mut r);
        }
        if first.eq_ignore_ascii_case(b"VANISHED") {
            return vanished(&mut r);
        }
        let Some(seq) = number(&first) else {
            // An untagged response keyword outside imap-codec's grammar (ESEARCH, X-…):
            // nothing we act on, and dropping it loses nothing.
            if first
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            {
                return Ok(Response::Untagged(Untagged::Other));
            }
            return Err(r.err("unparseable untagged response"));
        };
        let kw = r.atom()?;
        if !kw.eq_ignore_ascii_case(b"FETCH") {
            return Err(r.err("unparseable untagged response"));
        }
        let Value::List(items) = r.value(0)? else {
            return Err(r.err("FETCH without item list"));
        };
        r.skip_sp();
        if !r.at_end() {
            return Err(r.err("garbage after FETCH"));
        }
        if seq == 0 {
            return Err(r.err("FETCH for sequence number 0"));
        }
        let mut f = FetchData {
            seq,
            ..FetchData::default()
        };
        let mut it = items.into_iter();
        while let Some(name) = it.next() {
            let Value::Atom(name) = name else {
                return Err(r.err("FETCH item name is not an atom"));
            };
            let value = it.next().ok_or_else(|| r.err("FETCH item without value"))?;
            let upper = name.to_ascii_uppercase();
            match (upper.as_slice(), value) {
                (b"UID", Value::Atom(a)) => {
                    f.uid = Some(
                        number(&a)
                            .filter(|&n| n > 0)
                            .ok_or_else(|| r.err("bad UID"))?,
                    );
                }
                (b"UID", _) => return Err(r.err("bad UID")),
                (b"FLAGS", Value::List(l)) => {
                    let mut flags = Vec::new();
                    for v in l {
                        match v {
                            Value::Atom(a) if a.eq_ignore_ascii_case(b"\\Recent") => {}
                            Value::Atom(a) => flags.push(String::from_utf8_lossy(&a).into_owned()),
                            _ => return Err(r.err("bad flag")),
                        }
                    }
                    f.flags = Some(flags);
                }
                (b"FLAGS", _) => return Err(r.err("bad FLAGS")),
                (b"RFC822.SIZE", Value::Atom(a)) => {
                    f.size = Some(number(&a).ok_or_else(|| r.err("bad RFC822.SIZE"))?);
                }
                (b"INTERNALDATE", Value::Str(s)) => {
                    f.internal_date =
                        Some(parse_date_time(&s).ok_or_else(|| r.err("bad INTERNALDATE"))?);
                }
                (b"INTERNALDATE", _) => return Err(r.err("bad INTERNALDATE")),
                (b"BODY[]" | b"RFC822", Value::Str(s)) => f.body = Some(s),
                (b"BODY[]" | b"RFC822", Value::Atom(a)) if a.eq_ignore_ascii_case(b"NIL") => {
                    f.body = None
                }
                (n, Value::Str(s)) if n.starts_with(b"BODY[]<") => f.body = Some(s),
                (n, Value::Str(s)) if n.starts_with(b"BODY[HEADER") => f.header = Some(s),
                // Everything else (X-GM-LABELS, SAVEDATE, MODSEQ, EMAILID…) is skipped.
                _ => {}
            }
        }
        Ok(Response::Untagged(Untagged::Fetch(f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiappend_uid_sets_are_read() {
        let code = |line: &[u8]| match parse_response(line).unwrap() {
            Response::Tagged { code, .. } => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            code(b"A3 OK [APPENDUID 1795 3:4,9] Append completed.\r\n"),
            Some(RespCode::AppendUidSet {
                uid_validity: 1795,
                uids: vec![(3, 4), (9, 9)],
            })
        );
        assert_eq!(
            code(b"A3 OK [APPENDUID 1795 7] Done\r\n"),
            Some(RespCode::AppendUid {
                uid_validity: 1795,
                uid: 7
            })
        );
        for bad in [
            &b"A3 OK [APPENDUID 1795 0:4] x\r\n"[..],
            b"A3 OK [APPENDUID x 3:4] x\r\n",
            b"A3 OK [APPENDUID 1795 3:*] x\r\n",
        ] {
            assert_eq!(code(bad), Some(RespCode::Other), "{}", printable(bad));
        }
    }

    #[test]
    fn condstore_and_qresync_responses() {
        let v = parse_response(b"* VANISHED (EARLIER) 3:1,7,9:10\r\n").unwrap();
        let want = Untagged::Vanished {
            earlier: true,
            uids: vec![(1, 3), (7, 7), (9, 10)],
        };
        assert_eq!(v, Response::Untagged(want.clone()));
        assert_eq!(
            tolerant::parse(b"* VANISHED (EARLIER) 3:1,7,9:10\r\n").unwrap(),
            Response::Untagged(want)
        );
        assert_eq!(
            tolerant::parse(b"* VANISHED 1:*\r\n").unwrap(),
            Response::Untagged(Untagged::Vanished {
                earlier: false,
                uids: vec![(1, u32::MAX)],
            })
        );
        for bad in [
            &b"* VANISHED (LATER) 1\r\n"[..],
            b"* VANISHED 0:3\r\n",
            b"* VANISHED 1,,2\r\n",
            b"* VANISHED 1 2\r\n",
        ] {
            assert!(tolerant::parse(bad).is_err(), "{}", printable(bad));
        }
        let ok = |line: &[u8]| match parse_response(line).unwrap() {
            Response::Untagged(Untagged::Status { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            ok(b"* OK [HIGHESTMODSEQ 715194045007] Highest\r\n"),
            Some(RespCode::HighestModSeq(715194045007))
        );
        assert_eq!(ok(b"* OK [NOMODSEQ] Sorry\r\n"), Some(RespCode::NoModSeq));
        let Response::Untagged(Untagged::Fetch(f)) =
            parse_response(b"* 4 FETCH (UID 8 MODSEQ (12) FLAGS (\\Seen))\r\n").unwrap()
        else {
            panic!("not a FETCH");
        };
        assert_eq!(
            (f.uid, f.flags),
            (Some(8), Some(vec!["\\Seen".to_string()]))
        );
    }

    #[test]
    fn header_fields_section_is_kept() {
        let hdr = b"Message-ID: <a@b>\r\n\r\n";
        let mut line = format!(
            "* 3 FETCH (UID 9 RFC822.SIZE 120 BODY[HEADER.FIELDS (MESSAGE-ID)] {{{}}}\r\n",
            hdr.len()
        )
        .into_bytes();
        line.extend_from_slice(hdr);
        line.extend_from_slice(b")\r\n");
        let Response::Untagged(Untagged::Fetch(f)) = parse_response(&line).unwrap() else {
            panic!("not a FETCH");
        };
        assert_eq!(f.header.as_deref(), Some(&hdr[..]));
        assert_eq!((f.uid, f.size), (Some(9), Some(120)));
        // The same through the tolerant parser (an unknown item forces it).
        let mut line2 = format!(
            "* 3 FETCH (UID 9 X-GM-MSGID 1 BODY[HEADER.FIELDS (MESSAGE-ID)] {{{}}}\r\n",
            hdr.len()
        )
        .into_bytes();
        line2.extend_from_slice(hdr);
        line2.extend_from_slice(b")\r\n");
        let Response::Untagged(Untagged::Fetch(f)) = parse_response(&line2).unwrap() else {
            panic!("not a FETCH");
        };
        assert_eq!(f.header.as_deref(), Some(&hdr[..]));
    }

    #[test]
    fn notification_overflow_is_recognised() {
        let Response::Untagged(Untagged::Status { code, .. }) =
            parse_response(b"* OK [NOTIFICATIONOVERFLOW] ...notifications suspended\r\n").unwrap()
        else {
            panic!("not an untagged status");
        };
        assert_eq!(code, Some(RespCode::NotificationOverflow));
    }

    #[test]
    fn status_names_its_mailbox_and_gives_its_items() {
        let items = |messages, uid_next, uid_validity, highest_modseq| StatusItems {
            messages,
            uid_next,
            uid_validity,
            highest_modseq,
        };
        for (line, name, want) in [
            (
                &b"* STATUS Other (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n"[..],
                "Other",
                items(Some(1), Some(2), None, None),
            ),
            (
                b"* STATUS \"A b\" (UNSEEN 0)\r\n",
                "A b",
                StatusItems::default(),
            ),
            (
                b"* STATUS inbox (MESSAGES 3 UIDVALIDITY 7 HIGHESTMODSEQ 12345678901)\r\n",
                "INBOX",
                items(Some(3), None, Some(7), Some(12_345_678_901)),
            ),
        ] {
            assert_eq!(
                parse_response(line).unwrap(),
                Response::Untagged(Untagged::MailboxStatus {
                    name: name.to_string(),
                    items: want
                })
            );
        }
        // A STATUS that imap-codec rejects is dropped, never an error: the folder is then
        // simply SELECTed.
        assert_eq!(
            parse_response(b"* STATUS Other (MESSAGES x)\r\n").unwrap(),
            Response::Untagged(Untagged::Other)
        );
    }

    #[test]
    fn codec_parses_common_responses() {
        let r = parse_response(b"a1 OK [APPENDUID 38505 3955] APPEND completed\r\n").unwrap();
        assert_eq!(
            r,
            Response::Tagged {
                tag: "a1".into(),
                outcome: Outcome::Ok,
                code: Some(RespCode::AppendUid {
                    uid_validity: 38505,
                    uid: 3955
                }),
                text: "APPEND completed".into()
            }
        );
        let r = parse_response(b"* LIST (\\HasNoChildren \\Noselect) \".\" \"INBOX.Sent\"\r\n")
            .unwrap();
        let Response::Untagged(Untagged::List {
            attributes,
            delimiter,
            name,
        }) = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(delimiter, Some('.'));
        assert_eq!(name, "INBOX.Sent");
        assert!(attributes.iter().any(|a| a == "\\Noselect"));
        let r = parse_response(
            b"* 1 FETCH (UID 5 FLAGS (\\Seen \\Recent) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" BODY[] {5}\r\nhello)\r\n",
        )
        .unwrap();
        assert_eq!(
            r,
            Response::Untagged(Untagged::Fetch(FetchData {
                seq: 1,
                uid: Some(5),
                flags: Some(vec!["\\Seen".into()]),
                internal_date: Some(837596665),
                size: None,
                body: Some(b"hello".to_vec()),
                header: None,
                streamed: None,
            }))
        );
    }

    #[test]
    fn gmail_fetch_falls_back_to_tolerant_parser() {
        let line = b"* 1 FETCH (UID 5 X-GM-LABELS (\\Inbox \"\\\\Important\" foo) X-GM-MSGID 123 FLAGS (\\Seen) RFC822.SIZE 42)\r\n";
        assert!(ResponseCodec::default().decode(line).is_err());
        let r = parse_response(line).unwrap();
        assert_eq!(
            r,
            Response::Untagged(Untagged::Fetch(FetchData {
                seq: 1,
                uid: Some(5),
                flags: Some(vec!["\\Seen".into()]),
                size: Some(42),
                ..FetchData::default()
            }))
        );
        let r = parse_response(
            b"* 2 FETCH (SAVEDATE \"17-Jul-1996 02:44:25 -0700\" UID 7 BODY[] {3}\r\nabc INTERNALDATE \"01-Jan-2000 00:00:00 +0000\")\r\n",
        )
        .unwrap();
        let Response::Untagged(Untagged::Fetch(f)) = r else {
            panic!("{r:?}")
        };
        assert_eq!((f.uid, f.body.as_deref()), (Some(7), Some(&b"abc"[..])));
        assert_eq!(f.internal_date, Some(946684800));
    }

    #[test]
    fn malformed_responses_are_errors() {
        for bad in [
            &b"* 1 FETCH (UID 5 INTERNALDATE NIL)\r\n"[..],
            b"* 1 FETCH (UID)\r\n",
            b"* 1 FETCH (UID 0)\r\n",
            b"* 1 FETCH (UID 5\r\n",
            b"* 1 FETCH (BODY[] {10}\r\nabc)\r\n",
            b"a1 MAYBE\r\n",
            b"\xff\xfe\r\n",
            b"* 0 FETCH (UID 1)\r\n",
            b"* 1 FETCH (\"x\" 1)\r\n",
        ] {
            assert!(parse_response(bad).is_err(), "{}", printable(bad));
        }
        assert_eq!(
            parse_response(b"* ESEARCH (TAG \"a1\") UID ALL 1:5\r\n").unwrap(),
            Response::Untagged(Untagged::Other)
        );
    }

    #[test]
    fn keyword_named_nil_survives_the_tolerant_parser() {
        // Found by the FETCH round-trip property test: NIL is a valid flag keyword (an
        // atom), but the fallback parser read it as "no value" and dropped the whole FETCH.
        let r = parse_response(b"* 1 FETCH (UID 3 X-GM-MSGID 1 FLAGS (nil \\Seen) BODY[] NIL)\r\n")
            .unwrap();
        assert_eq!(
            r,
            Response::Untagged(Untagged::Fetch(FetchData {
                seq: 1,
                uid: Some(3),
                flags: Some(vec!["nil".into(), "\\Seen".into()]),
                ..FetchData::default()
            }))
        );
    }

    #[test]
    fn lsub_is_read_like_list() {
        // imap-codec parses this one itself (as Data::Lsub): it must not become "other".
        assert_eq!(
            parse_response(b"* LSUB (\\HasNoChildren) \".\" Sub\r\n").unwrap(),
            Response::Untagged(Untagged::List {
                attributes: vec!["\\HasNoChildren".into()],
                delimiter: Some('.'),
                name: "Sub".into(),
            })
        );
    }

    #[test]
    fn list_and_search_that_the_codec_rejects_are_not_dropped() {
        // Found by the LIST round-trip property test: a name imap-codec refuses made the
        // whole LIST line "other", silently hiding the folder.
        assert_eq!(
            parse_response(b"* LIST (\\HasNoChildren) \".\" {5}\r\na\0\xffb.\r\n").unwrap(),
            Response::Untagged(Untagged::List {
                attributes: vec!["\\HasNoChildren".into()],
                delimiter: Some('.'),
                name: "a\0\u{fffd}b.".into(),
            })
        );
        assert_eq!(
            parse_response(b"* LSUB () NIL inbox (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n").unwrap(),
            Response::Untagged(Untagged::List {
                attributes: vec![],
                delimiter: None,
                name: "INBOX".into(),
            })
        );
        assert_eq!(
            parse_response(b"* SEARCH 2 84 (MODSEQ 917162500) \r\n").unwrap(),
            Response::Untagged(Untagged::Search(vec![2, 84]))
        );
        for bad in [
            &b"* SEARCH 1 x\r\n"[..],
            b"* SEARCH 0\r\n",
            b"* LIST () \"ab\" x\r\n",
            b"* LIST () \".\"\r\n",
            b"* LIST \".\" x\r\n",
        ] {
            assert!(parse_response(bad).is_err(), "{}", printable(bad));
        }
    }

    #[test]
    fn greeting() {
        let r = parse_greeting(b"* PREAUTH [CAPABILITY IMAP4rev1 UIDPLUS] hi\r\n").unwrap();
        assert_eq!(
            r,
            Response::Greeting {
                kind: GreetingType::PreAuth,
                code: Some(RespCode::Capability(vec![
                    "IMAP4REV1".into(),
                    "UIDPLUS".into()
                ])),
                text: "hi".into()
            }
        );
    }
}

/// Encode → decode round trips (architecture convention 6): a test-only encoder writes
/// what a server would send for a known value, in any item order and with items we do
/// not use mixed in, and the parser must give back exactly that value.
#[cfg(test)]
mod round_trip {
    use super::*;
    use proptest::prelude::*;

    /// Appends `s` as a quoted string when it can be one, else as a literal.
    fn push_string(out: &mut Vec<u8>, s: &[u8], force_literal: bool) {
        if !force_literal
            && s.iter()
                .all(|&c| c.is_ascii() && c != 0 && c != b'\r' && c != b'\n')
        {
            out.push(b'"');
            for &c in s {
                if c == b'"' || c == b'\\' {
                    out.push(b'\\');
                }
                out.push(c);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
            out.extend_from_slice(s);
        }
    }

    fn internal_date(t: i64, offset_minutes: i32) -> Vec<u8> {
        let tz = chrono::FixedOffset::east_opt(offset_minutes * 60)
            .unwrap_or(chrono::FixedOffset::east_opt(0).unwrap());
        let d = chrono::DateTime::from_timestamp(t, 0)
            .unwrap()
            .with_timezone(&tz);
        format!("\"{}\"", d.format("%d-%b-%Y %H:%M:%S %z")).into_bytes()
    }

    fn flag() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "\\Seen",
                "\\Answered",
                "\\Flagged",
                "\\Deleted",
                "\\Draft",
                "$Forwarded",
                "$Label1",
                "Junk",
                "NIL",
                "nil",
            ])
            .prop_map(String::from),
            "[A-Za-z$][A-Za-z0-9$_.-]{0,10}",
        ]
    }

    #[derive(Debug, Clone)]
    struct Fetch {
        data: FetchData,
        offset_minutes: i32,
        literal_body_always: bool,
        gmail: bool,
        rotate: usize,
    }

    fn fetch() -> impl Strategy<Value = Fetch> {
        (
            (
                1u32..,
                prop::option::of(1u32..),
                prop::option::of(prop::collection::vec(flag(), 0..5)),
                prop::option::of(0i64..4_000_000_000),
                prop::option::of(any::<u32>()),
                prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
            ),
            (-720i32..=840, any::<bool>(), any::<bool>(), 0usize..8),
        )
            .prop_map(
                |(
                    (seq, uid, flags, internal_date, size, body),
                    (offset_minutes, literal_body_always, gmail, rotate),
                )| Fetch {
                    data: FetchData {
                        seq,
                        uid,
                        flags,
                        internal_date,
                        size,
                        body,
                        header: None,
                        streamed: None,
                    },
                    offset_minutes,
                    literal_body_always,
                    gmail,
                    rotate,
                },
            )
    }

    fn encode(f: &Fetch) -> Vec<u8> {
        let d = &f.data;
        let mut items: Vec<Vec<u8>> = Vec::new();
        if let Some(uid) = d.uid {
            items.push(format!("UID {uid}").into_bytes());
        }
        if let Some(flags) = &d.flags {
            items.push(format!("FLAGS ({})", flags.join(" ")).into_bytes());
        }
        if let Some(t) = d.internal_date {
            let mut i = b"INTERNALDATE ".to_vec();
            i.extend(internal_date(t, f.offset_minutes));
            items.push(i);
        }
        if let Some(size) = d.size {
            items.push(format!("RFC822.SIZE {size}").into_bytes());
        }
        if let Some(body) = &d.body {
            let mut i = b"BODY[] ".to_vec();
            push_string(&mut i, body, f.literal_body_always);
            items.push(i);
        }
        if f.gmail {
            items.push(b"X-GM-LABELS (\\Inbox \"\\\\Important\" {4}\r\nMy L)".to_vec());
            items.push(b"X-GM-MSGID 1278455344230334865".to_vec());
        }
        let n = items.len().max(1);
        items.rotate_left(f.rotate % n);
        let mut out = format!("* {} FETCH (", d.seq).into_bytes();
        out.extend(items.join(&b' '));
        out.extend_from_slice(b")\r\n");
        out
    }

    proptest! {
        #[test]
        fn fetch_round_trips_through_parser_and_session(f in fetch()) {
            let bytes = encode(&f);
            let shown = bytes.escape_ascii().to_string();
            // A fetch that names nothing (`FETCH ()`) is not something servers send.
            prop_assume!(bytes != format!("* {} FETCH ()\r\n", f.data.seq).into_bytes());
            let r = parse_response(&bytes);
            prop_assert_eq!(
                r.as_ref().ok(),
                Some(&Response::Untagged(Untagged::Fetch(f.data.clone()))),
                "{}: {:?}", shown, r
            );

            let mut s = crate::session::Session::new(crate::session::SessionConfig::default());
            s.feed(b"* OK hi\r\n");
            s.feed(&bytes);
            prop_assert!(matches!(s.next_event(), Ok(Some(crate::session::Event::Greeting(_)))));
            let e = s.next_event();
            prop_assert_eq!(
                e.as_ref().ok(),
                Some(&Some(crate::session::Event::Untagged(Untagged::Fetch(f.data.clone())))),
                "{}", shown
            );
            prop_assert_eq!(s.buffered_input(), 0);
        }

        #[test]
        fn list_names_round_trip(
            name in prop::collection::vec(any::<char>(), 1..30)
                .prop_map(|c| c.into_iter().collect::<String>()),
            literal in any::<bool>(),
            delim in prop::sample::select(vec![Some('.'), Some('/'), None]),
        ) {
            // Mailbox names travel as (modified UTF-7) text; we keep what the server sent.
            let name = name.into_bytes();
            let mut bytes = b"* LIST (\\HasNoChildren) ".to_vec();
            match delim {
                Some(d) => bytes.extend(format!("\"{d}\" ").into_bytes()),
                None => bytes.extend_from_slice(b"NIL "),
            }
            push_string(&mut bytes, &name, literal);
            bytes.extend_from_slice(b"\r\n");
            let text = String::from_utf8_lossy(&name).into_owned();
            let expected = if text.eq_ignore_ascii_case("INBOX") { "INBOX".to_string() } else { text };
            match parse_response(&bytes) {
                Ok(Response::Untagged(Untagged::List { name, delimiter, .. })) => {
                    prop_assert_eq!(name, expected);
                    prop_assert_eq!(delimiter, delim);
                }
                // imap-codec refuses some names (NUL); the fallback must still see them.
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}
