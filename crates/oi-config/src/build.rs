//! From raw INI to typed config: each section kind reads its own options, every problem is
//! collected, and each OfflineIMAP option we do not implement yet is classified.

use crate::error::{ConfigError, Origin};
use crate::expand::Env;
use crate::raw::RawConfig;
use crate::types::*;
use oi_core::Secret;
use std::path::PathBuf;
use std::time::Duration;

/// How we treat an OfflineIMAP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Support {
    /// Read by the builder into a typed field.
    Read,
    /// Not implemented, and ignoring it only costs speed, display or long-running behaviour:
    /// a warning.
    Warn,
    /// A boolean feature switch we do not implement, where ignoring `true` could delete,
    /// duplicate or misplace mail, reach a different server or account, or send mail
    /// somewhere unexpected: an error only when turned on.
    RejectIfTrue,
    /// Documented by OfflineIMAP once, read by OfflineIMAP 8 nowhere: ignored with a
    /// debug-level note.
    Obsolete,
}

use Support::*;

/// `[general]`.
const GENERAL: &[(&str, Support)] = &[
    ("accounts", Read),
    ("metadata", Read),
    ("maxsyncaccounts", Read),
    ("fsync", Read),
    ("socktimeout", Read),
    ("ui", Read),
    ("pythonfile", Read),
    ("ignore-readonly", Read),
    ("utime_from_header", Read),
    ("filename_use_mail_timestamp", Read),
    ("dry-run", Read),
    ("ignore-keyring", Read),
    ("update-keyring", Read),
];

/// `[Account X]`.
const ACCOUNT: &[(&str, Support)] = &[
    ("localrepository", Read),
    ("remoterepository", Read),
    ("autorefresh", Read),
    ("quick", Read),
    // Ours, not OfflineIMAP's: the mass-deletion guard (see AccountConfig).
    ("max_delete_percent", Read),
    ("status_backend", Read),
    ("presynchook", Read),
    ("postsynchook", Read),
    ("skipsleep", Read),
    ("labelsheader", Warn),
    ("ignorelabels", Warn),
    ("maxsize", Read),
    ("maxage", Read),
    ("maildir-windows-compatible", Read),
    ("synclabels", RejectIfTrue),
    ("filterheaders", Read),
    ("proxy", Read),
    ("authproxy", Read),
    ("utf8foldernames", Read),
];

/// Every `[Repository X]`.
const REPOSITORY: &[(&str, Support)] = &[
    ("type", Read),
    ("readonly", Read),
    ("createfolders", Read),
    ("sync_deletes", Read),
    // Both values behave alike: OfflineIMAP 8 forgets its folder objects after every sync
    // (accounts.py), so even its static filter is evaluated again at each autorefresh;
    // `true` only moves the call later within one sync. We apply folderfilter afresh at
    // every sync too. Read so that a non-boolean value is an error.
    ("dynamic_folderfilter", Read),
    ("nametrans", Read),
    ("folderfilter", Read),
    ("folderincludes", Read),
    ("foldersort", Read),
    ("startdate", Read),
];

/// `type = Maildir`, on top of [`REPOSITORY`]; `customflag_[a-z]` is handled by pattern.
const MAILDIR: &[(&str, Support)] = &[
    ("localfolders", Read),
    ("sep", Read),
    ("restoreatime", Read),
    ("utime_from_header", Read),
    ("filename_use_mail_timestamp", Read),
];

/// `type = IMAP`, on top of [`REPOSITORY`]. The `*eval` options need pythonfile; the TLS
/// client certificate and identity options would log in as someone else or fail oddly.
const IMAP: &[(&str, Support)] = &[
    ("remotehost", Read),
    ("remoteport", Read),
    ("remoteuser", Read),
    ("remotepass", Read),
    ("remotepassfile", Read),
    ("ssl", Read),
    ("starttls", Read),
    ("sslcacertfile", Read),
    ("cert_fingerprint", Read),
    ("preauthtunnel", Read),
    ("transporttunnel", Read),
    ("expunge", Read),
    ("auth_mechanisms", Read),
    ("sep", Read),
    ("remotehosteval", Read),
    ("remoteporteval", Read),
    ("remoteusereval", Read),
    ("remotepasseval", Read),
    ("remote_identity", Read),
    ("oauth2_client_id", Read),
    ("oauth2_client_id_eval", Read),
    ("oauth2_client_secret", Read),
    ("oauth2_client_secret_eval", Read),
    ("oauth2_refresh_token", Read),
    ("oauth2_refresh_token_eval", Read),
    ("oauth2_access_token", Read),
    ("oauth2_access_token_eval", Read),
    ("oauth2_request_url", Read),
    ("sslclientcert", Read),
    ("sslclientkey", Read),
    // `LIST <reference> "*"`: the server's full names are synced; folders created from the
    // other side get `<reference><sep>` in front (OfflineIMAP's makefolder).
    ("reference", Read),
    ("decodefoldernames", Read),
    ("subscribedonly", Read),
    ("copy_ignore_eval", Read),
    ("ssl_version", Read),
    ("tls_level", Read),
    ("ipv6", Read),
    // The IMAP `realdelete` of OfflineIMAP 6 (Gmail): OfflineIMAP 8 no longer reads it.
    ("realdelete", Obsolete),
    ("idlefolders", Read),
    ("usecompression", Read),
    ("maxconnections", Read),
    // Ours, not OfflineIMAP's (which ignores it): commands in flight per connection.
    ("pipelinedepth", Read),
    // OfflineIMAP's one copy thread per folder, so that messages arrive in UID order: a
    // folder here always copies in UID order over its one connection (pipelined), so
    // both values get the behaviour they ask for and nothing needs reading.
    ("singlethreadperfolder", Read),
    ("holdconnectionopen", Read),
    ("keepalive", Read),
    ("newmail_hook", Read),
    ("retrycount", Read),
];

/// `type = Gmail`, on top of [`REPOSITORY`] and [`IMAP`].
const GMAIL: &[(&str, Support)] = &[("trashfolder", Read), ("spamfolder", Read)];

/// Options only the Gmail types have; listed so that they are not called misspellings.
const GMAIL_ONLY: &[&str] = &["trashfolder", "spamfolder"];

fn lookup(tables: &[&[(&str, Support)]], key: &str) -> Option<Support> {
    if key.len() == "customflag_a".len()
        && key.starts_with("customflag_")
        && key.ends_with(|c: char| c.is_ascii_lowercase())
        && tables
            .iter()
            .any(|t| t.iter().any(|(name, _)| *name == "localfolders"))
    {
        return Some(Read);
    }
    tables
        .iter()
        .flat_map(|t| t.iter())
        .find(|(name, _)| *name == key)
        .map(|&(_, s)| s)
}

