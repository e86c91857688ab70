//! Evaluation of the Python expressions in an offlineimaprc.
//!
//! OfflineIMAP `eval`s Python in `nametrans`, `folderfilter`, `folderincludes`,
//! `foldersort`, the `remote*eval` options and a few more, with the names of
//! `[general] pythonfile` in scope. This crate answers those evaluations in two tiers:
//!
//! 1. a native evaluator over ruff's Python parser for self-contained expressions (string
//!    methods, comparisons, dictionaries, `re` with Python's exact regex semantics), which
//!    declines anything it is not sure to get byte-identical to CPython;
//! 2. a long-lived `python3` helper process that loads the pythonfile once and evaluates
//!    everything else, applying folder functions to whole lists of names in one round trip.
//!
//! Errors name the section, the option and the Python exception. This crate knows nothing
//! about IMAP, Maildir, the sync engine or configuration files: it receives already
//! interpolated option values and must not depend on any crate but `oi-core`.
#![deny(missing_docs)]

mod helper;
mod native;
mod pyre;

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use oi_core::{Severity, StoreError};
use ruff_python_ast::ModExpression;
use ruff_python_parser::Parsed;
use serde_json::json;

use helper::{Helper, HelperError};
use native::{Ctx, Globals, Obj};

/// A Python value returned by an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`
    None,
    /// `True` / `False`
    Bool(bool),
    /// An int that fits in 64 bits.
    Int(i64),
    /// A str.
    Str(String),
    /// A list.
    List(Vec<Value>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A dict, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// Anything else (a function, a match object, a float, a huge int): its Python type
    /// name and truth value, which is all OfflineIMAP ever uses of such results.
    Other {
        /// `type(value).__name__`
        type_name: String,
        /// `bool(value)`
        truthy: bool,
    },
}

impl Value {
    /// Python's `bool(value)`: how `folderfilter` results are used.
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Str(s) => !s.is_empty(),
            Value::List(v) | Value::Tuple(v) => !v.is_empty(),
            Value::Dict(d) => !d.is_empty(),
            Value::Other { truthy, .. } => *truthy,
        }
    }

    /// The string, if this is a str.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Where an expression comes from, for error messages and for the names in scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Config section, e.g. `Repository Gmail-remote`.
    pub section: String,
    /// Option name, e.g. `nametrans`.
    pub option: String,
}

impl Origin {
    /// An origin for `option` in `[section]`.
    pub fn new(section: impl Into<String>, option: impl Into<String>) -> Origin {
        Origin {
            section: section.into(),
            option: option.into(),
        }
    }

    /// OfflineIMAP passes `{'re': re}` only when evaluating these options
    /// (repository/Base.py and mbnames.py); elsewhere `re` exists only if the pythonfile
    /// imports it.
    fn injects_re(&self) -> bool {
        matches!(
            self.option.as_str(),
            "nametrans" | "folderfilter" | "folderincludes" | "foldersort" | "sort_keyfunc"
        )
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.section, self.option)
    }
}

/// An evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum PyError {
    /// Python raised an exception (including SyntaxError).
    #[error("{origin}: {kind}: {message}")]
    Python {
        /// Option being evaluated.
        origin: Origin,
        /// Exception type, e.g. `NameError`.
        kind: String,
        /// `str(exception)`.
        message: String,
    },
    /// The python3 helper was needed but could not be run or failed.
    #[error("{origin}: python3 is needed to evaluate this ({reason}): {detail}")]
    Helper {
        /// Option being evaluated.
        origin: Origin,
        /// Why the native evaluator declined.
        reason: String,
        /// What went wrong with the helper.
        detail: String,
    },
    /// The native evaluator declined and the helper is disabled ([`PyEnv::native_only`]).
    #[error("{origin}: not evaluated natively: {reason}")]
    Unsupported {
        /// Option being evaluated.
        origin: Origin,
        /// Why the native evaluator declined.
        reason: String,
    },
    /// The value has the wrong type for its use (a folder function that is not callable,
    /// a foldersort result that is not a number...), detected natively.
    #[error("{origin}: {message}")]
    Type {
        /// Option being evaluated.
        origin: Origin,
        /// What was wrong.
        message: String,
    },
}

impl PyError {
    /// The option the error is about.
    pub fn origin(&self) -> &Origin {
        match self {
            PyError::Python { origin, .. }
            | PyError::Helper { origin, .. }
            | PyError::Unsupported { origin, .. }
            | PyError::Type { origin, .. } => origin,
        }
    }
}

