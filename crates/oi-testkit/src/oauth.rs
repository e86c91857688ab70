//! A **mock** OAuth 2.0 identity provider on 127.0.0.1: the token endpoint (RFC 6749 §6,
//! `grant_type=refresh_token`) and the token introspection endpoint (RFC 7662) that
//! Dovecot's `oauth2` passdb asks. No installable package provides an identity provider,
//! so the tests need this stand-in; it speaks just enough HTTP/1.1 for both clients
//! (ours and Dovecot's) and closes every connection after one answer.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The client id the mock expects.
pub const CLIENT_ID: &str = "oi-test-client";
/// The client secret the mock expects.
pub const CLIENT_SECRET: &str = "oi-client-secret-5f2c";
/// The refresh token the mock accepts.
pub const REFRESH_TOKEN: &str = "oi-refresh-token-9a41";

/// One request seen by the token endpoint, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The form fields of the body.
    pub form: HashMap<String, String>,
}

#[derive(Debug, Default)]
struct State {
    /// token → (user, expiry).
    tokens: HashMap<String, (String, Option<Instant>)>,
    token_requests: Vec<TokenRequest>,
    /// (token, answered active).
    introspections: Vec<(String, bool)>,
    expires_in: Option<u64>,
    issued: Vec<String>,
}

/// The mock identity provider, stopped when dropped.
#[derive(Debug)]
pub struct MockOAuth {
    port: u16,
    user: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl MockOAuth {
    /// Starts the mock; tokens it issues belong to `user`, and live 3600 s unless
    /// [`MockOAuth::set_expires_in`] says otherwise.
    pub fn start(user: &str) -> io::Result<MockOAuth> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State {
            expires_in: Some(3600),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop, user) = (state.clone(), stop.clone(), user.to_string());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(conn) = conn {
                        let _ = serve(conn, &state, &user);
                    }
                }
            })
        };
        Ok(MockOAuth {
            port,
            user: user.to_string(),
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// The token endpoint (`oauth2_request_url`).
    pub fn token_url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The introspection endpoint (for [`crate::DovecotOptions`]).
    pub fn introspection_url(&self) -> String {
        format!("http://127.0.0.1:{}/introspect", self.port)
    }

    /// The lifetime announced (and enforced) for tokens issued from now on; `None`
    /// leaves `expires_in` out of the answer and the token valid forever.
    pub fn set_expires_in(&self, seconds: Option<u64>) {
        lock(&self.state).expires_in = seconds;
    }

    /// Makes `token` a valid access token of the mock's user, forever.
    pub fn add_token(&self, token: &str) {
        lock(&self.state)
            .tokens
            .insert(token.to_string(), (self.user.clone(), None));
    }

    /// The requests the token endpoint received.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        lock(&self.state).token_requests.clone()
    }

    /// The access tokens issued, oldest first.
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.state).issued.clone()
    }

    /// The tokens Dovecot asked about, with the answer given.
    pub fn introspections(&self) -> Vec<(String, bool)> {
        lock(&self.state).introspections.clone()
    }
}

impl Drop for MockOAuth {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Decodes `application/x-www-form-urlencoded`.
pub fn parse_form(body: &str) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 3 <= b.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(b[i + 1]), hex(b[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn json_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Reads one request (head and Content-Length body) and answers it.
fn serve(conn: TcpStream, state: &Mutex<State>, user: &str) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    let form = parse_form(&String::from_utf8_lossy(&body));
    let path = request_line.split(' ').nth(1).unwrap_or("");
    let (status, json) = match path {
        "/token" => token(state, user, form),
        "/introspect" => introspect(state, form),
        _ => ("404 Not Found", "{\"error\":\"not_found\"}".to_string()),
    };
    let mut out = conn;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    )?;
    out.flush()
}

fn token(
    state: &Mutex<State>,
    user: &str,
    form: HashMap<String, String>,
) -> (&'static str, String) {
    let mut st = lock(state);
    st.token_requests.push(TokenRequest { form: form.clone() });
    let get = |k: &str| form.get(k).map(String::as_str);
    if get("grant_type") != Some("refresh_token") {
        return (
            "400 Bad Request",
            "{\"error\":\"unsupported_grant_type\"}".into(),
        );
    }
    if get("client_id") != Some(CLIENT_ID) || get("client_secret") != Some(CLIENT_SECRET) {
        return ("401 Unauthorized", "{\"error\":\"invalid_client\"}".into());
    }
    if get("refresh_token") != Some(REFRESH_TOKEN) {
        return (
            "400 Bad Request",
            "{\"error\":\"invalid_grant\",\"error_description\":\"Token has been expired or revoked.\"}"
                .into(),
        );
    }
    let n = st.issued.len() + 1;
    let token = format!("ya29.mock-access-{n}-{}", std::process::id());
    let expiry = st
        .expires_in
        .map(|s| Instant::now() + Duration::from_secs(s));
    st.tokens.insert(token.clone(), (user.to_string(), expiry));
    st.issued.push(token.clone());
    let expires = st
        .expires_in
        .map(|s| format!(",\"expires_in\":{s}"))
        .unwrap_or_default();
    (
        "200 OK",
        format!(
            "{{\"access_token\":\"{}\",\"token_type\":\"Bearer\",\"scope\":\"https://mail.google.com/\"{expires}}}",
            json_escape(&token)
        ),
    )
}

fn introspect(state: &Mutex<State>, form: HashMap<String, String>) -> (&'static str, String) {
    let mut st = lock(state);
    let token = form.get("token").cloned().unwrap_or_default();
    let found = st
        .tokens
        .get(&token)
        .filter(|(_, expiry)| expiry.is_none_or(|e| Instant::now() < e))
        .map(|(u, _)| u.clone());
    st.introspections.push((token, found.is_some()));
    match found {
        Some(u) => (
            "200 OK",
            format!("{{\"active\":true,\"username\":\"{}\"}}", json_escape(&u)),
        ),
        None => ("200 OK", "{\"active\":false}".into()),
    }
}
