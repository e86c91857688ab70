//! `~/.netrc` and `/etc/netrc`, read the way OfflineIMAP 8 reads them for `remoteuser` and
//! `remotepass` when neither is configured.
//!
//! The parser follows Python 3.11's `netrc` module token for token (a differential test
//! compares the two), including its oddities: `"` quoting with `\` escapes, an empty token
//! ending the file, `#` comments that only swallow the rest of the line when the `#` stands
//! alone at the top level, `macdef` bodies ending at an empty line, and the last entry for a
//! machine winning. Like Python, `~/.netrc` must belong to the user and be unreadable by
//! others unless every entry logs in as `anonymous`; `/etc/netrc` is not checked.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oi_core::Secret;

/// A `.netrc` file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NetrcError {
    /// Python's `NetrcParseError`.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Line of the problem, counted as Python counts it.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// `~/.netrc` belongs to someone else or is readable by others.
    #[error("{path}: {message}")]
    Insecure {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The file exists but cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// One `machine` (or `default`) entry; missing fields are empty, as in Python.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetrcEntry {
    /// `login` (or `user`).
    pub login: String,
    /// `account`.
    pub account: String,
    /// `password`.
    pub password: String,
}

/// A parsed `.netrc`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Netrc {
    /// Entries by machine name in first-definition order (a later definition replaces the
    /// value but keeps the position, like a Python dict); `default` is named `default`.
    pub hosts: Vec<(String, NetrcEntry)>,
    /// `macdef` bodies, line by line with their newlines.
    pub macros: Vec<(String, Vec<String>)>,
}

impl Netrc {
    /// Python's `authenticators`: the entry for `host`, else the `default` entry.
    pub fn authenticators(&self, host: &str) -> Option<&NetrcEntry> {
        let find = |name: &str| self.hosts.iter().find(|(h, _)| h == name).map(|(_, e)| e);
        find(host).or_else(|| find("default"))
    }

    fn set_host(&mut self, name: String, entry: NetrcEntry) {
        match self.hosts.iter_mut().find(|(h, _)| *h == name) {
            Some(slot) => slot.1 = entry,
            None => self.hosts.push((name, entry)),
        }
    }
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    /// Counts only newlines consumed by tokenising, not by `readline` (Python does that).
    lineno: usize,
    pushback: Vec<String>,
}

impl Lexer {
    fn read_char(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied()?;
        self.pos += 1;
        if c == '\n' {
            self.lineno += 1;
        }
        Some(c)
    }