impl From<PyError> for StoreError {
    /// A failing configuration expression stops everything, as OfflineIMAP's uncaught
    /// exception at repository set-up does.
    fn from(e: PyError) -> StoreError {
        StoreError::with_source(
            Severity::Fatal,
            "evaluating Python from the configuration",
            e,
        )
    }
}

/// Which tier answered the last evaluation (for tests and debug logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalPath {
    /// The native evaluator.
    Native,
    /// The python3 helper.
    Helper,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Auto,
    NativeOnly,
    HelperOnly,
}

/// A function of folder names (`nametrans`, `folderfilter`), ready to apply.
pub struct FolderFn {
    id: u64,
    source: String,
    origin: Origin,
    /// Parsed once; None when only the helper can evaluate it.
    parsed: Option<Parsed<ModExpression>>,
    /// Why the native path declined at definition time, if it did.
    declined: Option<String>,
}

impl fmt::Debug for FolderFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FolderFn")
            .field("origin", &self.origin)
            .field("source", &self.source)
            .field("native", &self.declined.is_none())
            .finish()
    }
}

/// The Python evaluation environment of one offlineimap run.
///
/// Calls block while the helper answers; async callers should use `spawn_blocking`.
pub struct PyEnv {
    pythonfile: Option<PathBuf>,
    interpreter: PathBuf,
    mode: Mode,
    helper: Option<Helper>,
    /// Folder functions already defined in the running helper (same ids on both sides).
    defined: HashSet<u64>,
    next_id: u64,
    last_path: Option<EvalPath>,
}

impl fmt::Debug for PyEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PyEnv")
            .field("pythonfile", &self.pythonfile)
            .field("interpreter", &self.interpreter)
            .field("helper_running", &self.helper.is_some())
            .finish()
    }
}

fn strip_eval_prefix(source: &str) -> &str {
    // CPython's eval() of a string skips leading spaces and tabs only.
    source.trim_start_matches([' ', '\t'])
}

/// Escapes the native path leaves to CPython: lone surrogates (`\\ud800`) cannot live in a
/// Rust string, and `\\N{...}` names depend on CPython's Unicode database.
fn risky_literal(source: &str) -> bool {
    let b = source.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        let hex = |from: usize, n: usize| {
            source
                .get(from..from + n)
                .and_then(|h| u32::from_str_radix(h, 16).ok())
        };
        let surrogate = |v: Option<u32>| v.is_some_and(|v| (0xD800..=0xDFFF).contains(&v));
        match b[i + 1] {
            b'N' if b.get(i + 2) == Some(&b'{') => return true,
            b'u' if surrogate(hex(i + 2, 4)) => return true,
            b'U' if surrogate(hex(i + 2, 8)) => return true,
            _ => {}
        }
        // Skip the escaped character too: in `\\N{` the N follows an escaped backslash.
        i += 2;
    }
    false
}

impl PyEnv {
    /// An environment for a config whose `[general] pythonfile` is `pythonfile`.
    /// Nothing is started until an evaluation needs python3.
    pub fn new(pythonfile: Option<PathBuf>) -> PyEnv {
        PyEnv {
            pythonfile,
            interpreter: PathBuf::from("python3"),
            mode: Mode::Auto,
            helper: None,
            defined: HashSet::new(),
            next_id: 0,
            last_path: None,
        }
    }

    /// An environment that never starts python3: anything the native evaluator declines is
    /// a [`PyError::Unsupported`]. For tests that compare the native path with CPython.
    pub fn native_only() -> PyEnv {
        PyEnv {
            mode: Mode::NativeOnly,
            ..PyEnv::new(None)
        }
    }

    /// Always uses the helper, never the native evaluator (tests, and a way out should the
    /// native evaluator ever be wrong).
    pub fn helper_only(mut self) -> PyEnv {
        self.mode = Mode::HelperOnly;
        self
    }

    /// Uses `interpreter` instead of `python3` from PATH.
    pub fn with_interpreter(mut self, interpreter: impl Into<PathBuf>) -> PyEnv {
        self.interpreter = interpreter.into();
        self
    }

    /// Which tier answered the last successful call.
    pub fn last_path(&self) -> Option<EvalPath> {
        self.last_path
    }

    /// Starts the helper and runs the pythonfile now, as OfflineIMAP does at account start
    /// even when no option uses it. Does nothing without a pythonfile.
    pub fn load_pythonfile(&mut self) -> Result<(), PyError> {
        if self.pythonfile.is_none() {
            return Ok(());
        }
        let origin = Origin::new("general", "pythonfile");
        self.helper(&origin, "pythonfile").map(|_| ())
    }

