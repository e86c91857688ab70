//! Tests of the typed layer through the public API.

use super::*;
use std::time::Duration;

fn env() -> Env {
    Env::from_vars([("HOME", "/home/me"), ("MAILROOT", "/srv/mail")])
}

const BASE: &str = "\
[general]
accounts = Main

[Account Main]
localrepository = Local
remoterepository = Remote

[Repository Local]
type = Maildir
localfolders = ~/Mail

[Repository Remote]
type = IMAP
remotehost = imap.example.org
remoteuser = me
";

fn ok(text: &str) -> Config {
    ok_with(text, &[])
}

fn ok_with(text: &str, overrides: &[Override]) -> Config {
    match load_str(text, Path::new("rc"), overrides, &env()) {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

fn errs(text: &str) -> Vec<String> {
    errs_with(text, &[])
}

fn errs_with(text: &str, overrides: &[Override]) -> Vec<String> {
    match load_str(text, Path::new("rc"), overrides, &env()) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e.errors().iter().map(|e| e.to_string()).collect(),
    }
}

fn has(list: &[String], needle: &str) -> bool {
    list.iter().any(|l| l.contains(needle))
}

fn imap(c: &Config) -> &ImapConfig {
    match &c.accounts[0].remote.kind {
        RepositoryKind::Imap(i) => i,
        other => panic!("remote is not IMAP: {other:?}"),
    }
}

fn maildir(c: &Config) -> &MaildirConfig {
    match &c.accounts[0].local.kind {
        RepositoryKind::Maildir(m) => m,
        other => panic!("local is not Maildir: {other:?}"),
    }
}

#[test]
fn minimal_config_and_defaults() {
    let c = ok(BASE);
    let g = &c.general;
    assert_eq!(g.accounts, ["Main"]);
    assert_eq!(g.metadata, PathBuf::from("/home/me/.offlineimap"));
    assert_eq!(g.maxsyncaccounts, 1);
    assert!(g.fsync);
    assert_eq!(g.socktimeout, None);
    assert_eq!(g.ui, None);
    assert_eq!(g.pythonfile, None);
    let a = &c.accounts[0];
    assert_eq!(a.name, "Main");
    assert_eq!(a.autorefresh, None);
    assert_eq!(a.quick, 0);
    assert_eq!(a.local.name, "Local");
    assert!(!a.local.readonly && a.local.createfolders && a.local.sync_deletes);
    assert_eq!(maildir(&c).localfolders, PathBuf::from("/home/me/Mail"));
    assert_eq!(maildir(&c).sep, '.');
    let i = imap(&c);
    assert_eq!(i.host, "imap.example.org");
    assert_eq!(i.user.as_deref(), Some("me"));
    assert_eq!(i.port, None);
    assert!(i.ssl && i.starttls && i.expunge);
    assert_eq!(i.ca, CaCerts::SystemDefault);
    assert_eq!(i.password, PasswordSource::None);
    assert!(i.cert_fingerprints.is_empty());
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(c.unknown.is_empty(), "{:?}", c.unknown);
}

#[test]
fn general_values() {
    let c = ok(&BASE.replace(
        "accounts = Main",
        "accounts = Main\nmetadata = $MAILROOT/state\nmaxsyncaccounts = 3\nfsync = no\nsocktimeout = 1.5\nui = basic\npythonfile = ~/.offlineimap.py",
    ));
    let g = &c.general;
    assert_eq!(g.metadata, PathBuf::from("/srv/mail/state"));
    assert_eq!(g.maxsyncaccounts, 3);
    assert!(!g.fsync);
    assert_eq!(g.socktimeout, Some(Duration::from_millis(1500)));
    assert_eq!(g.ui.as_deref(), Some("basic"));
    assert_eq!(
        g.pythonfile,
        Some(PathBuf::from("/home/me/.offlineimap.py"))
    );
    assert!(
        !has(&c.warnings, "pythonfile"),
        "the binary runs the pythonfile"
    );
    let c = ok(&BASE.replace("accounts = Main", "accounts = Main\nsocktimeout = 0"));
    assert_eq!(c.general.socktimeout, None);
}

#[test]
fn every_error_is_reported_with_location() {
    let text = BASE
        .replace(
            "remoteuser = me",
            "remoteuser = me\nssl = maybe\nremoteport = 99999",
        )
        .replace(
            "accounts = Main",
            "accounts = Main\nmaxsyncaccounts = 0\nfsync = perhaps",
        );
    let e = errs(&text);
    assert!(
        has(
            &e,
            "rc:3: [general] maxsyncaccounts: must be at least 1, not 0"
        ),
        "{e:?}"
    );
    assert!(has(&e, "rc:4: [general] fsync: not a boolean"), "{e:?}");
    assert!(
        has(
            &e,
            "rc:18: [Repository Remote] ssl: not a boolean (yes/no, true/false, on/off, 1/0): \"maybe\""
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "rc:19: [Repository Remote] remoteport: not a port number"
        ),
        "{e:?}"
    );
    assert_eq!(e.len(), 4, "{e:?}");
}

#[test]
fn accounts_list_order_and_trimming() {
    let text = format!(
        "{}\n[Account Two]\nlocalrepository = Local\nremoterepository = Remote\n",
        BASE.replace("accounts = Main", "accounts =  Two , Main,")
    );
    let c = ok(&text);
    let names: Vec<&str> = c.accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["Two", "Main"]);
}

