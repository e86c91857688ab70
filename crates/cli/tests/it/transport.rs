//! Connections: implicit TLS, STARTTLS, certificate fingerprints, tunnels.

use crate::common::*;

fn tls_config(w: &World, remote: &str) {
    let text = format!(
        "[general]\naccounts = Test\nmetadata = {meta}\n\n\
         [Account Test]\nlocalrepository = Local\nremoterepository = Remote\n\n\
         [Repository Local]\ntype = Maildir\nlocalfolders = {mail}\n\n\
         [Repository Remote]\ntype = IMAP\nremotehost = 127.0.0.1\n\
         remoteuser = {USER}\nremotepass = {PASS}\n{remote}\n",
        meta = w.metadata().display(),
        mail = w.maildir().display(),
    );
    std::fs::write(w.rc(), text).unwrap();
}

#[test]
fn implicit_tls_with_ca_file() {
    let Some(w) = World::new("implicit_tls") else {
        return;
    };
    w.put("INBOX", "over tls");
    tls_config(
        &w,
        &format!(
            "remoteport = {}\nssl = yes\nsslcacertfile = {}",
            w.server.imaps_port(),
            w.server.ca_cert_path().display()
        ),
    );
    w.sync_ok();
    assert_eq!(local_messages(&w.maildir().join("INBOX")).len(), 1);
}

#[test]
fn tls_with_fingerprint_only_and_wrong_fingerprint_refused() {
    let Some(w) = World::new("tls_fingerprint") else {
        return;
    };
    w.put("INBOX", "pinned");
    let fp = w.server.cert_sha256_fingerprint().unwrap();
    let port = w.server.imaps_port();
    tls_config(
        &w,
        &format!(
            "remoteport = {port}\nssl = yes\ncert_fingerprint = {}",
            "00".repeat(32)
        ),
    );
    let out = w.run(&[]);
    assert!(!out.status.success(), "a wrong fingerprint was accepted");
    assert!(
        !w.maildir().join("INBOX/cur").exists()
            || local_messages(&w.maildir().join("INBOX")).is_empty()
    );
    tls_config(
        &w,
        &format!(
            "remoteport = {port}\nssl = yes\ncert_fingerprint = {}, {fp}",
            "ab".repeat(20)
        ),
    );
    w.sync_ok();
    assert_eq!(local_messages(&w.maildir().join("INBOX")).len(), 1);
}

#[test]
fn untrusted_certificate_is_refused_by_default() {
    let Some(w) = World::new("tls_untrusted") else {
        return;
    };
    w.put("INBOX", "x");
    tls_config(
        &w,
        &format!("remoteport = {}\nssl = yes", w.server.imaps_port()),
    );
    let out = w.run(&[]);
    assert!(
        !out.status.success(),
        "a self-signed certificate was trusted without a CA"
    );
}

#[test]
fn starttls() {
    let Some(w) = World::new("starttls") else {
        return;
    };
    w.put("INBOX", "upgraded");
    tls_config(
        &w,
        &format!(
            "remoteport = {}\nssl = no\nstarttls = yes\nsslcacertfile = {}",
            w.server.imap_port(),
            w.server.ca_cert_path().display()
        ),
    );
    let out = w.run(&["-d", "imap"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("STARTTLS"), "no STARTTLS in the trace: {err}");
    assert_eq!(local_messages(&w.maildir().join("INBOX")).len(), 1);
}

#[test]
fn preauth_tunnel() {
    let Some(w) = World::new("preauth_tunnel") else {
        return;
    };
    w.put("INBOX", "tunnelled");
    let text = format!(
        "[general]\naccounts = Test\nmetadata = {meta}\n\n\
         [Account Test]\nlocalrepository = Local\nremoterepository = Remote\n\n\
         [Repository Local]\ntype = Maildir\nlocalfolders = {mail}\n\n\
         [Repository Remote]\ntype = IMAP\npreauthtunnel = {cmd}\n",
        meta = w.metadata().display(),
        mail = w.maildir().display(),
        cmd = w.server.preauth_command(USER),
    );
    std::fs::write(w.rc(), text).unwrap();
    w.sync_ok();
    assert_eq!(local_messages(&w.maildir().join("INBOX")).len(), 1);
}

#[test]
fn transport_tunnel_still_logs_in() {
    let Some(w) = World::new("transport_tunnel") else {
        return;
    };
    w.put("INBOX", "through a pipe");
    // A plain byte pipe to the server, made with bash's /dev/tcp (no extra tools needed).
    let cmd = format!(
        "bash -c 'exec 3<>/dev/tcp/127.0.0.1/{}; cat <&3 & cat >&3; kill %%1'",
        w.server.imap_port()
    );
    tls_config(
        &w,
        &format!("transporttunnel = {cmd}\nssl = no\nstarttls = no"),
    );
    w.sync_ok();
    assert_eq!(local_messages(&w.maildir().join("INBOX")).len(), 1);
}

#[test]
fn log_file_gets_the_log() {
    let Some(w) = World::new("log_file") else {
        return;
    };
    w.put("INBOX", "logged");
    w.write_config("", "");
    let log = w.dir.path().join("sync.log");
    let out = w.run(&["-l", log.to_str().unwrap()]);
    assert!(out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("copied 1 to local"), "{text}");
}
