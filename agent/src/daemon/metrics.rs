//! The Prometheus endpoint (`[metrics] listen`): OpenMetrics text on
//! `GET /metrics`.
//!
//! A scrape asks the event loop for the snapshots `dmvpnctl show` gets
//! (through the same request channel as the control socket), so the
//! figures are the ones operators read in the IOS views, and the per-packet
//! path keeps no second set of counters. `dmvpn_ctl::render::metrics`
//! writes the exposition format.
//!
//! The HTTP side is a few lines on purpose: one request per connection,
//! `GET /metrics` only, a 5 s deadline for the whole exchange and at most
//! [`MAX_CONNECTIONS`] at once, so a client that never finishes cannot
//! hold the endpoint or the loop.

use std::sync::Arc;
use std::time::Duration;

use crate::runtime::control_socket::Handler;
use dmvpn_ctl::proto::{Reply, Request, Response};
use dmvpn_ctl::render::metrics::{Snapshot, render};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Scrapes served at once; more wait for a slot.
pub const MAX_CONNECTIONS: usize = 8;
/// Deadline for reading the request and writing the answer.
const DEADLINE: Duration = Duration::from_secs(5);
/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// Asks the loop for every snapshot a scrape reports.
pub async fn collect(h: &impl Handler) -> Result<Snapshot, String> {
    let mut s = Snapshot::default();
    for req in [
        Request::ShowDmvpn,
        Request::ShowNhrp,
        Request::ShowNhrpNhs,
        Request::ShowNhrpTraffic,
        Request::ShowCryptoIsakmpSa,
        Request::ShowCryptoIpsecSa,
        Request::ShowStats,
    ] {
        match h.handle(req).await {
            Response::Ok(Reply::Dmvpn(v)) => s.dmvpn = v,
            Response::Ok(Reply::Nhrp(v)) => s.nhrp = v,
            Response::Ok(Reply::NhrpNhs(v)) => s.nhs = v,
            Response::Ok(Reply::NhrpTraffic(v)) => s.traffic = v,
            Response::Ok(Reply::IsakmpSa(v)) => s.isakmp = v,
            Response::Ok(Reply::IpsecSa(v)) => s.ipsec = Some(v),
            Response::Ok(Reply::Stats(v)) => s.stats = v,
            Response::Error { message } => return Err(message),
            other => return Err(format!("unexpected answer to {req:?}: {other:?}")),
        }
    }
    Ok(s)
}

/// Serves scrapes until the listener fails; each connection is handled
/// in its own task against `handler` (the control requests channel).
pub async fn serve<H: Handler + Clone>(listener: TcpListener, handler: H) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (conn, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(target: "dmvpn::metrics", "metrics endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let h = handler.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(DEADLINE, answer(conn, &h)).await;
            drop(permit);
        });
    }
}

async fn answer(mut conn: TcpStream, h: &impl Handler) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut words = line.split(|b| *b == b' ');
    let (method, path) = (words.next(), words.next());
    let (status, ctype, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => match collect(h).await {
            Ok(s) => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                render(&s),
            ),
            Err(e) => ("503 Service Unavailable", "text/plain", format!("{e}\n")),
        },
        (Some(b"GET"), _) => ("404 Not Found", "text/plain", "try /metrics\n".into()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET /metrics\n".into(),
        ),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(reply.as_bytes()).await?;
    conn.shutdown().await
}
