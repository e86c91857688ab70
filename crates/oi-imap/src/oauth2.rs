//! OAuth 2.0 access tokens for XOAUTH2, as OfflineIMAP gets them: a configured access
//! token (`oauth2_access_token`, or `oauth2_access_token_eval` asked at every login), else
//! one obtained from `oauth2_request_url` with the refresh token (RFC 6749 §6) and kept
//! until half its `expires_in` has passed.
//!
//! The token request is one HTTP/1.1 POST, written here over tokio and the rustls set-up
//! of the IMAP connection rather than pulling an HTTP client crate in. Plain `http://` is
//! accepted only for loopback hosts (a local test provider): anywhere else it would send
//! the refresh token and the client secret in the clear. Nothing secret is ever logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oi_core::Secret;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::ImapError;
use crate::proxy::Proxy;
use crate::transport::{CaSource, IpFamily, TlsSettings};

/// Asks for an access token at each XOAUTH2 login (`oauth2_access_token_eval`);
/// `Ok(None)` when it has none, so the refresh token is used.
pub type TokenGetter = Arc<dyn Fn() -> Result<Option<Secret>, String> + Send + Sync>;

/// What the token endpoint needs (`oauth2_refresh_token` and friends).
#[derive(Debug, Clone)]
pub struct RefreshSettings {
    /// `oauth2_request_url`; `None` fails the XOAUTH2 attempt as OfflineIMAP does.
    pub request_url: Option<String>,
    /// `oauth2_client_id`.
    pub client_id: Option<Secret>,
    /// `oauth2_client_secret`.
    pub client_secret: Option<Secret>,
    /// `oauth2_refresh_token`.
    pub refresh_token: Secret,
    /// `authproxy` (which defaults to `proxy`).
    pub proxy: Option<Proxy>,
    /// Socket timeout for the request.
    pub timeout: Option<Duration>,
}

struct Cached {
    token: Secret,
    /// Half the announced lifetime, as OfflineIMAP counts it.
    renew_after: Option<Instant>,
}