fn known_anywhere(key: &str) -> bool {
    GMAIL_ONLY.contains(&key)
        || key.starts_with("customflag_")
        || [GENERAL, ACCOUNT, REPOSITORY, MAILDIR, IMAP]
            .iter()
            .any(|t| t.iter().any(|(name, _)| *name == key))
}

/// Python's `int()` on a config string: surrounding whitespace, a sign, and single
/// underscores between digits are allowed.
fn parse_py_int(text: &str) -> Option<i64> {
    let t = text.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    t.replace('_', "").parse().ok()
}

/// Python's `float()` for the finite values a config needs.
fn parse_py_float(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.contains("__") || t.starts_with('_') || t.ends_with('_') {
        return None;
    }
    let v: f64 = t.replace('_', "").parse().ok()?;
    v.is_finite().then_some(v)
}

/// OfflineIMAP's `TYPE:host:port` (split on every `:`, so no IPv6 addresses), TYPE being
/// a PySocks proxy type (case-sensitive, as Python's `getattr`).
fn parse_proxy(text: &str) -> Result<ProxySetting, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let [kind, host, port] = parts.as_slice() else {
        return Err(format!(
            "{text:?} is not TYPE:host:port (for example SOCKS5:localhost:1080)"
        ));
    };
    let kind = match *kind {
        "SOCKS5" | "PROXY_TYPE_SOCKS5" => ProxyType::Socks5,
        "SOCKS4" | "PROXY_TYPE_SOCKS4" => ProxyType::Socks4,
        "HTTP" | "PROXY_TYPE_HTTP" => ProxyType::Http,
        other => {
            return Err(format!(
                "{other:?} is not a proxy type: SOCKS5, SOCKS4 or HTTP (in capitals)"
            ));
        }
    };
    if host.is_empty() {
        return Err(format!("{text:?} names no proxy host"));
    }
    let port = parse_py_int(port)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{port:?} is not a port number"))?;
    Ok(ProxySetting {
        kind,
        host: (*host).to_string(),
        port,
    })
}

/// Python's `time.strptime(text, "%Y-%m-%d")` for the days `maxage` and `startdate` take:
/// a four-digit year, a month and day of one or two digits, the day valid for the month;
/// OfflineIMAP refuses years before 1900.
pub(crate) fn parse_day(text: &str) -> Option<Day> {
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || y.len() != 4
        || !(1..=2).contains(&m.len())
        || !(1..=2).contains(&d.len())
        || ![y, m, d]
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let (year, month, day): (i32, u8, u8) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (year >= 1900 && (1..=days_in_month).contains(&day)).then_some(Day { year, month, day })
}

/// The part of a value that a reader would take for an inline comment: from a `#` or `;`
/// that follows white space.
fn inline_comment(value: &str) -> Option<&str> {
    let bytes = value.as_bytes();
    (1..bytes.len())
        .find(|&i| matches!(bytes[i], b'#' | b';') && bytes[i - 1].is_ascii_whitespace())
        .map(|i| &value[i..])
}

/// configparser's `BOOLEAN_STATES`.
fn parse_py_bool(text: &str) -> Option<bool> {
    match text.to_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Collects typed values, errors, warnings and notes while walking the sections.
pub(crate) struct Builder<'a> {
    raw: &'a RawConfig,
    env: &'a Env,
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) warnings: Vec<String>,
    pub(crate) unknown: Vec<String>,
}

impl<'a> Builder<'a> {
    pub(crate) fn new(raw: &'a RawConfig, env: &'a Env) -> Self {
        Builder {
            raw,
            env,
            errors: Vec::new(),
            warnings: raw.warnings.clone(),
            unknown: Vec::new(),
        }
    }

    fn option_error(&mut self, section: &str, key: &str, at: &Origin, message: impl Into<String>) {
        self.errors.push(ConfigError::Option {
            at: at.clone(),
            section: section.to_string(),
            option: key.to_string(),
            message: message.into(),
        });
    }

    fn header(&self, section: &str) -> Option<Origin> {
        self.raw.section(section).and_then(|s| s.header.clone())
    }

