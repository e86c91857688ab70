//! A connection: the session driven over a transport, plus login and capabilities.

use std::collections::HashMap;

use base64::Engine;
use oi_core::Secret;

use crate::ImapError;
use crate::response::{GreetingType, Outcome, RespCode, Response, Untagged};
use crate::session::{Command, Event, Session, SessionConfig};
use crate::transport::{NetOptions, TlsSettings, Transport};

/// How the connection is secured (OfflineIMAP's `ssl` and `starttls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Implicit TLS (`ssl = yes`, port 993).
    Tls,
    /// STARTTLS when the server offers it, else plain (`ssl = no`, `starttls = yes`).
    StartTls,
    /// No TLS at all.
    Plain,
}

/// A tunnel instead of a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tunnel {
    /// `preauthtunnel`: the command speaks IMAP already authenticated (`* PREAUTH`).
    Preauth(String),
    /// `transporttunnel`: the command is a plain byte pipe to the server; login follows.
    Transport(String),
}

/// The mechanisms of OfflineIMAP's `auth_mechanisms` (see [`crate::auth`] for how they
/// are tried).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanism {
    /// Kerberos: never used (not supported), skipped as OfflineIMAP without gssapi does.
    Gssapi,
    /// AUTHENTICATE XOAUTH2 with an OAuth2 access token.
    XOAuth2,
    /// AUTHENTICATE CRAM-MD5 (RFC 2195).
    CramMd5,
    /// AUTHENTICATE PLAIN (with SASL-IR when offered).
    Plain,
    /// The LOGIN command.
    Login,
}

/// Told each command's tag and completion as soon as it completes ([`Connection::collect`]).
pub type OnDone<'a> = dyn FnMut(&str, &Completion) + Send + 'a;

/// The completion of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// Command name.
    pub command: String,
    /// OK, NO or BAD.
    pub outcome: Outcome,
    /// Response code.
    pub code: Option<RespCode>,
    /// Text.
    pub text: String,
}

impl Completion {
    /// `Err` unless OK.
    pub fn ok(self) -> Result<Completion, ImapError> {
        if self.outcome == Outcome::Ok {
            Ok(self)
        } else {
            Err(ImapError::Command {
                command: self.command,
                outcome: self.outcome,
                text: self.text,
            })
        }
    }
}

/// Settings for opening a connection.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// Server host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Security.
    pub security: Security,
    /// TLS trust.
    pub tls: TlsSettings,
    /// Tunnel instead of TCP.
    pub tunnel: Option<Tunnel>,
    /// Socket timeout.
    pub timeout: Option<std::time::Duration>,
    /// User name.
    pub user: String,
    /// Password.
    pub password: Option<Secret>,
    /// Mechanisms to try, in order.
    pub mechanisms: Vec<AuthMechanism>,
    /// SASL authorization identity for PLAIN (`remote_identity`).
    pub identity: Option<String>,
    /// OAuth2 access tokens for XOAUTH2.
    pub oauth2: Option<std::sync::Arc<crate::oauth2::OAuth2>>,
    /// Commands in flight at once.
    pub pipeline_depth: usize,
}

/// Answers one SASL challenge (already base64-decoded) with the client's response.
pub(crate) type SaslResponder<'a> = dyn FnMut(&[u8]) -> Result<Vec<u8>, ImapError> + Send + 'a;

/// One authenticated IMAP connection.
#[derive(Debug)]
pub struct Connection {
    transport: Transport,
    session: Session,
    capabilities: Vec<String>,
    bye: Option<String>,
    /// Mechanisms that failed before the one that logged in (OfflineIMAP warns of them).
    auth_failures: Vec<String>,
    /// The socket read buffer, reused by every read.
    read_buf: Box<[u8]>,
    /// The mailbox the store last selected on this connection, if any.
    pub(crate) selected: Option<String>,
    /// Completions read by [`Connection::collect_one`] before their own reading: a
    /// server may run pipelined commands concurrently and complete a later one first
    /// (RFC 3501 §5.5; Dovecot does with FETCHes).
    early_done: HashMap<String, Completion>,
    /// Its place in its repository's count of connections, if it belongs to one.
    pub(crate) counted: Option<crate::store::Counted>,
}

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;

