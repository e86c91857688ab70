//! Modified UTF-7 mailbox names (RFC 3501 §5.1.3): `decode` on arbitrary server text
//! never panics, `encode` → `decode` gives the name back, and since the decoder is strict
//! (canonical encodings only) every name it accepts encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oi_imap::utf7::{decode, encode};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(name) = decode(&text) {
        assert_eq!(encode(&name), text, "decode accepted a non-canonical name");
    }
    let encoded = encode(&text);
    assert!(encoded.is_ascii());
    assert_eq!(decode(&encoded).ok().as_deref(), Some(&*text));
});
