//! Logging in as OfflineIMAP does (its `imapserver.py` `__authn_helper`): the configured
//! `auth_mechanisms` are tried in order; a SASL mechanism the server does not announce
//! (`AUTH=…`) is skipped, LOGIN is tried unless the server says LOGINDISABLED; a failed
//! mechanism is remembered and the next one tried; the first success ends the login.
//!
//! GSSAPI is skipped, as OfflineIMAP skips it when python-gssapi is missing (we have no
//! Kerberos support); the configuration refuses a list in which nothing else is left.

use md5::{Digest, Md5};

use crate::ImapError;
use crate::client::{AuthMechanism, Completion, ConnectSettings, Connection};
use crate::response::Outcome;
use crate::session::{Command, Part};

impl AuthMechanism {
    /// OfflineIMAP's default `auth_mechanisms`, strongest first.
    pub const DEFAULT: [AuthMechanism; 5] = [
        AuthMechanism::Gssapi,
        AuthMechanism::XOAuth2,
        AuthMechanism::CramMd5,
        AuthMechanism::Plain,
        AuthMechanism::Login,
    ];

    /// The name in `auth_mechanisms` and in the server's `AUTH=` capability.
    pub fn name(self) -> &'static str {
        match self {
            AuthMechanism::Gssapi => "GSSAPI",
            AuthMechanism::XOAuth2 => "XOAUTH2",
            AuthMechanism::CramMd5 => "CRAM-MD5",
            AuthMechanism::Plain => "PLAIN",
            AuthMechanism::Login => "LOGIN",
        }
    }

    /// The mechanism of an `auth_mechanisms` entry (ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<AuthMechanism> {
        AuthMechanism::DEFAULT
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// HMAC-MD5 (RFC 2104), the digest of CRAM-MD5 (RFC 2195).
fn hmac_md5(key: &[u8], message: &[u8]) -> [u8; 16] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..16].copy_from_slice(&Md5::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Md5::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Md5::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The CRAM-MD5 response to a challenge: `user hex(HMAC-MD5(password, challenge))`.
fn cram_md5_response(user: &str, password: &str, challenge: &[u8]) -> Vec<u8> {
    let digest: String = hmac_md5(password.as_bytes(), challenge)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{user} {digest}").into_bytes()
}

/// What one attempt came to.
enum Attempt {
    /// The mechanism does not apply (OfflineIMAP's handler returned False).
    Skipped,
    /// The server answered.
    Done(Completion),
}

fn no_password(s: &ConnectSettings) -> ImapError {
    ImapError::Config(format!(
        "no password for {}@{} (remotepass, remotepassfile, remotepasseval or ~/.netrc)",
        s.user, s.host
    ))
}

async fn attempt(
    conn: &mut Connection,
    s: &ConnectSettings,
    mech: AuthMechanism,
) -> Result<Attempt, ImapError> {
    let password = || s.password.as_ref().ok_or_else(|| no_password(s));
    let done = match mech {
        AuthMechanism::Gssapi => {
            tracing::debug!(target: "imap", "skipping GSSAPI: Kerberos is not supported");
            return Ok(Attempt::Skipped);
        }
        AuthMechanism::XOAuth2 => {
            let Some(oauth) = &s.oauth2 else {
                return Ok(Attempt::Skipped);
            };
            let token = oauth.access_token().await?;
            let mut initial = format!("user={}\x01auth=Bearer ", s.user).into_bytes();
            initial.extend_from_slice(token.expose().as_bytes());
            initial.extend_from_slice(b"\x01\x01");
            let mut error_text = None;
            let done = conn
                .authenticate("XOAUTH2", Some(initial), &mut |challenge| {
                    // A challenge after the token is the server's JSON error; an empty
                    // answer asks for the final NO.
                    error_text = Some(String::from_utf8_lossy(challenge).into_owned());
                    Ok(Vec::new())
                })
                .await?;
            match error_text {
                Some(e) if done.outcome != Outcome::Ok => Completion {
                    text: format!("{} (server said: {e})", done.text),
                    ..done
                },
                _ => done,
            }
        }
        AuthMechanism::CramMd5 => {
            let pass = password()?.expose().to_string();
            let user = s.user.clone();
            let mut answered = false;
            conn.authenticate("CRAM-MD5", None, &mut |challenge| {
                if answered {
                    return Err(ImapError::Protocol(
                        "CRAM-MD5: the server sent a second challenge".into(),
                    ));
                }
                answered = true;
                Ok(cram_md5_response(&user, &pass, challenge))
            })
            .await?
        }
        AuthMechanism::Plain => {
            let pass = password()?;
            // RFC 4616: authzid NUL authcid NUL passwd; authzid is remote_identity.
            let mut msg = Vec::new();
            msg.extend_from_slice(s.identity.as_deref().unwrap_or("").as_bytes());
            msg.push(0);
            msg.extend_from_slice(s.user.as_bytes());
            msg.push(0);
            msg.extend_from_slice(pass.expose().as_bytes());
            conn.authenticate("PLAIN", Some(msg), &mut |_| {
                Err(ImapError::Protocol(
                    "PLAIN: the server sent a second challenge".into(),
                ))
            })
            .await?
        }
        AuthMechanism::Login => {
            if conn.has("LOGINDISABLED") {
                return Err(ImapError::Auth(
                    "IMAP LOGIN is disabled by the server (LOGINDISABLED); use ssl or starttls"
                        .into(),
                ));
            }
            let pass = password()?;
            let cmd = Command {
                name: "LOGIN".into(),
                parts: vec![
                    Part::Raw(b"LOGIN ".to_vec()),
                    Part::Str {
                        bytes: s.user.as_bytes().to_vec(),
                        secret: false,
                    },
                    Part::Raw(b" ".to_vec()),
                    Part::Str {
                        bytes: pass.expose().as_bytes().to_vec(),
                        secret: true,
                    },
                ],
            };
            conn.run_unchecked(cmd).await?.1
        }
    };
    Ok(Attempt::Done(done))
}

/// Whether an error leaves the connection unusable for another mechanism.
fn breaks_connection(e: &ImapError) -> bool {
    matches!(
        e,
        ImapError::Io(_)
            | ImapError::Closed
            | ImapError::Bye(_)
            | ImapError::Timeout(_)
            | ImapError::Protocol(_)
            | ImapError::LiteralTooLarge(_)
            | ImapError::Tls(_)
    )
}

/// Logs in with the first configured mechanism that works; returns the failures of the
/// mechanisms tried before it.
pub(crate) async fn login(
    conn: &mut Connection,
    s: &ConnectSettings,
) -> Result<Vec<String>, ImapError> {
    let mut failures: Vec<String> = Vec::new();
    for &mech in &s.mechanisms {
        // LOGIN is a command, not a SASL mechanism: it needs no AUTH= capability.
        if mech != AuthMechanism::Login && !conn.has(&format!("AUTH={}", mech.name())) {
            continue;
        }
        tracing::debug!(target: "imap", "attempting {} authentication", mech.name());
        match attempt(conn, s, mech).await {
            Ok(Attempt::Skipped) => {}
            Ok(Attempt::Done(done)) if done.outcome == Outcome::Ok => {
                conn.after_login(done.code).await?;
                return Ok(failures
                    .iter()
                    .map(|f| match f.split_once(": ") {
                        Some((m, why)) => format!("{m} authentication failed: {why}"),
                        None => f.clone(),
                    })
                    .collect());
            }
            Ok(Attempt::Done(done)) => {
                let why = format!("{} {}", done.outcome, done.text);
                tracing::warn!(target: "imap", "{} authentication failed: {why}", mech.name());
                failures.push(format!("{}: {why}", mech.name()));
            }
            Err(e) if breaks_connection(&e) => return Err(e),
            Err(e) => {
                tracing::warn!(target: "imap", "{} authentication failed: {e}", mech.name());
                failures.push(format!("{}: {e}", mech.name()));
            }
        }
    }
    if !failures.is_empty() {
        return Err(ImapError::Auth(format!(
            "every authentication mechanism failed: {}",
            failures.join("; ")
        )));
    }
    let configured: Vec<&str> = s.mechanisms.iter().map(|m| m.name()).collect();
    let offered: Vec<&str> = conn
        .capabilities()
        .iter()
        .filter_map(|c| c.strip_prefix("AUTH="))
        .collect();
    Err(ImapError::Auth(format!(
        "no usable authentication mechanism: auth_mechanisms is {}, the server offers {}{}",
        configured.join(", "),
        if offered.is_empty() {
            "no SASL mechanism".to_string()
        } else {
            offered.join(", ")
        },
        if s.mechanisms.contains(&AuthMechanism::XOAuth2) && s.oauth2.is_none() {
            " (XOAUTH2 needs oauth2_access_token or oauth2_refresh_token)"
        } else {
            ""
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_md5_rfc2104_and_cram_md5_rfc2195() {
        // RFC 2104 test vector 2.
        let d = hmac_md5(b"Jefe", b"what do ya want for nothing?");
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "750c783e6ab0b503eaa86e310a5db738");
        // A key longer than a block is hashed first (RFC 2202 test 6).
        let d = hmac_md5(
            &[0xaa; 80],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd");
        // RFC 2195's example exchange.
        assert_eq!(
            cram_md5_response(
                "tim",
                "tanstaaftanstaaf",
                b"<1896.697170952@postoffice.reston.mci.net>"
            ),
            b"tim b913a602c7eda7a495b4e6e7334d3890".to_vec()
        );
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(
            AuthMechanism::from_name("cram-md5"),
            Some(AuthMechanism::CramMd5)
        );
        assert_eq!(
            AuthMechanism::from_name("XOAUTH2"),
            Some(AuthMechanism::XOAuth2)
        );
        assert_eq!(AuthMechanism::from_name("OAUTHBEARER"), None);
        assert_eq!(AuthMechanism::from_name("DIGEST-MD5"), None);
    }
}
