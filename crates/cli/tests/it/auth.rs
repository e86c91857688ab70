//! Authentication options through the binary: `auth_mechanisms` with CRAM-MD5, the
//! `oauth2_*` options (XOAUTH2 against Dovecot's oauth2 passdb and oi-testkit's mock
//! identity provider), `proxy` / `authproxy` through oi-testkit's mock proxy, and the
//! configuration errors.

use oi_testkit::oauth::{CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN};
use oi_testkit::{DovecotOptions, MockOAuth, MockProxy};

use crate::common::{PASS, World, local_messages};
use crate::long_running::{add_to_account, eventually, resync_until, signal, wait_exit};

fn world(test: &str, options: DovecotOptions) -> Option<World> {
    World::with_options(test, &options)
}

fn output(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A config whose remote has no password: only what `remote` says.
fn write_config(w: &World, account_extra: &str, remote: &str) {
    let text = format!(
        "[general]\naccounts = Test\nmetadata = {meta}\n\n\
         [Account Test]\nlocalrepository = Local\nremoterepository = Remote\n{account_extra}\n\n\
         [Repository Local]\ntype = Maildir\nlocalfolders = {mail}\n\n\
         [Repository Remote]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {port}\n\
         remoteuser = alice\nssl = no\nstarttls = no\n{remote}\n",
        meta = w.metadata().display(),
        mail = w.maildir().display(),
        port = w.server.imap_port(),
    );
    std::fs::write(w.rc(), text).unwrap();
}

#[test]
fn cram_md5_is_preferred_when_offered() {
    let Some(w) = world(
        "cram_md5_is_preferred_when_offered",
        DovecotOptions {
            extra_mechanisms: vec!["cram-md5".into()],
            ..DovecotOptions::default()
        },
    ) else {
        return;
    };
    w.put("INBOX", "hashed");
    // OfflineIMAP's default auth_mechanisms: CRAM-MD5 comes before PLAIN and LOGIN.
    w.write_config("", "");
    let out = w.run(&["-d", "imap"]);
    let all = output(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("AUTHENTICATE CRAM-MD5"), "{all}");
    assert!(!all.contains("AUTHENTICATE PLAIN"), "{all}");
    assert!(!all.contains(PASS), "password in the debug output");
    assert_eq!(local_messages(&w.maildir().join("INBOX")).len(), 1);
    // An explicit order wins.
    w.write_config("auth_mechanisms = LOGIN, CRAM-MD5", "");
    let out = w.run(&["-d", "imap"]);
    let all = output(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("C: A1 LOGIN "), "{all}");
    assert!(!all.contains("AUTHENTICATE CRAM-MD5"), "{all}");
}

#[test]
fn xoauth2_with_a_refresh_token_never_shows_the_secrets() {
    let mock = MockOAuth::start("alice").unwrap();
    let Some(w) = world(
        "xoauth2_with_a_refresh_token",
        DovecotOptions {
            oauth2_introspection_url: Some(mock.introspection_url()),
            ..DovecotOptions::default()
        },
    ) else {
        return;
    };
    w.put("INBOX", "tokened");
    // The client secret through the Python evaluator, as users keep it out of the file.
    write_config(
        &w,
        "",
        &format!(
            "auth_mechanisms = XOAUTH2\noauth2_request_url = {}\noauth2_client_id = {CLIENT_ID}\n\
             oauth2_client_secret_eval = \"{CLIENT_SECRET}\"\noauth2_refresh_token = {REFRESH_TOKEN}\n",
            mock.token_url()
        ),
    );
    let out = w.run(&["-d", "ALL"]);
    let all = output(&out);
    assert!(out.status.success(), "{all}\n{}", w.server.logs());
    assert!(all.contains("AUTHENTICATE XOAUTH2"), "{all}");
    assert_eq!(local_messages(&w.maildir().join("INBOX")).len(), 1);
    let issued = mock.issued_tokens();
    assert_eq!(issued.len(), 1);
    for secret in [REFRESH_TOKEN, CLIENT_SECRET, issued[0].as_str()] {
        assert!(!all.contains(secret), "{secret} in the debug output");
    }
    // base64 of the XOAUTH2 string would hide the token from a plain search.
    assert!(
        !all.contains("dXNlcj1hbGljZQ"),
        "an XOAUTH2 string in the output"
    );

    // A token the server refuses: a clear authentication error, exit status 1.
    write_config(
        &w,
        "",
        "auth_mechanisms = XOAUTH2\noauth2_access_token = not-a-valid-token\n",
    );
    let out = w.run(&[]);
    let all = output(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("XOAUTH2: NO"), "{all}");
    assert!(!all.contains("not-a-valid-token"), "{all}");

    // The next mechanism is tried, and the failed one is reported as a warning, as
    // OfflineIMAP does.
    write_config(
        &w,
        "",
        &format!(
            "auth_mechanisms = XOAUTH2, PLAIN\noauth2_access_token = not-a-valid-token\nremotepass = {PASS}\n"
        ),
    );
    let out = w.run(&[]);
    let all = output(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("XOAUTH2 authentication failed: NO"), "{all}");
}

#[test]
fn the_imap_connection_goes_through_the_proxy() {
    let proxy = MockProxy::start().unwrap();
    let Some(w) = World::new("the_imap_connection_goes_through_the_proxy") else {
        return;
    };
    w.put("INBOX", "proxied");
    w.write_config("", "");
    add_to_account(&w, &format!("proxy = SOCKS5:127.0.0.1:{}", proxy.port()));
    let out = w.run(&[]);
    assert!(out.status.success(), "{}", output(&out));
    assert_eq!(local_messages(&w.maildir().join("INBOX")).len(), 1);
    let tunnels = proxy.tunnels();
    assert!(!tunnels.is_empty());
    assert!(
        tunnels
            .iter()
            .all(|t| t.protocol == "SOCKS5" && t.port == w.server.imap_port()),
        "{tunnels:?}"
    );
}

#[test]
fn authentication_options_that_cannot_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("rc");
    let run = |account: &str, remote: &str| {
        std::fs::write(
            &rc,
            format!(
                "[general]\naccounts = T\nmetadata = {m}\n\n[Account T]\nlocalrepository = L\n\
                 remoterepository = R\n{account}\n\n[Repository L]\ntype = Maildir\n\
                 localfolders = {m}/mail\n\n[Repository R]\ntype = IMAP\nremotehost = 127.0.0.1\n\
                 remoteuser = u\nremotepass = p\n{remote}\n",
                m = dir.path().display()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_offlineimap"))
            .env_clear()
            .env("HOME", dir.path())
            .arg("-c")
            .arg(&rc)
            .args(["-o", "-u", "basic"])
            .output()
            .unwrap();
        (out.status.code(), output(&out))
    };
    for (account, remote, wanted) in [
        (
            "",
            "auth_mechanisms = GSSAPI",
            "GSSAPI (Kerberos) is not supported",
        ),
        (
            "",
            "auth_mechanisms = XOAUTH2",
            "XOAUTH2 needs oauth2_access_token",
        ),
        (
            "",
            "auth_mechanisms = PLAIN, DIGEST-MD5",
            "unknown authentication mechanism \"DIGEST-MD5\"",
        ),
        ("proxy = SOCKS5:localhost", "", "is not TYPE:host:port"),
        ("proxy = socks5:localhost:1080", "", "is not a proxy type"),
        ("authproxy = HTTP:h:99999", "", "is not a port number"),
    ] {
        let (code, all) = run(account, remote);
        assert_eq!(code, Some(2), "{account}{remote}: {all}");
        assert!(all.contains(wanted), "{account}{remote}: {all}");
        let option = if remote.is_empty() {
            account.split(' ').next().unwrap()
        } else {
            "auth_mechanisms"
        };
        assert!(all.contains(option), "{all}");
    }
}

#[test]
fn a_long_running_process_keeps_its_token_until_it_expires() {
    let mock = MockOAuth::start("alice").unwrap();
    let Some(w) = world(
        "a_long_running_process_keeps_its_token_until_it_expires",
        DovecotOptions {
            oauth2_introspection_url: Some(mock.introspection_url()),
            ..DovecotOptions::default()
        },
    ) else {
        return;
    };
    w.put("INBOX", "one");
    write_config(
        &w,
        "autorefresh = 10",
        &format!(
            "auth_mechanisms = XOAUTH2\noauth2_request_url = {}\noauth2_client_id = {CLIENT_ID}\n\
             oauth2_client_secret = {CLIENT_SECRET}\noauth2_refresh_token = {REFRESH_TOKEN}\n",
            mock.token_url()
        ),
    );
    // The first token lives 4 s (the mock refuses it afterwards).
    mock.set_expires_in(Some(4));
    let mut child = w
        .command()
        .args(["-u", "basic"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let inbox = w.maildir().join("INBOX");
    eventually("first sync", || local_messages(&inbox).len() == 1);
    assert_eq!(mock.token_requests().len(), 1);
    std::thread::sleep(std::time::Duration::from_millis(4500));
    // Expired: the next sync gets a second token, which lives long.
    mock.set_expires_in(Some(3600));
    w.put("INBOX", "two");
    resync_until(&child, "second sync", || local_messages(&inbox).len() == 2);
    let issued = mock.issued_tokens();
    assert_eq!(issued.len(), 2);
    assert!(mock.introspections().contains(&(issued[1].clone(), true)));
    // Still fresh: the third sync reuses it.
    w.put("INBOX", "three");
    resync_until(&child, "third sync", || local_messages(&inbox).len() == 3);
    assert_eq!(mock.token_requests().len(), 2);
    signal(&child, "TERM");
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status}");
}

/// A stand-in for the Python `keyring` package (the real one needs a desktop secret
/// service): the same two functions OfflineIMAP 8 calls, over a JSON file in HOME.
const FAKE_KEYRING: &str = r#"
import json, os
_path = os.path.join(os.environ['HOME'], 'keyring.json')

def _load():
    try:
        with open(_path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}

def get_password(service, user):
    return _load().get('%s|%s' % (service, user))

def set_password(service, user, password):
    d = _load()
    d['%s|%s' % (service, user)] = password
    with open(_path, 'w') as f:
        json.dump(d, f)
"#;

/// A world whose remote repository has no password, and a directory for PYTHONPATH
/// holding `keyring.py` with `source`.
fn keyring_world(test: &str, source: &str) -> Option<(World, std::path::PathBuf)> {
    let w = World::new(test)?;
    w.put("INBOX", "kept in the keyring");
    w.write_config("", "");
    let rc = std::fs::read_to_string(w.rc()).unwrap();
    std::fs::write(w.rc(), rc.replace(&format!("remotepass = {PASS}\n"), "")).unwrap();
    let lib = w.dir.path().join("pylib");
    std::fs::create_dir(&lib).unwrap();
    std::fs::write(lib.join("keyring.py"), source).unwrap();
    Some((w, lib))
}

fn run_with_keyring(w: &World, lib: &std::path::Path, extra: &[&str]) -> std::process::Output {
    w.command()
        .env("PYTHONPATH", lib)
        .args(["-o", "-u", "basic"])
        .args(extra)
        .output()
        .unwrap()
}

/// OfflineIMAP 8's last password source: keyring.get_password(host, user), which
/// --ignore-keyring turns off; --update-keyring stores the password used, whatever its
/// source. The password never shows, not even in the imap debug trace.
#[test]
fn keyring_supplies_and_stores_the_password() {
    let Some((w, lib)) = keyring_world("keyring", FAKE_KEYRING) else {
        return;
    };
    let store = w.dir.path().join("keyring.json");
    // Empty keyring: the error says why there is no password.
    let out = run_with_keyring(&w, &lib, &[]);
    let text = output(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("no password configured") && text.contains("no password for 127.0.0.1"),
        "{text}"
    );
    // --update-keyring stores nothing that did not log in, nor in a dry run.
    let wrong = "Repository_Remote:remotepass=wrong";
    let out = run_with_keyring(&w, &lib, &["--update-keyring", "-k", wrong]);
    assert!(!out.status.success(), "{}", output(&out));
    let given = format!("Repository_Remote:remotepass={PASS}");
    let out = run_with_keyring(&w, &lib, &["--update-keyring", "--dry-run", "-k", &given]);
    assert!(out.status.success(), "{}", output(&out));
    assert!(!store.exists(), "stored a password it should not have");
    // With the password given by -k: stored under the host and user once it logged in.
    let out = run_with_keyring(&w, &lib, &["--update-keyring", "-k", &given]);
    assert!(out.status.success(), "{}", output(&out));
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&store).unwrap()).unwrap();
    assert_eq!(stored["127.0.0.1|alice"], PASS);
    assert_eq!(local_messages(&w.maildir().join("INBOX")).len(), 1);
    // Now the keyring alone logs in, and the password is not in the debug trace.
    w.put("INBOX", "second");
    let out = run_with_keyring(&w, &lib, &["-d", "imap"]);
    let text = output(&out);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains(PASS), "{text}");
    assert_eq!(local_messages(&w.maildir().join("INBOX")).len(), 2);
    // A transport tunnel still logs in with the password: the keyring gives it there too.
    let rc = std::fs::read_to_string(w.rc()).unwrap();
    let tunnel = format!(
        "bash -c 'exec 3<>/dev/tcp/127.0.0.1/{}; cat <&3 & cat >&3; kill %%1'",
        w.server.imap_port()
    );
    std::fs::write(
        w.rc(),
        rc.replace(
            "ssl = no\n",
            &format!("ssl = no\ntransporttunnel = {tunnel}\n"),
        ),
    )
    .unwrap();
    w.put("INBOX", "third");
    let out = run_with_keyring(&w, &lib, &[]);
    assert!(out.status.success(), "{}", output(&out));
    assert_eq!(local_messages(&w.maildir().join("INBOX")).len(), 3);
    std::fs::write(w.rc(), rc).unwrap();
    // --ignore-keyring: back to no password, and the keyring is not mentioned.
    let out = run_with_keyring(&w, &lib, &["--ignore-keyring"]);
    let text = output(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("no password configured") && !text.contains("keyring"),
        "{text}"
    );
    // The same from the configuration file's [general] ignore-keyring.
    let out = run_with_keyring(&w, &lib, &["-k", "ignore-keyring=yes"]);
    assert!(!out.status.success(), "{}", output(&out));
}

/// Without the keyring module the missing password is reported with that reason (where
/// OfflineIMAP 8 stops on the ImportError), and so is a failing keyring backend: a
/// keyring that cannot answer is no password, so that ttyui still asks for it.
#[test]
fn keyring_missing_or_failing_is_reported() {
    // What `import keyring` raises when the package is not installed.
    let missing = "raise ModuleNotFoundError(\"No module named 'keyring'\", name='keyring')\n";
    let Some((w, lib)) = keyring_world("keyring-missing", missing) else {
        return;
    };
    let out = run_with_keyring(&w, &lib, &[]);
    let text = output(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("no password configured")
            && text.contains("the Python module keyring is not installed"),
        "{text}"
    );
    let locked = "def get_password(service, user):\n    raise RuntimeError('keyring is locked')\n";
    std::fs::write(lib.join("keyring.py"), locked).unwrap();
    let out = run_with_keyring(&w, &lib, &[]);
    let text = output(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("no password configured")
            && text.contains("the Python keyring failed: RuntimeError: keyring is locked"),
        "{text}"
    );
    assert!(local_messages(&w.maildir().join("INBOX")).is_empty());
}
