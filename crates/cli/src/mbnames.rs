//! `[mbnames]`: the mailbox list for mutt and the like, written as OfflineIMAP writes it.
//!
//! Each account leaves `<metadata>/mbnames/<account>.json` (the folders it synced, after
//! the mbnames folderfilter; the same JSON as Python's `json.dump`, so OfflineIMAP and
//! this binary can share the directory), and the list is rebuilt from every such file:
//! after each account when `incremental`, else once at the end of the run. The Python
//! parts (header, sep, footer, folderfilter, sort_keyfunc, the `%` format of peritem) are
//! evaluated by the Python environment, with `re` available as OfflineIMAP provides it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use oi_config::{Mbnames, PyExpr};

use crate::py::Python;

/// One entry: what `peritem` is formatted with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    account: String,
    folder: String,
    root: String,
}

fn dir(metadata: &Path) -> PathBuf {
    metadata.join("mbnames")
}

/// A Python (and JSON) string literal, ASCII only as `json.dump` writes it.
fn literal(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The items as Python's `json.dump` writes them (also a valid Python literal).
fn to_json(items: &[Item]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|i| {
            format!(
                "{{\"accountname\": {}, \"foldername\": {}, \"localfolders\": {}}}",
                literal(&i.account),
                literal(&i.folder),
                literal(&i.root)
            )
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

fn from_json(text: &str) -> Result<Vec<Item>> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    let list = value.as_array().ok_or_else(|| anyhow!("not a JSON list"))?;
    list.iter()
        .map(|v| {
            let field = |k: &str| {
                v.get(k)
                    .and_then(|x| x.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("entry without {k}"))
            };
            Ok(Item {
                account: field("accountname")?,
                folder: field("foldername")?,
                root: field("localfolders")?,
            })
        })
        .collect()
}

fn eval_str(python: &Python, section: &str, source: String) -> Result<String> {
    python.string(&PyExpr {
        source,
        section: section.to_string(),
        option: "mbnames".to_string(),
    })
}

/// Writes the account's intermediate file (and the list, when incremental).
pub fn account_done(
    mb: &Mbnames,
    metadata: &Path,
    account: &str,
    root: &Path,
    folders: &[String],
    python: &Python,
    dry_run: bool,
) -> Result<()> {
    let mut items: Vec<Item> = Vec::new();
    for f in folders {
        if !items.iter().any(|i| &i.folder == f) {
            items.push(Item {
                account: account.to_string(),
                folder: f.clone(),
                root: root.display().to_string(),
            });
        }
    }
    if let Some(ff) = &mb.folderfilter {
        // One evaluation for all folders; `re` is given as OfflineIMAP gives it.
        let expr = format!(
            "(lambda re: repr([i for i, d in enumerate({}) if ({})(d['accountname'], d['foldername'])]))(__import__('re'))",
            to_json(&items),
            ff.source
        );
        let keep = eval_str(python, "mbnames] [folderfilter", expr)?;
        let keep: Vec<usize> = keep
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow!("[mbnames] folderfilter: {e}"))?;
        items = keep
            .into_iter()
            .filter_map(|i| items.get(i).cloned())
            .collect();
    }
    let path = dir(metadata).join(format!("{account}.json"));
    if dry_run {
        println!("mbnames would write {}", path.display());
    } else {
        std::fs::create_dir_all(dir(metadata))?;
        std::fs::write(&path, to_json(&items))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if mb.incremental {
        write(mb, metadata, python, dry_run)?;
    }
    Ok(())
}

/// Rebuilds the list from every intermediate file.
pub fn write(mb: &Mbnames, metadata: &Path, python: &Python, dry_run: bool) -> Result<()> {
    let mut items = Vec::new();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir(metadata)) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    for f in &files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("could not read intermediate mbnames file {}", f.display()))?;
        items.extend(from_json(&text).with_context(|| {
            format!(
                "intermediate mbnames file {} not properly read",
                f.display()
            )
        })?);
    }
    let key = mb.sort_keyfunc.as_ref().map_or(
        "lambda d: (d['accountname'], d['foldername'])".to_string(),
        |k| k.source.clone(),
    );
    let expr = format!(
        "(lambda re: ({header}) + ({sep}).join([{peritem} % d for d in sorted({items}, key=({key}))]) + ({footer}))(__import__('re'))",
        header = mb.header.source,
        sep = mb.sep.source,
        footer = mb.footer.source,
        peritem = literal(&mb.peritem),
        items = to_json(&items),
    );
    let text = eval_str(python, "mbnames", expr)?;
    if dry_run {
        println!("mbnames would write {}", mb.filename.display());
        return Ok(());
    }
    std::fs::write(&mb.filename, text).with_context(|| {
        format!(
            "mbnames file {} not properly written",
            mb.filename.display()
        )
    })
}

/// `--mbnames-prune`: drops the intermediate files of accounts that are no longer in
/// `[general] accounts` (all of them when mbnames is disabled), then rewrites the list.
pub fn prune(
    mb: Option<&Mbnames>,
    metadata: &Path,
    accounts: &[String],
    python: &Python,
    dry_run: bool,
) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(dir(metadata)) else {
        println!("no cache file to remove");
        return Ok(());
    };
    let mut removed = false;
    for entry in rd.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(account) = name.strip_suffix(".json") else {
            continue;
        };
        if mb.is_some() && accounts.iter().any(|a| a == account) {
            continue;
        }
        removed = true;
        if dry_run {
            println!("mbnames would remove {}", path.display());
        } else {
            std::fs::remove_file(&path)?;
            println!("removed {}", path.display());
        }
    }
    if !removed {
        println!("no cache file to remove");
    }
    match mb {
        Some(mb) => write(mb, metadata, python, dry_run),
        None => Ok(()),
    }
}

/// Fails early when the list cannot be written where configured.
pub fn check(mb: &Mbnames) -> Result<()> {
    if let Some(parent) = mb.filename.parent()
        && !parent.as_os_str().is_empty()
        && !parent.is_dir()
    {
        bail!(
            "[mbnames] filename: the folder {} does not exist",
            parent.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_matches_python_json_dump() {
        let items = vec![Item {
            account: "A".into(),
            folder: "Gelöschte \"x\"".into(),
            root: "/m".into(),
        }];
        let ours = to_json(&items);
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import json,sys; print(json.dumps([{'accountname': 'A', 'foldername': 'Gel\\u00f6schte \"x\"', 'localfolders': '/m'}]), end='')",
            ])
            .output();
        if let Ok(out) = out {
            assert_eq!(ours, String::from_utf8_lossy(&out.stdout));
        }
        assert_eq!(from_json(&ours).unwrap(), items);
        assert_eq!(to_json(&[]), "[]");
    }
}
