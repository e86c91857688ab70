//! The Python options of the configuration, evaluated where OfflineIMAP evaluates them:
//! folder naming and selection for the engine, and the `remote*eval` connection values.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Result, anyhow};
use oi_config::{FolderOptions, PyExpr};
use oi_core::{Secret, Severity, Side, StoreError};
use oi_pyeval::{Origin, PyEnv, PyError, Value};
use oi_sync::{FolderNaming, Translated};

/// One Python environment for the whole run: the pythonfile is loaded once.
#[derive(Clone)]
pub struct Python(Arc<Mutex<PyEnv>>, Arc<Mutex<KeyringState>>);

/// A keyring entry: service (the IMAP host) and user.
type KeyringEntry = (String, Option<String>);

/// What the run learned from the keyring and gave it.
#[derive(Default)]
struct KeyringState {
    /// Passwords the keyring gave: asked once per run, as OfflineIMAP keeps the password
    /// that worked (a keyring that locks later, or waits for an unlock dialog, is not
    /// asked again at every autorefresh).
    found: HashMap<KeyringEntry, Secret>,
    /// Entries `--update-keyring` stored (or failed to store) this run.
    stored: HashSet<KeyringEntry>,
}

/// What the keyring gave for a repository without a password.
#[derive(Debug)]
pub enum Keyring {
    /// Its password.
    Found(Secret),
    /// None, and why (for the "no password" error).
    Absent(String),
}

impl Python {
    /// The environment of a configuration (the helper process starts only when needed).
    pub fn new(pythonfile: Option<std::path::PathBuf>) -> Python {
        Python(Arc::new(Mutex::new(PyEnv::new(pythonfile))), Arc::default())
    }

    fn keyring_state(&self) -> MutexGuard<'_, KeyringState> {
        self.1.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// OfflineIMAP 8's last password source, `keyring.get_password(host, user)`, run by
    /// the Python helper with the user's keyring module and backend. Whatever goes wrong
    /// there (no module, no backend, a locked keyring, no python3) is no password, with
    /// the reason for the "no password" error, so that ttyui still asks: OfflineIMAP
    /// stops on the exception instead.
    pub fn keyring_password(&self, repo: &str, host: &str, user: Option<&str>) -> Keyring {
        let entry = (host.to_string(), user.map(str::to_string));
        if let Some(p) = self.keyring_state().found.get(&entry) {
            return Keyring::Found(p.clone());
        }
        let origin = Origin::new(format!("Repository {repo}"), "keyring");
        let answer = self.env().keyring_password(host, user, &origin);
        match answer {
            Ok(Some(p)) => {
                let p = Secret::new(p);
                self.keyring_state().found.insert(entry, p.clone());
                Keyring::Found(p)
            }
            Ok(None) => Keyring::Absent(format!(
                "the Python keyring has no password for {host}{}",
                user.map(|u| format!(" and user {u}")).unwrap_or_default()
            )),
            Err(PyError::Python { kind, .. }) if kind == "ModuleNotFoundError" => {
                Keyring::Absent("the Python module keyring is not installed".into())
            }
            Err(PyError::Python { kind, message, .. }) => {
                Keyring::Absent(format!("the Python keyring failed: {kind}: {message}"))
            }
            Err(PyError::Helper { detail, .. }) => {
                Keyring::Absent(format!("the Python keyring could not be asked: {detail}"))
            }
            Err(e) => Keyring::Absent(format!("the Python keyring failed: {e}")),
        }
    }

    /// `--update-keyring`: stores the password that just logged in to `host` as `user`,
    /// once per run (OfflineIMAP stores it each time it first needs it, before the
    /// login). `Err` says why it could not (the caller warns); a failure is not retried.
    pub fn keyring_store(
        &self,
        repo: &str,
        host: &str,
        user: Option<&str>,
        password: &Secret,
    ) -> Result<()> {
        let entry = (host.to_string(), user.map(str::to_string));
        if !self.keyring_state().stored.insert(entry) {
            return Ok(());
        }
        let origin = Origin::new(format!("Repository {repo}"), "update-keyring");
        self.env()
            .keyring_store(host, user, password.expose(), &origin)
            .map_err(|e| anyhow!("{e}"))
    }

