//! dmvpnd's side of the control socket.
//!
//! ```no_run
//! use dmvpn_ctl::proto::{Reply, Request, Response};
//! use dmvpn_agent::runtime::control_socket::{ControlRequest, ControlSocket, SocketOptions, serve};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Binding needs no runtime: do it early, to fail before anything starts.
//! let socket = ControlSocket::bind(&SocketOptions::new("/run/dmvpn/dmvpnd.sock"))?;
//! let (tx, mut rx) = tokio::sync::mpsc::channel::<ControlRequest>(16);
//! tokio::spawn(serve(socket, tx));
//! // In the task that owns the node:
//! while let Some(req) = rx.recv().await {
//!     let resp = match req.request {
//!         Request::ShowNhrp => Response::Ok(Reply::Nhrp(Vec::new())),
//!         _ => Response::error("not supported"),
//!     };
//!     req.respond(resp);
//! }
//! # Ok(())
//! # }
//! ```

use dmvpn_ctl::proto::{MAX_REQUEST_LEN, Request, Response, parse_request};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

/// Connections kept open at once. Every connection is accepted at once;
/// beyond this, the oldest one not in the middle of a request is closed,
/// so clients that connect and wait cannot lock operators out.
pub const MAX_CONNECTIONS: usize = 64;
/// A client that sends no request for this long is disconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request line must arrive whole within this time (no slow drip).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that does not read its answer for this long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and with which permissions to create the socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketOptions {
    pub path: PathBuf,
    /// Permission bits; default 0600, or 0660 when `group` is set.
    pub mode: Option<u32>,
    /// Group (name or numeric id) that may use the socket.
    pub group: Option<String>,
}

impl SocketOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SocketOptions {
            path: path.into(),
            mode: None,
            group: None,
        }
    }

    /// The `[control]` section of dmvpnd's configuration.
    pub fn from_config(c: &dmvpn_config::Control) -> Self {
        SocketOptions {
            path: c.socket.clone(),
            mode: Some(c.mode.0),
            group: c.group.clone(),
        }
    }

    pub fn effective_mode(&self) -> u32 {
        self.mode
            .unwrap_or(if self.group.is_some() { 0o660 } else { 0o600 })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("control socket {}: cannot create directory {}: {source}", path.display(), dir.display())]
    CreateDir {
        path: PathBuf,
        dir: PathBuf,
        source: io::Error,
    },
    #[error("control socket {}: another dmvpnd is listening there (stop it, or set another control socket path)", path.display())]
    InUse { path: PathBuf },
    #[error("control socket {}: the path exists and is not a socket (remove it, or set another control socket path)", path.display())]
    NotSocket { path: PathBuf },
    #[error("control socket {}: cannot create: {source}", path.display())]
    Bind { path: PathBuf, source: io::Error },
    #[error("control socket {}: unknown group {group:?} (create it, or fix the control socket group)", path.display())]
    UnknownGroup { path: PathBuf, group: String },
    #[error("control socket {}: cannot set owner or mode: {source}", path.display())]
    Permissions { path: PathBuf, source: io::Error },
}

/// A bound control socket. Dropping it removes the socket file (if it is
/// still ours).
#[derive(Debug)]
pub struct ControlSocket {
    listener: Option<std::os::unix::net::UnixListener>,
    path: PathBuf,
    ino: u64,
}

