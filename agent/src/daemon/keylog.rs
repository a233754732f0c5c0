//! The key-log file: ESP keys in Wireshark's `esp_sa` form, for
//! debugging. It is created 0600, never through a symbolic link, and an
//! existing file is used only if it is a regular file of dmvpnd's own
//! user that nobody else can read or write — checked on the open
//! descriptor, so a link or file swapped in after `--check` is refused.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use dmvpn_config::files::{self, FileProblem};

/// Opens (creating if needed) the key-log file for appending.
pub fn open(path: &Path) -> Result<File, String> {
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => refusal(path, &FileProblem::Symlink),
            _ => format!("cannot open key-log file {}: {e}", path.display()),
        })?;
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot inspect key-log file {}: {e}", path.display()))?;
    match files::key_log_file_problems(&meta, files::current_uid()).first() {
        Some(p) => Err(refusal(path, p)),
        None => Ok(f),
    }
}

fn refusal(path: &Path, p: &FileProblem) -> String {
    let (what, fix) = p.describe(path);
    format!("refusing key-log file: {what} ({fix})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_key_log_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("esp_sa");
        writeln!(open(&p).unwrap(), "line").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        // Appends to its own earlier file.
        writeln!(open(&p).unwrap(), "two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "line\ntwo\n");
    }

    #[test]
    fn a_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        std::fs::write(&target, "precious\n").unwrap();
        let p = dir.path().join("esp_sa");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        let e = open(&p).unwrap_err();
        assert!(e.contains("is a symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("esp_sa");
        std::fs::write(&p, "").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = open(&p).unwrap_err();
        assert!(e.contains("readable by group or others"), "{e}");
    }
}