/// The OAuth2 credentials of one repository, with the cached access token. Share it
/// (`Arc`) between the connections, and between the syncs of a long-running process,
/// so that a token is requested only when the last one is about to expire.
pub struct OAuth2 {
    getter: Option<TokenGetter>,
    refresh: Option<RefreshSettings>,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for OAuth2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2")
            .field("access_token", &self.getter.as_ref().map(|_| "<redacted>"))
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

impl OAuth2 {
    /// `None` when neither an access token nor a refresh token is configured (then
    /// OfflineIMAP does not try XOAUTH2 at all).
    pub fn new(getter: Option<TokenGetter>, refresh: Option<RefreshSettings>) -> Option<OAuth2> {
        if getter.is_none() && refresh.is_none() {
            return None;
        }
        Some(OAuth2 {
            getter,
            refresh,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// An access token: the configured one, else the cached one while it is fresh, else
    /// a new one from the token endpoint.
    pub async fn access_token(&self) -> Result<Secret, ImapError> {
        if let Some(get) = &self.getter
            && let Some(t) =
                get().map_err(|e| ImapError::Auth(format!("oauth2_access_token_eval: {e}")))?
        {
            return Ok(t);
        }
        let Some(refresh) = &self.refresh else {
            return Err(ImapError::Auth(
                "oauth2_access_token_eval gave no token and no oauth2_refresh_token is configured"
                    .into(),
            ));
        };
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && c.renew_after.is_none_or(|t| Instant::now() < t)
        {
            return Ok(c.token.clone());
        }
        if cache.take().is_some() {
            tracing::debug!(target: "imap", "oauth2: the access token expired; asking for a new one");
        }
        let now = Instant::now();
        let (token, expires_in) = request_token(refresh).await?;
        *cache = Some(Cached {
            token: token.clone(),
            renew_after: expires_in.map(|s| now + Duration::from_secs_f64(s / 2.0)),
        });
        Ok(token)
    }
}

/// `application/x-www-form-urlencoded`, as Python's `urlencode` (`quote_plus`).
fn form_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        let mut out = String::new();
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                    out.push(char::from(b))
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The parts of an `http(s)://host[:port]/path` URL.
#[derive(Debug, PartialEq, Eq)]
struct Url {
    tls: bool,
    host: String,
    port: u16,
    /// Path and query, at least `/`.
    target: String,
}

fn parse_url(url: &str) -> Result<Url, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    };
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.contains('@') {
        return Err(format!("{url:?}: user names in the URL are not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: bad IPv6 address"))?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        None => {
            if tls {
                443
            } else {
                80
            }
        }
        Some(p) => p
            .parse()
            .map_err(|_| format!("{url:?}: {p:?} is not a port"))?,
    };
    if host.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    Ok(Url {
        tls,
        host,
        port,
        target,
    })
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// Posts the refresh grant; returns the access token and `expires_in` (seconds).
async fn request_token(r: &RefreshSettings) -> Result<(Secret, Option<f64>), ImapError> {
    let Some(url_text) = &r.request_url else {
        return Err(ImapError::Auth("no oauth2_request_url configured".into()));
    };
    let fail =
        |what: String| ImapError::Auth(format!("oauth2 token request to {url_text}: {what}"));
    let url =
        parse_url(url_text).map_err(|e| ImapError::Config(format!("oauth2_request_url: {e}")))?;
    if !url.tls && !is_loopback(&url.host) {
        return Err(ImapError::Config(format!(
            "oauth2_request_url {url_text}: plain http would send the refresh token and client secret unencrypted; use https"
        )));
    }
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if let Some(id) = &r.client_id {
        pairs.push(("client_id", id.expose()));
    }
    if let Some(s) = &r.client_secret {
        pairs.push(("client_secret", s.expose()));
    }
    pairs.push(("refresh_token", r.refresh_token.expose()));
    pairs.push(("grant_type", "refresh_token"));
    let body = form_encode(&pairs);
    let default_port = if url.tls { 443 } else { 80 };
    let host_header = match (url.host.contains(':'), url.port == default_port) {
        (true, true) => format!("[{}]", url.host),
        (true, false) => format!("[{}]:{}", url.host, url.port),
        (false, true) => url.host.clone(),
        (false, false) => format!("{}:{}", url.host, url.port),
    };
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: offlineimap\r\n\
         Accept: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        url.target,
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    tracing::debug!(target: "imap", "oauth2: requesting an access token from {url_text}");
    let exchange = async {
        let tcp = match &r.proxy {
            Some(p) => crate::proxy::connect(p, &url.host, url.port, None, IpFamily::Any).await?,
            None => crate::transport::tcp_stream(&url.host, url.port, IpFamily::Any).await?,
        };
        if url.tls {
            let config = TlsSettings {
                ca: CaSource::OsDefault,
                fingerprints: Vec::new(),
            }
            .client_config()?;
            let name = rustls::pki_types::ServerName::try_from(url.host.clone()).map_err(|e| {
                ImapError::Config(format!("oauth2_request_url: bad host name: {e}"))
            })?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| ImapError::Tls(e.to_string()))?;
            http_exchange(tls, &request).await
        } else {
            http_exchange(tcp, &request).await
        }
    };
    let timeout = r.timeout.unwrap_or(Duration::from_secs(60));
    let raw = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ImapError::Timeout(timeout))??;
    let (status, body) = parse_http_response(&raw).map_err(fail)?;
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
        fail(format!(
            "HTTP {status}, and the answer is not JSON ({} bytes)",
            body.len()
        ))
    })?;
    if let Some(err) = json.get("error") {
        let text = |v: Option<&serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let description = text(json.get("error_description"));
        let mut msg = format!("HTTP {status}: {}", text(Some(err)));
        if !description.is_empty() {
            msg.push_str(&format!(" ({description})"));
        }
        return Err(fail(msg));
    }
    let Some(token) = json.get("access_token").and_then(|v| v.as_str()) else {
        return Err(fail(format!(
            "HTTP {status}: the answer has no access_token"
        )));
    };
    if !(200..300).contains(&status) {
        return Err(fail(format!("HTTP {status}")));
    }
    let expires_in = match json.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|s| s.is_finite() && *s >= 0.0);
    tracing::debug!(target: "imap", "oauth2: got an access token (expires in {expires_in:?} s)");
    Ok((Secret::new(token), expires_in))
}

