//! Authentication against a real Dovecot: CRAM-MD5, the order and selection of
//! `auth_mechanisms`, XOAUTH2 with OAuth2 tokens (checked by Dovecot's oauth2 passdb
//! against oi-testkit's mock identity provider), PLAIN with an authorization identity,
//! and connections through proxies (oi-testkit's mock SOCKS/HTTP proxy).

use std::sync::Arc;
use std::time::Duration;

use oi_core::{NullSink, Repository, Secret};
use oi_imap::{
    AuthMechanism, CaSource, ImapConfig, ImapRepository, OAuth2, Proxy, ProxyKind, RefreshSettings,
    Security, TokenGetter,
};
use oi_testkit::oauth::{CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN};
use oi_testkit::{Dovecot, DovecotOptions, MockOAuth, MockProxy};

fn config(d: &Dovecot, mechanisms: &[AuthMechanism]) -> ImapConfig {
    let mut c = ImapConfig::new("127.0.0.1", "alice");
    c.password = Some(Secret::new("alicepass"));
    c.security = Security::Plain;
    c.port = Some(d.imap_port());
    c.ca = CaSource::File(d.ca_cert_path());
    c.timeout = Some(Duration::from_secs(30));
    c.auth_mechanisms = mechanisms.to_vec();
    c
}

fn repo(c: ImapConfig) -> ImapRepository {
    ImapRepository::new(c, Arc::new(NullSink))
}

fn dovecot(test: &str, options: DovecotOptions) -> Option<Dovecot> {
    Dovecot::start_or_skip_with(test, &options)
}

#[tokio::test]
async fn cram_md5_and_the_order_of_mechanisms() {
    let Some(d) = dovecot(
        "cram_md5_and_the_order_of_mechanisms",
        DovecotOptions {
            extra_mechanisms: vec!["cram-md5".into()],
            ..DovecotOptions::default()
        },
    ) else {
        return;
    };
    // CRAM-MD5 alone logs in.
    let r = repo(config(&d, &[AuthMechanism::CramMd5]));
    assert!(r.list_folders().await.unwrap().contains(&"INBOX".into()));
    // A wrong password fails every mechanism; the error names each with the server's
    // answer, in the configured order.
    let mut c = config(&d, &[AuthMechanism::CramMd5, AuthMechanism::Plain]);
    c.password = Some(Secret::new("wrong"));
    let e = repo(c).list_folders().await.unwrap_err().to_string();
    let (cram, plain) = (
        e.find("CRAM-MD5: NO").unwrap(),
        e.find("PLAIN: NO").unwrap(),
    );
    assert!(cram < plain, "{e}");
    // OfflineIMAP's default list: GSSAPI and XOAUTH2 are skipped (no Kerberos, no token),
    // CRAM-MD5 is offered and works.
    let r = repo(config(&d, &AuthMechanism::DEFAULT));
    r.connect().await.unwrap();
}

#[tokio::test]
async fn mechanisms_the_server_does_not_offer_are_skipped() {
    let Some(d) = dovecot(
        "mechanisms_the_server_does_not_offer_are_skipped",
        DovecotOptions::default(),
    ) else {
        return;
    };
    // This server offers PLAIN and LOGIN only.
    let e = repo(config(&d, &[AuthMechanism::CramMd5, AuthMechanism::Gssapi]))
        .list_folders()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no usable authentication mechanism") && e.contains("PLAIN"),
        "{e}"
    );
    // Skipped, then PLAIN works.
    let r = repo(config(
        &d,
        &[
            AuthMechanism::Gssapi,
            AuthMechanism::CramMd5,
            AuthMechanism::XOAuth2,
            AuthMechanism::Plain,
        ],
    ));
    r.connect().await.unwrap();
    // Without a password, PLAIN fails with a clear message instead of sending nothing.
    let mut c = config(&d, &[AuthMechanism::Plain]);
    c.password = None;
    let e = repo(c).list_folders().await.unwrap_err().to_string();
    assert!(e.contains("PLAIN: configuration: no password"), "{e}");
}