    fn readline(&mut self) -> String {
        let start = self.pos;
        while let Some(&c) = self.chars.get(self.pos) {
            self.pos += 1;
            if c == '\n' {
                break;
            }
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn get_token(&mut self) -> String {
        if !self.pushback.is_empty() {
            return self.pushback.remove(0);
        }
        let ws = |c: char| matches!(c, '\n' | '\t' | '\r' | ' ');
        let mut token = String::new();
        while let Some(c) = self.read_char() {
            if ws(c) {
                continue;
            }
            if c == '"' {
                while let Some(c) = self.read_char() {
                    match c {
                        '"' => return token,
                        '\\' => token.extend(self.read_char()),
                        c => token.push(c),
                    }
                }
                return token;
            }
            if c == '\\' {
                token.extend(self.read_char());
            } else {
                token.push(c);
            }
            while let Some(c) = self.read_char() {
                match c {
                    c if ws(c) => return token,
                    '\\' => token.extend(self.read_char()),
                    c => token.push(c),
                }
            }
            return token;
        }
        token
    }
}

/// Parses `.netrc` text (already decoded); `path` only names the file in errors.
pub fn parse(text: &str, path: &Path) -> Result<Netrc, NetrcError> {
    // Python reads the file in text mode, which turns \r\n and lone \r into \n.
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut lx = Lexer {
        chars: text.chars().collect(),
        pos: 0,
        lineno: 1,
        pushback: Vec::new(),
    };
    let mut out = Netrc::default();
    let err = |lx: &Lexer, message: String| NetrcError::Parse {
        path: path.to_owned(),
        line: lx.lineno,
        message,
    };
    loop {
        let saved = lx.lineno;
        let tt = lx.get_token();
        let entry_name = match tt.as_str() {
            "" => break,
            t if t.starts_with('#') => {
                if lx.lineno == saved && t.len() == 1 {
                    lx.readline();
                }
                continue;
            }
            "machine" => lx.get_token(),
            "default" => "default".to_owned(),
            "macdef" => {
                let name = lx.get_token();
                let mut lines = Vec::new();
                loop {
                    let line = lx.readline();
                    if line.is_empty() {
                        return Err(err(
                            &lx,
                            "Macro definition missing null line terminator.".into(),
                        ));
                    }
                    if line == "\n" {
                        break;
                    }
                    lines.push(line);
                }
                match out.macros.iter_mut().find(|(n, _)| *n == name) {
                    Some(slot) => slot.1 = lines,
                    None => out.macros.push((name, lines)),
                }
                continue;
            }
            other => return Err(err(&lx, format!("bad toplevel token {other:?}"))),
        };
        if entry_name.is_empty() {
            return Err(err(&lx, format!("missing {tt:?} name")));
        }
        let mut entry = NetrcEntry::default();
        // Python stores an empty entry first, so the position is kept even on error.
        out.set_host(entry_name.clone(), NetrcEntry::default());
        loop {
            let prev = lx.lineno;
            let tt = lx.get_token();
            if tt.starts_with('#') {
                if lx.lineno == prev {
                    lx.readline();
                }
                continue;
            }
            match tt.as_str() {
                "" | "machine" | "default" | "macdef" => {
                    lx.pushback.push(tt);
                    break;
                }
                "login" | "user" => entry.login = lx.get_token(),
                "account" => entry.account = lx.get_token(),
                "password" => entry.password = lx.get_token(),
                other => return Err(err(&lx, format!("bad follower token {other:?}"))),
            }
        }
        out.set_host(entry_name, entry);
    }
    Ok(out)
}

/// Reads and parses a file; `Ok(None)` when it does not exist (or, with `tolerate_eacces`,
/// may not be read), as OfflineIMAP ignores those cases.
fn read(
    path: &Path,
    tolerate_eacces: bool,
    check_owner: bool,
) -> Result<Option<Netrc>, NetrcError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if tolerate_eacces && e.kind() == io::ErrorKind::PermissionDenied => {
            return Ok(None);
        }
        Err(source) => {
            return Err(NetrcError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    // Python falls back to the locale's encoding; replacing bad bytes keeps every ASCII
    // token (host names, logins) intact, which is all a lookup compares.
    let netrc = parse(&String::from_utf8_lossy(&bytes), path)?;
    if check_owner && netrc.hosts.iter().any(|(_, e)| e.login != "anonymous") {
        let meta = std::fs::metadata(path).map_err(|source| NetrcError::Io {
            path: path.to_owned(),
            source,
        })?;
        let insecure = |message: &str| NetrcError::Insecure {
            path: path.to_owned(),
            message: message.to_owned(),
        };
        if meta.uid() != current_uid() {
            return Err(insecure("file owner does not match current user"));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(insecure(
                "access too permissive: access permissions must restrict access to only the owner",
            ));
        }
    }
    Ok(Some(netrc))
}

#[allow(unsafe_code)]
fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// What the netrc files say for one host.
#[derive(Debug, Clone, Default)]
pub struct NetrcCredentials {
    /// The user OfflineIMAP would log in as: the configured one, else the login of
    /// `~/.netrc`, else that of `/etc/netrc`.
    pub user: Option<String>,
    /// The password of the first file (`~/.netrc`, then `/etc/netrc`) whose entry for the
    /// host has that user as its login.
    pub password: Option<Secret>,
}

/// OfflineIMAP's `getuser` / `getpassword` netrc steps over two given files.
/// `configured_user` is `remoteuser` (or the result of `remoteusereval`), if any.
pub fn netrc_credentials_from(
    home: Option<&Path>,
    etc: &Path,
    host: &str,
    configured_user: Option<&str>,
) -> Result<NetrcCredentials, NetrcError> {
    let home = match home {
        Some(p) => read(p, false, true)?,
        None => None,
    };
    let etc = read(etc, true, false)?;
    let from_home = home.as_ref().and_then(|n| n.authenticators(host));
    let from_etc = etc.as_ref().and_then(|n| n.authenticators(host));
    let user = configured_user
        .map(str::to_owned)
        .or_else(|| from_home.map(|e| e.login.clone()))
        .or_else(|| from_etc.map(|e| e.login.clone()));
    let matches = |e: &&NetrcEntry| user.as_deref().is_none_or(|u| u == e.login);
    let password = from_home
        .filter(matches)
        .or_else(|| from_etc.filter(matches))
        .map(|e| Secret::new(e.password.clone()));
    Ok(NetrcCredentials { user, password })
}

/// [`netrc_credentials_from`] over `$HOME/.netrc` and `/etc/netrc`.
pub fn netrc_credentials(
    host: &str,
    configured_user: Option<&str>,
) -> Result<NetrcCredentials, NetrcError> {
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".netrc"));
    netrc_credentials_from(
        home.as_deref(),
        Path::new("/etc/netrc"),
        host,
        configured_user,
    )
}

/// The simple form: user and password for `host` when neither is configured; `None` when
/// the files say nothing or cannot be used (use [`netrc_credentials`] to see why).
pub fn netrc_lookup(host: &str) -> Option<(String, Secret)> {
    let c = netrc_credentials(host, None).ok()?;
    Some((c.user?, c.password?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    fn p(text: &str) -> Result<Netrc, NetrcError> {
        parse(text, Path::new("test"))
    }

    fn entry(l: &str, a: &str, pw: &str) -> NetrcEntry {
        NetrcEntry {
            login: l.into(),
            account: a.into(),
            password: pw.into(),
        }
    }

    #[test]
    fn parses_entries_defaults_and_macros() {
        let n = p(
            "# comment line\nmachine imap.example.com login joe password \"se cret\"\n\
                   default login anon password x\n\
                   macdef init\ncd /\nls\n\nmachine m user u account acc password p\\ q",
        )
        .unwrap();
        assert_eq!(
            n.authenticators("imap.example.com"),
            Some(&entry("joe", "", "se cret"))
        );
        assert_eq!(n.authenticators("m"), Some(&entry("u", "acc", "p q")));
        assert_eq!(n.authenticators("other"), Some(&entry("anon", "", "x")));
        assert_eq!(
            n.macros,
            vec![(
                "init".to_string(),
                vec!["cd /\n".to_string(), "ls\n".to_string()]
            )]
        );
    }

    #[test]
    fn errors_are_errors() {
        assert!(matches!(p("bogus"), Err(NetrcError::Parse { .. })));
        assert!(matches!(
            p("machine a login b frob c"),
            Err(NetrcError::Parse { .. })
        ));
        assert!(matches!(
            p("macdef x\nline\n"),
            Err(NetrcError::Parse { .. })
        ));
        assert!(matches!(p("machine"), Err(NetrcError::Parse { .. })));
        // The last definition wins but keeps the first position.
        let n = p("machine a login 1 machine b machine a login 2").unwrap();
        assert_eq!(n.hosts[0], ("a".into(), entry("2", "", "")));
        assert_eq!(n.hosts.len(), 2);
    }

    #[test]
    fn lookup_follows_offlineimap_order() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("netrc");
        let etc = tmp.path().join("etc-netrc");
        std::fs::write(&home, "machine h login alice password a1\n").unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            &etc,
            "machine h login bob password b1\ndefault login carol password c1\n",
        )
        .unwrap();
        let get = |host, user| netrc_credentials_from(Some(&home), &etc, host, user).unwrap();
        let c = get("h", None);
        assert_eq!(c.user.as_deref(), Some("alice"));
        assert_eq!(c.password.unwrap().expose(), "a1");
        // A configured user other than ~/.netrc's takes the password from /etc/netrc.
        let c = get("h", Some("bob"));
        assert_eq!(c.user.as_deref(), Some("bob"));
        assert_eq!(c.password.unwrap().expose(), "b1");
        let c = get("h", Some("dave"));
        assert!(c.password.is_none());
        let c = get("elsewhere", None);
        assert_eq!(c.user.as_deref(), Some("carol"));
        assert_eq!(c.password.unwrap().expose(), "c1");
        // Missing files are fine.
        let none = tmp.path().join("none");
        let c = netrc_credentials_from(Some(&none), &none, "h", None).unwrap();
        assert!(c.user.is_none() && c.password.is_none());
        // A group-readable ~/.netrc is refused, as by Python.
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            netrc_credentials_from(Some(&home), &etc, "h", None),
            Err(NetrcError::Insecure { .. })
        ));
    }

    /// Python's view of a file: `OK <json of hosts and macros>` or `ERR <line>`.
    fn python(path: &Path) -> Option<String> {
        let script = "import netrc,json,sys\n\
try:\n n=netrc.netrc(sys.argv[1])\nexcept netrc.NetrcParseError as e:\n print('ERR', e.lineno); sys.exit(0)\n\
print('OK', json.dumps([[h, list(v)] for h, v in n.hosts.items()]), json.dumps([[m, v] for m, v in n.macros.items()]))";
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(path)
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    }

    fn json_str(s: &str) -> String {
        let mut o = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => o.push_str("\\\""),
                '\\' => o.push_str("\\\\"),
                '\n' => o.push_str("\\n"),
                '\t' => o.push_str("\\t"),
                '\r' => o.push_str("\\r"),
                c if (c as u32) < 0x20 || (c as u32) > 0x7f => {
                    let mut buf = [0u16; 2];
                    for u in c.encode_utf16(&mut buf) {
                        o.push_str(&format!("\\u{u:04x}"));
                    }
                }
                c => o.push(c),
            }
        }
        o.push('"');
        o
    }

    fn ours(text: &str) -> String {
        match p(text) {
            Err(NetrcError::Parse { line, .. }) => format!("ERR {line}"),
            Err(e) => format!("other error {e}"),
            Ok(n) => {
                let hosts: Vec<String> = n
                    .hosts
                    .iter()
                    .map(|(h, e)| {
                        format!(
                            "[{}, [{}, {}, {}]]",
                            json_str(h),
                            json_str(&e.login),
                            json_str(&e.account),
                            json_str(&e.password)
                        )
                    })
                    .collect();
                let macros: Vec<String> = n
                    .macros
                    .iter()
                    .map(|(m, lines)| {
                        let l: Vec<String> = lines.iter().map(|l| json_str(l)).collect();
                        format!("[{}, [{}]]", json_str(m), l.join(", "))
                    })
                    .collect();
                format!("OK [{}] [{}]", hosts.join(", "), macros.join(", "))
            }
        }
    }

    fn python_available() -> bool {
        Command::new("python3")
            .arg("-c")
            .arg("import netrc")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    #[test]
    fn same_as_python_on_tricky_files() {
        if !python_available() {
            eprintln!("python3 not found; skipping the differential test");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let cases = [
            "machine a login b password c",
            "#comment here\nmachine a login b",
            "# comment here\nmachine a login b",
            "\n# x\nmachine a",
            "machine a # trailing comment\n login b",
            "machine a login \"q\\\"uote\"d password \"\"",
            "machine a login b\\ c password d\\",
            "machine \"\" login x",
            "default\nmachine default login z",
            "macdef m\nx\n\nmachine a password p",
            "macdef m extra\nx\n\n",
            "machine a login b\r\npassword c\rmachine d",
            "machine é login ü password 日本",
            "machine a\tlogin\tb account\n\nc",
        ];
        for (i, text) in cases.iter().enumerate() {
            let path = tmp.path().join(format!("case{i}"));
            std::fs::write(&path, text).unwrap();
            assert_eq!(ours(text), python(&path).unwrap(), "case {text:?}");
        }
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("machine".to_string()),
            Just("default".to_string()),
            Just("login".to_string()),
            Just("user".to_string()),
            Just("password".to_string()),
            Just("account".to_string()),
            Just("macdef".to_string()),
            Just("#".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            "[a-z#\"\\\\]{1,4}",
            Just("\n".to_string()),
            Just("\n\n".to_string()),
            Just(" ".to_string()),
            Just("\t".to_string()),
            Just("\r\n".to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn same_as_python_on_random_files(tokens in proptest::collection::vec(token(), 0..24)) {
            if python_available() {
                let text: String = tokens.iter().enumerate().map(|(i, t)| {
                    // Mostly separate tokens by a space, sometimes glue them together.
                    if i % 3 == 2 { t.clone() } else { format!("{t} ") }
                }).collect();
                let tmp = tempfile::tempdir().unwrap();
                let path = tmp.path().join("netrc");
                std::fs::write(&path, &text).unwrap();
                prop_assert_eq!(ours(&text), python(&path).unwrap(), "text {:?}", text);
            }
        }
    }
}