/// How long [`Connection::logout_unawaited`] reads for LOGOUT's answer.
const LOGOUT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

fn upper(caps: Vec<String>) -> Vec<String> {
    caps.into_iter().map(|c| c.to_ascii_uppercase()).collect()
}

/// The completion of a batch of one command.
fn sole_completion(mut c: Vec<Completion>) -> Result<Completion, ImapError> {
    c.pop()
        .ok_or_else(|| ImapError::Protocol("command lost its completion".into()))
}

/// Where [`Connection::run_spooling`] puts the FETCH literals it does not keep in memory.
pub trait LiteralSink: Send {
    /// A literal of `len` bytes begins.
    fn start(&mut self, len: u64) -> std::io::Result<()>;
    /// Its next bytes.
    fn data(&mut self, piece: &[u8]) -> std::io::Result<()>;
}

impl Connection {
    /// Connects, secures, logs in and learns the capabilities.
    pub async fn open(s: &ConnectSettings) -> Result<Connection, ImapError> {
        Connection::open_with(s, &NetOptions::default()).await
    }

    /// [`Connection::open`] with an IP family, TLS versions and a client certificate.
    pub async fn open_with(s: &ConnectSettings, net: &NetOptions) -> Result<Connection, ImapError> {
        let transport = match &s.tunnel {
            Some(Tunnel::Preauth(cmd)) | Some(Tunnel::Transport(cmd)) => {
                Transport::tunnel(cmd, s.timeout)?
            }
            None => {
                let t = match &net.proxy {
                    Some(p) => {
                        Transport::via_proxy(p, &s.host, s.port, s.timeout, net.family).await?
                    }
                    None => Transport::tcp_with(&s.host, s.port, s.timeout, net.family).await?,
                };
                if s.security == Security::Tls {
                    t.start_tls_with(&s.host, &s.tls, net).await?
                } else {
                    t
                }
            }
        };
        let mut conn = Connection {
            transport,
            session: Session::new(SessionConfig {
                pipeline_depth: s.pipeline_depth,
                ..SessionConfig::default()
            }),
            capabilities: Vec::new(),
            bye: None,
            early_done: HashMap::new(),
            counted: None,
            auth_failures: Vec::new(),
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            selected: None,
        };
        let (kind, code) = conn.greeting().await?;
        if let Some(RespCode::Capability(c)) = code {
            conn.set_capabilities(upper(c));
        }
        let preauth = match kind {
            GreetingType::Bye => return Err(ImapError::Bye("in greeting".into())),
            GreetingType::PreAuth => true,
            GreetingType::Ok => false,
        };
        if matches!(s.tunnel, Some(Tunnel::Preauth(_))) && !preauth {
            return Err(ImapError::Auth(
                "preauthtunnel did not greet with PREAUTH".into(),
            ));
        }
        if conn.capabilities.is_empty() {
            conn.refresh_capabilities().await?;
        }
        if s.security == Security::StartTls
            && s.tunnel.is_none()
            && !preauth
            && conn.has("STARTTLS")
        {
            conn.run(Command::raw("STARTTLS")).await?;
            // Bytes after the OK but before the handshake would be injected plaintext.
            if conn.session.buffered_input() > 0 {
                return Err(ImapError::Protocol(
                    "server sent data after STARTTLS OK (possible injection)".into(),
                ));
            }
            let Connection {
                transport,
                session,
                bye,
                read_buf,
                ..
            } = conn;
            conn = Connection {
                transport: transport.start_tls_with(&s.host, &s.tls, net).await?,
                session,
                capabilities: Vec::new(),
                bye,
                auth_failures: Vec::new(),
                read_buf,
                selected: None,
                early_done: HashMap::new(),
                counted: None,
            };
            conn.refresh_capabilities().await?;
        }
        if !preauth {
            conn.auth_failures = crate::auth::login(&mut conn, s).await?;
        }
        if net.compress {
            conn.start_compression().await?;
        }
        Ok(conn)
    }