    fn globals(&self, origin: &Origin) -> Globals {
        Globals {
            re: origin.injects_re(),
            builtins: self.pythonfile.is_none(),
        }
    }

    fn helper(&mut self, origin: &Origin, reason: &str) -> Result<&mut Helper, PyError> {
        if self.mode == Mode::NativeOnly {
            return Err(PyError::Unsupported {
                origin: origin.clone(),
                reason: reason.to_string(),
            });
        }
        if self.helper.is_none() {
            let to_err = |e: HelperError, origin: &Origin| match e {
                HelperError::Python { kind, message } => PyError::Python {
                    origin: origin.clone(),
                    kind,
                    message,
                },
                HelperError::Process(detail) => PyError::Helper {
                    origin: origin.clone(),
                    reason: reason.to_string(),
                    detail,
                },
            };
            let mut h = Helper::start(&self.interpreter).map_err(|e| to_err(e, origin))?;
            if let Some(p) = &self.pythonfile {
                let file_origin = Origin::new("general", "pythonfile");
                h.load(p).map_err(|e| to_err(e, &file_origin))?;
            }
            self.defined.clear();
            self.helper = Some(h);
        }
        self.helper.as_mut().ok_or_else(|| PyError::Helper {
            origin: origin.clone(),
            reason: reason.to_string(),
            detail: "helper vanished".into(),
        })
    }

    fn helper_request(
        &mut self,
        origin: &Origin,
        reason: &str,
        req: serde_json::Value,
    ) -> Result<serde_json::Value, PyError> {
        let h = self.helper(origin, reason)?;
        let r = h.request(req);
        match r {
            Ok(v) => {
                self.last_path = Some(EvalPath::Helper);
                Ok(v)
            }
            Err(HelperError::Python { kind, message }) => Err(PyError::Python {
                origin: origin.clone(),
                kind,
                message,
            }),
            Err(HelperError::Process(detail)) => {
                // A dead helper is restarted (and the pythonfile reloaded) on next use.
                self.helper = None;
                Err(PyError::Helper {
                    origin: origin.clone(),
                    reason: reason.to_string(),
                    detail,
                })
            }
        }
    }

    fn parse(&self, source: &str) -> Result<Parsed<ModExpression>, String> {
        if self.mode == Mode::HelperOnly {
            return Err("helper forced".into());
        }
        if risky_literal(source) {
            return Err("string escape left to CPython".into());
        }
        ruff_python_parser::parse_expression(strip_eval_prefix(source))
            .map_err(|e| format!("syntax: {e}"))
    }

    /// A plain expression (`folderincludes`, `remotepasseval`, `idlefolders`...).
    pub fn eval(&mut self, source: &str, origin: &Origin) -> Result<Value, PyError> {
        let reason = match self.parse(source) {
            Ok(parsed) => {
                let ctx = Ctx::new(self.globals(origin));
                match ctx
                    .eval(&parsed.syntax().body)
                    .and_then(|o| native::to_value(&o))
                {
                    Ok(v) => {
                        self.last_path = Some(EvalPath::Native);
                        return Ok(v);
                    }
                    Err(r) => r,
                }
            }
            Err(r) => r,
        };
        let req = json!({"op": "eval", "source": source, "re": origin.injects_re()});
        let resp = self.helper_request(origin, &reason, req)?;
        decode(origin, &reason, resp.get("value"))
    }

    /// A function of one folder name (`nametrans`, `folderfilter`). The expression is
    /// evaluated now, as OfflineIMAP does when it sets up the repository.
    pub fn folder_function(&mut self, source: &str, origin: &Origin) -> Result<FolderFn, PyError> {
        self.next_id += 1;
        let mut f = FolderFn {
            id: self.next_id,
            source: source.to_string(),
            origin: origin.clone(),
            parsed: None,
            declined: None,
        };
        let declined = match self.parse(source) {
            Ok(parsed) => {
                let ctx = Ctx::new(self.globals(origin));
                match ctx.eval(&parsed.syntax().body) {
                    Ok(Obj::Lambda(_)) => {
                        f.parsed = Some(parsed);
                        self.last_path = Some(EvalPath::Native);
                        return Ok(f);
                    }
                    Ok(_) => "not a lambda".to_string(),
                    Err(r) => r,
                }
            }
            Err(r) => r,
        };
        f.declined = Some(declined.clone());
        self.define(&f, &declined)?;
        Ok(f)
    }

