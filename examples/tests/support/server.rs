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
