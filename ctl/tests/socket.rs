//! Client and server over a real Unix socket.

mod common;

use common::ip;
use dmvpn_agent::runtime::control_socket::{
    ControlRequest, ControlSocket, ServerError, SocketOptions,
};
use dmvpn_ctl::client::{self, ClientError};
use dmvpn_ctl::proto::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;

fn all_requests() -> Vec<Request> {
    let mut v = vec![
        Request::ShowNhrp,
        Request::ShowNhrpNhs,
        Request::ShowNhrpTraffic,
        Request::ShowDmvpn,
        Request::ShowDmvpnDetail,
        Request::ShowCryptoIsakmpSa,
        Request::ShowCryptoIpsecSa,
        Request::ShowCryptoSession,
        Request::ShowStats,
        Request::ClearNhrp,
        Request::ClearNhrpEntry {
            address: ip("192.168.1.2"),
            prefix_len: Some(32),
        },
        Request::ClearCryptoSession { remote: None },
        Request::ClearCryptoSa { peer: None },
        Request::ClearCryptoSa {
            peer: Some(ip("172.16.0.1")),
        },
        Request::ClearCryptoSa {
            peer: Some(ip("2001:db8::1")),
        },
    ];
    for target in DebugTarget::ALL {
        for on in [true, false] {
            v.push(Request::Debug { target, on });
        }
    }
    v
}

#[test]
fn every_request_round_trips() {
    let srv = common::start_fixture();
    for req in all_requests() {
        let got = client::request(&srv.path, &req).unwrap();
        assert_eq!(got, common::answer(req), "{req:?}");
    }
}

#[test]
fn socket_is_private_and_removed_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/ctl.sock");
    let sock = ControlSocket::bind(&SocketOptions::new(&path)).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    // Nothing but the socket is left behind in the directory.
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("ctl.sock")]);
    drop(sock);
    assert!(!path.exists());
}

#[test]
fn group_socket_is_0660_with_that_group() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl.sock");
    // SAFETY: getegid has no preconditions.
    let gid = unsafe { libc::getegid() };
    let mut opts = SocketOptions::new(&path);
    opts.group = Some(gid.to_string());
    let _sock = ControlSocket::bind(&opts).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
    assert_eq!(meta.gid(), gid);

    opts.path = dir.path().join("other.sock");
    opts.group = Some("no-such-group-dmvpn-test".into());
    let err = ControlSocket::bind(&opts).unwrap_err();
    assert!(matches!(err, ServerError::UnknownGroup { .. }), "{err}");
    assert!(!opts.path.exists());
}

#[test]
fn stale_socket_is_replaced_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl.sock");
    // A socket file left by a dead process.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let live = ControlSocket::bind(&SocketOptions::new(&path)).unwrap();
    // While it listens, a second daemon must not steal the path.
    let err = ControlSocket::bind(&SocketOptions::new(&path)).unwrap_err();
    assert!(matches!(err, ServerError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("another dmvpnd is listening"));
    assert!(path.exists());
    drop(live);

    // A regular file is never removed.
    std::fs::write(&path, b"keep me").unwrap();
    let err = ControlSocket::bind(&SocketOptions::new(&path)).unwrap_err();
    assert!(matches!(err, ServerError::NotSocket { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
}

fn read_response(r: &mut impl BufRead) -> Response {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.ends_with('\n'), "{line:?}");
    serde_json::from_str(&line).unwrap()
}

#[test]
fn garbage_gets_an_error_and_the_connection_stays_usable() {
    let srv = common::start_fixture();
    let stream = UnixStream::connect(&srv.path).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let bad: [&[u8]; 6] = [
        b"garbage\n",
        b"{\"cmd\":\"reboot\"}\n",
        b"{\"cmd\":\"clear_crypto_sa\",\"peer\":\"not-an-ip\"}\n",
        b"\xff\xfe\x00\x01\n",
        b"[1,2,3]\n",
        b"{\"cmd\":\"debug\",\"target\":\"nhrp\"}\n",
    ];
    for line in bad {
        w.write_all(line).unwrap();
        match read_response(&mut r) {
            Response::Error { message } => assert!(message.starts_with("bad request"), "{message}"),
            other => panic!("{line:?} answered {other:?}"),
        }
    }
    // Blank lines are ignored; a good request still works afterwards.
    w.write_all(b"\n  \n{\"cmd\":\"show_dmvpn\"}\n").unwrap();
    assert_eq!(
        read_response(&mut r),
        Response::Ok(Reply::Dmvpn(common::dmvpn()))
    );
    // A last request without a newline is answered, then the server closes.
    w.write_all(b"{\"cmd\":\"clear_nhrp\"}").unwrap();
    w.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(
        read_response(&mut r),
        Response::Ok(Reply::Cleared { count: 2 })
    );
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn oversized_request_is_refused_and_closed() {
    let srv = common::start_fixture();
    let stream = UnixStream::connect(&srv.path).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let big = vec![b'x'; MAX_REQUEST_LEN + 10];
    // The server may close before reading it all; a write error is fine.
    let _ = w.write_all(&big);
    match read_response(&mut r) {
        Response::Error { message } => assert!(message.contains("longer than"), "{message}"),
        other => panic!("{other:?}"),
    }
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.is_empty());
    // The server still serves others.
    let got = client::request(&srv.path, &Request::ShowNhrp).unwrap();
    assert_eq!(got, common::answer(Request::ShowNhrp));
}

#[test]
fn channel_handler_reaches_the_owning_task() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl.sock");
    let socket = ControlSocket::bind(&SocketOptions::new(&path)).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ControlRequest>(4);
    rt.spawn(dmvpn_agent::runtime::control_socket::serve(socket, tx));
    // The "node" task answers two requests, then goes away.
    rt.spawn(async move {
        for _ in 0..2 {
            let req = rx.recv().await.unwrap();
            let resp = common::answer(req.request);
            req.respond(resp);
        }
    });
    for req in [Request::ShowCryptoIpsecSa, Request::ClearNhrp] {
        assert_eq!(client::request(&path, &req).unwrap(), common::answer(req));
    }
    match client::request(&path, &Request::ShowNhrp).unwrap() {
        Response::Error { message } => assert_eq!(message, "dmvpnd is shutting down"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.sock");
    let err = client::request(&path, &Request::ShowNhrp).unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "cannot reach dmvpnd at {}: no such file (is dmvpnd running? use --socket PATH)",
            path.display()
        )
    );
    // A socket file nobody listens on.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let err = client::request(&stale, &Request::ShowNhrp).unwrap_err();
    assert!(err.to_string().contains("connection refused"), "{err}");

    // A peer that closes without answering.
    let quiet = dir.path().join("quiet.sock");
    let l = std::os::unix::net::UnixListener::bind(&quiet).unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&mut s).read_line(&mut line).unwrap();
        s.write_all(b"not json\n").unwrap();
        // Closed before answering, twice: the client asks once more, then
        // reports it.
        for _ in 0..2 {
            let (s2, _) = l.accept().unwrap();
            drop(s2);
        }
    });
    let err = client::request(&quiet, &Request::ShowNhrp).unwrap_err();
    assert!(matches!(err, ClientError::BadResponse { .. }), "{err}");
    let err = client::request(&quiet, &Request::ShowNhrp).unwrap_err();
    assert!(
        matches!(err, ClientError::Closed { .. } | ClientError::Io { .. }),
        "{err}"
    );
    // Had the client not asked again, the peer would still wait for it.
    assert!(
        t.is_finished() || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            t.is_finished()
        },
        "the client did not ask again"
    );
    t.join().unwrap();
}