/// Sends the request and reads the whole answer (the server closes the connection).
async fn http_exchange(
    mut s: impl AsyncRead + AsyncWrite + Unpin,
    request: &[u8],
) -> Result<Vec<u8>, ImapError> {
    s.write_all(request).await?;
    s.flush().await?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(n) => n,
            // Servers that close without TLS close_notify: what arrived is the answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
        if out.len() > 1 << 20 {
            return Err(ImapError::Protocol(
                "oauth2: the token endpoint's answer exceeds 1 MiB".into(),
            ));
        }
        if let Ok(Some(len)) = complete_length(&out) {
            out.truncate(len);
            return Ok(out);
        }
    }
}

/// The length of a complete answer with a Content-Length, when it has arrived.
fn complete_length(raw: &[u8]) -> Result<Option<usize>, String> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            let n: usize = v.trim().parse().map_err(|_| "bad Content-Length")?;
            return Ok((raw.len() >= end + 4 + n).then_some(end + 4 + n));
        }
    }
    Ok(None)
}

/// Status code and body (chunked transfer coding undone) of an HTTP/1.x answer.
fn parse_http_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("incomplete HTTP answer")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!(
            "not an HTTP answer: {:?}",
            status_line.escape_debug().to_string()
        ));
    }
    let status: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad HTTP status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
            {
                chunked = true;
            } else if k.eq_ignore_ascii_case("content-length") {
                length = v.parse::<usize>().ok();
            }
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        match length {
            Some(n) if n <= rest.len() => rest[..n].to_vec(),
            Some(_) => return Err("the answer ended before its Content-Length".into()),
            None => rest.to_vec(),
        }
    };
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let nl = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunked body")?;
        let size_text = String::from_utf8_lossy(&data[..nl]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_hex:?}"))?;
        data = &data[nl + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunked body".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_is_pythons_urlencode() {
        assert_eq!(
            form_encode(&[("a b", "x/y+z=1&"), ("t", "1//0A-_.~")]),
            "a+b=x%2Fy%2Bz%3D1%26&t=1%2F%2F0A-_.~"
        );
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("https://oauth2.googleapis.com/token"),
            Ok(Url {
                tls: true,
                host: "oauth2.googleapis.com".into(),
                port: 443,
                target: "/token".into()
            })
        );
        assert_eq!(
            parse_url("http://127.0.0.1:8080?x=1"),
            Ok(Url {
                tls: false,
                host: "127.0.0.1".into(),
                port: 8080,
                target: "/?x=1".into()
            })
        );
        let v6 = parse_url("http://[::1]:99/t").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 99));
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("https://u:p@x/").is_err());
        assert!(parse_url("https://x:port/").is_err());
        assert!(is_loopback("127.0.0.1") && is_loopback("::1") && is_loopback("LocalHost"));
        assert!(!is_loopback("example.org"));
    }

    #[test]
    fn http_answers() {
        let (s, b) =
            parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}trailing").unwrap();
        assert_eq!((s, b.as_slice()), (200, b"{}".as_slice()));
        let (s, b) = parse_http_response(
            b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b.as_slice()), (400, b"{\"a\":1}".as_slice()));
        assert!(parse_http_response(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}").is_err());
        assert_eq!(
            complete_length(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{"),
            Ok(None)
        );
        assert_eq!(
            complete_length(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"),
            Ok(Some(40))
        );
    }
}
