//! Proxies in front of the TCP connection (OfflineIMAP's `proxy` and `authproxy`, which
//! it hands to PySocks): SOCKS5 without authentication (RFC 1928), SOCKS4 / SOCKS4a, and
//! HTTP `CONNECT`. As PySocks does by default, host names are resolved by the proxy
//! (SOCKS5 domain addresses, SOCKS4a); addresses are sent as addresses.

use std::net::IpAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ImapError;
use crate::transport::IpFamily;

/// Which proxy protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// SOCKS version 5, no authentication.
    Socks5,
    /// SOCKS version 4 (4a for host names).
    Socks4,
    /// An HTTP proxy, through `CONNECT`.
    Http,
}

/// A proxy to connect through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// The protocol.
    pub kind: ProxyKind,
    /// The proxy's host.
    pub host: String,
    /// The proxy's port.
    pub port: u16,
}

fn proxy_error(p: &Proxy, what: impl std::fmt::Display) -> ImapError {
    ImapError::Io(std::io::Error::other(format!(
        "proxy {}:{}: {what}",
        p.host, p.port
    )))
}

/// Connects to `host:port` through the proxy; the timeout covers the whole set-up.
pub(crate) async fn connect(
    proxy: &Proxy,
    host: &str,
    port: u16,
    timeout: Option<Duration>,
    family: IpFamily,
) -> Result<TcpStream, ImapError> {
    let work = async {
        let mut s = crate::transport::tcp_stream(&proxy.host, proxy.port, family).await?;
        match proxy.kind {
            ProxyKind::Socks5 => socks5(&mut s, proxy, host, port).await?,
            ProxyKind::Socks4 => socks4(&mut s, proxy, host, port).await?,
            ProxyKind::Http => http(&mut s, proxy, host, port).await?,
        }
        Ok::<_, ImapError>(s)
    };
    match timeout {
        Some(d) => tokio::time::timeout(d, work)
            .await
            .map_err(|_| ImapError::Timeout(d))?,
        None => work.await,
    }
}

fn ip_literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

async fn socks5(s: &mut TcpStream, p: &Proxy, host: &str, port: u16) -> Result<(), ImapError> {
    s.write_all(&[5, 1, 0]).await?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await?;
    if choice != [5, 0] {
        return Err(proxy_error(
            p,
            "the SOCKS5 proxy wants authentication, which is not supported",
        ));
    }
    let mut req = vec![5, 1, 0];
    match ip_literal(host) {
        Some(IpAddr::V4(a)) => {
            req.push(1);
            req.extend_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            req.push(4);
            req.extend_from_slice(&a.octets());
        }
        None => {
            let len = u8::try_from(host.len())
                .map_err(|_| proxy_error(p, format!("host name too long: {host}")))?;
            req.push(3);
            req.push(len);
            req.extend_from_slice(host.as_bytes());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Err(proxy_error(p, "not a SOCKS5 answer"));
    }
    if head[1] != 0 {
        let why = match head[1] {
            1 => "general failure",
            2 => "connection not allowed by ruleset",
            3 => "network unreachable",
            4 => "host unreachable",
            5 => "connection refused",
            6 => "TTL expired",
            7 => "command not supported",
            8 => "address type not supported",
            _ => "unknown error",
        };
        return Err(proxy_error(
            p,
            format!("SOCKS5 connect to {host}:{port} failed: {why}"),
        ));
    }
    // The bound address, which we do not need.
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len).await?;
            usize::from(len[0]) + 2
        }
        _ => return Err(proxy_error(p, "bad SOCKS5 address type in the answer")),
    };
    let mut skip = vec![0u8; rest];
    s.read_exact(&mut skip).await?;
    Ok(())
}

async fn socks4(s: &mut TcpStream, p: &Proxy, host: &str, port: u16) -> Result<(), ImapError> {
    let mut req = vec![4, 1];
    req.extend_from_slice(&port.to_be_bytes());
    match ip_literal(host) {
        Some(IpAddr::V4(a)) => {
            req.extend_from_slice(&a.octets());
            req.push(0);
        }
        Some(IpAddr::V6(_)) => {
            return Err(proxy_error(p, "SOCKS4 cannot reach an IPv6 address"));
        }
        None => {
            // SOCKS4a: an invalid address 0.0.0.x, then the name after the user id.
            req.extend_from_slice(&[0, 0, 0, 1, 0]);
            req.extend_from_slice(host.as_bytes());
            req.push(0);
        }
    }
    s.write_all(&req).await?;
    let mut answer = [0u8; 8];
    s.read_exact(&mut answer).await?;
    if answer[1] != 0x5a {
        return Err(proxy_error(
            p,
            format!(
                "SOCKS4 connect to {host}:{port} refused (code {:#x})",
                answer[1]
            ),
        ));
    }
    Ok(())
}

async fn http(s: &mut TcpStream, p: &Proxy, host: &str, port: u16) -> Result<(), ImapError> {
    let authority = match ip_literal(host) {
        Some(IpAddr::V6(a)) => format!("[{a}]:{port}"),
        _ => format!("{host}:{port}"),
    };
    s.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await?;
    // Byte by byte: the server's first bytes may follow the proxy's answer at once.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if s.read(&mut b).await? == 0 {
            return Err(proxy_error(p, "closed the connection during CONNECT"));
        }
        head.push(b[0]);
        if head.len() > 16 * 1024 {
            return Err(proxy_error(p, "answer to CONNECT too long"));
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status = text.lines().next().unwrap_or("");
    let code = status.split(' ').nth(1).unwrap_or("");
    if !code.starts_with('2') {
        return Err(proxy_error(
            p,
            format!("CONNECT {authority} refused: {}", status.trim()),
        ));
    }
    Ok(())
}