    fn env(&self) -> MutexGuard<'_, PyEnv> {
        // A panic while evaluating left the environment as usable as any error does.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the pythonfile now: OfflineIMAP always does, even when no option uses it.
    pub fn load(&self) -> Result<()> {
        self.env().load_pythonfile().map_err(|e| anyhow!("{e}"))
    }

    /// Evaluates an expression to a string (remotehosteval, remoteusereval,
    /// remotepasseval).
    pub fn string(&self, e: &PyExpr) -> Result<String> {
        match self.eval(e)? {
            Value::Str(s) => Ok(s),
            other => Err(anyhow!(
                "[{}] {}: expected a string, got {other:?}",
                e.section,
                e.option
            )),
        }
    }

    /// Evaluates an expression to a string or `None` (the `oauth2_*_eval` options).
    pub fn opt_string(&self, e: &PyExpr) -> Result<Option<String>> {
        match self.eval(e)? {
            Value::None => Ok(None),
            Value::Str(s) => Ok(Some(s)),
            other => Err(anyhow!(
                "[{}] {}: expected a string or None, got {}",
                e.section,
                e.option,
                match other {
                    Value::Bool(_) => "a bool",
                    Value::Int(_) => "an int",
                    Value::List(_) => "a list",
                    Value::Tuple(_) => "a tuple",
                    _ => "another type",
                }
            )),
        }
    }

    /// Evaluates an expression for its effect (newmail_hook's call).
    pub fn call(&self, e: &PyExpr) -> Result<()> {
        self.eval(e).map(|_| ())
    }

    /// Evaluates an expression to a list of strings (idlefolders).
    pub fn string_list(&self, e: &PyExpr) -> Result<Vec<String>> {
        match self.eval(e)? {
            Value::List(items) | Value::Tuple(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s),
                    other => Err(anyhow!(
                        "[{}] {}: items must be strings, got {other:?}",
                        e.section,
                        e.option
                    )),
                })
                .collect(),
            other => Err(anyhow!(
                "[{}] {}: expected a list, got {other:?}",
                e.section,
                e.option
            )),
        }
    }

    /// Evaluates an expression to a port number (remoteporteval).
    pub fn port(&self, e: &PyExpr) -> Result<u16> {
        match self.eval(e)? {
            Value::Int(n) => u16::try_from(n)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| anyhow!("[{}] {}: {n} is not a port", e.section, e.option)),
            Value::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| anyhow!("[{}] {}: {s:?} is not a port", e.section, e.option)),
            other => Err(anyhow!(
                "[{}] {}: expected a port number, got {other:?}",
                e.section,
                e.option
            )),
        }
    }

    fn eval(&self, e: &PyExpr) -> Result<Value> {
        self.env()
            .eval(&e.source, &origin(e))
            .map_err(|err| anyhow!("{err}"))
    }
}

fn origin(e: &PyExpr) -> Origin {
    Origin::new(e.section.clone(), e.option.clone())
}

fn fatal(message: String) -> StoreError {
    StoreError::new(Severity::Fatal, message)
}

/// The engine's folder naming from a pair of repositories' options.
pub struct PyNaming {
    python: Python,
    remote: FolderOptions,
    local: FolderOptions,
    /// `utf8foldernames`: server names are modified UTF-7, everything else UTF-8.
    utf8: bool,
    /// `decodefoldernames` (deprecated): remote visible names are decoded from UTF-7.
    decode: bool,
    /// The remote repository's `copy_ignore_eval`.
    copy_ignore: Option<PyExpr>,
    /// The local repository's `copy_ignore_eval` (an IMAP local repository).
    local_copy_ignore: Option<PyExpr>,
}

impl PyNaming {
    /// Naming for an account.
    pub fn new(python: Python, remote: FolderOptions, local: FolderOptions) -> PyNaming {
        PyNaming {
            python,
            remote,
            local,
            utf8: false,
            decode: false,
            copy_ignore: None,
            local_copy_ignore: None,
        }
    }