#[test]
fn options_from_config() {
    let c = dmvpn_config::Control {
        socket: "/run/x/ctl.sock".into(),
        mode: dmvpn_config::types::FileMode(0o660),
        group: Some("dmvpn".into()),
    };
    let o = SocketOptions::from_config(&c);
    assert_eq!(o.path, std::path::PathBuf::from("/run/x/ctl.sock"));
    assert_eq!(o.effective_mode(), 0o660);
    assert_eq!(o.group.as_deref(), Some("dmvpn"));
    assert_eq!(
        SocketOptions::from_config(&dmvpn_config::Control::default()).effective_mode(),
        0o600
    );
}

/// More clients than the server serves at once: all are answered.
#[test]
fn many_clients_at_once() {
    let srv = common::start_fixture();
    let path = std::sync::Arc::new(srv.path.clone());
    let threads: Vec<_> = (0..48)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let reqs = all_requests();
                for k in 0..5 {
                    let req = reqs[(i + k) % reqs.len()];
                    assert_eq!(client::request(&path, &req).unwrap(), common::answer(req));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Raises this process's open-file limit to `n` (the jam below holds
/// thousands of sockets).
fn allow_files(n: u64) {
    let lim = libc::rlimit {
        rlim_cur: n as libc::rlim_t,
        rlim_max: n as libc::rlim_t,
    };
    // SAFETY: setrlimit with a valid struct.
    let r = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(r, 0, "setrlimit NOFILE {n} (the test runs as root)");
}

/// 2,000 clients that connect and wait, 32 that send requests and never
/// read the answers, and 32 that drip a request one byte at a time: an
/// operator's request is still answered at once.
#[test]
fn idle_slow_and_non_reading_clients_cannot_jam_the_socket() {
    allow_files(16_384);
    let srv = common::start_fixture();
    let idle: Vec<UnixStream> = (0..2000)
        .map(|_| UnixStream::connect(&srv.path).expect("connect idle client"))
        .collect();
    let mut deaf = Vec::new();
    for _ in 0..32 {
        let mut s = UnixStream::connect(&srv.path).unwrap();
        s.set_nonblocking(true).unwrap();
        // Requests until our send buffer is full; the answers pile up.
        let line = b"{\"cmd\":\"show_dmvpn\"}\n".repeat(64);
        while s.write(&line).is_ok() {}
        deaf.push(s);
    }
    let mut drip = Vec::new();
    for _ in 0..32 {
        let mut s = UnixStream::connect(&srv.path).unwrap();
        s.write_all(b"{\"cmd\"").unwrap();
        drip.push(s);
    }
    let mut worst = std::time::Duration::ZERO;
    for req in [
        Request::ShowDmvpn,
        Request::ShowNhrp,
        Request::ShowCryptoIsakmpSa,
    ] {
        let t0 = std::time::Instant::now();
        assert_eq!(
            client::request(&srv.path, &req).unwrap(),
            common::answer(req)
        );
        worst = worst.max(t0.elapsed());
    }
    eprintln!(
        "FIGURE control socket with {} idle, {} non-reading and {} dripping clients: slowest answer {worst:?}",
        idle.len(),
        deaf.len(),
        drip.len()
    );
    assert!(worst < std::time::Duration::from_secs(2), "{worst:?}");
}
