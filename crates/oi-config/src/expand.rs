//! `~` and `$VAR` expansion with Python's `os.path.expanduser` / `os.path.expandvars`
//! semantics, over an explicit environment so that tests never touch the process's.

use std::collections::HashMap;
use std::path::PathBuf;

/// The environment that path options are expanded against.
///
/// [`Env::from_process`] is what the binary uses; tests build one with [`Env::from_vars`]
/// so that no real `$HOME` leaks in.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
    user_homes: HashMap<String, String>,
}

impl Env {
    /// The current process environment, plus `/etc/passwd` for `~user`.
    pub fn from_process() -> Env {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        // Python asks NSS through pwd.getpwnam; /etc/passwd covers the local users that
        // `~user` paths in a mail configuration realistically name.
        let user_homes = std::fs::read_to_string("/etc/passwd")
            .map(|text| parse_passwd(&text))
            .unwrap_or_default();
        Env { vars, user_homes }
    }

    /// An environment with exactly these variables and no user database.
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            user_homes: HashMap::new(),
        }
    }

    /// Adds a user's home directory for `~user` expansion.
    pub fn with_user_home(mut self, user: impl Into<String>, home: impl Into<String>) -> Env {
        self.user_homes.insert(user.into(), home.into());
        self
    }

    /// One variable's value.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// `os.path.expanduser`: a leading `~` or `~user` up to the first `/`. Unknown users
    /// (and `~` without `$HOME`) are left as they are, as Python does when the lookup fails.
    pub fn expand_user(&self, path: &str) -> String {
        let Some(rest) = path.strip_prefix('~') else {
            return path.to_string();
        };
        let end = rest.find('/').unwrap_or(rest.len());
        let (user, tail) = rest.split_at(end);
        let home = if user.is_empty() {
            self.var("HOME")
        } else {
            self.user_homes.get(user).map(String::as_str)
        };
        let Some(home) = home else {
            return path.to_string();
        };
        let joined = format!("{}{tail}", home.trim_end_matches('/'));
        if joined.is_empty() {
            "/".to_string()
        } else {
            joined
        }
    }

    /// `posixpath.expandvars`: `$name` and `${name}` with ASCII word characters; unknown
    /// variables stay as written, and substituted text is not scanned again.
    pub fn expand_vars(&self, path: &str) -> String {
        if !path.contains('$') {
            return path.to_string();
        }
        let mut out = String::with_capacity(path.len());
        let mut rest = path;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            let (name, len) = if let Some(braced) = after.strip_prefix('{') {
                match braced.find('}') {
                    Some(close) => (&braced[..close], close + 2),
                    None => ("", 0),
                }
            } else {
                let n = after
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                    .count();
                (&after[..n], n)
            };
            match (len, self.var(name)) {
                (0, _) => {
                    out.push('$');
                    rest = after;
                }
                (_, Some(value)) => {
                    out.push_str(value);
                    rest = &after[len..];
                }
                (_, None) => {
                    out.push('$');
                    out.push_str(&after[..len]);
                    rest = &after[len..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// What OfflineIMAP applies to path options: expanduser, then expandvars.
    pub fn expand_path(&self, path: &str) -> PathBuf {
        PathBuf::from(self.expand_vars(&self.expand_user(path)))
    }
}

fn parse_passwd(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                [name, _, _, _, _, home, ..] => Some((name.to_string(), home.to_string())),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::from_vars([("HOME", "/home/me/"), ("MAIL", "/var/mail"), ("X_1", "x")])
            .with_user_home("bob", "/home/bob")
    }

    #[test]
    fn expanduser_like_python() {
        let e = env();
        assert_eq!(e.expand_user("~"), "/home/me");
        assert_eq!(e.expand_user("~/Mail"), "/home/me/Mail");
        assert_eq!(e.expand_user("~bob/Mail"), "/home/bob/Mail");
        assert_eq!(e.expand_user("~nobody/Mail"), "~nobody/Mail");
        assert_eq!(e.expand_user("/abs/~"), "/abs/~");
        assert_eq!(Env::default().expand_user("~/x"), "~/x");
        assert_eq!(Env::from_vars([("HOME", "/")]).expand_user("~"), "/");
    }

    #[test]
    fn expandvars_like_python() {
        let e = env();
        assert_eq!(e.expand_vars("$MAIL/box"), "/var/mail/box");
        assert_eq!(e.expand_vars("${MAIL}box"), "/var/mailbox");
        assert_eq!(e.expand_vars("$X_1-$UNKNOWN-${NOPE}"), "x-$UNKNOWN-${NOPE}");
        assert_eq!(e.expand_vars("cost $5 and $"), "cost $5 and $");
        assert_eq!(e.expand_vars("${unclosed"), "${unclosed");
        assert_eq!(e.expand_vars("${}"), "${}");
        let nested = Env::from_vars([("A", "$B"), ("B", "no")]);
        assert_eq!(nested.expand_vars("$A"), "$B");
    }

    #[test]
    fn path_expands_user_then_vars() {
        assert_eq!(
            env().expand_path("~/$MAIL"),
            PathBuf::from("/home/me//var/mail")
        );
    }

    #[test]
    fn passwd_lines() {
        let m = parse_passwd("root:x:0:0:root:/root:/bin/sh\nbad line\n");
        assert_eq!(m.get("root").map(String::as_str), Some("/root"));
        assert_eq!(m.len(), 1);
    }
}
