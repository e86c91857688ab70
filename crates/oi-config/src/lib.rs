//! The offlineimaprc reader.
//!
//! Two stages, ripgrep-style: [`raw`] reads the file with Python 3 `configparser` semantics
//! (what OfflineIMAP uses), keeping `file:line` for every option; [`load`] then validates
//! the sections OfflineIMAP would read into [`Config`], collecting every error at once.
//! The binary calls [`find_config_file`] and [`load`] once; no other code looks up option
//! names.
//!
//! This crate depends only on oi-core (for [`oi_core::Secret`] and the error seam). It must
//! not depend on the IMAP, Maildir, status or sync crates, nor open network connections:
//! its only I/O is reading the configuration file (and `/etc/passwd` for `~user`).
#![deny(missing_docs)]

mod build;
mod error;
mod expand;
pub mod raw;
mod types;

pub use error::{ConfigError, ConfigErrors, Origin};
pub use expand::Env;
pub use types::{
    AccountConfig, AuthMech, CaCerts, Config, DEFAULT_MAX_DELETE_PERCENT, DEFAULT_PIPELINE_DEPTH,
    Day, FolderOptions, General, GmailOptions, ImapConfig, MaildirConfig, MaxAge, Mbnames,
    OAuth2Config, PasswordSource, ProxySetting, ProxyType, PyExpr, RepositoryConfig,
    RepositoryKind, SecretSource, TlsVersion,
};

use std::path::{Path, PathBuf};

/// A command-line override of one option (`-k [section:]option=value`, or `-a`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// Section name, with `_` already turned into spaces.
    pub section: String,
    /// Option name (lowercased when applied).
    pub option: String,
    /// The value, verbatim: like OfflineIMAP, surrounding spaces are kept.
    pub value: String,
    /// The flag as the user typed it, for error messages.
    pub flag: String,
}

impl Override {
    /// Parses a `-k` argument: `[section:]option=value`. The section defaults to `general`
    /// and `_` in it stands for a space (`Account_Foo` is `[Account Foo]`), as OfflineIMAP
    /// splits on the first `=` and then the first `:`.
    pub fn parse(text: &str) -> Result<Override, ConfigError> {
        let bad = |message: &str| ConfigError::Override {
            text: text.to_string(),
            message: message.to_string(),
        };
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| bad("expected [section:]option=value (no '=' found)"))?;
        let (section, option) = match key.split_once(':') {
            Some((section, option)) => (section.replace('_', " "), option),
            None => ("general".to_string(), key),
        };
        if option.trim().is_empty() {
            return Err(bad("the option name is empty"));
        }
        if section.is_empty() {
            return Err(bad("the section name is empty"));
        }
        Ok(Override {
            section,
            option: option.to_string(),
            value: value.to_string(),
            flag: format!("-k {text}"),
        })
    }

    /// A command-line switch that sets a `[general]` option to `True`, as OfflineIMAP's
    /// `--ignore-keyring` and `--update-keyring` do.
    pub fn general_switch(option: &str, flag: &str) -> Override {
        Override {
            section: "general".into(),
            option: option.to_string(),
            value: "True".into(),
            flag: flag.to_string(),
        }
    }

    /// `-a acc1,acc2`: replaces `[general] accounts`.
    pub fn accounts(list: &str) -> Override {
        Override {
            section: "general".into(),
            option: "accounts".into(),
            value: list.to_string(),
            flag: format!("-a {list}"),
        }
    }
}

/// Finds the configuration file as OfflineIMAP does: `-c FILE` (tilde-expanded; it must
/// exist), else `$XDG_CONFIG_HOME/offlineimap/config` (XDG_CONFIG_HOME defaulting to
/// `~/.config`) if it exists, else `~/.offlineimaprc`.
pub fn find_config_file(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    find_config_file_in(explicit, &Env::from_process())
}

/// [`find_config_file`] against a given environment.
pub fn find_config_file_in(explicit: Option<&Path>, env: &Env) -> Result<PathBuf, ConfigError> {
    let candidates = match explicit {
        Some(p) => vec![PathBuf::from(env.expand_user(&p.to_string_lossy()))],
        None => {
            let xdg = match env.var("XDG_CONFIG_HOME") {
                Some(x) if !x.is_empty() => PathBuf::from(x),
                _ => PathBuf::from(env.expand_user("~/.config")),
            };
            vec![
                xdg.join("offlineimap").join("config"),
                PathBuf::from(env.expand_user("~/.offlineimaprc")),
            ]
        }
    };
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .ok_or(ConfigError::NotFound { tried: candidates })
}

/// Reads and validates the configuration file, applying command-line overrides in order.
pub fn load(path: &Path, overrides: &[Override]) -> Result<Config, ConfigErrors> {
    load_with_env(path, overrides, &Env::from_process())
}

/// [`load`] against a given environment (for `~` and `$VAR` in path options).
pub fn load_with_env(
    path: &Path,
    overrides: &[Override],
    env: &Env,
) -> Result<Config, ConfigErrors> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        ConfigError::Syntax {
            at: Origin::File {
                path: path.into(),
                line,
            },
            message: "not valid UTF-8".into(),
        }
    })?;
    load_str(&text, path, overrides, env)
}

/// Validates configuration text as if read from `path` (which is only used in messages).
pub fn load_str(
    text: &str,
    path: &Path,
    overrides: &[Override],
    env: &Env,
) -> Result<Config, ConfigErrors> {
    let (mut raw, mut errors) = raw::RawConfig::parse(text, path);
    for o in overrides {
        if let Err(e) = raw.set(
            &o.section,
            &o.option,
            &o.value,
            Origin::CommandLine(o.flag.clone()),
        ) {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        // A file Python cannot parse is not read at all by OfflineIMAP; typed errors on top
        // of syntax errors would mostly be echoes.
        return Err(ConfigErrors(errors));
    }
    let mut b = build::Builder::new(&raw, env);
    let general = b.general();
    let accounts = match &general {
        Some(g) => b.accounts(&g.accounts),
        None => Vec::new(),
    };
    let mut errors = dedup(b.errors, |e| e.to_string());
    // File order reads best; errors without a line (missing sections) come first and
    // command-line ones last.
    errors.sort_by_key(|e| match (e.line(), e) {
        (Some(line), _) => (1, line),
        (None, ConfigError::Section { at: None, .. }) => (0, 0),
        (None, _) => (2, 0),
    });
    match general {
        Some(general) if errors.is_empty() => Ok(Config {
            general,
            accounts,
            warnings: dedup(b.warnings, Clone::clone),
            unknown: dedup(b.unknown, Clone::clone),
        }),
        Some(_) => Err(ConfigErrors(errors)),
        // general() always records why it gave up; this only guards that promise.
        None if errors.is_empty() => Err(ConfigErrors(vec![ConfigError::Section {
            at: None,
            section: "general".into(),
            message: "could not be read".into(),
        }])),
        None => Err(ConfigErrors(errors)),
    }
}

/// Removes repeats (a repository shared by two accounts is validated twice), keeping order.
fn dedup<T>(items: Vec<T>, key: impl Fn(&T) -> String) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    items.into_iter().filter(|i| seen.insert(key(i))).collect()
}

#[cfg(test)]
mod tests;
