//! `dmvpnctl`'s side of the control socket: connect, send one request line,
//! read one response line. Blocking; no async runtime needed.

use crate::proto::{Request, Response};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest response accepted (a big hub's NHRP cache fits easily).
const MAX_RESPONSE_LEN: u64 = 256 * 1024 * 1024;
/// How long to wait for dmvpnd's answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach dmvpnd at {}: {}", path.display(), connect_hint(source))]
    Connect { path: PathBuf, source: io::Error },
    #[error("lost the connection to dmvpnd at {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("dmvpnd at {} did not answer within {} s", path.display(), timeout.as_secs())]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("dmvpnd at {} closed the connection without answering", path.display())]
    Closed { path: PathBuf },
    #[error("dmvpnd at {} sent an unreadable answer: {detail}", path.display())]
    BadResponse { path: PathBuf, detail: String },
}

fn connect_hint(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file (is dmvpnd running? use --socket PATH)".into(),
        io::ErrorKind::PermissionDenied => {
            "permission denied (run as root or a member of the control group)".into()
        }
        io::ErrorKind::ConnectionRefused => {
            "connection refused (stale socket: is dmvpnd running? use --socket PATH)".into()
        }
        _ => e.to_string(),
    }
}

/// Sends `req` to the dmvpnd listening at `path` and returns its answer.
pub fn request(path: &Path, req: &Request) -> Result<Response, ClientError> {
    request_with_timeout(path, req, DEFAULT_TIMEOUT)
}

pub fn request_with_timeout(
    path: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    // dmvpnd closes the oldest idle connection when it holds its maximum;
    // under a burst of clients that can be ours before its request was
    // read. Asking again once is safe: requests are shows, clears and
    // debug switches, which mean the same the second time.
    match attempt(path, req, timeout) {
        Err(e) if e.dropped_before_answer() => attempt(path, req, timeout),
        r => r,
    }
}

impl ClientError {
    fn dropped_before_answer(&self) -> bool {
        match self {
            ClientError::Closed { .. } => true,
            ClientError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            _ => false,
        }
    }
}

fn attempt(path: &Path, req: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let mut stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
        path: path.into(),
        source,
    })?;
    let io_err = |source: io::Error| {
        if matches!(
            source.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            ClientError::Timeout {
                path: path.into(),
                timeout,
            }
        } else {
            ClientError::Io {
                path: path.into(),
                source,
            }
        }
    };
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    let mut line = serde_json::to_vec(req).expect("requests always encode");
    line.push(b'\n');
    stream.write_all(&line).map_err(io_err)?;
    let mut reader = BufReader::new(stream).take(MAX_RESPONSE_LEN);
    let mut buf = Vec::new();
    reader.read_until(b'\n', &mut buf).map_err(io_err)?;
    if buf.is_empty() {
        return Err(ClientError::Closed { path: path.into() });
    }
    if buf.last() != Some(&b'\n') {
        return Err(ClientError::BadResponse {
            path: path.into(),
            detail: "truncated line".into(),
        });
    }
    serde_json::from_slice(buf.trim_ascii()).map_err(|e| ClientError::BadResponse {
        path: path.into(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_hint() {
        let e = ClientError::Connect {
            path: DEFAULT_SOCKET_PATH.into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach dmvpnd at /run/dmvpn/dmvpnd.sock: permission denied (run as root or a member of the control group)"
        );
    }

    const DEFAULT_SOCKET_PATH: &str = crate::proto::DEFAULT_SOCKET;
}
