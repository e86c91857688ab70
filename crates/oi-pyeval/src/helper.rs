//! The long-lived python3 helper process and its JSON-lines protocol.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value as Json, json};

use crate::Value;

/// The helper's Python source, run with `python3 -c`.
const SOURCE: &str = include_str!("helper.py");

/// How a request failed.
#[derive(Debug)]
pub enum HelperError {
    /// Python raised: exception type name and `str(exception)`.
    Python { kind: String, message: String },
    /// The process could not be started, died, or spoke nonsense.
    Process(String),
}

/// A running helper.
pub struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    /// Starts `interpreter` with the helper source.
    ///
    /// No `-I`/`-S`: pythonfiles import modules from user site-packages (keyring, gnupg) and
    /// honour PYTHONPATH exactly as they do under OfflineIMAP; the helper drops the cwd
    /// entry from sys.path itself.
    pub fn start(interpreter: &Path) -> Result<Helper, HelperError> {
        let mut child = Command::new(interpreter)
            .arg("-c")
            .arg(SOURCE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                HelperError::Process(format!("cannot run {}: {e}", interpreter.display()))
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(HelperError::Process("helper pipes missing".into()));
        };
        Ok(Helper {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    /// Sends one request and waits for its answer.
    pub fn request(&mut self, req: Json) -> Result<Json, HelperError> {
        let mut line = req.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|e| HelperError::Process(format!("writing to the python3 helper: {e}")))?;
        let mut answer = String::new();
        let n = self
            .stdout
            .read_line(&mut answer)
            .map_err(|e| HelperError::Process(format!("reading from the python3 helper: {e}")))?;
        if n == 0 {
            let status = self.child.try_wait().ok().flatten();
            return Err(HelperError::Process(match status {
                Some(s) => format!("the python3 helper exited ({s})"),
                None => "the python3 helper closed its output".into(),
            }));
        }
        let resp: Json = serde_json::from_str(&answer).map_err(|e| {
            HelperError::Process(format!("bad answer from the python3 helper: {e}"))
        })?;
        if let Some(err) = resp.get("error") {
            let s = |k: &str| err.get(k).and_then(Json::as_str).unwrap_or("").to_string();
            return Err(HelperError::Python {
                kind: s("type"),
                message: s("message"),
            });
        }
        Ok(resp)
    }

    /// Loads the pythonfile into the helper's namespace.
    pub fn load(&mut self, path: &Path) -> Result<(), HelperError> {
        let path = path
            .to_str()
            .ok_or_else(|| HelperError::Process("pythonfile path is not UTF-8".into()))?;
        self.request(json!({"op": "load", "path": path}))
            .map(|_| ())
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Closing stdin ends the helper's read loop; wait so no zombie is left behind.
        let _ = self.stdin.flush();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decodes the helper's value encoding (see `enc` in helper.py).
pub fn decode(j: &Json) -> Result<Value, HelperError> {
    let bad = || HelperError::Process(format!("undecodable value from the python3 helper: {j}"));
    Ok(match j {
        Json::Null => Value::None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => Value::Int(n.as_i64().ok_or_else(bad)?),
        Json::String(s) => Value::Str(s.clone()),
        Json::Object(o) => {
            let items = || -> Result<Vec<Value>, HelperError> {
                o.get("v")
                    .and_then(Json::as_array)
                    .ok_or_else(bad)?
                    .iter()
                    .map(decode)
                    .collect()
            };
            match o.get("t").and_then(Json::as_str) {
                Some("list") => Value::List(items()?),
                Some("tuple") => Value::Tuple(items()?),
                Some("dict") => Value::Dict(
                    o.get("v")
                        .and_then(Json::as_array)
                        .ok_or_else(bad)?
                        .iter()
                        .map(|kv| match kv.as_array().map(Vec::as_slice) {
                            Some([k, v]) => Ok((decode(k)?, decode(v)?)),
                            _ => Err(bad()),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                Some("other") => Value::Other {
                    type_name: o
                        .get("type")
                        .and_then(Json::as_str)
                        .ok_or_else(bad)?
                        .to_string(),
                    truthy: o.get("truthy").and_then(Json::as_bool).ok_or_else(bad)?,
                },
                _ => return Err(bad()),
            }
        }
        Json::Array(_) => return Err(bad()),
    })
}
