//! The IMAP response path: arbitrary server output fed to the sans-I/O session in
//! arbitrary chunk splits, plus the response and greeting parsers called directly.
//!
//! Input layout: byte 0 picks the session limits and the chunk pattern, the rest is what
//! the server sends. Seeds are real transcripts prefixed with one control byte.
//!
//! Besides "no panic", the target checks one property: framing is check-then-parse, so
//! the events (and the error, if any) must not depend on how the bytes were split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oi_imap::response::{parse_greeting, parse_response};
use oi_imap::session::{Command, Event, Part, Session, SessionConfig};

/// The commands the seed transcripts answer, in tag order A1, A2, …: a login with a
/// secret that needs a literal, an APPEND that waits for `+`, and the usual sync commands.
fn commands() -> Vec<Command> {
    vec![
        Command::raw("CAPABILITY"),
        Command {
            name: "LOGIN".into(),
            parts: vec![
                Part::Raw(b"LOGIN user ".to_vec()),
                Part::Str {
                    bytes: "pässword".as_bytes().to_vec(),
                    secret: true,
                },
            ],
        },
        Command::raw("LIST \"\" \"*\""),
        Command::raw("SELECT INBOX"),
        Command::raw("UID FETCH 1:* (FLAGS)"),
        Command::raw("UID FETCH 1:5 (FLAGS INTERNALDATE BODY.PEEK[])"),
        Command {
            name: "APPEND".into(),
            parts: vec![
                Part::Raw(b"APPEND INBOX (\\Seen) ".to_vec()),
                Part::Literal(b"Subject: x\r\n\r\nhi\r\n".to_vec()),
            ],
        },
        Command {
            name: "AUTHENTICATE".into(),
            parts: vec![
                Part::Raw(b"AUTHENTICATE PLAIN".to_vec()),
                Part::Continuation {
                    bytes: b"AHVzZXIAcGFzcw==".to_vec(),
                    secret: true,
                },
            ],
        },
        Command::raw("UID STORE 3 +FLAGS.SILENT (\\Seen)"),
        Command::raw("EXPUNGE"),
        Command::raw("LOGOUT"),
    ]
}

fn config(ctl: u8) -> SessionConfig {
    SessionConfig {
        pipeline_depth: usize::from(ctl & 3) + 1,
        // Small limits half the time, so that the limit checks themselves get fuzzed.
        max_literal: if ctl & 4 == 0 { 1 << 20 } else { 40 },
        max_line: if ctl & 8 == 0 { 1 << 16 } else { 64 },
    }
}

/// Everything a run produced: events, bytes written, and whether it ended in an error.
#[derive(Debug, PartialEq)]
struct Run {
    events: Vec<Event>,
    output: Vec<u8>,
    error: Option<String>,
    buffered: usize,
}

fn run(ctl: u8, data: &[u8], chunks: &mut dyn Iterator<Item = usize>) -> Run {
    let mut s = Session::new(config(ctl));
    s.set_literal_capabilities(ctl & 16 != 0, ctl & 32 != 0);
    for c in commands() {
        s.enqueue(c);
    }
    let mut r = Run {
        events: Vec::new(),
        output: s.take_output(),
        error: None,
        buffered: 0,
    };
    let mut rest = data;
    'feed: while !rest.is_empty() {
        let n = chunks.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        s.feed(chunk);
        loop {
            match s.next_event() {
                Ok(Some(e)) => r.events.push(e),
                Ok(None) => break,
                Err(e) => {
                    // The client drops the connection on any session error.
                    r.error = Some(e.to_string());
                    break 'feed;
                }
            }
            r.output.extend(s.take_output());
        }
        r.output.extend(s.take_output());
    }
    if r.error.is_none() {
        r.buffered = s.buffered_input();
        assert!(r.buffered <= data.len());
    }
    // Pending never grows past what was enqueued.
    assert!(s.pending() <= commands().len());
    r
}

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };

    // Direct parser calls on the whole input: never a panic, whatever the bytes.
    let _ = parse_response(data);
    let _ = parse_greeting(data);
    for line in data.split_inclusive(|&b| b == b'\n') {
        let _ = parse_response(line);
    }

    let whole = run(ctl, data, &mut std::iter::empty());
    // Chunk sizes from a tiny LCG seeded by the control byte: 1-byte reads, odd sizes,
    // and splits inside CRLF and literal headers all come up.
    let mut state = u32::from(ctl) | 1;
    let mut lcg = std::iter::from_fn(move || {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        Some(((state >> 16) as usize % (usize::from(ctl >> 6) * 8 + 2)) + 1)
    });
    let split = run(ctl, data, &mut lcg);
    assert_eq!(
        whole.events, split.events,
        "events depend on the read split"
    );
    assert_eq!(
        whole.error.is_some(),
        split.error.is_some(),
        "an error depends on the read split: {:?} vs {:?}",
        whole.error,
        split.error
    );
    if whole.error.is_none() {
        assert_eq!(
            whole.output, split.output,
            "output depends on the read split"
        );
        assert_eq!(whole.buffered, split.buffered);
    }
});
