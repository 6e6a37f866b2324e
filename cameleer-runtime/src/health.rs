//! Health probes: is an app up? Shared by every backend that reaches its
//! apps over TCP (the Docker backend probes a container's address on its
//! tenant network; a local-process backend probes 127.0.0.1).
//!
//! A probe is a plain TCP connect, or an HTTP/1.0 `GET` whose status line
//! must say 2xx or 3xx. No HTTP client library: one request line and one
//! status line are all we need, and a hand-rolled probe cannot follow a
//! redirect to somewhere else.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::HealthCheck;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most of an HTTP answer read to find its status line.
const MAX_STATUS_LINE: usize = 1024;

/// Runs the health check once against `ip`; `Err` says why it failed.
///
/// [`HealthCheck::None`] always passes here: its grace period is the
/// caller's business.
pub async fn probe(check: &HealthCheck, ip: IpAddr, timeout: Duration) -> Result<(), String> {
    match check {
        HealthCheck::None => Ok(()),
        HealthCheck::TcpPort(port) => connect(SocketAddr::new(ip, *port), timeout).await.map(drop),
        HealthCheck::Http { port, path } => {
            let addr = SocketAddr::new(ip, *port);
            match tokio::time::timeout(timeout, http_get(addr, path, timeout)).await {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "HTTP GET {path} on port {port} timed out after {timeout:?}"
                )),
            }
        }
    }
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("TCP connect to port {} failed: {e}", addr.port())),
        Err(_) => Err(format!(
            "TCP connect to port {} timed out after {timeout:?}",
            addr.port()
        )),
    }
}

async fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(), String> {
    let mut stream = connect(addr, timeout).await?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: cameleer-health\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("HTTP GET {path}: sending the request failed: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < MAX_STATUS_LINE {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("HTTP GET {path}: reading the answer failed: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    match parse_status(&buf) {
        Some(code) if (200..400).contains(&code) => Ok(()),
        Some(code) => Err(format!("HTTP GET {path} answered {code}")),
        None => Err(format!(
            "HTTP GET {path}: no HTTP status line in the answer"
        )),
    }
}

/// The status code of `HTTP/1.x NNN …`.
fn parse_status(answer: &[u8]) -> Option<u16> {
    let line_end = answer.iter().position(|b| *b == b'\n')?;
    let line = std::str::from_utf8(&answer[..line_end]).ok()?;
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.0 503 Service Unavailable\r\nx"),
            Some(503)
        );
        assert_eq!(parse_status(b"HTTP/1.1 200 OK"), None);
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 2000 OK\r\n"), None);
    }

    async fn server(answer: &'static [u8]) -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn probes_tcp_and_http() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let t = Duration::from_secs(2);
        let ok = server(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        let bad = server(b"HTTP/1.1 500 Oops\r\n\r\n").await;
        probe(&HealthCheck::TcpPort(ok), ip, t).await.unwrap();
        probe(
            &HealthCheck::Http {
                port: ok,
                path: "/h".into(),
            },
            ip,
            t,
        )
        .await
        .unwrap();
        let err = probe(
            &HealthCheck::Http {
                port: bad,
                path: "/h".into(),
            },
            ip,
            t,
        )
        .await
        .unwrap_err();
        assert!(err.contains("500"), "{err}");
        // A port nobody listens on.
        let closed = {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
            l.local_addr().unwrap().port()
        };
        assert!(probe(&HealthCheck::TcpPort(closed), ip, t).await.is_err());
    }
}