#[test]
fn missing_account_section_is_an_error_and_unlisted_accounts_are_not_read() {
    let text = format!(
        "{}\n[Account Unused]\nlocalrepository = Nowhere\n",
        BASE.replace("accounts = Main", "accounts = Main, Ghost")
    );
    let e = errs(&text);
    assert_eq!(
        e,
        ["rc:2: [general] accounts: account Ghost has no [Account Ghost] section"]
    );
}

#[test]
fn accounts_override_from_dash_a() {
    let text = format!(
        "{}\n[Account Two]\nlocalrepository = Local\nremoterepository = Remote\n",
        BASE
    );
    let c = ok_with(&text, &[Override::accounts("Two")]);
    assert_eq!(c.general.accounts, ["Two"]);
    assert_eq!(c.accounts[0].name, "Two");
    let e = errs_with(&text, &[Override::accounts("Nope")]);
    assert_eq!(
        e,
        ["-a Nope (command line): [general] accounts: account Nope has no [Account Nope] section"]
    );
}

#[test]
fn override_parsing() {
    let o = Override::parse("Repository_Remote:ssl=no").unwrap();
    assert_eq!(
        (o.section.as_str(), o.option.as_str(), o.value.as_str()),
        ("Repository Remote", "ssl", "no")
    );
    let o = Override::parse("metadata=/x=y:z").unwrap();
    assert_eq!(
        (o.section.as_str(), o.option.as_str(), o.value.as_str()),
        ("general", "metadata", "/x=y:z")
    );
    assert!(Override::parse("noequals").is_err());
    assert!(Override::parse("=v").is_err());
    assert!(Override::parse(":k=v").is_err());
}

#[test]
fn overrides_apply_and_errors_say_command_line() {
    let c = ok_with(
        BASE,
        &[Override::parse("Repository_Remote:remoteport=1143").unwrap()],
    );
    assert_eq!(imap(&c).port, Some(1143));
    let e = errs_with(
        BASE,
        &[Override::parse("Repository_Remote:ssl=maybe").unwrap()],
    );
    assert_eq!(
        e,
        [
            "-k Repository_Remote:ssl=maybe (command line): [Repository Remote] ssl: not a boolean (yes/no, true/false, on/off, 1/0): \"maybe\""
        ]
    );
    let e = errs_with(BASE, &[Override::parse("Account_Nope:quick=1").unwrap()]);
    assert!(
        has(
            &e,
            "-k Account_Nope:quick=1 (command line): [Account Nope]: no such section"
        ),
        "{e:?}"
    );
}

#[test]
fn default_section_and_interpolation() {
    let text = format!(
        "[DEFAULT]\nbase = /data\nssl = no\n{}",
        BASE.replace("localfolders = ~/Mail", "localfolders = %(base)s/Mail")
    );
    let c = ok(&text);
    assert_eq!(maildir(&c).localfolders, PathBuf::from("/data/Mail"));
    assert!(!imap(&c).ssl, "ssl inherited from DEFAULT");
    let e = errs(&BASE.replace("localfolders = ~/Mail", "localfolders = %(nothere)s/Mail"));
    assert!(
        has(
            &e,
            "rc:10: [Repository Local] localfolders: %(nothere)s refers to an option"
        ),
        "{e:?}"
    );
}

#[test]
fn repository_types() {
    let e = errs(&BASE.replace("type = IMAP", "type = Maildir\nlocalfolders = /x"));
    assert!(
        has(
            &e,
            "[Repository Remote] type: a Maildir repository cannot be the remoterepository"
        ),
        "{e:?}"
    );
    let c = ok(&BASE.replace("type = IMAP", "type = Gmail"));
    assert!(imap(&c).gmail.is_some());
    let c = ok(&BASE.replace("type = Maildir", "type = GmailMaildir"));
    assert!(maildir(&c).gmail);
    let e = errs(&BASE.replace("type = Maildir", "type = Gmail"));
    assert!(
        has(&e, "Gmail cannot be used as a local repository"),
        "{e:?}"
    );
    // IMAP as the local side (IMAP <-> IMAP) is a repository like the remote one.
    let c = ok(&BASE.replace("type = Maildir", "type = IMAP\nremotehost = h"));
    assert!(matches!(c.accounts[0].local.kind, RepositoryKind::Imap(_)));
    // startdate and copy_ignore_eval work there too, in the local server's UIDs.
    let c = ok(&BASE.replace(
        "type = Maildir",
        "type = IMAP\nremotehost = h\nstartdate = 2021-02-03\ncopy_ignore_eval = lambda f: [3]",
    ));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let local = &c.accounts[0].local;
    assert_eq!(
        local.startdate.map(|d| (d.year, d.month, d.day)),
        Some((2021, 2, 3))
    );
    match &local.kind {
        RepositoryKind::Imap(i) => assert!(i.copy_ignore_eval.is_some()),
        other => panic!("local is not IMAP: {other:?}"),
    }
    let e = errs(&BASE.replace("type = Maildir", "type = maildir"));
    assert!(has(&e, "did you mean Maildir?"), "{e:?}");
    let e = errs(&BASE.replace("type = Maildir\n", ""));
    assert_eq!(
        e,
        ["rc:8: [Repository Local] type: required option is missing"]
    );
}

