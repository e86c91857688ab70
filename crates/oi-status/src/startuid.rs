//! `startdate`'s first UID: `Repository-<repo>/StartUID/<folder>`, next to the folder's
//! FolderValidity file and named the same way, holding `"<uid>\n"` as OfflineIMAP writes it.

use std::fs::{self, DirBuilder, File};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::{StatusError, io_at};

/// The StartUID file that goes with a FolderValidity file.
fn path_for(validity_file: &Path) -> PathBuf {
    let name = validity_file.file_name().unwrap_or_default();
    validity_file
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."))
        .join("StartUID")
        .join(name)
}

/// The saved first UID; `None` when there is no file yet.
pub(crate) fn read(validity_file: &Path) -> Result<Option<u32>, StatusError> {
    let path = path_for(validity_file);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(path)(e)),
    };
    // OfflineIMAP: int(fd.readline().strip()), "Can't read <file>" otherwise.
    let line = text.lines().next().unwrap_or("").trim();
    line.parse::<u32>()
        .map(Some)
        .map_err(|_| StatusError::BadStartUid {
            path,
            content: line.to_owned(),
        })
}

/// Saves the first UID (temporary file, then rename).
pub(crate) fn write(validity_file: &Path, uid: u32, fsync: bool) -> Result<(), StatusError> {
    let path = path_for(validity_file);
    let dir = path.parent().unwrap_or(Path::new("."));
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_at(dir))?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut f = File::create(&tmp).map_err(io_at(&tmp))?;
    f.write_all(format!("{uid}\n").as_bytes())
        .map_err(io_at(&tmp))?;
    if fsync {
        f.sync_all().map_err(io_at(&tmp))?;
    }
    drop(f);
    fs::rename(&tmp, &path).map_err(io_at(&path))?;
    if fsync {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_at(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_next_to_folder_validity() {
        let d = tempfile::tempdir().unwrap();
        let validity = d.path().join("Repository-R/FolderValidity/INBOX.a");
        assert_eq!(
            path_for(&validity),
            d.path().join("Repository-R/StartUID/INBOX.a")
        );
        assert_eq!(read(&validity).unwrap(), None);
        write(&validity, 17, false).unwrap();
        assert_eq!(read(&validity).unwrap(), Some(17));
        assert_eq!(
            fs::read_to_string(d.path().join("Repository-R/StartUID/INBOX.a")).unwrap(),
            "17\n"
        );
        fs::write(d.path().join("Repository-R/StartUID/INBOX.a"), "x\n").unwrap();
        assert!(
            read(&validity)
                .unwrap_err()
                .to_string()
                .contains("StartUID")
        );
    }
}