fn static_token(token: &str) -> TokenGetter {
    let t = Secret::new(token);
    Arc::new(move || Ok(Some(t.clone())))
}

fn refresh_settings(mock: &MockOAuth) -> RefreshSettings {
    RefreshSettings {
        request_url: Some(mock.token_url()),
        client_id: Some(Secret::new(CLIENT_ID)),
        client_secret: Some(Secret::new(CLIENT_SECRET)),
        refresh_token: Secret::new(REFRESH_TOKEN),
        proxy: None,
        timeout: Some(Duration::from_secs(30)),
    }
}

fn oauth_config(d: &Dovecot, oauth: Option<OAuth2>) -> ImapConfig {
    let mut c = config(d, &[AuthMechanism::XOAuth2]);
    c.password = None;
    c.oauth2 = oauth.map(Arc::new);
    c
}

#[tokio::test]
async fn xoauth2_with_access_and_refresh_tokens() {
    let mock = MockOAuth::start("alice").unwrap();
    let Some(d) = dovecot(
        "xoauth2_with_access_and_refresh_tokens",
        DovecotOptions {
            oauth2_introspection_url: Some(mock.introspection_url()),
            ..DovecotOptions::default()
        },
    ) else {
        return;
    };
    // A configured access token.
    mock.add_token("static-token-1");
    let r = repo(oauth_config(
        &d,
        OAuth2::new(Some(static_token("static-token-1")), None),
    ));
    assert!(
        r.list_folders().await.unwrap().contains(&"INBOX".into()),
        "{}",
        d.logs()
    );
    assert_eq!(
        mock.introspections(),
        vec![("static-token-1".to_string(), true)]
    );

    // The refresh token: one request to the token endpoint, with OfflineIMAP's form.
    mock.set_expires_in(Some(2));
    let r = repo(oauth_config(
        &d,
        OAuth2::new(None, Some(refresh_settings(&mock))),
    ));
    if let Err(e) = r.connect().await {
        panic!("{e:?}\n{:?}\n{}", mock.introspections(), d.logs());
    }
    let requests = mock.token_requests();
    assert_eq!(requests.len(), 1);
    let form = &requests[0].form;
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["refresh_token"], REFRESH_TOKEN);
    assert_eq!(form["client_id"], CLIENT_ID);
    assert_eq!(form["client_secret"], CLIENT_SECRET);
    // Within half its lifetime the token is reused.
    r.connect().await.unwrap();
    assert_eq!(mock.token_requests().len(), 1);
    // Past its lifetime (the mock now rejects the first token), a new one is obtained and
    // used: the login succeeds only with the second token.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    r.connect().await.unwrap();
    let issued = mock.issued_tokens();
    assert_eq!(issued.len(), 2);
    let last = mock.introspections().last().cloned().unwrap();
    assert_eq!(last, (issued[1].clone(), true));

    // Failures last: Dovecot delays the logins from an address after a failed one
    // (auth_penalty), which would outlast the short token lifetime above.
    // A wrong access token: a clear authentication error carrying Dovecot's answer.
    let r = repo(oauth_config(
        &d,
        OAuth2::new(Some(static_token("bogus")), None),
    ));
    let e = r.list_folders().await.unwrap_err().to_string();
    assert!(e.contains("XOAUTH2: NO"), "{e}");
    assert!(!e.contains("bogus"), "the token leaked into the error: {e}");

    // A refresh token the provider refuses: its error, not a crash.
    let mut bad = refresh_settings(&mock);
    bad.refresh_token = Secret::new("bad-refresh-77");
    let r = repo(oauth_config(&d, OAuth2::new(None, Some(bad))));
    let e = r.list_folders().await.unwrap_err().to_string();
    assert!(e.contains("invalid_grant"), "{e}");
    assert!(
        !e.contains("bad-refresh-77") && !e.contains(CLIENT_SECRET),
        "{e}"
    );

    // An eval'd access token that is None falls back to the refresh token.
    mock.set_expires_in(Some(3600));
    let none: TokenGetter = Arc::new(|| Ok(None));
    let before = mock.token_requests().len();
    let r = repo(oauth_config(
        &d,
        OAuth2::new(Some(none), Some(refresh_settings(&mock))),
    ));
    r.connect().await.unwrap();
    assert_eq!(mock.token_requests().len(), before + 1);
}

