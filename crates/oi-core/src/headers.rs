//! `filterheaders`: header fields removed from a message before it is uploaded, as
//! Python's `del message[name]` does (every field of that name, case-insensitively, with
//! its folded continuation lines; the body is untouched).

/// `body` without the header fields named in `names` (compared case-insensitively).
pub fn remove_headers(body: &[u8], names: &[String]) -> Vec<u8> {
    if names.is_empty() {
        return body.to_vec();
    }
    let mut out = Vec::with_capacity(body.len());
    let mut pos = 0;
    let mut dropping = false;
    while pos < body.len() {
        let end = body[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| pos + i + 1);
        let line = &body[pos..end];
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if content.is_empty() {
            // The empty line: the rest is the body.
            out.extend_from_slice(&body[pos..]);
            return out;
        }
        let continuation = matches!(content.first(), Some(b' ' | b'\t'));
        if !continuation {
            dropping = content
                .iter()
                .position(|&b| b == b':')
                .is_some_and(|colon| {
                    let name = content[..colon].trim_ascii_end();
                    names
                        .iter()
                        .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
                });
        }
        if !dropping {
            out.extend_from_slice(line);
        }
        pos = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_every_named_field_with_its_folds() {
        let m = b"From: a\r\nX-Spam: yes\r\n  folded\r\nSubject: s\r\nx-spam: again\r\n\r\nX-Spam: body\r\n";
        let names = vec!["X-Spam".to_string()];
        assert_eq!(
            remove_headers(m, &names),
            b"From: a\r\nSubject: s\r\n\r\nX-Spam: body\r\n".to_vec()
        );
        let lf = b"A: 1\nB: 2\n\nbody\n";
        assert_eq!(
            remove_headers(lf, &["b".to_string()]),
            b"A: 1\n\nbody\n".to_vec()
        );
        assert_eq!(remove_headers(lf, &[]), lf.to_vec());
    }
}