#[test]
fn missing_repository_and_required_options() {
    let e = errs(&BASE.replace("remoterepository = Remote", "remoterepository = Other"));
    assert_eq!(
        e,
        ["rc:6: [Account Main] remoterepository: there is no [Repository Other] section"]
    );
    let e = errs(
        &BASE
            .replace("localfolders = ~/Mail\n", "")
            .replace("remotehost = imap.example.org\n", ""),
    );
    assert!(
        has(
            &e,
            "[Repository Local] localfolders: required option is missing"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "[Repository Remote] remotehost: required option is missing"
        ),
        "{e:?}"
    );
    let e = errs("[general]\nui = quiet\n");
    assert_eq!(e, ["rc:1: [general] accounts: required option is missing"]);
    let e = errs("[other]\nx = 1\n");
    assert!(has(&e, "[general]: section is missing"), "{e:?}");
}

#[test]
fn imap_options() {
    let c = ok(&BASE.replace(
        "remoteuser = me",
        "remoteuser = me\nremoteport = 1993\nremotepassfile = ~/.pw\nssl = off\nstarttls = 0\nexpunge = no\n\
         sslcacertfile = OS-DEFAULT\ncert_fingerprint = AB:CD:ef0123456789abcdef0123456789abcdef01, \n",
    ));
    let i = imap(&c);
    assert_eq!(i.port, Some(1993));
    assert_eq!(
        i.password,
        PasswordSource::File(PathBuf::from("/home/me/.pw"))
    );
    assert!(!i.ssl && !i.starttls && !i.expunge);
    assert_eq!(i.ca, CaCerts::OsDefault);
    assert_eq!(
        i.cert_fingerprints,
        ["abcdef0123456789abcdef0123456789abcdef01"]
    );
    let c = ok(&BASE.replace(
        "remoteuser = me",
        "remotepass = s3cr%%t\nsslcacertfile = $MAILROOT/ca.pem",
    ));
    assert_eq!(
        imap(&c).password,
        PasswordSource::Inline(oi_core::Secret::new("s3cr%t"))
    );
    assert_eq!(
        imap(&c).ca,
        CaCerts::File(PathBuf::from("/srv/mail/ca.pem"))
    );
    let e = errs(&BASE.replace(
        "remoteuser = me",
        "remotepass = a\nremotepassfile = b\ncert_fingerprint = xyz",
    ));
    assert!(
        has(&e, "remotepass and remotepassfile are both set"),
        "{e:?}"
    );
    assert!(has(&e, "cert_fingerprint: \"xyz\" is not a hex"), "{e:?}");
}

#[test]
fn tunnels_replace_remotehost() {
    let c = ok(&BASE.replace(
        "remotehost = imap.example.org",
        "preauthtunnel = /usr/lib/dovecot/imap",
    ));
    assert_eq!(imap(&c).host, "");
    assert_eq!(
        imap(&c).preauthtunnel.as_deref(),
        Some("/usr/lib/dovecot/imap")
    );
}

#[test]
fn maildir_sep() {
    let c = ok(&BASE.replace("localfolders = ~/Mail", "localfolders = ~/Mail\nsep = /"));
    assert_eq!(maildir(&c).sep, '/');
    let e = errs(&BASE.replace("localfolders = ~/Mail", "localfolders = ~/Mail\nsep = ::"));
    assert!(has(&e, "sep: must be a single character"), "{e:?}");
}

