//! COMPRESS=DEFLATE (RFC 4978): raw DEFLATE (RFC 1951, no zlib header) in both directions.
//!
//! Outgoing bytes are compressed and ended with a sync flush, so that the server can
//! decode every command as soon as it arrives. Incoming bytes are inflated only into the
//! caller's buffer, from a fixed-size buffer of compressed input: a hostile stream that
//! inflates to gigabytes costs no more memory than the reader asks for at a time.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::ImapError;

/// Compressed bytes read from the socket at most at a time.
const INPUT_SIZE: usize = 16 * 1024;

/// The two DEFLATE streams of one connection.
pub(crate) struct Deflate {
    out: Compress,
    inflate: Decompress,
    /// Compressed input not yet inflated is `input[start..end]`.
    input: Box<[u8]>,
    start: usize,
    end: usize,
    /// The server ended its DEFLATE stream: nothing more can come.
    ended: bool,
    /// The stream is damaged (the decoder's message): every later read fails.
    broken: Option<String>,
}

fn corrupt(e: impl std::fmt::Display) -> ImapError {
    ImapError::Protocol(format!("COMPRESS=DEFLATE: bad compressed data: {e}"))
}

impl Deflate {
    pub(crate) fn new() -> Deflate {
        Deflate {
            // Python's zlib.Z_DEFAULT_COMPRESSION, as OfflineIMAP (imaplib2) uses.
            out: Compress::new(Compression::default(), false),
            inflate: Decompress::new(false),
            input: vec![0u8; INPUT_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            ended: false,
            broken: None,
        }
    }

    /// `data` compressed and sync-flushed: the server can decode all of it at once.
    pub(crate) fn compress(&mut self, data: &[u8]) -> Result<Vec<u8>, ImapError> {
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.len().max(4096));
            }
            let before = self.out.total_in();
            self.out
                .compress_vec(&data[pos..], &mut out, FlushCompress::Sync)
                .map_err(corrupt)?;
            pos += usize::try_from(self.out.total_in() - before).map_err(corrupt)?;
            // The flush is complete once all input is taken and output space is left over.
            if pos >= data.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    /// Inflates buffered input into `buf`; the number of bytes produced. 0 means more
    /// input is needed (see [`Deflate::input_space`]) unless [`Deflate::ended`].
    pub(crate) fn inflate(&mut self, buf: &mut [u8]) -> Result<usize, ImapError> {
        if self.ended || buf.is_empty() {
            return Ok(0);
        }
        if let Some(e) = self.broken.take() {
            self.broken = Some(e.clone());
            return Err(corrupt(e));
        }
        let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
        let result = self.inflate.decompress(
            &self.input[self.start..self.end],
            buf,
            FlushDecompress::None,
        );
        let used = usize::try_from(self.inflate.total_in() - before_in).map_err(corrupt)?;
        let made = usize::try_from(self.inflate.total_out() - before_out).map_err(corrupt)?;
        self.start = (self.start + used).min(self.end);
        match result {
            Ok(Status::StreamEnd) => self.ended = true,
            Ok(_) => {}
            // What decoded before the damage is delivered first; the error comes next.
            Err(e) if made > 0 => self.broken = Some(e.to_string()),
            Err(e) => {
                self.broken = Some(e.to_string());
                return Err(corrupt(e));
            }
        }
        Ok(made)
    }

    /// True once the server finished its DEFLATE stream (the connection is over).
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// Free space for compressed bytes from the socket; pass how many came to
    /// [`Deflate::filled`]. An error when the buffer is full yet the inflater made no
    /// progress on it, which a valid stream never does.
    pub(crate) fn input_space(&mut self) -> Result<&mut [u8], ImapError> {
        if self.start > 0 {
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.input.len() {
            return Err(corrupt("the inflater makes no progress"));
        }
        Ok(&mut self.input[self.end..])
    }

    /// Records `n` bytes read into [`Deflate::input_space`].
    pub(crate) fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.input.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inflates everything `z` holds plus `wire`, reading as a transport would.
    fn inflate_all(z: &mut Deflate, wire: &[u8], chunk: usize) -> Result<Vec<u8>, ImapError> {
        let mut out = Vec::new();
        let mut wire = wire;
        let mut buf = vec![0u8; chunk];
        loop {
            let n = z.inflate(&mut buf)?;
            if n > 0 {
                out.extend_from_slice(&buf[..n]);
                continue;
            }
            if wire.is_empty() || z.ended() {
                return Ok(out);
            }
            let space = z.input_space()?;
            let k = space.len().min(wire.len()).min(1000);
            space[..k].copy_from_slice(&wire[..k]);
            z.filled(k);
            wire = &wire[k..];
        }
    }

    #[test]
    fn round_trip_with_sync_flush() {
        let mut client = Deflate::new();
        let mut server = Deflate::new();
        // Each write decodes completely on its own (the sync flush), in small reads.
        for msg in [
            &b"A1 NOOP\r\n"[..],
            &b"A2 APPEND INBOX {5}\r\nhello\r\n"[..],
            &vec![b'x'; 300_000][..],
        ] {
            let wire = client.compress(msg).unwrap();
            assert_eq!(inflate_all(&mut server, &wire, 777).unwrap(), msg);
        }
    }

    #[test]
    fn compressible_bomb_is_inflated_in_bounded_pieces() {
        let mut peer = Deflate::new();
        let wire = peer.compress(&vec![0u8; 20 * 1024 * 1024]).unwrap();
        assert!(wire.len() < 100 * 1024, "{}", wire.len());
        let mut z = Deflate::new();
        let mut buf = [0u8; 4096];
        let mut total = 0;
        let mut wire = &wire[..];
        loop {
            let n = z.inflate(&mut buf).unwrap();
            assert!(n <= buf.len());
            total += n;
            if n == 0 {
                if wire.is_empty() {
                    break;
                }
                let space = z.input_space().unwrap();
                let k = space.len().min(wire.len());
                space[..k].copy_from_slice(&wire[..k]);
                z.filled(k);
                wire = &wire[k..];
            }
        }
        assert_eq!(total, 20 * 1024 * 1024);
    }

    #[test]
    fn corrupted_stream_is_a_clean_error() {
        let mut peer = Deflate::new();
        let mut wire = peer.compress(b"* OK all is well\r\n").unwrap();
        // Block type 3 is reserved in RFC 1951: no decoder may accept it.
        wire[0] = 0xff;
        let e = inflate_all(&mut Deflate::new(), &wire, 64).unwrap_err();
        assert!(matches!(e, ImapError::Protocol(_)), "{e}");
        assert!(e.to_string().contains("COMPRESS=DEFLATE"), "{e}");
        // Random garbage too: an error or (if it happens to decode) some output, but
        // never a panic or an endless loop.
        let mut seed = 0x1234_5678u32;
        for _ in 0..200 {
            let junk: Vec<u8> = (0..3000)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            let _ = inflate_all(&mut Deflate::new(), &junk, 512);
        }
    }
}