    /// Turns on `utf8foldernames` / `decodefoldernames`.
    pub fn with_folder_encoding(mut self, utf8: bool, decode: bool) -> PyNaming {
        self.utf8 = utf8;
        self.decode = decode;
        self
    }

    /// Sets the remote repository's `copy_ignore_eval`.
    pub fn with_copy_ignore(mut self, expr: Option<PyExpr>) -> PyNaming {
        self.copy_ignore = expr;
        self
    }

    /// Sets the local repository's `copy_ignore_eval` (IMAP↔IMAP).
    pub fn with_local_copy_ignore(mut self, expr: Option<PyExpr>) -> PyNaming {
        self.local_copy_ignore = expr;
        self
    }

    /// The local repository's `copy_ignore_eval` for a local folder (its name on the
    /// local server, whose separator is `sep`): local server UIDs never uploaded.
    pub fn local_copy_ignore(
        &self,
        local_folder: &str,
        sep: char,
    ) -> Result<Vec<oi_core::Uid>, StoreError> {
        match &self.local_copy_ignore {
            Some(e) => self.copy_ignore_of(Side::Local, e, local_folder, sep),
            None => Ok(Vec::new()),
        }
    }

    /// OfflineIMAP calls `copy_ignore_eval` with the folder's visible name (after
    /// nametrans) and skips the UIDs it returns (`None`: none).
    fn copy_ignore_of(
        &self,
        side: Side,
        e: &PyExpr,
        folder: &str,
        sep: char,
    ) -> Result<Vec<oi_core::Uid>, StoreError> {
        let visible = self
            .translate(side, &[folder.to_string()], sep, sep, false)?
            .into_iter()
            .next()
            .flatten()
            .map_or_else(|| folder.to_string(), |t| t.visible);
        let bad = |what: String| {
            StoreError::new(
                Severity::Folder,
                format!(
                    "[{}] copy_ignore_eval: for folder {visible:?}: {what}",
                    e.section
                ),
            )
        };
        match self
            .apply(e, std::slice::from_ref(&visible))?
            .into_iter()
            .next()
        {
            None | Some(Value::None) => Ok(Vec::new()),
            Some(Value::List(items) | Value::Tuple(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::Int(n) => u32::try_from(n)
                        .ok()
                        .and_then(oi_core::Uid::new)
                        .ok_or_else(|| bad(format!("{n} is not a UID"))),
                    other => Err(bad(format!("items must be UIDs (ints), got {other:?}"))),
                })
                .collect(),
            Some(other) => Err(bad(format!("must return a list of UIDs, got {other:?}"))),
        }
    }

    /// A name as the server spells it.
    fn to_server(&self, name: String) -> String {
        if self.utf8 || self.decode {
            oi_imap::utf7::encode(&name)
        } else {
            name
        }
    }

    fn options(&self, side: Side) -> &FolderOptions {
        match side {
            Side::Remote => &self.remote,
            Side::Local => &self.local,
        }
    }

    /// Applies a folder function to every name (one helper round trip at most).
    fn apply(&self, e: &PyExpr, names: &[String]) -> Result<Vec<Value>, StoreError> {
        let mut env = self.python.env();
        let f = env.folder_function(&e.source, &origin(e))?;
        Ok(env.apply(&f, names)?)
    }

    /// The visible name of a local folder (its nametrans), which OfflineIMAP hashes into
    /// the FMD5 of Maildir file names.
    pub fn local_visible(&self, name: &str) -> Result<String, StoreError> {
        let Some(nt) = &self.local.nametrans else {
            return Ok(name.to_string());
        };
        let v = self.apply(nt, &[name.to_string()])?;
        match v.into_iter().next() {
            Some(Value::Str(s)) => Ok(s),
            other => Err(fatal(format!(
                "[{}] nametrans: must return a string for {name:?}, got {other:?}",
                nt.section
            ))),
        }
    }
}

