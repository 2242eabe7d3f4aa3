//! Files opsctl writes on this machine, written so that a kill or a full
//! disk at any point leaves the old file or the whole new one, never half.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// A temporary file beside `path`, named for this process and created
/// exclusively, so two runs never write through one; synced, then handed
/// to `finish`. It is removed if it is still there afterwards.
fn through_temporary(
    path: &Path,
    bytes: &[u8],
    finish: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let tmp: PathBuf = path.with_file_name(format!(
        ".{}.opsctl-{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        finish(&tmp)
    })();
    let _ = std::fs::remove_file(&tmp);
    written
}

/// Replaces `path` with `text` (keeping its permissions): a temporary
/// file, synced, renamed over it.
pub fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let perms = std::fs::metadata(path).map(|m| m.permissions()).ok();
    through_temporary(path, text.as_bytes(), |tmp| {
        if let Some(p) = perms {
            std::fs::set_permissions(tmp, p)?;
        }
        std::fs::rename(tmp, path).with_context(|| format!("cannot replace {}", path.display()))
    })
}

/// Writes a new file at `path`, whole, and refuses if one is there already
/// (even one made meanwhile: the last step is a link, which never replaces).
pub fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    through_temporary(path, bytes, |tmp| {
        std::fs::hard_link(tmp, path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                crate::error::refused(format!(
                    "{} already exists; it was left as it is (move it away, or name another file: --inventory FILE for `inventory init`)",
                    path.display()
                ))
            } else {
                anyhow::Error::new(e).context(format!("cannot write {}", path.display()))
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("opsctl-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_new_file_is_written_whole_and_an_old_one_is_never_replaced() {
        let d = dir("new");
        let path = d.join("inventory.yaml");
        write_new(&path, b"first\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\n");
        let e = write_new(&path, b"second\n").unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\n");
        // Nothing is left beside it.
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_replaced_file_keeps_its_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir("replace");
        let path = d.join("list.yaml");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