    /// The interpolated value, or None when unset; interpolation errors are recorded.
    fn string(&mut self, section: &str, key: &str) -> Option<(String, Origin)> {
        match self.raw.get(section, key)? {
            Ok((v, origin)) => Some((v, origin.clone())),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn required(&mut self, section: &str, key: &str) -> Option<(String, Origin)> {
        if self.raw.raw_entry(section, key).is_none() {
            let at = self.header(section);
            self.errors.push(match at {
                Some(at) => ConfigError::Option {
                    at,
                    section: section.to_string(),
                    option: key.to_string(),
                    message: "required option is missing".into(),
                },
                None => ConfigError::Section {
                    at: None,
                    section: section.to_string(),
                    message: format!("required option {key} is missing"),
                },
            });
            return None;
        }
        self.string(section, key)
    }

    fn parsed<T>(
        &mut self,
        section: &str,
        key: &str,
        what: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<(T, Origin)> {
        let (text, at) = self.string(section, key)?;
        match parse(&text) {
            Some(v) => Some((v, at)),
            None => {
                self.option_error(section, key, &at, format!("not {what}: {text:?}"));
                None
            }
        }
    }

    fn boolean(&mut self, section: &str, key: &str, default: bool) -> bool {
        self.parsed(
            section,
            key,
            "a boolean (yes/no, true/false, on/off, 1/0)",
            parse_py_bool,
        )
        .map_or(default, |(v, _)| v)
    }

    fn path(&mut self, section: &str, key: &str) -> Option<PathBuf> {
        self.string(section, key)
            .map(|(v, _)| self.env.expand_path(&v))
    }

    /// Warns about or rejects the options of one section that we do not implement, and
    /// notes the ones OfflineIMAP would not read either.
    fn classify(&mut self, section: &str, tables: &[&[(&str, Support)]], kind: &str) {
        let own: Vec<String> = self
            .raw
            .section(section)
            .map(|s| s.entries().iter().map(|e| e.key.clone()).collect())
            .unwrap_or_default();
        let keys: Vec<(String, Origin)> = self
            .raw
            .keys(section)
            .into_iter()
            .map(|e| (e.key.clone(), e.origin.clone()))
            .collect();
        for (key, at) in keys {
            match lookup(tables, &key) {
                Some(Read) => {}
                Some(Warn) => self.warn_unsupported(&key, &at),
                Some(RejectIfTrue) if self.boolean(section, &key, false) => {
                    self.reject_unsupported(section, &key, &at);
                }
                Some(RejectIfTrue) => {}
                Some(Obsolete) => self.unknown.push(format!(
                    "{at}: [{section}] {key}: obsolete, OfflineIMAP 8 ignores it too (ignored)"
                )),
                // [DEFAULT] holds interpolation variables as much as options: only the
                // section's own keys can be misspellings.
                None if own.contains(&key) => {
                    let why = if known_anywhere(&key) {
                        format!("not used by {kind} (ignored)")
                    } else {
                        "not an OfflineIMAP option (ignored)".to_string()
                    };
                    self.unknown.push(format!("{at}: [{section}] {key}: {why}"));
                }
                None => {}
            }
        }
    }

    fn warn_unsupported(&mut self, key: &str, at: &Origin) {
        self.warnings
            .push(format!("not supported yet: {key} ({at}); ignored"));
    }

    fn reject_unsupported(&mut self, section: &str, key: &str, at: &Origin) {
        self.option_error(
            section,
            key,
            at,
            "not supported yet (ignoring it could change which mail is synced, or where)",
        );
    }

    pub(crate) fn general(&mut self) -> Option<General> {
        const S: &str = "general";
        if !self.raw.has_section(S) {
            self.errors.push(ConfigError::Section {
                at: None,
                section: S.into(),
                message: "section is missing (it must at least say accounts = NAME, …)".into(),
            });
            return None;
        }
        self.classify(S, &[GENERAL], "[general]");
        let accounts = self.required(S, "accounts").and_then(|(text, at)| {
            let mut names: Vec<String> = Vec::new();
            // OfflineIMAP removes spaces and splits on commas; empty names (a trailing
            // comma) would name no account, so they are dropped.
            for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if names.iter().any(|n| n == name) {
                    self.warnings.push(format!(
                        "{at}: [general] accounts: account {name} is listed twice; syncing it once"
                    ));
                } else {
                    names.push(name.to_string());
                }
            }
            if names.is_empty() {
                self.option_error(S, "accounts", &at, "names no account");
                return None;
            }
            Some((names, at))
        });
        let metadata = self
            .path(S, "metadata")
            .unwrap_or_else(|| self.env.expand_path("~/.offlineimap"));
        let maxsyncaccounts = match self.parsed(S, "maxsyncaccounts", "an integer", parse_py_int) {
            Some((n, at)) if n < 1 => {
                self.option_error(
                    S,
                    "maxsyncaccounts",
                    &at,
                    format!("must be at least 1, not {n}"),
                );
                1
            }
            Some((n, _)) => usize::try_from(n).unwrap_or(usize::MAX),
            None => 1,
        };
        self.inline_comments(S, &["pythonfile"], &["metadata"]);
        let fsync = self.boolean(S, "fsync", true);
        let utime_from_header = self.boolean(S, "utime_from_header", false);
        let filename_use_mail_timestamp = self.boolean(S, "filename_use_mail_timestamp", false);
        let dry_run = self.boolean(S, "dry-run", false);
        let ignore_readonly = self.boolean(S, "ignore-readonly", false);
        let ignore_keyring = self.boolean(S, "ignore-keyring", false);
        let update_keyring = self.boolean(S, "update-keyring", false);
        let socktimeout = match self.parsed(S, "socktimeout", "a number of seconds", parse_py_float)
        {
            Some((s, at)) if s < 0.0 => {
                self.option_error(S, "socktimeout", &at, format!("must not be negative: {s}"));
                None
            }
            Some((s, _)) if s > 0.0 => Some(Duration::from_secs_f64(s)),
            _ => None,
        };
        let ui = self.string(S, "ui").map(|(v, _)| v);
        // Expanded as OfflineIMAP's getlocaleval does; the binary runs it at start.
        let pythonfile = self
            .string(S, "pythonfile")
            .map(|(v, _)| self.env.expand_path(&v));
        let mbnames =
            if self.raw.has_section("mbnames") && self.boolean("mbnames", "enabled", false) {
                self.mbnames()
            } else {
                None
            };
        let (accounts, _) = accounts?;
        Some(General {
            accounts,
            metadata,
            maxsyncaccounts,
            fsync,
            socktimeout,
            ui,
            pythonfile,
            mbnames,
            utime_from_header,
            filename_use_mail_timestamp,
            dry_run,
            ignore_readonly,
            ignore_keyring,
            update_keyring,
        })
    }

    /// `[mbnames]`, read only when enabled. `peritem` is taken raw (OfflineIMAP reads it
    /// with `raw=1`: its `%(foldername)s` are filled per folder, not by the config).
    fn mbnames(&mut self) -> Option<Mbnames> {
        const S: &str = "mbnames";
        let filename = self
            .required(S, "filename")
            .map(|(v, _)| self.env.expand_path(&v));
        let peritem = match self.raw.raw_entry(S, "peritem") {
            Some(e) => Some(e.value.clone()),
            None => {
                // Records the "required option is missing" error.
                self.required(S, "peritem");
                None
            }
        };
        let expr = |b: &mut Self, option: &str| {
            b.required(S, option).map(|(source, _)| PyExpr {
                source,
                section: S.to_string(),
                option: option.to_string(),
            })
        };
        let header = expr(self, "header");
        let sep = expr(self, "sep");
        let footer = expr(self, "footer");
        let incremental = self.boolean(S, "incremental", false);
        let folderfilter = self.py_expr(S, "folderfilter");
        let sort_keyfunc = self.py_expr(S, "sort_keyfunc");
        Some(Mbnames {
            filename: filename?,
            header: header?,
            peritem: peritem?,
            sep: sep?,
            footer: footer?,
            incremental,
            folderfilter,
            sort_keyfunc,
        })
    }

    /// Resolves the account list; errors name the `accounts` option that listed a missing
    /// account.
    pub(crate) fn accounts(&mut self, names: &[String]) -> Vec<AccountConfig> {
        let listed_at = self
            .raw
            .raw_entry("general", "accounts")
            .map(|e| e.origin.clone());
        let mut out = Vec::new();
        for name in names {
            let section = format!("Account {name}");
            if !self.raw.has_section(&section) {
                let message = format!("account {name} has no [{section}] section");
                match &listed_at {
                    Some(at) => self.option_error("general", "accounts", &at.clone(), message),
                    None => self.errors.push(ConfigError::Section {
                        at: None,
                        section,
                        message,
                    }),
                }
                continue;
            }
            if let Some(acc) = self.account(name, &section) {
                out.push(acc);
            }
        }
        out
    }

    fn account(&mut self, name: &str, section: &str) -> Option<AccountConfig> {
        self.classify(section, &[ACCOUNT], "an account");
        let local = self
            .repository_ref(section, "localrepository")
            .and_then(|(repo, at)| self.repository(&repo, Side::Local, section, &at));
        let remote = self
            .repository_ref(section, "remoterepository")
            .and_then(|(repo, at)| self.repository(&repo, Side::Remote, section, &at));
        let autorefresh = match self.parsed(
            section,
            "autorefresh",
            "a number of minutes",
            parse_py_float,
        ) {
            Some((m, at)) if m < 0.0 => {
                self.option_error(
                    section,
                    "autorefresh",
                    &at,
                    format!("must not be negative: {m}"),
                );
                None
            }
            Some((m, _)) if m > 0.0 => Some(m),
            _ => None,
        };
        let quick = self
            .parsed(section, "quick", "an integer", parse_py_int)
            .map_or(0, |(q, _)| q);
        let skipsleep = self.boolean(section, "skipsleep", false);
        let max_delete_percent = match self.parsed(
            section,
            "max_delete_percent",
            "a percentage from 0 to 100",
            parse_py_int,
        ) {
            Some((p, _)) if (0..=100).contains(&p) => p as u8,
            Some((p, at)) => {
                self.option_error(
                    section,
                    "max_delete_percent",
                    &at,
                    format!("must be a percentage from 0 to 100: {p}"),
                );
                DEFAULT_MAX_DELETE_PERCENT
            }
            None => DEFAULT_MAX_DELETE_PERCENT,
        };
        if let Some((backend, at)) = self.string(section, "status_backend") {
            if backend.eq_ignore_ascii_case("sqlite") {
                self.warnings.push(format!(
                    "{at}: [{section}] status_backend is obsolete (sqlite is the only backend); ignored"
                ));
            } else {
                self.option_error(
                    section,
                    "status_backend",
                    &at,
                    format!("{backend:?} is not supported: OfflineIMAP 8 only has the sqlite status backend"),
                );
            }
        }
        self.incompatible(section);
        let maildir_windows_compatible = self.boolean(section, "maildir-windows-compatible", false);
        let utf8foldernames = self.boolean(section, "utf8foldernames", false);
        let maxsize = self
            .parsed(section, "maxsize", "a number of bytes", parse_py_int)
            .and_then(|(n, _)| u64::try_from(n).ok())
            .filter(|n| *n > 0);
        let maxage = self.maxage(section, local.as_ref());
        // OfflineIMAP: re.split(r'\s*,\s*', value), empty names dropped.
        let filterheaders: Vec<String> = match self.string(section, "filterheaders") {
            Some((text, _)) => text
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect(),
            None => Vec::new(),
        };
        if let (Some(l), Some(r)) = (&local, &remote)
            && l.startdate.is_some()
            && r.startdate.is_some()
            && let Some(at) = self.header(section)
        {
            self.errors.push(ConfigError::Section {
                at: Some(at),
                section: section.to_string(),
                message: format!(
                    "startdate is set on both repositories ({} and {}): OfflineIMAP allows only one of maxage, startdate (local), startdate (remote)",
                    l.name, r.name
                ),
            });
        }
        let presynchook = self.string(section, "presynchook").map(|(v, _)| v);
        let postsynchook = self.string(section, "postsynchook").map(|(v, _)| v);
        let proxy = self.proxy(section, "proxy");
        let authproxy = match self.raw.raw_entry(section, "authproxy") {
            Some(_) => self.proxy(section, "authproxy"),
            None => proxy.clone(),
        };
        Some(AccountConfig {
            name: name.to_string(),
            local: local?,
            remote: remote?,
            autorefresh,
            quick,
            skipsleep,
            presynchook,
            postsynchook,
            max_delete_percent,
            maildir_windows_compatible,
            utf8foldernames,
            maxsize,
            maxage,
            filterheaders,
            proxy,
            authproxy,
        })
    }

    /// `proxy` / `authproxy`: `TYPE:host:port` with a PySocks type name; empty means none.
    /// OfflineIMAP warns and connects directly when the value is bad; connecting around a
    /// proxy the user asked for is refused here instead.
    fn proxy(&mut self, section: &str, key: &str) -> Option<ProxySetting> {
        let (text, at) = self.string(section, key)?;
        if text.is_empty() {
            return None;
        }
        match parse_proxy(&text) {
            Ok(p) => Some(p),
            Err(e) => {
                self.option_error(section, key, &at, e);
                None
            }
        }
    }

    /// `maxage`: a whole number of days (at least 1) or a `yyyy-mm-dd` day, not with an
    /// IMAP local repository (OfflineIMAP: "maxage is not supported on IMAP-IMAP sync").
    fn maxage(&mut self, section: &str, local: Option<&RepositoryConfig>) -> Option<MaxAge> {
        let (text, at) = self.string(section, "maxage")?;
        let value = match parse_py_int(&text) {
            Some(n) if n >= 1 => MaxAge::Days(u32::try_from(n).unwrap_or(u32::MAX)),
            Some(n) => {
                self.option_error(
                    section,
                    "maxage",
                    &at,
                    format!("invalid maxage value {n}: must be at least 1 day"),
                );
                return None;
            }
            None => match parse_day(&text) {
                Some(day) => MaxAge::Since(day),
                None => {
                    self.option_error(
                        section,
                        "maxage",
                        &at,
                        format!("invalid maxage value {text:?}: expected a number of days or a date yyyy-mm-dd (from 1900 on)"),
                    );
                    return None;
                }
            },
        };
        if let Some(RepositoryConfig {
            kind: RepositoryKind::Imap(_),
            name,
            ..
        }) = local
        {
            self.option_error(
                section,
                "maxage",
                &at,
                format!("maxage is not supported on IMAP-IMAP sync (the local repository {name} is IMAP); use startdate instead"),
            );
            return None;
        }
        Some(value)
    }

    /// maxage with startdate, utf8foldernames with decodefoldernames: OfflineIMAP refuses
    /// both pairs too (maxage and startdate only when it syncs the folder).
    fn incompatible(&mut self, section: &str) {
        let repos: Vec<String> = ["localrepository", "remoterepository"]
            .iter()
            .filter_map(|k| self.raw.get(section, k).and_then(Result::ok))
            .map(|(r, _)| format!("Repository {r}"))
            .collect();
        let find = |raw: &RawConfig, key: &str| -> Option<Origin> {
            std::iter::once(section)
                .chain(repos.iter().map(String::as_str))
                .find_map(|s| raw.raw_entry(s, key).map(|e| e.origin.clone()))
        };
        let is_true = |raw: &RawConfig, key: &str| -> Option<Origin> {
            std::iter::once(section)
                .chain(repos.iter().map(String::as_str))
                .find_map(|s| match raw.get(s, key) {
                    Some(Ok((v, at))) if parse_py_bool(&v) == Some(true) => Some(at.clone()),
                    _ => None,
                })
        };
        if let (Some(a), Some(b)) = (find(self.raw, "maxage"), find(self.raw, "startdate")) {
            self.errors.push(ConfigError::Section {
                at: Some(a.clone()),
                section: section.to_string(),
                message: format!(
                    "maxage ({a}) and startdate ({b}) cannot be used together (OfflineIMAP refuses this too)"
                ),
            });
        }
        if let (Some(a), Some(b)) = (
            is_true(self.raw, "utf8foldernames"),
            is_true(self.raw, "decodefoldernames"),
        ) {
            self.errors.push(ConfigError::Section {
                at: Some(a.clone()),
                section: section.to_string(),
                message: format!(
                    "utf8foldernames ({a}) and decodefoldernames ({b}) cannot be used together (OfflineIMAP refuses this too)"
                ),
            });
        }
    }

    fn repository_ref(&mut self, account: &str, key: &str) -> Option<(String, Origin)> {
        let (repo, at) = self.required(account, key)?;
        if self.raw.has_section(&format!("Repository {repo}")) {
            Some((repo, at))
        } else {
            self.option_error(
                account,
                key,
                &at,
                format!("there is no [Repository {repo}] section"),
            );
            None
        }
    }

    fn repository(
        &mut self,
        name: &str,
        side: Side,
        account: &str,
        used_at: &Origin,
    ) -> Option<RepositoryConfig> {
        let section = format!("Repository {name}");
        let s = section.as_str();
        let (kind_text, at) = self.required(s, "type")?;
        let kind_text = kind_text.trim().to_string();
        let reject = |b: &mut Self, msg: String| {
            b.option_error(s, "type", &at, msg);
        };
        match (kind_text.as_str(), side) {
            ("Maildir", Side::Remote) => {
                reject(
                    self,
                    format!(
                        "a Maildir repository cannot be the remoterepository of [{account}] ({used_at}); OfflineIMAP only syncs IMAP or Gmail on the remote side"
                    ),
                );
                return None;
            }
            ("GmailMaildir", Side::Remote) | ("Gmail", Side::Local) => {
                reject(
                    self,
                    format!("{kind_text} cannot be used as a {} repository", side.name()),
                );
                return None;
            }
            ("Maildir" | "IMAP" | "Gmail" | "GmailMaildir", _) => {}
            (other, _) => {
                let valid = ["Maildir", "GmailMaildir", "IMAP", "Gmail"];
                let hint = valid
                    .iter()
                    .find(|v| v.eq_ignore_ascii_case(other))
                    .map(|v| format!(" (types are case-sensitive: did you mean {v}?)"))
                    .unwrap_or_default();
                reject(
                    self,
                    format!(
                        "unknown repository type {other:?}; expected Maildir or IMAP (or GmailMaildir, Gmail){hint}"
                    ),
                );
                return None;
            }
        }
        let readonly = self.boolean(s, "readonly", false);
        let createfolders = self.boolean(s, "createfolders", true);
        let sync_deletes = self.boolean(s, "sync_deletes", true);
        let _dynamic_folderfilter = self.boolean(s, "dynamic_folderfilter", false);
        let kind = match kind_text.as_str() {
            "Maildir" | "GmailMaildir" => {
                self.classify(s, &[REPOSITORY, MAILDIR], "a Maildir repository");
                let mut m = self.maildir(s)?;
                m.gmail = kind_text == "GmailMaildir";
                RepositoryKind::Maildir(m)
            }
            "Gmail" => {
                self.classify(s, &[REPOSITORY, IMAP, GMAIL], "a Gmail repository");
                RepositoryKind::Imap(self.imap(s, true)?)
            }
            _ => {
                self.classify(s, &[REPOSITORY, IMAP], "an IMAP repository");
                RepositoryKind::Imap(self.imap(s, false)?)
            }
        };
        let folders = FolderOptions {
            nametrans: self.py_expr(s, "nametrans"),
            folderfilter: self.py_expr(s, "folderfilter"),
            folderincludes: self.py_expr(s, "folderincludes"),
            foldersort: self.py_expr(s, "foldersort"),
        };
        // On an IMAP local repository, startdate's StartUID and copy_ignore_eval's UIDs
        // are the local server's own (see oi_imapmap).
        let startdate = self.startdate(s);
        Some(RepositoryConfig {
            name: name.to_string(),
            readonly,
            createfolders,
            sync_deletes,
            folders,
            startdate,
            kind,
        })
    }

    /// `startdate = yyyy-mm-dd` (empty: unset, as in OfflineIMAP).
    fn startdate(&mut self, s: &str) -> Option<Day> {
        let (text, at) = self.string(s, "startdate")?;
        if text.is_empty() {
            return None;
        }
        let Some(day) = parse_day(&text) else {
            self.option_error(
                s,
                "startdate",
                &at,
                format!(
                    "invalid startdate value {text:?}: expected a date yyyy-mm-dd (from 1900 on)"
                ),
            );
            return None;
        };
        Some(day)
    }

    /// Path options whose value looks like it ends in an inline comment (`path  # note`).
    /// Python's configparser keeps such text in the value (offlineimaprc has no inline
    /// comments), and so do we; when the path then does not exist, say why: an error for
    /// the files OfflineIMAP must read, a warning for the directories it creates.
    fn inline_comments(&mut self, section: &str, must_exist: &[&str], created: &[&str]) {
        for (key, fatal) in must_exist
            .iter()
            .map(|k| (*k, true))
            .chain(created.iter().map(|k| (*k, false)))
        {
            let Some((value, at)) = self.string(section, key) else {
                continue;
            };
            let Some(comment) = inline_comment(&value) else {
                continue;
            };
            let path = self.env.expand_path(&value);
            if path.exists() {
                continue;
            }
            let why = format!(
                "{} does not exist: {comment:?} is part of the value, because inline comments are not comments in offlineimaprc (Python's configparser keeps them); put the comment on a line of its own",
                path.display()
            );
            if fatal {
                self.option_error(section, key, &at, why);
            } else {
                self.warnings.push(format!(
                    "{at}: [{section}] {key}: {why} (the directory will be created with this name)"
                ));
            }
        }
    }

    /// A Python option, kept as text: it is evaluated by the binary, and only if
    /// OfflineIMAP would evaluate it.
    fn py_expr(&mut self, s: &str, option: &str) -> Option<PyExpr> {
        self.string(s, option).map(|(source, _)| PyExpr {
            source,
            section: s.to_string(),
            option: option.to_string(),
        })
    }

    fn maildir(&mut self, s: &str) -> Option<MaildirConfig> {
        self.inline_comments(s, &[], &["localfolders"]);
        let localfolders = self
            .required(s, "localfolders")
            .map(|(v, _)| self.env.expand_path(&v));
        let sep = match self.string(s, "sep") {
            None => '.',
            Some((v, at)) => {
                let mut chars = v.trim().chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => c,
                    _ => {
                        self.option_error(
                            s,
                            "sep",
                            &at,
                            format!("must be a single character, not {v:?}"),
                        );
                        '.'
                    }
                }
            }
        };
        // OfflineIMAP reads these per repository with [general] as the default; a bad
        // [general] value was reported there already.
        let general_default = |b: &Self, key: &str| matches!(b.raw.get("general", key), Some(Ok((v, _))) if parse_py_bool(&v) == Some(true));
        let utime_default = general_default(self, "utime_from_header");
        let stamp_default = general_default(self, "filename_use_mail_timestamp");
        let restoreatime = self.boolean(s, "restoreatime", false);
        let utime_from_header = self.boolean(s, "utime_from_header", utime_default);
        let filename_use_mail_timestamp =
            self.boolean(s, "filename_use_mail_timestamp", stamp_default);
        let mut custom_flags = Vec::new();
        for letter in 'a'..='z' {
            let key = format!("customflag_{letter}");
            if let Some((keyword, at)) = self.string(s, &key) {
                let keyword = keyword.trim().to_string();
                // An IMAP flag keyword is an atom: no spaces, brackets, quotes, wildcards
                // or backslash (a backslash would make it a system flag).
                let bad = keyword.is_empty()
                    || keyword
                        .bytes()
                        .any(|b| b <= b' ' || b >= 0x7f || b"(){%*\"\\]".contains(&b));
                if bad {
                    self.option_error(
                        s,
                        &key,
                        &at,
                        format!("{keyword:?} is not an IMAP keyword (an atom without spaces, brackets, quotes or \\)"),
                    );
                    continue;
                }
                custom_flags.push((letter, keyword));
            }
        }
        Some(MaildirConfig {
            localfolders: localfolders?,
            sep,
            restoreatime,
            utime_from_header,
            filename_use_mail_timestamp,
            custom_flags,
            gmail: false,
        })
    }

    fn imap(&mut self, s: &str, gmail: bool) -> Option<ImapConfig> {
        let mut preauthtunnel = self.string(s, "preauthtunnel").map(|(v, _)| v);
        if gmail && let Some((_, at)) = self.string(s, "preauthtunnel") {
            // OfflineIMAP's Gmail repository returns None from getpreauthtunnel.
            self.warnings.push(format!(
                "{at}: [{s}] preauthtunnel is ignored for Gmail repositories, as in OfflineIMAP"
            ));
            preauthtunnel = None;
        }
        let transporttunnel = self.string(s, "transporttunnel").map(|(v, at)| {
            if preauthtunnel.is_some() {
                self.warnings.push(format!(
                    "{at}: [{s}] transporttunnel is ignored because preauthtunnel is set"
                ));
            }
            v
        });
        let hosteval = self.py_expr(s, "remotehosteval");
        let porteval = self.py_expr(s, "remoteporteval");
        let usereval = self.py_expr(s, "remoteusereval");
        let passeval = self.py_expr(s, "remotepasseval");
        let host = if gmail {
            // OfflineIMAP's Gmail falls back to imap.gmail.com when no host is configured.
            Some(
                self.string(s, "remotehost")
                    .map(|(v, _)| v)
                    .filter(|v| !v.trim().is_empty())
                    .unwrap_or_else(|| "imap.gmail.com".to_string()),
            )
        } else if preauthtunnel.is_some() || transporttunnel.is_some() || hosteval.is_some() {
            Some(
                self.string(s, "remotehost")
                    .map(|(v, _)| v)
                    .unwrap_or_default(),
            )
        } else {
            match self.required(s, "remotehost") {
                Some((v, at)) if v.trim().is_empty() => {
                    self.option_error(s, "remotehost", &at, "is empty");
                    None
                }
                other => other.map(|(v, _)| v),
            }
        };
        let port = self
            .parsed(s, "remoteport", "a port number (1-65535)", |t| {
                parse_py_int(t)
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|&p| p != 0)
            })
            .map(|(p, _)| p)
            // Gmail's getport: 993 whatever `ssl` says, unless a port is configured.
            .or(gmail.then_some(993));
        let user = self.string(s, "remoteuser").map(|(v, _)| v);
        let pass = self.string(s, "remotepass");
        let passfile = self.string(s, "remotepassfile");
        let password = match (pass, passfile) {
            // OfflineIMAP asks remotepasseval first and never reads the others then.
            _ if passeval.is_some() => match passeval.clone() {
                Some(e) => PasswordSource::Eval(e),
                None => PasswordSource::None,
            },
            (Some(_), Some((_, at))) => {
                self.option_error(
                    s,
                    "remotepassfile",
                    &at,
                    "remotepass and remotepassfile are both set; keep only one",
                );
                PasswordSource::None
            }
            (Some((p, _)), None) => PasswordSource::Inline(Secret::new(p)),
            (None, Some((f, _))) => PasswordSource::File(self.env.expand_path(&f)),
            (None, None) => PasswordSource::None,
        };
        self.inline_comments(s, &["remotepassfile", "sslclientcert", "sslclientkey"], &[]);
        if self
            .string(s, "sslcacertfile")
            .is_some_and(|(v, _)| v != "OS-DEFAULT")
        {
            self.inline_comments(s, &["sslcacertfile"], &[]);
        }
        let ssl = self.boolean(s, "ssl", true);
        let starttls = self.boolean(s, "starttls", true);
        let expunge = self.boolean(s, "expunge", true);
        let ca = match self.string(s, "sslcacertfile") {
            None => CaCerts::SystemDefault,
            Some((v, _)) if v == "OS-DEFAULT" => CaCerts::OsDefault,
            Some((v, _)) => CaCerts::File(self.env.expand_path(&v)),
        };
        let mut cert_fingerprints = Vec::new();
        if let Some((list, at)) = self.string(s, "cert_fingerprint") {
            for fp in list.split(',') {
                let fp: String = fp
                    .chars()
                    .filter(|c| !c.is_whitespace() && *c != ':')
                    .flat_map(char::to_lowercase)
                    .collect();
                if fp.is_empty() {
                    continue;
                }
                // OfflineIMAP compares against SHA-1/224/256/384/512 hex digests; anything
                // else can never match and would only fail at connect time.
                if !fp.chars().all(|c| c.is_ascii_hexdigit())
                    || ![40, 56, 64, 96, 128].contains(&fp.len())
                {
                    self.option_error(
                        s,
                        "cert_fingerprint",
                        &at,
                        format!("{fp:?} is not a hex SHA-1/224/256/384/512 digest"),
                    );
                    continue;
                }
                cert_fingerprints.push(fp);
            }
        }
        let oauth2 = self.oauth2(s, gmail);
        let auth_mechanisms = self.auth_mechanisms(s, &oauth2);
        let remote_identity = self.string(s, "remote_identity").map(|(v, _)| v);
        if let Some((_, at)) = self.string(s, "sep") {
            self.warnings.push(format!(
                "{at}: [{s}] sep is ignored for IMAP repositories (the server's separator is used), as in OfflineIMAP"
            ));
        }
        let ipv6 = self
            .parsed(
                s,
                "ipv6",
                "a boolean (yes/no, true/false, on/off, 1/0)",
                parse_py_bool,
            )
            .map(|(v, _)| v);
        let tls_version = self.tls_version(s, ssl);
        let sslclientcert = self.path(s, "sslclientcert");
        let sslclientkey = self.path(s, "sslclientkey");
        if let (None, Some(_)) = (&sslclientcert, &sslclientkey)
            && let Some(e) = self.raw.raw_entry(s, "sslclientkey")
        {
            let at = e.origin.clone();
            self.option_error(
                s,
                "sslclientkey",
                &at,
                "sslclientkey needs sslclientcert (the certificate the key belongs to)",
            );
        }
        let decodefoldernames = self.boolean(s, "decodefoldernames", false);
        if decodefoldernames && let Some(e) = self.raw.raw_entry(s, "decodefoldernames") {
            let at = e.origin.clone();
            self.warnings.push(format!(
                "{at}: [{s}] decodefoldernames is deprecated (OfflineIMAP 8 fails with it); use utf8foldernames in the account instead"
            ));
        }
        let idlefolders = self.py_expr(s, "idlefolders");
        // OfflineIMAP's getholdconnectionopen/getkeepalive: idlefolders turns holding on and
        // makes the NOOP period 29 minutes unless keepalive says otherwise.
        let holdconnectionopen =
            self.boolean(s, "holdconnectionopen", false) || idlefolders.is_some();
        let keepalive = match self.parsed(s, "keepalive", "a number of seconds", parse_py_int) {
            Some((n, at)) if n < 0 => {
                self.option_error(s, "keepalive", &at, format!("must not be negative: {n}"));
                None
            }
            Some((n, _)) if n > 0 => Some(Duration::from_secs(n.unsigned_abs())),
            _ => idlefolders.is_some().then(|| Duration::from_secs(29 * 60)),
        };
        let gmail = gmail.then(|| GmailOptions {
            trashfolder: self
                .string(s, "trashfolder")
                .map_or_else(|| "[Gmail]/Trash".to_string(), |(v, _)| v),
            spamfolder: self
                .string(s, "spamfolder")
                .map_or_else(|| "[Gmail]/Spam".to_string(), |(v, _)| v),
        });
        Some(ImapConfig {
            host: host?,
            port,
            user,
            password,
            ssl,
            starttls,
            ca,
            cert_fingerprints,
            preauthtunnel,
            transporttunnel,
            expunge,
            hosteval,
            porteval,
            usereval,
            holdconnectionopen,
            keepalive,
            idlefolders,
            newmail_hook: self.py_expr(s, "newmail_hook"),
            copy_ignore_eval: self.py_expr(s, "copy_ignore_eval"),
            subscribedonly: self.boolean(s, "subscribedonly", false),
            reference: self.string(s, "reference").map(|(v, _)| v),
            maxconnections: self
                .parsed(s, "maxconnections", "a number of connections", parse_py_int)
                .map_or(1, |(n, _)| usize::try_from(n).unwrap_or(1).max(1)),
            retrycount: self.retrycount(s),
            pipelinedepth: self.pipelinedepth(s),
            ipv6,
            usecompression: self.boolean(s, "usecompression", false),
            tls_version,
            sslclientcert,
            sslclientkey,
            decodefoldernames,
            gmail,
            auth_mechanisms,
            remote_identity,
            oauth2,
        })
    }

