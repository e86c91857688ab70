//! Reader for the legacy plain-text LocalStatus (`Account-<a>/LocalStatus/<folder>`).
//!
//! Format (OfflineIMAP `folder/LocalStatus.py`): a magic first line
//! `OFFLINEIMAP LocalStatus CACHE DATA - DO NOT MODIFY - FORMAT <n>`, then one message per
//! line: `uid:flags` in format 1, `uid|flags|mtime|labels` in format 2.

use std::fs;
use std::path::Path;

const MAGIC: &str = "OFFLINEIMAP LocalStatus CACHE DATA - DO NOT MODIFY - FORMAT ";

/// One row of a legacy file, ready for the SQLite `status` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub uid: i64,
    pub flags: String,
    pub mtime: i64,
    pub labels: String,
}

/// The rows of a legacy file; `None` when there is no file or it is not entirely valid
/// (then nothing is imported, which is what OfflineIMAP 8 does with every such file).
pub(crate) fn read(path: &Path) -> Option<Vec<Row>> {
    let text = fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let version = lines.next()?.trim().strip_prefix(MAGIC)?;
    let mut rows = Vec::new();
    for line in lines.map(str::trim).filter(|l| !l.is_empty()) {
        rows.push(match version {
            "1" => {
                let (uid, flags) = line.split_once(':')?;
                Row {
                    uid: uid.parse().ok()?,
                    flags: sorted(flags),
                    mtime: 0,
                    labels: String::new(),
                }
            }
            "2" => {
                let mut parts = line.split('|');
                let (uid, flags, mtime, labels) =
                    (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
                if parts.next().is_some() {
                    return None;
                }
                let mut labels: Vec<&str> = labels
                    .split(',')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect();
                labels.sort_unstable();
                labels.dedup();
                Row {
                    uid: uid.parse().ok()?,
                    flags: sorted(flags),
                    mtime: mtime.parse().ok()?,
                    labels: labels.join(", "),
                }
            }
            _ => return None,
        });
    }
    Some(rows)
}

fn sorted(flags: &str) -> String {
    let mut v: Vec<char> = flags.chars().collect();
    v.sort_unstable();
    v.dedup();
    v.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_formats_and_rejects_garbage() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("INBOX");
        fs::write(&p, format!("{MAGIC}2\n3|SR|17|b, a\n4||0|\n")).unwrap();
        let rows = read(&p).unwrap();
        assert_eq!(
            rows[0],
            Row {
                uid: 3,
                flags: "RS".into(),
                mtime: 17,
                labels: "a, b".into()
            }
        );
        assert_eq!(rows[1].flags, "");

        fs::write(&p, format!("{MAGIC}1\n5:FS\n")).unwrap();
        assert_eq!(read(&p).unwrap()[0].flags, "FS");

        fs::write(&p, format!("{MAGIC}1\nfive:FS\n")).unwrap();
        assert_eq!(read(&p), None);
        fs::write(&p, "something else\n1:S\n").unwrap();
        assert_eq!(read(&p), None);
        assert_eq!(read(&tmp.path().join("missing")), None);
    }
}