    /// COMPRESS DEFLATE (RFC 4978) once authenticated, as OfflineIMAP's `usecompression`
    /// does after login (or a preauth tunnel). A server that does not offer it, or
    /// refuses it, leaves the connection uncompressed.
    async fn start_compression(&mut self) -> Result<(), ImapError> {
        if !self.has("COMPRESS=DEFLATE") {
            tracing::debug!(target: "imap",
                "usecompression: the server does not offer COMPRESS=DEFLATE; going on uncompressed");
            return Ok(());
        }
        let (_, done) = self.run_unchecked(Command::raw("COMPRESS DEFLATE")).await?;
        if done.outcome != Outcome::Ok {
            tracing::debug!(target: "imap",
                "usecompression: COMPRESS DEFLATE refused ({} {}); going on uncompressed",
                done.outcome, done.text);
            return Ok(());
        }
        // Compression starts right after the OK: bytes already read past it were
        // compressed and cannot be taken back from the session as plain text.
        if self.session.buffered_input() > 0 {
            return Err(ImapError::Protocol(
                "server sent data right after COMPRESS DEFLATE OK".into(),
            ));
        }
        self.transport.start_compression();
        tracing::debug!(target: "imap", "COMPRESS=DEFLATE enabled");
        Ok(())
    }

    /// True once COMPRESS=DEFLATE is on for this connection.
    pub fn is_compressed(&self) -> bool {
        self.transport.is_compressed()
    }

    fn set_capabilities(&mut self, caps: Vec<String>) {
        self.session.set_literal_capabilities(
            caps.iter().any(|c| c == "LITERAL+"),
            caps.iter().any(|c| c == "LITERAL-"),
        );
        self.capabilities = caps;
    }

    /// True when the server announced this capability (upper case, e.g. `UIDPLUS`).
    pub fn has(&self, cap: &str) -> bool {
        self.capabilities.iter().any(|c| c == cap)
    }

    /// The authentication mechanisms that failed before one succeeded, each as
    /// `MECHANISM authentication failed: why`; empty afterwards.
    pub fn take_auth_failures(&mut self) -> Vec<String> {
        std::mem::take(&mut self.auth_failures)
    }

    /// The capabilities, upper case.
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    async fn refresh_capabilities(&mut self) -> Result<(), ImapError> {
        let (untagged, _) = self.run(Command::raw("CAPABILITY")).await?;
        for u in untagged {
            if let Untagged::Capability(c) = u {
                self.set_capabilities(upper(c));
            }
        }
        Ok(())
    }

    /// Takes the capabilities a successful login announced, or asks for them: servers may
    /// change them after login (RFC 3501 §6.2.3).
    pub(crate) async fn after_login(&mut self, code: Option<RespCode>) -> Result<(), ImapError> {
        match code {
            Some(RespCode::Capability(c)) => {
                self.set_capabilities(upper(c));
                Ok(())
            }
            _ => self.refresh_capabilities().await,
        }
    }