impl ControlSocket {
    /// Creates the parent directory if needed, replaces a stale socket,
    /// and publishes the new socket with its final mode and group already
    /// set: it is created in a private (0700) directory next to `path` and
    /// renamed into place, so nobody can connect while it is still open.
    /// Needs no async runtime.
    pub fn bind(opts: &SocketOptions) -> Result<Self, ServerError> {
        let path = opts.path.clone();
        let gid = match &opts.group {
            Some(g) => Some(lookup_group(g).ok_or_else(|| ServerError::UnknownGroup {
                path: path.clone(),
                group: g.clone(),
            })?),
            None => None,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .map_err(|source| ServerError::CreateDir {
                path: path.clone(),
                dir: dir.clone(),
                source,
            })?;
        remove_stale(&path)?;

        let file_name = path.file_name().unwrap_or_default().to_string_lossy();
        let private = dir.join(format!(".{file_name}.{}.d", std::process::id()));
        let _ = std::fs::remove_dir_all(&private);
        let bind_err = |source| ServerError::Bind {
            path: path.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .map_err(bind_err)?;
        let tmp = private.join("sock");
        let result = (|| {
            let listener = std::os::unix::net::UnixListener::bind(&tmp).map_err(bind_err)?;
            let perm_err = |source| ServerError::Permissions {
                path: path.clone(),
                source,
            };
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(opts.effective_mode()))
                .map_err(perm_err)?;
            if gid.is_some() {
                std::os::unix::fs::chown(&tmp, None, gid).map_err(perm_err)?;
            }
            std::fs::rename(&tmp, &path).map_err(bind_err)?;
            listener.set_nonblocking(true).map_err(bind_err)?;
            let ino = std::fs::symlink_metadata(&path).map_err(bind_err)?.ino();
            Ok(ControlSocket {
                listener: Some(listener),
                path: path.clone(),
                ino,
            })
        })();
        let _ = std::fs::remove_dir_all(&private);
        result
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        // Leave a socket that a newer dmvpnd has put in our place.
        if let Ok(m) = std::fs::symlink_metadata(&self.path)
            && m.ino() == self.ino
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Removes a socket nobody listens on; refuses to touch anything else.
fn remove_stale(path: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ServerError::Bind {
                path: path.into(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ServerError::NotSocket { path: path.into() });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ServerError::InUse { path: path.into() });
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ServerError::Bind {
            path: path.into(),
            source,
        }),
    }
}

/// Gives the socket file already at `opts.path` the mode and group of
/// `opts` (a reload changed them; the socket stays bound). Without a
/// group the file goes back to dmvpnd's own group.
pub fn set_permissions(opts: &SocketOptions) -> Result<(), ServerError> {
    let gid = match &opts.group {
        Some(g) => lookup_group(g).ok_or_else(|| ServerError::UnknownGroup {
            path: opts.path.clone(),
            group: g.clone(),
        })?,
        // SAFETY: getegid has no preconditions and cannot fail.
        None => unsafe { libc::getegid() },
    };
    let perm_err = |source| ServerError::Permissions {
        path: opts.path.clone(),
        source,
    };
    std::os::unix::fs::chown(&opts.path, None, Some(gid)).map_err(perm_err)?;
    std::fs::set_permissions(
        &opts.path,
        std::fs::Permissions::from_mode(opts.effective_mode()),
    )
    .map_err(perm_err)
}

/// Group name (or decimal id) to gid.
fn lookup_group(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Some(gid);
    }
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: all pointers are valid for the call; getgrnam_r writes
        // only into `grp` and `buf` (bounded by the length we pass).
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut out,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        return if rc == 0 && !out.is_null() {
            Some(grp.gr_gid)
        } else {
            None
        };
    }
}

/// Answers requests. dmvpnd's state lives in one task, so the usual handler
/// is the `mpsc::Sender<ControlRequest>` end of a channel into that task;
/// [`FnHandler`] wraps a plain function (tests, simple tools).
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send;
}

/// A request handed to the task that owns the node.
#[derive(Debug)]
pub struct ControlRequest {
    pub request: Request,
    reply: oneshot::Sender<Response>,
}

impl ControlRequest {
    /// A request and the receiver its answer will arrive on.
    pub fn new(request: Request) -> (Self, oneshot::Receiver<Response>) {
        let (reply, rx) = oneshot::channel();
        (ControlRequest { request, reply }, rx)
    }

    /// Sends the answer; a client that has gone away is not an error.
    pub fn respond(self, response: Response) {
        let _ = self.reply.send(response);
    }
}

impl Handler for mpsc::Sender<ControlRequest> {
    async fn handle(&self, request: Request) -> Response {
        let (req, rx) = ControlRequest::new(request);
        if self.send(req).await.is_err() {
            return Response::error("dmvpnd is shutting down");
        }
        rx.await
            .unwrap_or_else(|_| Response::error("dmvpnd dropped the request"))
    }
}

/// A synchronous function as a handler.
pub struct FnHandler<F>(pub F);

