//! The upload marker: OfflineIMAP's `X-OfflineIMAP` header, which makes an uploaded
//! message findable on the server after a crash.
//!
//! The engine records the marker in the status before the APPEND and adds the header to
//! the uploaded copy; a run interrupted between the APPEND and the record of the new UID
//! then searches the server for the marker instead of uploading the message twice
//! (isync's X-TUID serves the same purpose). OfflineIMAP itself adds the header only for
//! servers without UIDPLUS; the header name and the `<crc32>-<number>` value format are
//! kept so both tools recognise it.

/// The header's name.
pub const MARKER_HEADER: &str = "X-OfflineIMAP";

/// The end of the header section: the offset just after the line end that precedes the
/// empty line, or `None` when the message has no empty line.
fn header_end(body: &[u8]) -> Option<usize> {
    let crlf = find(body, b"\r\n\r\n").map(|i| i + 2);
    let lf = find(body, b"\n\n").map(|i| i + 1);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether the bytes hold the empty line that ends the header section.
pub fn has_header_end(body: &[u8]) -> bool {
    header_end(body).is_some()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Adds `X-OfflineIMAP: value` as the last header line (where Python's `add_header` puts
/// it), with the message's own line ends.
pub fn insert_marker(body: &[u8], value: &str) -> Vec<u8> {
    let eol: &[u8] = if find(body, b"\r\n").is_some() {
        b"\r\n"
    } else {
        b"\n"
    };
    let mut line = format!("{MARKER_HEADER}: {value}").into_bytes();
    line.extend_from_slice(eol);
    match header_end(body) {
        Some(at) => {
            let mut out = Vec::with_capacity(body.len() + line.len());
            out.extend_from_slice(&body[..at]);
            out.extend_from_slice(&line);
            out.extend_from_slice(&body[at..]);
            out
        }
        // No empty line: the message is all header (or empty).
        None => {
            let mut out = body.to_vec();
            if !out.is_empty() && !out.ends_with(b"\n") {
                out.extend_from_slice(eol);
            }
            out.extend_from_slice(&line);
            out
        }
    }
}

/// The value of the first `X-OfflineIMAP` header in the header section, if any.
pub fn marker_of(body: &[u8]) -> Option<String> {
    let head = &body[..header_end(body).unwrap_or(body.len())];
    head.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, rest) = line.split_at(colon);
        if !name.eq_ignore_ascii_case(MARKER_HEADER.as_bytes()) {
            return None;
        }
        let value = std::str::from_utf8(&rest[1..]).ok()?.trim();
        (!value.is_empty()).then(|| value.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_goes_after_the_last_header_line() {
        assert_eq!(
            insert_marker(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore", "9-1"),
            b"A: 1\r\nB: 2\r\nX-OfflineIMAP: 9-1\r\n\r\nbody\r\n\r\nmore"
        );
        assert_eq!(
            insert_marker(b"A: 1\n\nb", "v"),
            b"A: 1\nX-OfflineIMAP: v\n\nb"
        );
        assert_eq!(insert_marker(b"A: 1", "v"), b"A: 1\nX-OfflineIMAP: v\n");
    }

    #[test]
    fn marker_is_read_back_from_the_header_only() {
        let with = insert_marker(b"Subject: x\r\n\r\nX-OfflineIMAP: not-this\r\n", "12-34");
        assert_eq!(marker_of(&with).as_deref(), Some("12-34"));
        assert_eq!(marker_of(b"Subject: x\n\nX-OfflineIMAP: body\n"), None);
        assert_eq!(
            marker_of(b"x-offlineimap:  5-6 \n\n"),
            Some("5-6".to_string())
        );
    }
}