#[test]
fn unsupported_options_warn_or_fail() {
    let c = ok(&BASE.replace(
        "remoteuser = me",
        "remoteuser = me\nmaxconnections = 3\nusecompression = no\nretrycount = 2\nremotehots = typo",
    ));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        c.unknown,
        ["rc:19: [Repository Remote] remotehots: not an OfflineIMAP option (ignored)"]
    );

    let c = ok(&BASE.replace(
        "remoteuser = me",
        "remoteuser = me\nreference = Mail\ncopy_ignore_eval = f\nsubscribedonly = no",
    ));
    assert_eq!(imap(&c).reference.as_deref(), Some("Mail"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn options_of_another_type_are_only_noted() {
    let c = ok(&BASE.replace(
        "localfolders = ~/Mail",
        "localfolders = ~/Mail\nremotehost = x",
    ));
    assert_eq!(
        c.unknown,
        ["rc:11: [Repository Local] remotehost: not used by a Maildir repository (ignored)"]
    );
}

#[test]
fn auth_mechanisms() {
    use crate::AuthMech::*;
    assert_eq!(
        imap(&ok(BASE)).auth_mechanisms,
        [Gssapi, XOAuth2, CramMd5, Plain, Login]
    );
    // Any case (OfflineIMAP wants capitals), in the given order.
    let c = ok(&BASE.replace(
        "remoteuser = me",
        "auth_mechanisms = GSSAPI, login,CRAM-MD5",
    ));
    assert_eq!(imap(&c).auth_mechanisms, [Gssapi, Login, CramMd5]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let e = errs(&BASE.replace("remoteuser = me", "auth_mechanisms = PLAIN, OAUTHBEARER"));
    assert!(
        has(
            &e,
            "rc:15: [Repository Remote] auth_mechanisms: unknown authentication mechanism \"OAUTHBEARER\""
        ),
        "{e:?}"
    );
    // Nothing left to log in with.
    let e = errs(&BASE.replace("remoteuser = me", "auth_mechanisms = GSSAPI"));
    assert!(has(&e, "GSSAPI (Kerberos) is not supported"), "{e:?}");
    let e = errs(&BASE.replace("remoteuser = me", "auth_mechanisms = XOAUTH2, GSSAPI"));
    assert!(has(&e, "XOAUTH2 needs oauth2_access_token"), "{e:?}");
    let c = ok(&BASE.replace(
        "remoteuser = me",
        "auth_mechanisms = XOAUTH2\noauth2_access_token_eval = get_token()",
    ));
    assert_eq!(imap(&c).auth_mechanisms, [XOAuth2]);
    let e = errs(&BASE.replace("remoteuser = me", "auth_mechanisms = ,"));
    assert!(has(&e, "auth_mechanisms: names no mechanism"), "{e:?}");
}

#[test]
fn oauth2_options_and_remote_identity() {
    use crate::SecretSource;
    let c = ok(&BASE.replace(
        "remoteuser = me",
        "remoteuser = me\nremote_identity = boss\noauth2_refresh_token = rt\n\
         oauth2_refresh_token_eval = never()\noauth2_client_id_eval = cid()\n\
         oauth2_client_secret = s3\noauth2_request_url = https://idp.example/token",
    ));
    let i = imap(&c);
    assert_eq!(i.remote_identity.as_deref(), Some("boss"));
    let o = &i.oauth2;
    // The plain option wins over its _eval, as OfflineIMAP reads them.
    assert!(matches!(&o.refresh_token, Some(SecretSource::Inline(s)) if s.expose() == "rt"));
    assert!(matches!(&o.client_id, Some(SecretSource::Eval(e)) if e.source == "cid()"));
    assert!(matches!(&o.client_secret, Some(SecretSource::Inline(s)) if s.expose() == "s3"));
    assert_eq!(o.request_url.as_deref(), Some("https://idp.example/token"));
    assert!(o.access_token.is_none() && o.configured());
    // Gmail has Google's token endpoint by default.
    let c = ok(&BASE.replace("type = IMAP", "type = Gmail"));
    assert_eq!(
        imap(&c).oauth2.request_url.as_deref(),
        Some("https://accounts.google.com/o/oauth2/token")
    );
}

#[test]
fn proxies() {
    use crate::{ProxySetting, ProxyType};
    let c = ok(&BASE.replace(
        "remoterepository = Remote",
        "remoterepository = Remote\nproxy = SOCKS5:localhost:9050",
    ));
    let socks = ProxySetting {
        kind: ProxyType::Socks5,
        host: "localhost".into(),
        port: 9050,
    };
    // authproxy defaults to proxy.
    assert_eq!(c.accounts[0].proxy, Some(socks.clone()));
    assert_eq!(c.accounts[0].authproxy, Some(socks.clone()));
    // An empty authproxy means none; an empty proxy too.
    let c = ok(&BASE.replace(
        "remoterepository = Remote",
        "remoterepository = Remote\nproxy = SOCKS5:localhost:9050\nauthproxy =",
    ));
    assert_eq!(c.accounts[0].proxy, Some(socks));
    assert_eq!(c.accounts[0].authproxy, None);
    let c = ok(&BASE.replace(
        "remoterepository = Remote",
        "remoterepository = Remote\nproxy =\nauthproxy = HTTP:10.1.1.1:3128",
    ));
    assert_eq!(c.accounts[0].proxy, None);
    assert_eq!(
        c.accounts[0].authproxy.as_ref().map(|p| p.kind),
        Some(ProxyType::Http)
    );
    let e = errs(&BASE.replace(
        "remoterepository = Remote",
        "remoterepository = Remote\nproxy = SOCKS5:[::1]:1080",
    ));
    assert!(
        has(
            &e,
            "rc:7: [Account Main] proxy: \"SOCKS5:[::1]:1080\" is not TYPE:host:port"
        ),
        "{e:?}"
    );
}

#[test]
fn account_autorefresh_quick_and_status_backend() {
    let c = ok(&BASE.replace(
        "remoterepository = Remote",
        "remoterepository = Remote\nautorefresh = 0.5\nquick = 10\nstatus_backend = sqlite",
    ));
    assert_eq!(c.accounts[0].autorefresh, Some(0.5));
    assert_eq!(c.accounts[0].quick, 10);
    // autorefresh and quick are implemented by the binary.
    assert!(!has(&c.warnings, "autorefresh"), "{:?}", c.warnings);
    assert!(!has(&c.warnings, "quick"), "{:?}", c.warnings);
    assert!(has(&c.warnings, "status_backend is obsolete"));
    let e = errs(&BASE.replace(
        "remoterepository = Remote",
        "remoterepository = Remote\nstatus_backend = plain\nautorefresh = soon",
    ));
    assert!(
        has(&e, "status_backend: \"plain\" is not supported"),
        "{e:?}"
    );
    assert!(
        has(&e, "autorefresh: not a number of minutes: \"soon\""),
        "{e:?}"
    );
}

#[test]
fn incompatible_pairs_are_named() {
    let e = errs(
        &BASE
            .replace(
                "remoterepository = Remote",
                "remoterepository = Remote\nmaxage = 30\nutf8foldernames = yes",
            )
            .replace(
                "localfolders = ~/Mail",
                "localfolders = ~/Mail\nstartdate = 2020-01-01",
            )
            .replace(
                "remoteuser = me",
                "remoteuser = me\ndecodefoldernames = true",
            ),
    );
    assert!(
        has(
            &e,
            "rc:7: [Account Main]: maxage (rc:7) and startdate (rc:13) cannot be used together"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "utf8foldernames (rc:8) and decodefoldernames (rc:19) cannot be used together"
        ),
        "{e:?}"
    );
}

#[test]
fn repeated_option_warns() {
    let c = ok(&BASE.replace("remoteuser = me", "remoteuser = me\nremoteuser = you"));
    assert_eq!(imap(&c).user.as_deref(), Some("you"));
    assert!(has(
        &c.warnings,
        "rc:16: [Repository Remote] remoteuser is set again (first set at rc:15)"
    ));
}

#[test]
fn shared_repository_errors_once() {
    let text = format!(
        "{}\n[Account Two]\nlocalrepository = Local\nremoterepository = Remote\n",
        BASE.replace("accounts = Main", "accounts = Main, Two")
            .replace("ssl", "x")
            .replace("remoteuser = me", "ssl = maybe")
    );
    let e = errs(&text);
    assert_eq!(e.len(), 1, "{e:?}");
}

#[test]
fn syntax_errors_stop_before_typing() {
    let e = errs("[general]\naccounts\n");
    assert_eq!(
        e,
        ["rc:2: expected \"option = value\" or \"option: value\", found \"accounts\""]
    );
}

#[test]
fn load_reads_files_and_reports_io() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rc");
    std::fs::write(&path, BASE).unwrap();
    let c = load_with_env(&path, &[], &env()).unwrap();
    assert_eq!(c.accounts.len(), 1);
    std::fs::write(&path, b"[general]\naccounts = \xff\n").unwrap();
    let e = load_with_env(&path, &[], &env()).unwrap_err();
    assert!(e.to_string().ends_with(":2: not valid UTF-8"), "{e}");
    let e = load_with_env(&dir.path().join("none"), &[], &env()).unwrap_err();
    assert!(e.to_string().contains("none"), "{e}");
}

#[test]
fn config_file_lookup_order() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".config/offlineimap")).unwrap();
    let h = home.to_str().unwrap();
    let env = Env::from_vars([("HOME", h)]);
    let e = find_config_file_in(None, &env).unwrap_err();
    assert!(e.to_string().contains(".offlineimaprc"), "{e}");
    std::fs::write(home.join(".offlineimaprc"), "").unwrap();
    assert_eq!(
        find_config_file_in(None, &env).unwrap(),
        home.join(".offlineimaprc")
    );
    std::fs::write(home.join(".config/offlineimap/config"), "").unwrap();
    assert_eq!(
        find_config_file_in(None, &env).unwrap(),
        home.join(".config/offlineimap/config")
    );
    let xdg_env = Env::from_vars([("HOME", h), ("XDG_CONFIG_HOME", "/nonexistent")]);
    assert_eq!(
        find_config_file_in(None, &xdg_env).unwrap(),
        home.join(".offlineimaprc")
    );
    assert_eq!(
        find_config_file_in(Some(Path::new("~/.offlineimaprc")), &env).unwrap(),
        home.join(".offlineimaprc")
    );
    assert!(find_config_file_in(Some(Path::new("~/missing")), &env).is_err());
}