impl<F> Handler for FnHandler<F>
where
    F: Fn(Request) -> Response + Send + Sync + 'static,
{
    async fn handle(&self, request: Request) -> Response {
        (self.0)(request)
    }
}

/// Accepts connections forever, one task per client. Must run inside a
/// tokio runtime. Each client may send several request lines; each gets one
/// response line. Bad input gets an `Error` response, never a panic.
/// Clients that stay idle, drip a request or do not read their answers are
/// disconnected (see the timeouts above), and at most [`MAX_CONNECTIONS`]
/// stay open.
pub async fn serve<H: Handler>(mut socket: ControlSocket, handler: H) -> io::Result<()> {
    let std_listener = socket
        .listener
        .take()
        .expect("listener present until served");
    let listener = tokio::net::UnixListener::from_std(std_listener)?;
    let handler = Arc::new(handler);
    let mut open: VecDeque<Open> = VecDeque::new();
    // `socket` stays alive (and its file in place) while we serve.
    let _socket = socket;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                make_room(&mut open);
                let handler = handler.clone();
                let busy = Arc::new(AtomicBool::new(false));
                let flag = busy.clone();
                let task = tokio::spawn(async move {
                    connection(stream, &*handler, &flag).await;
                });
                open.push_back(Open {
                    task: task.abort_handle(),
                    busy,
                });
            }
            Err(e) => {
                // EMFILE and friends are transient; keep serving.
                tracing::warn!(target: "dmvpn::ctl", "control socket accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// An open connection: its task, and whether it is handling a request.
struct Open {
    task: tokio::task::AbortHandle,
    busy: Arc<AtomicBool>,
}

/// Forgets finished connections and, at the limit, closes the oldest one
/// that is not handling a request (the oldest of all if every one is).
fn make_room(open: &mut VecDeque<Open>) {
    open.retain(|c| !c.task.is_finished());
    if open.len() < MAX_CONNECTIONS {
        return;
    }
    let victim = open
        .iter()
        .position(|c| !c.busy.load(Ordering::Relaxed))
        .unwrap_or(0);
    if let Some(c) = open.remove(victim) {
        c.task.abort();
    }
}

async fn connection<H: Handler>(stream: tokio::net::UnixStream, handler: &H, busy: &AtomicBool) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Wait for the first byte of a request, then for the whole line.
        match tokio::time::timeout(IDLE_TIMEOUT, rd.fill_buf()).await {
            Ok(Ok([])) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
        let limit = MAX_REQUEST_LEN as u64 + 1;
        let mut bounded = (&mut rd).take(limit);
        let read = bounded.read_until(b'\n', &mut line);
        let n = match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => return,
        };
        if n == 0 {
            return;
        }
        busy.store(true, Ordering::Relaxed);
        let complete = line.last() == Some(&b'\n');
        if !complete && line.len() > MAX_REQUEST_LEN {
            // Cannot find the next line boundary reliably: answer and close.
            let resp = Response::error(format!("request longer than {MAX_REQUEST_LEN} bytes"));
            let _ = write_response(&mut wr, &resp).await;
            return;
        }
        let text = line.trim_ascii();
        if !text.is_empty() {
            let resp = match parse_request(text) {
                Ok(req) => {
                    tracing::debug!(target: "dmvpn::ctl", "control request {req:?}");
                    handler.handle(req).await
                }
                Err(e) => Response::error(e.to_string()),
            };
            if write_response(&mut wr, &resp).await.is_err() {
                return;
            }
        }
        busy.store(false, Ordering::Relaxed);
        if !complete {
            // End of input without a newline.
            return;
        }
    }
}

async fn write_response(
    wr: &mut tokio::net::unix::OwnedWriteHalf,
    resp: &Response,
) -> io::Result<()> {
    let mut out = serde_json::to_vec(resp).unwrap_or_else(|e| {
        serde_json::to_vec(&Response::error(format!("cannot encode response: {e}")))
            .unwrap_or_default()
    });
    out.push(b'\n');
    let write = async {
        wr.write_all(&out).await?;
        wr.flush().await
    };
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client does not read its answer",
        )),
    }
}
