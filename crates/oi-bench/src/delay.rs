//! A TCP proxy on 127.0.0.1 that delays every byte by a fixed time each way (`LATENCY_MS`):
//! the server as the tools would see it some milliseconds away, where each round trip
//! costs what it costs on a real network. Everything stays on loopback.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The proxy; it stops accepting when dropped.
#[derive(Debug)]
pub struct DelayProxy {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl DelayProxy {
    /// Listens on 127.0.0.1 and forwards each connection to `127.0.0.1:target`, each byte
    /// `one_way` later than it came, in both directions.
    pub fn start(target: u16, one_way: Duration) -> io::Result<DelayProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                for s in [&client, &server] {
                    let _ = s.set_nodelay(true);
                }
                pipe(client, server, one_way);
                pipe(s2, c2, one_way);
            }
        });
        Ok(DelayProxy { port, stop })
    }

    /// Where the tools connect.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread so that it sees the stop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` to `to`, each piece `delay` after it was read; the end of `from` ends
/// the writing side of `to` at the same delay.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Option<Vec<u8>>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let piece = match from.read(&mut buf) {
                Ok(0) | Err(_) => None,
                Ok(n) => Some(buf[..n].to_vec()),
            };
            let end = piece.is_none();
            if tx.send((Instant::now() + delay, piece)).is_err() || end {
                return;
            }
        }
    });
    std::thread::spawn(move || {
        for (due, piece) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            match piece {
                Some(p) if to.write_all(&p).is_ok() => {}
                _ => {
                    let _ = to.shutdown(Shutdown::Write);
                    return;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_whole_and_late() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap().port();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = server.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            s.write_all(&got).unwrap();
        });
        let proxy = DelayProxy::start(target, Duration::from_millis(20)).unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let t0 = Instant::now();
        c.write_all(&data).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        echo.join().unwrap();
        assert_eq!(back, data);
        // There and back again: at least two delays (a lower bound, never a timing race).
        assert!(t0.elapsed() >= Duration::from_millis(40));
    }
}
