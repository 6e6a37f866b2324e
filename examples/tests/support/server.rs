//! The server binary as a child process, killed on drop so a failing test
//! leaves none behind.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The running server.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The admin token it wrote to `<data-dir>/admin-token` (or was given).
    pub token: String,
}

/// Where a server listens and the token to call it with.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Where it listens.
    pub addr: SocketAddr,
    /// An `Authorization: Bearer` token.
    pub token: String,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr.fmt(f)
    }
}

impl Server {
    /// Starts the server on a free loopback port with `data_dir`.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[], &[])
    }

    /// Starts the server with extra arguments and environment variables.
    pub fn start_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the server");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .rsplit("http://")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("server did not say where it listens: {line:?}"));
        // Written before it listens; `--admin-token-file` names another.
        let token_file = args
            .iter()
            .position(|a| *a == "--admin-token-file")
            .map(|i| std::path::PathBuf::from(args[i + 1]))
            .unwrap_or_else(|| data_dir.join("admin-token"));
        let token = std::fs::read_to_string(&token_file)
            .expect("the server wrote its admin token")
            .trim()
            .to_owned();
        Server { child, addr, token }
    }

    /// Where it listens, with the admin token.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            addr: self.addr,
            token: self.token.clone(),
        }
    }

    /// SIGKILL: no graceful shutdown, as in a crash.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// SIGTERM (a graceful shutdown), then waits up to `limit` for the
    /// process to exit: its exit status and how long it took, or `None`
    /// if it still runs (it is killed on drop).
    pub fn terminate(
        &mut self,
        limit: std::time::Duration,
    ) -> Option<(std::process::ExitStatus, std::time::Duration)> {
        let start = std::time::Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some((status, start.elapsed()));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }
}

// HTTP/1.1 over a bare socket: streamed responses can be read as they come.

/// Sends one request (`Connection: close`) and returns the open
/// connection, the response not read yet: the one place of these helpers
/// that knows how to authenticate.
pub async fn send(addr: &Endpoint, method: &str, path: &str, body: &[u8]) -> tokio::net::TcpStream {
    let mut stream = send_head(addr, method, path, body.len()).await;
    tokio::io::AsyncWriteExt::write_all(&mut stream, body)
        .await
        .unwrap();
    stream
}

/// Sends a request's head only, announcing a body of `len` bytes for the
/// caller to write (a slow client).
pub async fn send_head(
    addr: &Endpoint,
    method: &str,
    path: &str,
    len: usize,
) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr.addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n",
        addr.token,
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes())
        .await
        .unwrap();
    stream
}

/// The status and the body (de-chunked) of a whole response.
pub async fn read_response(mut stream: tokio::net::TcpStream) -> (u16, Vec<u8>) {
    let mut raw = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut raw)
        .await
        .unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status = head[9..12].parse().unwrap();
    let body = raw[split + 4..].to_vec();
    if !head.contains("transfer-encoding: chunked") {
        return (status, body);
    }
    let mut out = Vec::new();
    let mut rest = &body[..];
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        rest = &rest[eol + 2 + size + 2..];
    }
    (status, out)
}

/// A JSON request (none for `Value::Null`) and its JSON answer (`Null` if
/// it is not JSON).
pub async fn json_call(
    addr: &Endpoint,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let payload = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let (status, bytes) = read_response(send(addr, method, path, &payload).await).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// `GET path` until `done` holds for the JSON answer (at most `limit`).
pub async fn poll(
    addr: &Endpoint,
    path: &str,
    limit: std::time::Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = std::time::Instant::now();
    loop {
        let (code, view) = json_call(addr, "GET", path, serde_json::Value::Null).await;
        if code == 200 && done(&view) {
            return view;
        }
        assert!(start.elapsed() < limit, "not done after {limit:?}: {view}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// The engine, a tenant no other test uses (`{prefix}-` and 10 hex
/// digits), and a guard that removes every container, network and image
/// labelled with it, on drop and on panic.
pub async fn isolated_tenant(
    prefix: &str,
) -> (
    bollard::Docker,
    String,
    cameleer_docker_testing::CleanupGuard,
) {
    let docker = cameleer_runtime_docker::connect::connect().await.unwrap();
    let tenant = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let guard = cameleer_docker_testing::CleanupGuard::new(&docker);
    guard.label(cameleer_runtime_docker::labels::TENANT, &tenant);
    (docker, tenant, guard)
}

/// Removes what `guard` covers now (the server stopped first) and checks
/// that no container of `tenant` is left.
pub async fn clean_up(
    docker: &bollard::Docker,
    tenant: &str,
    guard: cameleer_docker_testing::CleanupGuard,
) {
    guard.cleanup().await.unwrap();
    let left = cameleer_docker_testing::containers_labelled(
        docker,
        cameleer_runtime_docker::labels::TENANT,
        tenant,
    )
    .await
    .unwrap();
    assert!(left.is_empty(), "containers of {tenant} left: {left:?}");
}