#[test]
fn mbnames_section_is_read_when_enabled() {
    let c = ok(&format!(
        "{BASE}\n[mbnames]\nenabled = yes\nfilename = ~/x\nheader = \"set m = \"\npeitem = x\n\
         peritem = +%(accountname)s/%(foldername)s\nsep = \" \"\nfooter = \"\\n\"\nincremental = yes\n"
    ));
    let m = c.general.mbnames.unwrap();
    assert_eq!(
        m.peritem, "+%(accountname)s/%(foldername)s",
        "peritem is read raw"
    );
    assert_eq!(m.header.source, "\"set m = \"");
    assert_eq!(m.filename, PathBuf::from("/home/me/x"));
    assert!(m.incremental);
    let e = errs(&format!(
        "{BASE}\n[mbnames]\nenabled = yes\nfilename = ~/x\n"
    ));
    assert!(
        has(&e, "[mbnames] peritem: required option is missing"),
        "{e:?}"
    );
    // Disabled: nothing is read or required.
    let c = ok(&format!("{BASE}\n[mbnames]\nenabled = no\n"));
    assert!(c.general.mbnames.is_none());
}

#[test]
fn store_error_conversion_is_fatal() {
    let e = load_str("", Path::new("rc"), &[], &env()).unwrap_err();
    let s: oi_core::StoreError = e.into();
    assert_eq!(s.severity(), oi_core::Severity::Fatal);
}

