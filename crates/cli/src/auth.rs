//! The authentication settings of an IMAP repository for the IMAP store: mechanisms,
//! proxies, and the OAuth2 tokens (with their `_eval` options evaluated as OfflineIMAP
//! does: the refresh token, client id and secret once, the access token at every login).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use anyhow::Result;
use oi_config::{AccountConfig, AuthMech, ImapConfig, ProxySetting, ProxyType, SecretSource};
use oi_core::Secret;

use crate::py::Python;

/// `auth_mechanisms` for the IMAP store.
pub(crate) fn mechanisms(list: &[AuthMech]) -> Vec<oi_imap::AuthMechanism> {
    list.iter()
        .map(|m| match m {
            AuthMech::Gssapi => oi_imap::AuthMechanism::Gssapi,
            AuthMech::XOAuth2 => oi_imap::AuthMechanism::XOAuth2,
            AuthMech::CramMd5 => oi_imap::AuthMechanism::CramMd5,
            AuthMech::Plain => oi_imap::AuthMechanism::Plain,
            AuthMech::Login => oi_imap::AuthMechanism::Login,
        })
        .collect()
}

/// A `proxy` / `authproxy` setting for the IMAP store.
pub(crate) fn proxy(p: &ProxySetting) -> oi_imap::Proxy {
    oi_imap::Proxy {
        kind: match p.kind {
            ProxyType::Socks5 => oi_imap::ProxyKind::Socks5,
            ProxyType::Socks4 => oi_imap::ProxyKind::Socks4,
            ProxyType::Http => oi_imap::ProxyKind::Http,
        },
        host: p.host.clone(),
        port: p.port,
    }
}

/// OfflineIMAP's `.strip("\n")` of evaluated values.
fn strip_newlines(s: String) -> String {
    s.trim_matches('\n').to_string()
}

fn value(python: &Python, source: &Option<SecretSource>) -> Result<Option<Secret>> {
    Ok(match source {
        None => None,
        Some(SecretSource::Inline(s)) => Some(s.clone()),
        Some(SecretSource::Eval(e)) => python
            .opt_string(e)?
            .map(|v| Secret::new(strip_newlines(v))),
    })
}

/// The OAuth2 state per account and credentials, kept for the whole process: a token
/// obtained by one sync is reused by the next one (long-running mode) until it expires,
/// as OfflineIMAP keeps it in its repository object.
static TOKENS: LazyLock<Mutex<HashMap<String, Arc<oi_imap::OAuth2>>>> =
    LazyLock::new(Mutex::default);

/// XOAUTH2 credentials, `None` when neither an access nor a refresh token is configured
/// (or XOAUTH2 is not in `auth_mechanisms`).
pub(crate) fn oauth2(
    account: &AccountConfig,
    c: &ImapConfig,
    general: &oi_config::General,
    python: &Python,
) -> Result<Option<Arc<oi_imap::OAuth2>>> {
    let o = &c.oauth2;
    if !c.auth_mechanisms.contains(&AuthMech::XOAuth2) || !o.configured() {
        return Ok(None);
    }
    let getter: Option<oi_imap::TokenGetter> = match &o.access_token {
        None => None,
        Some(SecretSource::Inline(t)) => {
            let t = t.clone();
            Some(Arc::new(move || Ok(Some(t.clone()))))
        }
        Some(SecretSource::Eval(e)) => {
            let (python, e) = (python.clone(), e.clone());
            Some(Arc::new(move || {
                python
                    .opt_string(&e)
                    .map(|v| v.map(|t| Secret::new(strip_newlines(t))))
                    .map_err(|err| format!("{err:#}"))
            }))
        }
    };
    let refresh_token = value(python, &o.refresh_token)?;
    let Some(refresh_token) = refresh_token else {
        return Ok(oi_imap::OAuth2::new(getter, None).map(Arc::new));
    };
    let client_id = value(python, &o.client_id)?;
    let client_secret = value(python, &o.client_secret)?;
    let key = [
        account.name.as_str(),
        c.host.as_str(),
        c.user.as_deref().unwrap_or(""),
        o.request_url.as_deref().unwrap_or(""),
        client_id.as_ref().map_or("", |s| s.expose()),
        client_secret.as_ref().map_or("", |s| s.expose()),
        refresh_token.expose(),
    ]
    .join("\0");
    let mut tokens = TOKENS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = tokens.get(&key) {
        return Ok(Some(known.clone()));
    }
    let refresh = oi_imap::RefreshSettings {
        request_url: o.request_url.clone(),
        client_id,
        client_secret,
        refresh_token,
        proxy: account.authproxy.as_ref().map(proxy),
        timeout: general.socktimeout,
    };
    let made = oi_imap::OAuth2::new(getter, Some(refresh)).map(Arc::new);
    if let Some(m) = &made {
        tokens.insert(key, m.clone());
    }
    Ok(made)
}
