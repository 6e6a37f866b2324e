//! Is a started app up? Its health check against 127.0.0.1, or, without
//! one, its process staying alive through a grace period.

use std::net::Ipv4Addr;
use std::time::Duration;

use cameleer_runtime::HealthCheck;

use super::process::{Exit, Proc};

/// How often a health check is retried while an app starts.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why an app did not come up.
#[derive(Debug)]
pub(super) enum NotUp {
    /// The process ended first.
    Exited(Exit),
    /// The health check did not pass in time.
    TimedOut(String),
}

/// Waits until `proc` is up: its health check passes within `timeout`, or,
/// without a check, it stays alive through `grace`.
pub(super) async fn wait_up(
    proc: &Proc,
    check: &HealthCheck,
    timeout: Duration,
    grace: Duration,
) -> Result<(), NotUp> {
    if *check == HealthCheck::None {
        return tokio::select! {
            exit = proc.wait() => Err(NotUp::Exited(exit)),
            () = tokio::time::sleep(grace.min(timeout)) => Ok(()),
        };
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = tokio::select! {
            exit = proc.wait() => return Err(NotUp::Exited(exit)),
            probed = probe(check) => match probed {
                Ok(()) => return Ok(()),
                Err(why) => why,
            },
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(NotUp::TimedOut(format!(
                "health check did not pass within {}s: {last}",
                timeout.as_secs()
            )));
        }
        tokio::select! {
            exit = proc.wait() => return Err(NotUp::Exited(exit)),
            () = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
    }
}

/// Runs `check` once against 127.0.0.1.
async fn probe(check: &HealthCheck) -> Result<(), String> {
    cameleer_runtime::health::probe(check, Ipv4Addr::LOCALHOST.into(), PROBE_TIMEOUT).await
}

/// Whether something already accepts connections on `port` of 127.0.0.1.
pub(super) async fn port_in_use(port: u16) -> bool {
    probe(&HealthCheck::TcpPort(port)).await.is_ok()
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn probes_answer_for_tcp_and_http() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await;
                let answer: &[u8] = if buf.starts_with(b"GET /ok ") {
                    b"HTTP/1.1 204 No Content\r\n\r\n"
                } else {
                    b"HTTP/1.1 503 Busy\r\n\r\n"
                };
                let _ = s.write_all(answer).await;
                n += 1;
            }
            n
        });
        probe(&HealthCheck::TcpPort(port)).await.unwrap();
        let http = |path: &str| HealthCheck::Http {
            port,
            path: path.into(),
        };
        probe(&http("/ok")).await.unwrap();
        let err = probe(&http("/busy")).await.unwrap_err();
        assert!(err.contains("503"), "{err}");
        assert!(port_in_use(port).await);
        let free = {
            let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
            closed.local_addr().unwrap().port()
        };
        assert!(!port_in_use(free).await);
    }
}
