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
use imap_codec::{GreetingCodec, ResponseCodec};

use crate::ImapError;

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
    /// `* n EXISTS`.
    Exists(u32),
    /// `* n EXPUNGE`.
    Expunge(u32),
    /// `* SEARCH …`.
    Search(Vec<u32>),
    /// `* n FETCH (…)`.
    Fetch(FetchData),
    /// Anything else that we do not need (FLAGS, RECENT, STATUS, ENABLED, ID…).
    Other,
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
        _ => RespCode::Other,
    }
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
            Data::List {
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
            Data::Exists(n) => Untagged::Exists(n),
            Data::Expunge(n) => Untagged::Expunge(n.get()),
            Data::Search(uids, ..) => Untagged::Search(uids.iter().map(|n| n.get()).collect()),
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
                        _ => {}
                    }
                }
                Untagged::Fetch(f)
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
        /// NIL.
        Nil,
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
                    let a = &self.b[start..self.i];
                    if a.eq_ignore_ascii_case(b"NIL") {
                        Ok(Value::Nil)
                    } else {
                        Ok(Value::Atom(a.to_vec()))
                    }
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
                (b"BODY[]" | b"RFC822", Value::Nil) => f.body = None,
                (n, Value::Str(s)) if n.starts_with(b"BODY[]<") => f.body = Some(s),
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