    /// AUTHENTICATE (RFC 3501 §6.2.2) as a challenge-response dialogue, which the
    /// session's fixed continuation parts cannot express: the connection is idle at login,
    /// so the exchange is driven here line by line. `initial` goes on the command line
    /// with SASL-IR (RFC 4959), else answers the first challenge; every other challenge
    /// (base64-decoded) is answered by `respond`. An error from `respond` cancels the
    /// exchange (`*`) and is returned once the server has completed the command. The
    /// trace shows every client response as `<redacted>`.
    pub(crate) async fn authenticate(
        &mut self,
        mechanism: &str,
        initial: Option<Vec<u8>>,
        respond: &mut SaslResponder<'_>,
    ) -> Result<Completion, ImapError> {
        use base64::engine::general_purpose::STANDARD;
        if self.session.pending() > 0 || self.session.buffered_input() > 0 {
            return Err(ImapError::Protocol(
                "AUTHENTICATE while other commands are in progress".into(),
            ));
        }
        let tag = "L1";
        let mut line = format!("{tag} AUTHENTICATE {mechanism}");
        let mut initial = initial;
        let sasl_ir = self.has("SASL-IR");
        let mut traced = line.clone();
        if sasl_ir && let Some(ir) = initial.take() {
            // RFC 4959: an empty initial response is sent as `=`.
            let b64 = if ir.is_empty() {
                "=".to_string()
            } else {
                STANDARD.encode(ir)
            };
            line.push(' ');
            line.push_str(&b64);
            traced.push_str(" <redacted>");
        }
        line.push_str("\r\n");
        tracing::trace!(target: "imap", "C: {traced}");
        self.transport.write_all(line.as_bytes()).await?;
        let mut buf: Vec<u8> = Vec::new();
        let config = SessionConfig::default();
        let mut failed: Option<ImapError> = None;
        loop {
            let len = loop {
                if let Some(n) = crate::session::frame(&buf, &config)? {
                    break n;
                }
                let mut chunk = vec![0u8; 16 * 1024];
                let n = self.transport.read(&mut chunk).await?;
                if n == 0 {
                    return Err(match self.bye.take() {
                        Some(t) => ImapError::Bye(t),
                        None => ImapError::Closed,
                    });
                }
                buf.extend_from_slice(&chunk[..n]);
            };
            let response: Vec<u8> = buf.drain(..len).collect();
            tracing::trace!(target: "imap", "S: {}", response.escape_ascii());
            if let Some(rest) = response.strip_prefix(b"+") {
                let text = rest.strip_prefix(b" ").unwrap_or(rest);
                let text = text.trim_ascii_end();
                let answer = if failed.is_some() {
                    None
                } else if let Some(ir) = initial.take() {
                    Some(ir)
                } else {
                    match STANDARD.decode(text) {
                        Ok(challenge) => match respond(&challenge) {
                            Ok(a) => Some(a),
                            Err(e) => {
                                failed = Some(e);
                                None
                            }
                        },
                        Err(_) => {
                            failed = Some(ImapError::Protocol(format!(
                                "{mechanism}: the server's challenge is not base64"
                            )));
                            None
                        }
                    }
                };
                let out = match answer {
                    Some(a) => {
                        tracing::trace!(target: "imap", "C: <redacted>");
                        format!("{}\r\n", STANDARD.encode(a))
                    }
                    None => {
                        tracing::trace!(target: "imap", "C: *");
                        "*\r\n".to_string()
                    }
                };
                self.transport.write_all(out.as_bytes()).await?;
                continue;
            }
            match crate::response::parse_response(&response)? {
                Response::Tagged {
                    tag: t,
                    outcome,
                    code,
                    text,
                } if t == tag => {
                    // Whatever followed the completion belongs to the session.
                    self.session.feed(&buf);
                    if let Some(e) = failed {
                        return Err(e);
                    }
                    return Ok(Completion {
                        command: "AUTHENTICATE".into(),
                        outcome,
                        code,
                        text,
                    });
                }
                Response::Untagged(Untagged::Capability(c)) => self.set_capabilities(upper(c)),
                Response::Untagged(Untagged::Bye(t)) => self.bye = Some(t),
                Response::Tagged { tag: t, .. } => {
                    return Err(ImapError::Protocol(format!(
                        "completion for unknown tag {t} during AUTHENTICATE"
                    )));
                }
                _ => {}
            }
        }
    }

