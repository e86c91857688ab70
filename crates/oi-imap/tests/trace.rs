//! The `-d imap` trace never shows a password, against a real Dovecot from oi-testkit.
//!
//! Alone in its test binary on purpose: tracing caches per call site whether anyone listens,
//! and another test running the same IMAP code on another thread at the same moment could
//! leave that cache saying "nobody" before this test's scoped subscriber is seen, so that
//! nothing is captured at all.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use oi_core::{NullSink, Repository, Secret};
use oi_imap::{AuthMechanism, ImapConfig, ImapRepository, Security};
use oi_testkit::Dovecot;

/// A tracing writer that keeps everything written.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn trace_never_shows_the_password() {
    let Some(d) = Dovecot::start_or_skip("trace_never_shows_the_password") else {
        return;
    };
    let cap = Capture::default();
    let w = cap.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("imap=trace")
        .with_writer(move || w.clone())
        .finish();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
            for (mech, sasl_ir) in [(AuthMechanism::Login, false), (AuthMechanism::Plain, true)] {
                let _ = sasl_ir;
                let mut c = ImapConfig::new("127.0.0.1", "alice");
                c.password = Some(Secret::new("alicepass"));
                c.security = Security::Plain;
                c.port = Some(d.imap_port());
                c.timeout = Some(Duration::from_secs(30));
                c.auth_mechanisms = vec![mech];
                let r = ImapRepository::new(c, Arc::new(NullSink));
                r.list_folders().await.unwrap();
            }
        })
    });
    let text = String::from_utf8_lossy(&cap.0.lock().unwrap()).into_owned();
    assert!(
        text.contains("LOGIN \\\"alice\\\" \\\"<redacted>\\\""),
        "{text}"
    );
    assert!(text.contains("AUTHENTICATE PLAIN"), "{text}");
    assert!(!text.contains("alicepass"), "{text}");
    // base64 of "\0alice\0alicepass"
    assert!(!text.contains("AGFsaWNlAGFsaWNlcGFzcw"), "{text}");
}
