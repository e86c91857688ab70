//! A **mock** proxy on 127.0.0.1 that speaks the client side of SOCKS5 (RFC 1928, no
//! authentication), SOCKS4 / SOCKS4a and HTTP `CONNECT`, and forwards the bytes to the
//! target. A test of a proxy *client* needs only this much; it records every tunnel it
//! opened so that a test can prove the traffic went through it. It refuses targets that
//! are not on the loopback interface.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One tunnel the proxy opened: the protocol (`SOCKS5`, `SOCKS4`, `SOCKS4a`, `HTTP`) and
/// the target as the client named it (`host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// Which protocol the client spoke.
    pub protocol: String,
    /// The host as the client sent it (an address or a name).
    pub host: String,
    /// The port.
    pub port: u16,
}

/// The mock proxy, stopped when dropped (open tunnels end with their connections).
#[derive(Debug)]
pub struct MockProxy {
    port: u16,
    tunnels: Arc<Mutex<Vec<Tunnel>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MockProxy {
    /// Starts the proxy on a free loopback port.
    pub fn start() -> io::Result<MockProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (tunnels, stop) = (tunnels.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(conn) = conn {
                        let tunnels = tunnels.clone();
                        std::thread::spawn(move || {
                            let _ = handle(conn, &tunnels);
                        });
                    }
                }
            })
        };
        Ok(MockProxy {
            port,
            tunnels,
            stop,
            thread: Some(thread),
        })
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The tunnels opened so far.
    pub fn tunnels(&self) -> Vec<Tunnel> {
        self.tunnels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for MockProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_byte(s: &mut TcpStream) -> io::Result<u8> {
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    Ok(b[0])
}

fn read_until_nul(s: &mut TcpStream) -> io::Result<String> {
    let mut v = Vec::new();
    loop {
        match read_byte(s)? {
            0 => return Ok(String::from_utf8_lossy(&v).into_owned()),
            b => v.push(b),
        }
        if v.len() > 1024 {
            return Err(io::Error::other("SOCKS4 field too long"));
        }
    }
}

fn loopback_target(host: &str, port: u16) -> io::Result<TcpStream> {
    let addr = (host, port)
        .to_socket_addrs()?
        .find(|a| a.ip().is_loopback())
        .ok_or_else(|| io::Error::other(format!("{host} is not a loopback address")))?;
    TcpStream::connect_timeout(&addr, Duration::from_secs(10))
}

fn handle(mut client: TcpStream, tunnels: &Mutex<Vec<Tunnel>>) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let first = read_byte(&mut client)?;
    let (protocol, host, port, upstream) = match first {
        5 => {
            let n = read_byte(&mut client)?;
            let mut methods = vec![0u8; usize::from(n)];
            client.read_exact(&mut methods)?;
            if !methods.contains(&0) {
                client.write_all(&[5, 0xff])?;
                return Ok(());
            }
            client.write_all(&[5, 0])?;
            let mut head = [0u8; 4];
            client.read_exact(&mut head)?;
            if head[0] != 5 || head[1] != 1 {
                client.write_all(&[5, 7, 0, 1, 0, 0, 0, 0, 0, 0])?;
                return Ok(());
            }
            let host = match head[3] {
                1 => {
                    let mut a = [0u8; 4];
                    client.read_exact(&mut a)?;
                    Ipv4Addr::from(a).to_string()
                }
                4 => {
                    let mut a = [0u8; 16];
                    client.read_exact(&mut a)?;
                    Ipv6Addr::from(a).to_string()
                }
                3 => {
                    let len = read_byte(&mut client)?;
                    let mut name = vec![0u8; usize::from(len)];
                    client.read_exact(&mut name)?;
                    String::from_utf8_lossy(&name).into_owned()
                }
                _ => {
                    client.write_all(&[5, 8, 0, 1, 0, 0, 0, 0, 0, 0])?;
                    return Ok(());
                }
            };
            let mut p = [0u8; 2];
            client.read_exact(&mut p)?;
            let port = u16::from_be_bytes(p);
            match loopback_target(&host, port) {
                Ok(up) => {
                    client.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
                    ("SOCKS5", host, port, up)
                }
                Err(_) => {
                    client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0])?;
                    return Ok(());
                }
            }
        }
        4 => {
            let mut head = [0u8; 7];
            client.read_exact(&mut head)?;
            let port = u16::from_be_bytes([head[1], head[2]]);
            let ip = Ipv4Addr::new(head[3], head[4], head[5], head[6]);
            let _user = read_until_nul(&mut client)?;
            let (protocol, host) = if head[3..6] == [0, 0, 0] && head[6] != 0 {
                ("SOCKS4a", read_until_nul(&mut client)?)
            } else {
                ("SOCKS4", IpAddr::V4(ip).to_string())
            };
            match loopback_target(&host, port) {
                Ok(up) => {
                    client.write_all(&[0, 0x5a, 0, 0, 0, 0, 0, 0])?;
                    (protocol, host, port, up)
                }
                Err(_) => {
                    client.write_all(&[0, 0x5b, 0, 0, 0, 0, 0, 0])?;
                    return Ok(());
                }
            }
        }
        b'C' => {
            let mut head = vec![first];
            while !head.ends_with(b"\r\n\r\n") {
                head.push(read_byte(&mut client)?);
                if head.len() > 8192 {
                    return Ok(());
                }
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            let target = text.split(' ').nth(1).unwrap_or("").to_string();
            let parsed = target.rsplit_once(':').and_then(|(h, p)| {
                let h = h.trim_start_matches('[').trim_end_matches(']');
                p.parse::<u16>().ok().map(|p| (h.to_string(), p))
            });
            let Some((host, port)) = parsed.filter(|_| text.starts_with("CONNECT ")) else {
                client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")?;
                return Ok(());
            };
            match loopback_target(&host, port) {
                Ok(up) => {
                    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
                    ("HTTP", host, port, up)
                }
                Err(_) => {
                    client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")?;
                    return Ok(());
                }
            }
        }
        _ => return Ok(()),
    };
    tunnels
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Tunnel {
            protocol: protocol.to_string(),
            host,
            port,
        });
    client.set_read_timeout(None)?;
    let (mut c2, mut u2) = (client.try_clone()?, upstream.try_clone()?);
    let mut upstream = upstream;
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}