#[test]
fn sync_hooks_are_read() {
    let c = ok(&BASE.replace(
        "remoterepository = Remote",
        "remoterepository = Remote\npresynchook = echo pre\npostsynchook = notmuch new",
    ));
    assert_eq!(c.accounts[0].presynchook.as_deref(), Some("echo pre"));
    assert_eq!(c.accounts[0].postsynchook.as_deref(), Some("notmuch new"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn mass_deletion_guard_option() {
    let c = ok(BASE);
    assert_eq!(
        c.accounts[0].max_delete_percent,
        crate::DEFAULT_MAX_DELETE_PERCENT
    );
    let c = ok(&BASE.replace(
        "remoterepository = Remote",
        "remoterepository = Remote\nmax_delete_percent = 100",
    ));
    assert_eq!(c.accounts[0].max_delete_percent, 100);
    let e = errs(&BASE.replace(
        "remoterepository = Remote",
        "remoterepository = Remote\nmax_delete_percent = 150",
    ));
    assert!(has(&e, "max_delete_percent: must be a percentage"), "{e:?}");
}

#[test]
fn python_options_are_kept_for_the_binary() {
    let c = ok(&BASE.replace(
        "remoteuser = me",
        "remoteuser = me\nnametrans = lambda f: f.replace('INBOX.', '')\nfolderfilter = lambda f: f != 'Trash'\nremotepasseval = get_pass(\"%(remoteuser)s\")\nremoteusereval = who()",
    ));
    let remote = &c.accounts[0].remote;
    let nt = remote.folders.nametrans.as_ref().unwrap();
    assert_eq!(nt.source, "lambda f: f.replace('INBOX.', '')");
    assert_eq!(
        (nt.section.as_str(), nt.option.as_str()),
        ("Repository Remote", "nametrans")
    );
    assert!(remote.folders.folderfilter.is_some());
    let RepositoryKind::Imap(imap) = &remote.kind else {
        panic!()
    };
    let PasswordSource::Eval(e) = &imap.password else {
        panic!("{:?}", imap.password)
    };
    assert_eq!(
        e.source, "get_pass(\"me\")",
        "interpolated before evaluation"
    );
    assert_eq!(imap.usereval.as_ref().unwrap().source, "who()");
    // remotehosteval stands in for remotehost.
    let c = ok(&BASE.replace("remotehost = imap.example.org", "remotehosteval = host()"));
    let RepositoryKind::Imap(imap) = &c.accounts[0].remote.kind else {
        panic!()
    };
    assert_eq!(imap.hosteval.as_ref().unwrap().source, "host()");
}

#[test]
fn maildir_options_and_general_defaults() {
    let c = ok(BASE);
    let m = maildir(&c);
    assert!(!m.restoreatime && !m.utime_from_header && !m.filename_use_mail_timestamp);
    assert!(m.custom_flags.is_empty());
    assert!(!c.accounts[0].maildir_windows_compatible);
    assert!(!c.accounts[0].utf8foldernames);

    let c = ok(&BASE
        .replace(
            "accounts = Main",
            "accounts = Main\nutime_from_header = yes\nfilename_use_mail_timestamp = yes",
        )
        .replace(
            "localfolders = ~/Mail",
            "localfolders = ~/Mail\nrestoreatime = yes\nfilename_use_mail_timestamp = no\n\
             customflag_z = $Junk\ncustomflag_a = $Forwarded",
        )
        .replace(
            "remoterepository = Remote",
            "remoterepository = Remote\nmaildir-windows-compatible = yes\nutf8foldernames = yes",
        ));
    assert!(c.general.utime_from_header && c.general.filename_use_mail_timestamp);
    let m = maildir(&c);
    assert!(m.restoreatime);
    // [general] is the default; the repository's own value wins.
    assert!(m.utime_from_header);
    assert!(!m.filename_use_mail_timestamp);
    assert_eq!(
        m.custom_flags,
        [('a', "$Forwarded".to_string()), ('z', "$Junk".to_string())]
    );
    assert!(c.accounts[0].maildir_windows_compatible);
    assert!(c.accounts[0].utf8foldernames);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    let e = errs(&BASE.replace(
        "localfolders = ~/Mail",
        "localfolders = ~/Mail\ncustomflag_b = two words\ncustomflag_c = \\Seen\nrestoreatime = perhaps",
    ));
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        has(&e, "customflag_b: \"two words\" is not an IMAP keyword"),
        "{e:?}"
    );
    assert!(has(&e, "customflag_c:"), "{e:?}");
    assert!(has(&e, "restoreatime: not a boolean"), "{e:?}");
    // utf8foldernames with decodefoldernames is still refused, as by OfflineIMAP.
    let e = errs(
        &BASE
            .replace(
                "remoterepository = Remote",
                "remoterepository = Remote\nutf8foldernames = yes",
            )
            .replace(
                "remoteuser = me",
                "remoteuser = me\ndecodefoldernames = yes",
            ),
    );
    assert!(has(&e, "cannot be used together"), "{e:?}");
}

#[test]
fn imap_network_options() {
    let c = ok(BASE);
    let i = imap(&c);
    assert_eq!(i.ipv6, None);
    assert_eq!(i.tls_version, TlsVersion::Negotiate);
    assert_eq!((&i.sslclientcert, &i.sslclientkey), (&None, &None));
    assert!(!i.decodefoldernames);

    let c = ok(&BASE.replace(
        "remoteuser = me",
        "remoteuser = me\nipv6 = no\nssl_version = tls1_2\ntls_level = tls_secure\n\
         sslclientcert = ~/c.pem\nsslclientkey = $MAILROOT/k.pem\ndecodefoldernames = yes",
    ));
    let i = imap(&c);
    assert_eq!(i.ipv6, Some(false));
    assert_eq!(i.tls_version, TlsVersion::Tls12);
    assert_eq!(i.sslclientcert, Some(PathBuf::from("/home/me/c.pem")));
    assert_eq!(i.sslclientkey, Some(PathBuf::from("/srv/mail/k.pem")));
    assert!(i.decodefoldernames);
    assert!(
        has(&c.warnings, "decodefoldernames is deprecated"),
        "{:?}",
        c.warnings
    );
    let c = ok(&BASE.replace(
        "remoteuser = me",
        "remoteuser = me\nipv6 = yes\nssl_version = ssl23",
    ));
    assert_eq!(imap(&c).ipv6, Some(true));
    assert_eq!(imap(&c).tls_version, TlsVersion::Negotiate);

    for (opts, needle) in [
        ("ssl_version = tls1", "only TLS 1.2 and 1.3 are implemented"),
        (
            "ssl_version = tls1_1",
            "only TLS 1.2 and 1.3 are implemented",
        ),
        ("ssl_version = ssl3", "only TLS 1.2 and 1.3 are implemented"),
        (
            "ssl_version = tls9",
            "is not tls1_2, tls1_1, tls1, ssl3 or ssl23",
        ),
        (
            "ssl_version = ssl23\ntls_level = tls_secure",
            "not allowed with tls_level = tls_secure",
        ),
        ("tls_level = tls_secure", "ssl_version must be set too"),
        (
            "tls_level = paranoid",
            "is not tls_compat, tls_no_ssl or tls_secure",
        ),
        ("sslclientkey = /k.pem", "sslclientkey needs sslclientcert"),
        ("ipv6 = maybe", "ipv6: not a boolean"),
    ] {
        let e = errs(&BASE.replace("remoteuser = me", &format!("remoteuser = me\n{opts}")));
        assert!(has(&e, needle), "{opts}: {e:?}");
    }
    // Without implicit TLS, tls_level alone is accepted, as by OfflineIMAP.
    ok(&BASE.replace(
        "remoteuser = me",
        "remoteuser = me\nssl = no\ntls_level = tls_secure",
    ));
}

#[test]
fn gmail_presets() {
    let base = BASE
        .replace("type = IMAP", "type = Gmail")
        .replace("remotehost = imap.example.org\n", "");
    let c = ok(&base);
    let i = imap(&c);
    assert_eq!(i.host, "imap.gmail.com");
    assert_eq!(i.port, Some(993));
    assert!(i.ssl);
    assert_eq!(
        i.gmail,
        Some(GmailOptions {
            trashfolder: "[Gmail]/Trash".into(),
            spamfolder: "[Gmail]/Spam".into()
        })
    );
    let c = ok(&base.replace(
        "remoteuser = me",
        "remoteuser = me\nremotehost = imap.example.com\nremoteport = 1993\n\
         trashfolder = [Google Mail]/Bin\nspamfolder = Junk\npreauthtunnel = imapd",
    ));
    let i = imap(&c);
    assert_eq!((i.host.as_str(), i.port), ("imap.example.com", Some(1993)));
    let g = i.gmail.as_ref().unwrap();
    assert_eq!(
        (g.trashfolder.as_str(), g.spamfolder.as_str()),
        ("[Google Mail]/Bin", "Junk")
    );
    assert_eq!(i.preauthtunnel, None);
    assert!(
        has(&c.warnings, "preauthtunnel is ignored for Gmail"),
        "{:?}",
        c.warnings
    );
    // Label sync stays unsupported.
    let e = errs(&base.replace(
        "remoterepository = Remote",
        "remoterepository = Remote\nsynclabels = yes",
    ));
    assert!(
        has(&e, "[Account Main] synclabels: not supported yet"),
        "{e:?}"
    );
    // trashfolder on a plain IMAP repository is only a note.
    let c = ok(&BASE.replace("remoteuser = me", "remoteuser = me\ntrashfolder = T"));
    assert!(
        has(&c.unknown, "trashfolder: not used by an IMAP repository"),
        "{:?}",
        c.unknown
    );
}

#[test]
fn legacy_options_are_accepted() {
    let c = ok(&format!(
        "{}realdelete = no\n\n[ui.Curses.Blinkenlights]\nstatuschar = .\n",
        BASE.replace("type = IMAP", "type = Gmail")
    ));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(has(&c.unknown, "realdelete: obsolete"), "{:?}", c.unknown);
}

#[test]
fn holdconnectionopen_and_keepalive_are_read() {
    let c = ok(&BASE.replace(
        "remoteuser = me",
        "remoteuser = me\nholdconnectionopen = yes\nkeepalive = 60",
    ));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(imap(&c).holdconnectionopen);
    assert_eq!(imap(&c).keepalive, Some(Duration::from_secs(60)));
    let c = ok(BASE);
    assert!(!imap(&c).holdconnectionopen);
    assert_eq!(imap(&c).keepalive, None);
    // idlefolders implies both, as in OfflineIMAP.
    let c = ok(&BASE.replace(
        "remoteuser = me",
        "remoteuser = me\nidlefolders = ['INBOX']",
    ));
    assert!(imap(&c).holdconnectionopen);
    assert_eq!(imap(&c).keepalive, Some(Duration::from_secs(29 * 60)));
    let e = errs(&BASE.replace("remoteuser = me", "remoteuser = me\nkeepalive = -5"));
    assert!(has(&e, "keepalive"), "{e:?}");
    let e = errs(&BASE.replace(
        "remoteuser = me",
        "remoteuser = me\nholdconnectionopen = maybe",
    ));
    assert!(has(&e, "holdconnectionopen"), "{e:?}");
}

#[test]
fn maxconnections_is_read() {
    let c = ok(&BASE.replace("remoteuser = me", "remoteuser = me\nmaxconnections = 3"));
    let RepositoryKind::Imap(imap) = &c.accounts[0].remote.kind else {
        panic!()
    };
    assert_eq!(imap.maxconnections, 3);
    let c = ok(BASE);
    let RepositoryKind::Imap(imap) = &c.accounts[0].remote.kind else {
        panic!()
    };
    assert_eq!(imap.maxconnections, 1);
}

#[test]
fn pipelinedepth_is_read_and_must_allow_one_command() {
    let depth = |c: &Config| imap(c).pipelinedepth;
    assert_eq!(depth(&ok(BASE)), crate::DEFAULT_PIPELINE_DEPTH);
    let c = ok(&BASE.replace("remoteuser = me", "remoteuser = me\npipelinedepth = 1"));
    assert_eq!(depth(&c), 1);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let e = errs(&BASE.replace("remoteuser = me", "remoteuser = me\npipelinedepth = 0"));
    assert!(
        has(&e, "[Repository Remote] pipelinedepth: must be at least 1"),
        "{e:?}"
    );
    let e = errs(&BASE.replace("remoteuser = me", "remoteuser = me\npipelinedepth = deep"));
    assert!(
        has(&e, "[Repository Remote] pipelinedepth: not a whole number"),
        "{e:?}"
    );
}

#[test]
fn retrycount_is_read_and_must_allow_one_attempt() {
    let imap_of = |c: &Config| match &c.accounts[0].remote.kind {
        RepositoryKind::Imap(imap) => imap.retrycount,
        _ => panic!("not IMAP"),
    };
    assert_eq!(imap_of(&ok(BASE)), 2);
    let c = ok(&BASE.replace("remoteuser = me", "remoteuser = me\nretrycount = 5"));
    assert_eq!(imap_of(&c), 5);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let e = errs(&BASE.replace("remoteuser = me", "remoteuser = me\nretrycount = 0"));
    assert!(
        e.iter()
            .any(|e| e.contains("retrycount") && e.contains("at least 1")),
        "{e:?}"
    );
    let e = errs(&BASE.replace("remoteuser = me", "remoteuser = me\nretrycount = many"));
    assert!(e.iter().any(|e| e.contains("retrycount")), "{e:?}");
}

#[test]
fn usecompression_is_a_boolean_defaulting_to_off() {
    let c = ok(BASE);
    assert!(!imap(&c).usecompression);
    let c = ok(&BASE.replace("remoteuser = me", "remoteuser = me\nusecompression = yes"));
    assert!(imap(&c).usecompression);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let e = errs(&BASE.replace("remoteuser = me", "remoteuser = me\nusecompression = maybe"));
    assert!(
        has(
            &e,
            "rc:16: [Repository Remote] usecompression: not a boolean"
        ),
        "{e:?}"
    );
}