    /// `oauth2_X`, else `oauth2_X_eval` (OfflineIMAP never evaluates the latter when the
    /// former is set).
    fn secret_source(&mut self, s: &str, key: &str) -> Option<SecretSource> {
        if let Some((v, _)) = self.string(s, key) {
            return Some(SecretSource::Inline(Secret::new(v)));
        }
        self.py_expr(s, &format!("{key}_eval"))
            .map(SecretSource::Eval)
    }

    fn oauth2(&mut self, s: &str, gmail: bool) -> OAuth2Config {
        let request_url = self
            .string(s, "oauth2_request_url")
            .map(|(v, _)| v)
            // OfflineIMAP's Gmail repository falls back to Google's token endpoint.
            .or_else(|| gmail.then(|| "https://accounts.google.com/o/oauth2/token".to_string()));
        OAuth2Config {
            access_token: self.secret_source(s, "oauth2_access_token"),
            refresh_token: self.secret_source(s, "oauth2_refresh_token"),
            client_id: self.secret_source(s, "oauth2_client_id"),
            client_secret: self.secret_source(s, "oauth2_client_secret"),
            request_url,
        }
    }

    /// `auth_mechanisms`: names separated by commas, each known to OfflineIMAP (which
    /// is case-sensitive; we accept any case). A list that cannot log in is refused:
    /// GSSAPI is never used (no Kerberos here), and XOAUTH2 needs an OAuth2 token.
    fn auth_mechanisms(&mut self, s: &str, oauth2: &OAuth2Config) -> Vec<AuthMech> {
        let Some((list, at)) = self.string(s, "auth_mechanisms") else {
            return AuthMech::DEFAULT.to_vec();
        };
        let mut mechs = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match AuthMech::DEFAULT
                .into_iter()
                .find(|m| m.name().eq_ignore_ascii_case(name))
            {
                Some(m) => mechs.push(m),
                None => {
                    self.option_error(
                        s,
                        "auth_mechanisms",
                        &at,
                        format!(
                            "unknown authentication mechanism {name:?} (OfflineIMAP knows GSSAPI, XOAUTH2, CRAM-MD5, PLAIN and LOGIN)"
                        ),
                    );
                    return AuthMech::DEFAULT.to_vec();
                }
            }
        }
        let usable = mechs.iter().any(|m| match m {
            AuthMech::Gssapi => false,
            AuthMech::XOAuth2 => oauth2.configured(),
            _ => true,
        });
        if !usable {
            let why = if mechs.is_empty() {
                "names no mechanism".to_string()
            } else if mechs.contains(&AuthMech::XOAuth2) {
                format!(
                    "{list:?} leaves nothing to log in with: GSSAPI (Kerberos) is not supported, and XOAUTH2 needs oauth2_access_token or oauth2_refresh_token (or their _eval)"
                )
            } else {
                format!(
                    "{list:?} leaves nothing to log in with: GSSAPI (Kerberos) is not supported; add PLAIN, LOGIN, CRAM-MD5 or XOAUTH2"
                )
            };
            self.option_error(s, "auth_mechanisms", &at, why);
        }
        mechs
    }

    /// `retrycount`: how many times OfflineIMAP's `_fetch_from_imap` tries a message fetch
    /// whose connection broke (default 2). It counts attempts, so 0 would fetch nothing.
    fn retrycount(&mut self, s: &str) -> u32 {
        let n = self.at_least_one(s, "retrycount", 2, "the number of attempts of a fetch");
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// `pipelinedepth` (ours): how many commands a connection keeps in flight (default
    /// [`DEFAULT_PIPELINE_DEPTH`]); 0 would never send one.
    fn pipelinedepth(&mut self, s: &str) -> usize {
        self.at_least_one(
            s,
            "pipelinedepth",
            DEFAULT_PIPELINE_DEPTH,
            "commands in flight at once",
        )
    }

    /// A whole number option that counts something of which there must be at least one
    /// (`counts`, for the error): `default` when unset, or after an error naming it.
    fn at_least_one(&mut self, s: &str, key: &str, default: usize, counts: &str) -> usize {
        match self.parsed(s, key, "a whole number", parse_py_int) {
            None => default,
            Some((n, _)) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
            Some((n, at)) => {
                self.option_error(s, key, &at, format!("must be at least 1 ({counts}): {n}"));
                default
            }
        }
    }

    /// `ssl_version` and `tls_level` as imaplib2 checks them (its `TLS_MAP`), then mapped
    /// onto what rustls can do: TLS 1.0, 1.1 and SSL 3 are refused, since silently using a
    /// newer version would not be what was asked for.
    fn tls_version(&mut self, s: &str, ssl: bool) -> TlsVersion {
        let version = self.string(s, "ssl_version");
        let level = self.string(s, "tls_level");
        let level_name = level.as_ref().map_or("tls_compat", |(v, _)| v.as_str());
        let allowed: &[&str] = match level_name {
            "tls_secure" => &["tls1_2", "tls1_1"],
            "tls_no_ssl" => &["tls1_2", "tls1_1", "tls1"],
            "tls_compat" => &["tls1_2", "tls1_1", "tls1", "ssl23", "ssl3"],
            other => {
                if let Some((_, at)) = &level {
                    let at = at.clone();
                    self.option_error(
                        s,
                        "tls_level",
                        &at,
                        format!("{other:?} is not tls_compat, tls_no_ssl or tls_secure"),
                    );
                }
                return TlsVersion::Negotiate;
            }
        };
        let Some((v, at)) = version else {
            if ssl
                && level_name != "tls_compat"
                && let Some((_, at)) = &level
            {
                let at = at.clone();
                self.option_error(
                    s,
                    "tls_level",
                    &at,
                    "when tls_level is not tls_compat, ssl_version must be set too (as in OfflineIMAP)",
                );
            }
            return TlsVersion::Negotiate;
        };
        if !allowed.contains(&v.as_str()) {
            let msg = if ["tls1_2", "tls1_1", "tls1", "ssl23", "ssl3"].contains(&v.as_str()) {
                format!("{v:?} is not allowed with tls_level = {level_name}")
            } else {
                format!("{v:?} is not tls1_2, tls1_1, tls1, ssl3 or ssl23")
            };
            self.option_error(s, "ssl_version", &at, msg);
            return TlsVersion::Negotiate;
        }
        match v.as_str() {
            "tls1_2" => TlsVersion::Tls12,
            "ssl23" => TlsVersion::Negotiate,
            old => {
                self.option_error(
                    s,
                    "ssl_version",
                    &at,
                    format!("{old} is not supported: only TLS 1.2 and 1.3 are implemented (use tls1_2, or leave ssl_version unset)"),
                );
                TlsVersion::Negotiate
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Local,
    Remote,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Local => "local",
            Side::Remote => "remote",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_numbers_and_booleans() {
        assert_eq!(parse_py_int(" 1_000 "), Some(1000));
        assert_eq!(parse_py_int("-3"), Some(-3));
        assert_eq!(parse_py_int("1__0"), None);
        assert_eq!(parse_py_int("_1"), None);
        assert_eq!(parse_py_int("1.5"), None);
        assert_eq!(parse_py_int(""), None);
        assert_eq!(parse_py_float("2.5"), Some(2.5));
        assert_eq!(parse_py_float("1e1"), Some(10.0));
        assert_eq!(parse_py_float("inf"), None);
        assert_eq!(parse_py_float("x"), None);
        for t in ["1", "YES", "True", "on"] {
            assert_eq!(parse_py_bool(t), Some(true), "{t}");
        }
        for t in ["0", "no", "FALSE", "Off"] {
            assert_eq!(parse_py_bool(t), Some(false), "{t}");
        }
        assert_eq!(parse_py_bool("maybe"), None);
        assert_eq!(parse_py_bool(" yes"), None);
    }

    #[test]
    fn inline_comments_are_spotted() {
        assert_eq!(inline_comment("~/Mail  # my mail"), Some("# my mail"));
        assert_eq!(inline_comment("/x/y\t; note"), Some("; note"));
        assert_eq!(inline_comment("/x/#y;z"), None);
        assert_eq!(inline_comment("# only"), None);
    }

    #[test]
    fn days_are_read_like_strptime() {
        let d = |y, m, dd| {
            Some(Day {
                year: y,
                month: m,
                day: dd,
            })
        };
        assert_eq!(parse_day("2024-02-29"), d(2024, 2, 29));
        assert_eq!(parse_day("2024-1-5"), d(2024, 1, 5));
        for bad in [
            "2023-02-29",
            "1899-12-31",
            "24-01-01",
            "2024-13-01",
            "2024-01-01x",
            "2024/01/01",
            "2024-01-001",
            "",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn option_tables_classify() {
        assert_eq!(lookup(&[REPOSITORY, MAILDIR], "customflag_x"), Some(Read));
        assert_eq!(lookup(&[REPOSITORY, IMAP], "customflag_x"), None);
        assert_eq!(lookup(&[REPOSITORY, IMAP], "nametrans"), Some(Read));
        assert_eq!(lookup(&[REPOSITORY, IMAP], "reference"), Some(Read));
        assert_eq!(lookup(&[REPOSITORY, IMAP], "maxconnections"), Some(Read));
        assert!(known_anywhere("trashfolder"));
        assert!(!known_anywhere("remotehots"));
    }
}

#[cfg(test)]
mod proxy_tests {
    use super::*;

    #[test]
    fn proxy_values_as_pysocks_reads_them() {
        assert_eq!(
            parse_proxy("SOCKS5:localhost:1080"),
            Ok(ProxySetting {
                kind: ProxyType::Socks5,
                host: "localhost".into(),
                port: 1080
            })
        );
        assert_eq!(
            parse_proxy("PROXY_TYPE_HTTP:10.0.0.1:3128").map(|p| p.kind),
            Ok(ProxyType::Http)
        );
        assert_eq!(
            parse_proxy("SOCKS4:h:1").map(|p| p.kind),
            Ok(ProxyType::Socks4)
        );
        for bad in [
            "socks5:localhost:1080",
            "SOCKS5:localhost",
            "SOCKS5::1080",
            "SOCKS5:h:0",
            "SOCKS5:h:x",
            "SOCKS5:::1:1080",
        ] {
            assert!(parse_proxy(bad).is_err(), "{bad}");
        }
    }
}