#[tokio::test]
async fn plain_with_an_authorization_identity() {
    let Some(d) = dovecot(
        "plain_with_an_authorization_identity",
        DovecotOptions {
            master_user: Some(("admin".into(), "adminpass".into())),
            ..DovecotOptions::default()
        },
    ) else {
        return;
    };
    d.create_mailbox("alice", "OnlyAlice").unwrap();
    // The master user authenticates and is authorized as alice (remote_identity).
    let mut c = config(&d, &[AuthMechanism::Plain]);
    c.user = "admin".into();
    c.password = Some(Secret::new("adminpass"));
    c.identity = Some("alice".into());
    let folders = repo(c).list_folders().await.unwrap();
    assert!(folders.contains(&"OnlyAlice".into()), "{folders:?}");
    // Without the identity the master user is nobody.
    let mut c = config(&d, &[AuthMechanism::Plain]);
    c.user = "admin".into();
    c.password = Some(Secret::new("adminpass"));
    assert!(repo(c).list_folders().await.is_err());
}

#[tokio::test]
async fn connections_through_proxies() {
    let proxy = MockProxy::start().unwrap();
    let Some(d) = dovecot("connections_through_proxies", DovecotOptions::default()) else {
        return;
    };
    let cases = [
        (ProxyKind::Socks5, "127.0.0.1", "SOCKS5"),
        (ProxyKind::Socks5, "localhost", "SOCKS5"),
        (ProxyKind::Socks4, "127.0.0.1", "SOCKS4"),
        (ProxyKind::Socks4, "localhost", "SOCKS4a"),
        (ProxyKind::Http, "localhost", "HTTP"),
    ];
    for (i, (kind, host, protocol)) in cases.into_iter().enumerate() {
        let mut c = config(&d, &[AuthMechanism::Plain]);
        c.host = host.into();
        c.security = Security::StartTls;
        c.net.proxy = Some(Proxy {
            kind,
            host: "127.0.0.1".into(),
            port: proxy.port(),
        });
        repo(c).connect().await.unwrap();
        let t = &proxy.tunnels()[i];
        assert_eq!(
            (t.protocol.as_str(), t.host.as_str(), t.port),
            (protocol, host, d.imap_port())
        );
    }
    // A proxy that is not there: an error, never a direct connection.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let mut c = config(&d, &[AuthMechanism::Plain]);
    c.net.proxy = Some(Proxy {
        kind: ProxyKind::Socks5,
        host: "127.0.0.1".into(),
        port: dead_port,
    });
    assert!(repo(c).connect().await.is_err());
}

#[tokio::test]
async fn the_token_request_goes_through_the_auth_proxy() {
    let proxy = MockProxy::start().unwrap();
    let mock = MockOAuth::start("alice").unwrap();
    let Some(d) = dovecot(
        "the_token_request_goes_through_the_auth_proxy",
        DovecotOptions {
            oauth2_introspection_url: Some(mock.introspection_url()),
            ..DovecotOptions::default()
        },
    ) else {
        return;
    };
    let mut settings = refresh_settings(&mock);
    settings.proxy = Some(Proxy {
        kind: ProxyKind::Socks5,
        host: "127.0.0.1".into(),
        port: proxy.port(),
    });
    let r = repo(oauth_config(&d, OAuth2::new(None, Some(settings))));
    r.connect().await.unwrap();
    // Only the token request used the proxy; the IMAP connection went direct.
    let tunnels = proxy.tunnels();
    assert_eq!(tunnels.len(), 1, "{tunnels:?}");
    let token_port: u16 = mock
        .token_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    assert_eq!(tunnels[0].port, token_port);
    assert_eq!(mock.token_requests().len(), 1);
}
