//! Checks on the files dmvpnd reads secrets from or writes secrets to:
//! the configuration (pre-shared keys, NHRP passwords, manual keys) and
//! the key-log file (ESP keys). The rules follow OpenSSH and strongSwan:
//! a secret file owned by another user, or writable by group or others,
//! is refused; one readable by them is refused for the key log (it only
//! ever holds keys) and a warning for the configuration.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// What is wrong with a secret file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// The path is a symbolic link (it could point anywhere).
    Symlink,
    /// Not a regular file (a directory, FIFO, device, socket).
    NotRegular(&'static str),
    /// Owned by another user than dmvpnd's (root excepted for reading).
    ForeignOwner { uid: u32 },
    /// Writable by group or others.
    Writable { mode: u32 },
    /// Readable by group or others.
    Readable { mode: u32 },
}

impl FileProblem {
    /// One line: what is wrong, then how to fix it.
    pub fn describe(&self, path: &Path) -> (String, String) {
        let p = path.display();
        match self {
            FileProblem::Symlink => (
                format!("{p} is a symbolic link"),
                "name the file itself, not a link to it".into(),
            ),
            FileProblem::NotRegular(what) => (
                format!("{p} is {what}, not a regular file"),
                "name a regular file".into(),
            ),
            FileProblem::ForeignOwner { uid } => (
                format!("{p} is owned by uid {uid}, not by the user dmvpnd runs as"),
                format!("chown {} {p}", current_uid()),
            ),
            FileProblem::Writable { mode } => (
                format!("{p} has mode {mode:04o}: writable by group or others"),
                format!("chmod 600 {p}"),
            ),
            FileProblem::Readable { mode } => (
                format!("{p} has mode {mode:04o}: readable by group or others"),
                format!("chmod 600 {p}"),
            ),
        }
    }

    /// Whether the file must be refused (not just warned about) when it
    /// holds secrets dmvpnd reads.
    pub fn refuses_reading(&self) -> bool {
        !matches!(self, FileProblem::Readable { .. })
    }
}

/// The effective user ID of this process.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn kind(meta: &std::fs::Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("a device")
    }
}

/// The problems of an existing secret file, from its metadata (not
/// following a final symbolic link). Root's own files are accepted from
/// any process, as OpenSSH does for its configuration.
pub fn problems(meta: &std::fs::Metadata, uid: u32) -> Vec<FileProblem> {
    if meta.file_type().is_symlink() {
        return vec![FileProblem::Symlink];
    }
    if let Some(k) = kind(meta) {
        return vec![FileProblem::NotRegular(k)];
    }
    let mut out = Vec::new();
    if meta.uid() != uid && meta.uid() != 0 {
        out.push(FileProblem::ForeignOwner { uid: meta.uid() });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        out.push(FileProblem::Writable { mode });
    } else if mode & 0o044 != 0 {
        out.push(FileProblem::Readable { mode });
    }
    out
}

/// The problems of an existing key-log file: those of any secret file,
/// and an owner other than dmvpnd's user even if that is root (the file
/// is written, not read). Every one is fatal: it only ever holds keys.
pub fn key_log_file_problems(meta: &std::fs::Metadata, uid: u32) -> Vec<FileProblem> {
    let mut found = problems(meta, uid);
    let foreign = found
        .iter()
        .any(|f| matches!(f, FileProblem::ForeignOwner { .. }));
    if meta.uid() != uid && !foreign && !meta.file_type().is_symlink() {
        found.push(FileProblem::ForeignOwner { uid: meta.uid() });
    }
    found
}

/// Problems of the key-log path before dmvpnd opens it (see
/// [`key_log_file_problems`]); a file that does not exist yet needs an
/// existing parent directory. The daemon checks again on the open
/// descriptor, so a swap in between is caught.
pub fn key_log_problems(path: &Path) -> Vec<(String, String)> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => key_log_file_problems(&meta, current_uid())
            .iter()
            .map(|f| f.describe(path))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            match parent.map(std::fs::metadata) {
                Some(Ok(m)) if m.is_dir() => Vec::new(),
                _ => vec![(
                    format!("the directory of {} does not exist", path.display()),
                    "create it, or name a file in an existing directory".into(),
                )],
            }
        }
        Err(e) => vec![(
            format!("cannot inspect {}: {e}", path.display()),
            "check the path and its directory's permissions".into(),
        )],
    }
}