    async fn greeting(&mut self) -> Result<(GreetingType, Option<RespCode>), ImapError> {
        loop {
            if let Some(ev) = self.session.next_event()? {
                return match ev {
                    Event::Greeting(Response::Greeting { kind, code, .. }) => Ok((kind, code)),
                    _ => Err(ImapError::Protocol("expected a greeting".into())),
                };
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> Result<(), ImapError> {
        let n = self.transport.read(&mut self.read_buf).await?;
        if n == 0 {
            return Err(match self.bye.take() {
                Some(t) => ImapError::Bye(t),
                None => ImapError::Closed,
            });
        }
        self.session.feed(&self.read_buf[..n]);
        Ok(())
    }

    /// Runs commands pipelined; returns all untagged data seen and each completion, in the
    /// order of `commands`.
    pub async fn run_batch(
        &mut self,
        commands: Vec<Command>,
    ) -> Result<(Vec<Untagged>, Vec<Completion>), ImapError> {
        self.run_batch_from(commands, None).await
    }

    /// Runs one command holding a [`crate::session::Part::Stream`] literal, whose bytes
    /// are read from `source` in bounded pieces as the session asks for them; NO and BAD
    /// are errors. A source shorter than the literal is an error (the connection is then
    /// unusable: the server waits for the rest).
    pub async fn run_streaming(
        &mut self,
        command: Command,
        source: &mut (dyn std::io::Read + Send),
    ) -> Result<(Vec<Untagged>, Completion), ImapError> {
        let (u, c) = self.run_batch_from(vec![command], Some(source)).await?;
        let done = sole_completion(c)?;
        Ok((u, done.ok()?))
    }

    /// Writes what the session has to send, and a streamed literal when one is due.
    async fn flush_output(
        &mut self,
        source: &mut Option<&mut (dyn std::io::Read + Send)>,
    ) -> Result<(), ImapError> {
        loop {
            let out = self.session.take_output();
            if !out.is_empty() {
                self.transport.write_all(&out).await?;
            }
            let Some(len) = self.session.stream_pending() else {
                return Ok(());
            };
            let Some(src) = source.as_mut() else {
                return Err(ImapError::Protocol(
                    "a streamed literal without a source".into(),
                ));
            };
            let mut left = len;
            let mut buf = vec![0u8; 256 * 1024];
            while left > 0 {
                let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
                let n = src.read(&mut buf[..want]).map_err(ImapError::Io)?;
                if n == 0 {
                    return Err(ImapError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("message file ended {left} bytes early"),
                    )));
                }
                self.transport.write_all(&buf[..n]).await?;
                left -= n as u64;
            }
            self.session.stream_sent();
        }
    }

    async fn run_batch_from(
        &mut self,
        commands: Vec<Command>,
        source: Option<&mut (dyn std::io::Read + Send)>,
    ) -> Result<(Vec<Untagged>, Vec<Completion>), ImapError> {
        self.run_batch_with(commands, source, &mut Some, None).await
    }

    /// Runs one command whose FETCH literals longer than `over` bytes go to `sink` in
    /// pieces as they arrive instead of into memory; each such response comes back with
    /// [`crate::response::FetchData::streamed`] set, in the order the sink saw them. NO and
    /// BAD are errors, and so is a failing sink (once the command is through, so that
    /// the connection stays usable).
    pub async fn run_spooling(
        &mut self,
        command: Command,
        over: u64,
        sink: &mut dyn LiteralSink,
    ) -> Result<(Vec<Untagged>, Completion), ImapError> {
        let (u, c) = self
            .run_batch_with(vec![command], None, &mut Some, Some((over, sink)))
            .await?;
        let done = sole_completion(c)?;
        Ok((u, done.ok()?))
    }

    /// Runs one command, handing each untagged response to `each` as it is parsed; what
    /// `each` gives back is returned with the completion (NO and BAD are errors). A listing
    /// of a hundred thousand messages is then applied as it arrives, never held whole.
    pub async fn run_each(
        &mut self,
        command: Command,
        each: &mut (dyn FnMut(Untagged) -> Option<Untagged> + Send),
    ) -> Result<(Vec<Untagged>, Completion), ImapError> {
        let (u, c) = self.run_batch_with(vec![command], None, each, None).await?;
        let done = sole_completion(c)?;
        Ok((u, done.ok()?))
    }

    /// [`Connection::run_each`] for several commands sent at once: every untagged response
    /// goes to `each` whichever command it answers, and every command must end OK.
    pub async fn run_each_all(
        &mut self,
        commands: Vec<Command>,
        each: &mut (dyn FnMut(Untagged) -> Option<Untagged> + Send),
    ) -> Result<Vec<Untagged>, ImapError> {
        let (u, c) = self.run_batch_with(commands, None, each, None).await?;
        for done in c {
            done.ok()?;
        }
        Ok(u)
    }

    async fn run_batch_with(
        &mut self,
        commands: Vec<Command>,
        source: Option<&mut (dyn std::io::Read + Send)>,
        each: &mut (dyn FnMut(Untagged) -> Option<Untagged> + Send),
        spool: Option<(u64, &mut dyn LiteralSink)>,
    ) -> Result<(Vec<Untagged>, Vec<Completion>), ImapError> {
        let tags = self.enqueue_all(commands);
        self.await_tags(tags, source, each, spool, None, false)
            .await
    }

    /// Queues commands in the session; their tags, in order.
    fn enqueue_all(&mut self, commands: Vec<Command>) -> Vec<String> {
        commands
            .into_iter()
            .map(|c| self.session.enqueue(c))
            .collect()
    }

    /// Sends commands without waiting for their answers, which wait in the socket (the
    /// server works on them meanwhile) until [`Connection::collect`] reads them. Nothing
    /// else may be run on the connection in between. Returns the tags to collect.
    pub async fn send_ahead(&mut self, commands: Vec<Command>) -> Result<Vec<String>, ImapError> {
        let tags = self.enqueue_all(commands);
        self.flush_output(&mut None).await?;
        Ok(tags)
    }

    /// Reads the answers of commands sent by [`Connection::send_ahead`], as
    /// [`Connection::run_batch`] would have: every untagged response goes to `each`, the
    /// tag and completion of each command to `done` as soon as it completes (so that `each` can tell
    /// which command's answer it is given: they come in order), and each completion comes
    /// back in the order of `tags` (NO and BAD included).
    pub async fn collect(
        &mut self,
        tags: Vec<String>,
        each: &mut (dyn FnMut(Untagged) -> Option<Untagged> + Send),
        done: &mut OnDone<'_>,
    ) -> Result<(Vec<Untagged>, Vec<Completion>), ImapError> {
        self.await_tags(tags, None, each, None, Some(done), false)
            .await
    }

    /// [`Connection::collect`] with the FETCH literals longer than `over` bytes handed to
    /// `sink` in pieces as they arrive, as [`Connection::run_spooling`] does.
    pub async fn collect_spooling(
        &mut self,
        tags: Vec<String>,
        over: u64,
        sink: &mut dyn LiteralSink,
        each: &mut (dyn FnMut(Untagged) -> Option<Untagged> + Send),
        done: &mut OnDone<'_>,
    ) -> Result<(Vec<Untagged>, Vec<Completion>), ImapError> {
        self.await_tags(tags, None, each, Some((over, sink)), Some(done), false)
            .await
    }

    /// Reads the answer of one command sent by [`Connection::send_ahead`] while later
    /// ones may still be unanswered: stops right after its completion, leaving whatever
    /// follows to the later readings. A server may run the commands concurrently (RFC
    /// 3501 §5.5): the untagged responses returned may then include later commands'
    /// (told apart by the caller), and a later command's completion read here is kept for
    /// its own reading. With `spool`, FETCH literals longer than its size go to its sink,
    /// as [`Connection::run_spooling`] does. NO and BAD are errors.
    pub async fn collect_one(
        &mut self,
        tag: String,
        spool: Option<(u64, &mut dyn LiteralSink)>,
        each: &mut (dyn FnMut(Untagged) -> Option<Untagged> + Send),
    ) -> Result<(Vec<Untagged>, Completion), ImapError> {
        let (untagged, completions) = self
            .await_tags(vec![tag], None, each, spool, None, true)
            .await?;
        let done = sole_completion(completions)?;
        Ok((untagged, done.ok()?))
    }

    /// Reads until every command of `tags` is complete (see [`Connection::run_batch`]);
    /// with `stop_at_last`, not a response further: what follows stays in the session.
    /// With `spool`, FETCH literals longer than its size go to its sink in pieces, for
    /// this reading only.
    async fn await_tags(
        &mut self,
        tags: Vec<String>,
        source: Option<&mut (dyn std::io::Read + Send)>,
        each: &mut (dyn FnMut(Untagged) -> Option<Untagged> + Send),
        spool: Option<(u64, &mut dyn LiteralSink)>,
        on_done: Option<&mut OnDone<'_>>,
        stop_at_last: bool,
    ) -> Result<(Vec<Untagged>, Vec<Completion>), ImapError> {
        let (over, sink) = match spool {
            Some((over, sink)) => (Some(over), Some(sink)),
            None => (None, None),
        };
        self.session.set_stream_over(over);
        let r = self
            .read_tags(tags, source, each, sink, on_done, stop_at_last)
            .await;
        self.session.set_stream_over(None);
        r
    }

    /// [`Connection::await_tags`] with the session's streaming already set.
    async fn read_tags(
        &mut self,
        tags: Vec<String>,
        mut source: Option<&mut (dyn std::io::Read + Send)>,
        each: &mut (dyn FnMut(Untagged) -> Option<Untagged> + Send),
        mut sink: Option<&mut dyn LiteralSink>,
        mut on_done: Option<&mut OnDone<'_>>,
        stop_at_last: bool,
    ) -> Result<(Vec<Untagged>, Vec<Completion>), ImapError> {
        // The first failure of the sink; the literals after it are read and dropped.
        let mut sink_err: Option<std::io::Error> = None;
        let mut done: HashMap<String, Completion> = HashMap::new();
        for t in &tags {
            if let Some(c) = self.early_done.remove(t) {
                done.insert(t.clone(), c);
            }
        }
        let mut untagged = Vec::new();
        loop {
            self.flush_output(&mut source).await?;
            while let Some(ev) = self.session.next_event()? {
                match ev {
                    Event::Untagged(Untagged::Bye(t)) => self.bye = Some(t),
                    Event::Untagged(u) => untagged.extend(each(u)),
                    Event::LiteralStart { len } => {
                        let Some(sink) = sink.as_mut() else {
                            return Err(ImapError::Protocol(
                                "a streamed literal with nowhere to go".into(),
                            ));
                        };
                        if sink_err.is_none() {
                            sink_err = sink.start(len).err();
                        }
                    }
                    Event::LiteralData(piece) => {
                        if let (Some(sink), None) = (sink.as_mut(), &sink_err) {
                            sink_err = sink.data(&piece).err();
                        }
                    }
                    Event::Done {
                        tag,
                        command,
                        outcome,
                        code,
                        text,
                    } => {
                        let completion = Completion {
                            command,
                            outcome,
                            code,
                            text,
                        };
                        if let Some(f) = on_done.as_mut() {
                            f(&tag, &completion);
                        }
                        done.insert(tag, completion);
                        if stop_at_last && tags.iter().all(|t| done.contains_key(t)) {
                            break;
                        }
                    }
                    Event::Greeting(_) => {
                        return Err(ImapError::Protocol("unexpected greeting".into()));
                    }
                }
            }
            self.flush_output(&mut source).await?;
            if tags.iter().all(|t| done.contains_key(t)) {
                if let Some(e) = sink_err {
                    return Err(ImapError::Spool(e));
                }
                let completions = tags
                    .iter()
                    .filter_map(|t| done.remove(t))
                    .collect::<Vec<_>>();
                if stop_at_last {
                    // Later commands' completions, for their own reading.
                    self.early_done.extend(done);
                }
                return Ok((untagged, completions));
            }
            self.read_more().await?;
        }
    }

    /// Runs one command; NO and BAD are returned as a completion.
    pub async fn run_unchecked(
        &mut self,
        command: Command,
    ) -> Result<(Vec<Untagged>, Completion), ImapError> {
        let (u, c) = self.run_batch(vec![command]).await?;
        let done = sole_completion(c)?;
        Ok((u, done))
    }

    /// Runs one command; NO and BAD are errors.
    pub async fn run(
        &mut self,
        command: Command,
    ) -> Result<(Vec<Untagged>, Completion), ImapError> {
        let (u, done) = self.run_unchecked(command).await?;
        Ok((u, done.ok()?))
    }

    /// Waits in IDLE (RFC 2177) for at most `max`; true when the server reported a change
    /// to the selected mailbox (new, expunged or re-flagged messages). Servers drop an
    /// IDLE after 30 minutes, so callers re-issue it sooner (OfflineIMAP: 29 minutes).
    pub async fn idle(&mut self, max: std::time::Duration) -> Result<bool, ImapError> {
        let changes = self
            .idle_until(max, |u| {
                matches!(
                    u,
                    Untagged::Exists(_)
                        | Untagged::Expunge(_)
                        | Untagged::Vanished { .. }
                        | Untagged::Fetch(_)
                )
            })
            .await?;
        Ok(!changes.is_empty())
    }

    /// Waits in IDLE for at most `max`, ending it as soon as an untagged response that
    /// `is_change` accepts arrives; returns those responses (several when they came in
    /// one burst). Under NOTIFY (RFC 5465) the changes of other mailboxes come as STATUS.
    pub async fn idle_until(
        &mut self,
        max: std::time::Duration,
        is_change: impl Fn(&Untagged) -> bool,
    ) -> Result<Vec<Untagged>, ImapError> {
        if !self.has("IDLE") {
            return Err(ImapError::Protocol("the server does not offer IDLE".into()));
        }
        let tag = self.session.idle();
        let mut changes = Vec::new();
        let mut completed: Option<Completion> = None;
        let deadline = tokio::time::Instant::now() + max;
        let mut buf = vec![0u8; 16 * 1024];
        let mut sent_done = false;
        loop {
            let out = self.session.take_output();
            if !out.is_empty() {
                self.transport.write_all(&out).await?;
            }
            while let Some(ev) = self.session.next_event()? {
                match ev {
                    Event::Untagged(Untagged::Bye(t)) => self.bye = Some(t),
                    Event::Untagged(u) if is_change(&u) => changes.push(u),
                    Event::Done {
                        tag: t,
                        command,
                        outcome,
                        code,
                        text,
                    } if t == tag => {
                        completed = Some(Completion {
                            command,
                            outcome,
                            code,
                            text,
                        })
                    }
                    _ => {}
                }
            }
            if let Some(c) = completed.take() {
                c.ok()?;
                return Ok(changes);
            }
            if self.session.is_idling() && (!changes.is_empty() || sent_done) {
                self.session.done();
                sent_done = true;
                continue;
            }
            if self.session.is_idling() {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    self.session.done();
                    sent_done = true;
                    continue;
                }
                match self.transport.read_for(&mut buf, deadline - now).await? {
                    None => {}
                    Some(0) => {
                        return Err(match self.bye.take() {
                            Some(t) => ImapError::Bye(t),
                            None => ImapError::Closed,
                        });
                    }
                    Some(n) => self.session.feed(&buf[..n]),
                }
            } else {
                // Before the `+` and after DONE the socket timeout applies as usual.
                self.read_more().await?;
            }
        }
    }