    fn define(&mut self, f: &FolderFn, reason: &str) -> Result<(), PyError> {
        if self.helper.is_some() && self.defined.contains(&f.id) {
            return Ok(());
        }
        let req =
            json!({"op": "define", "id": f.id, "source": f.source, "re": f.origin.injects_re()});
        self.helper_request(&f.origin, reason, req)?;
        self.defined.insert(f.id);
        Ok(())
    }

    /// Applies a folder function to every name. Names the native evaluator declines (say,
    /// a `\w` pattern on a name with combining marks) go to the helper together, in one
    /// round trip; the others never leave the process.
    pub fn apply(&mut self, f: &FolderFn, names: &[String]) -> Result<Vec<Value>, PyError> {
        let mut results: Vec<Result<Value, String>> = match self.apply_native(f) {
            Ok(per_name) => per_name(names),
            Err(r) => names.iter().map(|_| Err(r.clone())).collect(),
        };
        let missing: Vec<usize> = (0..names.len()).filter(|i| results[*i].is_err()).collect();
        if missing.is_empty() {
            self.last_path = Some(EvalPath::Native);
            return results
                .into_iter()
                .map(|r| r.map_err(|_| bad_answer(&f.origin, "")))
                .collect();
        }
        let reason = match &results[missing[0]] {
            Err(r) => r.clone(),
            Ok(_) => String::new(),
        };
        self.define(f, &reason)?;
        let batch: Vec<&String> = missing.iter().map(|i| &names[*i]).collect();
        let req = json!({"op": "apply", "id": f.id, "names": batch});
        let resp = self.helper_request(&f.origin, &reason, req)?;
        let values = resp
            .get("values")
            .and_then(|v| v.as_array())
            .filter(|v| v.len() == missing.len())
            .ok_or_else(|| bad_answer(&f.origin, &reason))?;
        for (i, v) in missing.iter().zip(values) {
            results[*i] = Ok(decode(&f.origin, &reason, Some(v))?);
        }
        results
            .into_iter()
            .map(|r| r.map_err(|_| bad_answer(&f.origin, &reason)))
            .collect()
    }