impl FolderNaming for PyNaming {
    fn translate(
        &self,
        side: Side,
        names: &[String],
        own_sep: char,
        other_sep: char,
        filter: bool,
    ) -> Result<Vec<Option<Translated>>, StoreError> {
        let opts = self.options(side);
        // With utf8foldernames the filters and nametrans see UTF-8 names; a server name
        // that is not valid modified UTF-7 cannot be named locally and is left out.
        let decoded: Vec<Option<String>> = match side {
            Side::Remote if self.utf8 => names
                .iter()
                .map(|n| oi_imap::utf7::decode(n).ok())
                .collect(),
            _ => names.iter().cloned().map(Some).collect(),
        };
        let names: Vec<String> = decoded
            .iter()
            .zip(names)
            .map(|(d, n)| d.clone().unwrap_or_else(|| n.clone()))
            .collect();
        let names = &names[..];
        let keep: Vec<bool> = match (&opts.folderfilter, filter) {
            (Some(ff), true) => self
                .apply(ff, names)?
                .iter()
                .map(Value::is_truthy)
                .collect(),
            _ => vec![true; names.len()],
        };
        let visible: Vec<String> = match &opts.nametrans {
            Some(nt) => self
                .apply(nt, names)?
                .into_iter()
                .zip(names)
                .map(|(v, name)| match v {
                    Value::Str(s) => Ok(s),
                    other => Err(fatal(format!(
                        "[{}] nametrans: must return a string for {name:?}, got {other:?}",
                        nt.section
                    ))),
                })
                .collect::<Result<_, _>>()?,
            None => names.to_vec(),
        };
        Ok(visible
            .into_iter()
            .zip(keep)
            .zip(decoded)
            .map(|((visible, keep), decoded)| {
                (keep && decoded.is_some()).then(|| {
                    let visible = match side {
                        // Deprecated decodefoldernames: the remote's visible name, decoded
                        // when it decodes.
                        Side::Remote if self.decode && !self.utf8 => {
                            oi_imap::utf7::decode(&visible).unwrap_or(visible)
                        }
                        _ => visible,
                    };
                    let other = visible.replace(own_sep, &other_sep.to_string());
                    let other = match side {
                        Side::Local => self.to_server(other),
                        Side::Remote => other,
                    };
                    Translated { other, visible }
                })
            })
            .collect())
    }

    fn includes(&self, side: Side) -> Result<Vec<String>, StoreError> {
        let Some(e) = &self.options(side).folderincludes else {
            return Ok(Vec::new());
        };
        let value = self
            .python
            .env()
            .eval(&e.source, &origin(e))
            .map_err(StoreError::from)?;
        match value {
            Value::List(items) | Value::Tuple(items) => items
                .into_iter()
                .map(|v| match v {
                    // Written as the user sees names: the server's spelling is sent.
                    Value::Str(s) if side == Side::Remote => Ok(self.to_server(s)),
                    Value::Str(s) => Ok(s),
                    other => Err(fatal(format!(
                        "[{}] folderincludes: items must be strings, got {other:?}",
                        e.section
                    ))),
                })
                .collect(),
            other => Err(fatal(format!(
                "[{}] folderincludes: must be a list, got {other:?}",
                e.section
            ))),
        }
    }

    /// The remote repository's `copy_ignore_eval`: UIDs never downloaded.
    fn copy_ignore(&self, remote_folder: &str) -> Result<Vec<oi_core::Uid>, StoreError> {
        match &self.copy_ignore {
            Some(e) => self.copy_ignore_of(Side::Remote, e, remote_folder, '/'),
            None => Ok(Vec::new()),
        }
    }

    fn ignores_copies(&self) -> bool {
        self.copy_ignore.is_some()
    }

    fn order_is_set(&self) -> bool {
        self.remote.foldersort.is_some()
    }

    fn order(&self, visible: &[String]) -> Result<Vec<usize>, StoreError> {
        match &self.remote.foldersort {
            Some(e) => Ok(self
                .python
                .env()
                .sort_order(&e.source, &origin(e), visible)?),
            None => oi_sync::PlainNaming.order(visible),
        }
    }
}