    /// LOGOUT and close (errors are ignored: the server may hang up first).
    pub async fn logout(mut self) {
        let _ = self.run(Command::raw("LOGOUT")).await;
        self.transport.shutdown().await;
    }

    /// Sends LOGOUT and returns without its answer, which a task of its own reads (for
    /// at most [`LOGOUT_WAIT`]) before it closes the connection. A run that ends right
    /// after does not wait one more round trip per connection for it: LOGOUT changes
    /// nothing on the server (unlike CLOSE, it expunges nothing), and a server ends the
    /// session when the connection closes whether it had answered or not. On a tunnel
    /// the answer is waited for here: a run that ended would kill the tunnel's process
    /// (`kill_on_drop`) before it has logged out.
    pub async fn logout_unawaited(mut self) {
        let tag = self.session.enqueue(Command::raw("LOGOUT"));
        if self.flush_output(&mut None).await.is_err() {
            return;
        }
        let tunnel = self.transport.is_tunnel();
        let finish = async move {
            let mut drop_untagged = |_| None;
            let answer = self.await_tags(vec![tag], None, &mut drop_untagged, None, None, false);
            let _ = tokio::time::timeout(LOGOUT_WAIT, answer).await;
            self.transport.shutdown().await;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !tunnel => drop(runtime.spawn(finish)),
            Ok(_) => finish.await,
            // No runtime, no timer: nothing to read the answer with (not reached: the
            // transport itself runs on Tokio).
            Err(_) => {}
        }
    }
}