    /// A native per-name evaluator, or why there is none.
    #[allow(clippy::type_complexity)]
    fn apply_native<'f>(
        &self,
        f: &'f FolderFn,
    ) -> Result<Box<dyn Fn(&[String]) -> Vec<Result<Value, String>> + 'f>, String> {
        let Some(parsed) = &f.parsed else {
            return Err(f.declined.clone().unwrap_or_default());
        };
        let globals = self.globals(&f.origin);
        Ok(Box::new(move |names: &[String]| {
            let ctx = Ctx::new(globals);
            let func = match ctx.eval(&parsed.syntax().body) {
                Ok(func) => func,
                Err(r) => return names.iter().map(|_| Err(r.clone())).collect(),
            };
            names
                .iter()
                .map(|n| {
                    native::refuel();
                    let r = ctx.call(&func, vec![Obj::Str(n.as_str().into())])?;
                    native::to_value(&r)
                })
                .collect()
        }))
    }

    /// `foldersort`: sorts `names` with a cmp-style function of two names, exactly as
    /// OfflineIMAP 8 does (`sort(key=cmp2key(foldersort))`, so only `cmp(a, b) < 0` is
    /// used). Python 2's `cmp` does not exist in Python 3: `lambda x, y: cmp(x, y)` raises
    /// NameError as soon as two folders are compared, unless the pythonfile defines `cmp`.
    pub fn sort_folders(
        &mut self,
        source: &str,
        origin: &Origin,
        names: &[String],
    ) -> Result<Vec<String>, PyError> {
        let order = self.sort_order(source, origin, names)?;
        Ok(order
            .into_iter()
            .filter_map(|i| names.get(i).cloned())
            .collect())
    }

    /// Like [`PyEnv::sort_folders`] but returns the permutation: `names[order[0]]` first.
    pub fn sort_order(
        &mut self,
        source: &str,
        origin: &Origin,
        names: &[String],
    ) -> Result<Vec<usize>, PyError> {
        let f = self.folder_function(source, origin)?;
        let reason = match self.sort_native(&f, names) {
            Ok(v) => {
                self.last_path = Some(EvalPath::Native);
                return Ok(v);
            }
            Err(r) => r,
        };
        self.define(&f, &reason)?;
        let req = json!({"op": "sort", "id": f.id, "names": names});
        let resp = self.helper_request(origin, &reason, req)?;
        let order: Option<Vec<usize>> = resp
            .get("order")
            .and_then(|v| v.as_array())
            .and_then(|a| a.iter().map(|i| i.as_u64().map(|i| i as usize)).collect());
        match order {
            Some(o) if o.len() == names.len() => Ok(o),
            _ => Err(bad_answer(origin, &reason)),
        }
    }

    /// OfflineIMAP 8's last password source: `keyring.get_password(service, user)` in the
    /// helper, with the user's own keyring module and backend. `Ok(None)` when the keyring
    /// has no such entry; a missing `keyring` module is a [`PyError::Python`] of kind
    /// `ModuleNotFoundError` (OfflineIMAP stops on it; the caller decides).
    pub fn keyring_password(
        &mut self,
        service: &str,
        user: Option<&str>,
        origin: &Origin,
    ) -> Result<Option<String>, PyError> {
        let reason = "the password keyring is a Python module";
        let req = json!({"op": "keyring_get", "service": service, "user": user});
        let resp = self.helper_request(origin, reason, req)?;
        match resp.get("value") {
            Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(PyError::Type {
                origin: origin.clone(),
                message: format!(
                    "keyring.get_password returned a {}, not a string",
                    json_kind(other)
                ),
            }),
            None => Err(bad_answer(origin, reason)),
        }
    }

    /// `--update-keyring`: `keyring.set_password(service, user, password)` in the helper.
    pub fn keyring_store(
        &mut self,
        service: &str,
        user: Option<&str>,
        password: &str,
        origin: &Origin,
    ) -> Result<(), PyError> {
        let reason = "the password keyring is a Python module";
        let req = json!({"op": "keyring_set", "service": service, "user": user,
                         "password": password});
        self.helper_request(origin, reason, req).map(|_| ())
    }

    /// Sorts natively when the comparisons form a strict weak order: then every correct
    /// stable sort, CPython's timsort included, gives the same permutation. Inconsistent
    /// comparators depend on timsort's exact comparison sequence and go to the helper.
    fn sort_native(&self, f: &FolderFn, names: &[String]) -> Result<Vec<usize>, String> {
        let n = names.len();
        if n < 2 {
            // CPython's sort compares nothing here, so nothing can fail.
            if f.parsed.is_some() {
                return Ok((0..n).collect());
            }
            return Err(f.declined.clone().unwrap_or_default());
        }
        if n > 300 {
            return Err("too many folders for the native consistency check".into());
        }
        let Some(parsed) = &f.parsed else {
            return Err(f.declined.clone().unwrap_or_default());
        };
        let ctx = Ctx::new(self.globals(&f.origin));
        let func = ctx.eval(&parsed.syntax().body)?;
        let mut lt = vec![false; n * n];
        for i in 0..n {
            native::refuel();
            for j in 0..n {
                if i == j {
                    continue;
                }
                let r = ctx.call(
                    &func,
                    vec![
                        Obj::Str(names[i].as_str().into()),
                        Obj::Str(names[j].as_str().into()),
                    ],
                )?;
                lt[i * n + j] = match r {
                    Obj::Int(v) => v < 0,
                    Obj::Bool(_) => false,
                    _ => return Err("comparison result is not an int".into()),
                };
            }
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| {
            if lt[a * n + b] {
                std::cmp::Ordering::Less
            } else if lt[b * n + a] {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        // Strict weak order check on the result: classes of mutually not-less elements
        // are contiguous, and everything in an earlier class is less than every later one.
        let mut class = vec![0usize; n];
        for k in 1..n {
            class[k] = class[k - 1] + usize::from(lt[order[k - 1] * n + order[k]]);
        }
        for a in 0..n {
            for b in 0..n {
                let (x, y) = (order[a], order[b]);
                if a != b && lt[x * n + y] != (class[a] < class[b]) {
                    return Err("comparator is not a strict weak order".into());
                }
            }
        }
        Ok(order)
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "None",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "str",
        serde_json::Value::Array(_) => "list",
        serde_json::Value::Object(_) => "object",
    }
}

fn bad_answer(origin: &Origin, reason: &str) -> PyError {
    PyError::Helper {
        origin: origin.clone(),
        reason: reason.to_string(),
        detail: "malformed answer".into(),
    }
}

fn decode(origin: &Origin, reason: &str, v: Option<&serde_json::Value>) -> Result<Value, PyError> {
    let v = v.ok_or_else(|| bad_answer(origin, reason))?;
    helper::decode(v).map_err(|e| match e {
        HelperError::Python { kind, message } => PyError::Python {
            origin: origin.clone(),
            kind,
            message,
        },
        HelperError::Process(detail) => PyError::Helper {
            origin: origin.clone(),
            reason: reason.to_string(),
            detail,
        },
    })
}

#[cfg(test)]
mod tests;
