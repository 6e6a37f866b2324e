//! A real registry for tests and benchmarks: Debian's `docker-registry`
//! (distribution 2.8) on a free loopback port, its storage in a temporary
//! directory, killed when dropped.
//!
//! It can require htpasswd (bcrypt, made with `htpasswd -B`) or token auth,
//! and serve TLS with a certificate from a CA generated for the test
//! ([`TestCa`], made with `openssl`). Available with the `testing` feature;
//! not for production use. Needs `/usr/bin/docker-registry` (or
//! `$CAMELEER_DOCKER_REGISTRY`), `openssl` and, for htpasswd, `htpasswd`
//! (Debian: `docker-registry openssl apache2-utils`).
//!
//! # Examples
//!
//! ```no_run
//! use cameleer_registry::testing::TestRegistry;
//!
//! let registry = TestRegistry::builder().htpasswd("ci", "secret").tls().start()?;
//! let config = registry.client_config()?; // trusts the test CA, sends ci:secret
//! assert!(registry.url().starts_with("https://127.0.0.1:"));
//! # Ok::<(), cameleer_registry::testing::TestRegistryError>(())
//! ```

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Credentials, RegistryConfig, RegistryError};

/// Where the registry binary is, unless `$CAMELEER_DOCKER_REGISTRY` says.
pub const DEFAULT_REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// Why a test registry could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestRegistryError {
    /// A tool is missing or failed.
    #[error("{tool} failed: {message}")]
    Tool {
        /// The tool.
        tool: String,
        /// What happened.
        message: String,
    },
    /// The registry did not start listening.
    #[error("the registry did not start: {message}\n--- its log ---\n{log}")]
    NotStarted {
        /// What happened.
        message: String,
        /// Its log.
        log: String,
    },
    /// A file could not be written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The client configuration could not be made.
    #[error(transparent)]
    Config(#[from] RegistryError),
}

impl TestRegistryError {
    /// A stable code: `tool_failed`, `not_started`, `io_error`, or the
    /// registry error's.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Tool { .. } => "tool_failed",
            Self::NotStarted { .. } => "not_started",
            Self::Io { .. } => "io_error",
            Self::Config(e) => e.code(),
        }
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestRegistryError {
    let context = context.into();
    move |source| TestRegistryError::Io { context, source }
}

/// Runs `cmd`; its stdout, or a `Tool` error with its stderr.
fn run(tool: &str, cmd: &mut Command) -> Result<Vec<u8>, TestRegistryError> {
    let out = cmd.output().map_err(|e| TestRegistryError::Tool {
        tool: tool.into(),
        message: format!("could not start it ({e}); is it installed?"),
    })?;
    if !out.status.success() {
        return Err(TestRegistryError::Tool {
            tool: tool.into(),
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(out.stdout)
}

/// A certificate authority made for a test, and a server certificate it
/// signed for `127.0.0.1` and `localhost`.
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The CA certificate (PEM): what a client must trust.
    pub ca_pem: PathBuf,
    /// The server's certificate (PEM).
    pub server_cert: PathBuf,
    /// The server's private key (PEM).
    pub server_key: PathBuf,
}

impl TestCa {
    /// Makes a CA and a server certificate in `dir` with `openssl`
    /// (ECDSA P-256, valid for two days).
    pub fn new(dir: &Path) -> Result<TestCa, TestRegistryError> {
        let p = |n: &str| dir.join(n);
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(
            "openssl",
            Command::new("openssl")
                .args(["req", "-x509"])
                .args(ec)
                .arg("-keyout")
                .arg(p("ca.key"))
                .arg("-out")
                .arg(p("ca.pem"))
                .args(["-days", "2", "-subj", "/CN=cameleer test CA"])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        )?;
        run(
            "openssl",
            Command::new("openssl")
                .arg("req")
                .args(ec)
                .arg("-keyout")
                .arg(p("server.key"))
                .arg("-out")
                .arg(p("server.csr"))
                .args(["-subj", "/CN=127.0.0.1"]),
        )?;
        std::fs::write(
            p("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(io("writing server.ext"))?;
        run(
            "openssl",
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-in"])
                .arg(p("server.csr"))
                .arg("-CA")
                .arg(p("ca.pem"))
                .arg("-CAkey")
                .arg(p("ca.key"))
                .arg("-CAcreateserial")
                .arg("-extfile")
                .arg(p("server.ext"))
                .arg("-out")
                .arg(p("server.pem")),
        )?;
        Ok(TestCa {
            ca_pem: p("ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
        })
    }
}

/// distribution's `token` auth: the registry accepts bearer tokens that
/// `issuer` signed with a key whose certificate is in `root_cert_bundle`,
/// and sends clients to `realm` to get them.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    /// The token server's URL.
    pub realm: String,
    /// The `service` (the tokens' audience).
    pub service: String,
    /// The tokens' issuer.
    pub issuer: String,
    /// PEM certificates of the keys that may sign tokens.
    pub root_cert_bundle: PathBuf,
}

/// How to start a [`TestRegistry`].
#[derive(Debug, Clone, Default)]
pub struct TestRegistryBuilder {
    htpasswd: Option<(String, String)>,
    tls: bool,
    token: Option<TokenAuth>,
    storage: Option<PathBuf>,
}

impl TestRegistryBuilder {
    /// Requires basic auth with this user (htpasswd, bcrypt).
    pub fn htpasswd(mut self, user: &str, password: &str) -> Self {
        self.htpasswd = Some((user.into(), password.into()));
        self
    }

    /// Serves HTTPS with a certificate from a fresh [`TestCa`].
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Requires bearer tokens (distribution's `token` auth).
    pub fn token(mut self, token: TokenAuth) -> Self {
        self.token = Some(token);
        self
    }

    /// Keeps the blobs in `dir` (e.g. a small tmpfs) instead of a
    /// temporary directory.
    pub fn storage(mut self, dir: impl Into<PathBuf>) -> Self {
        self.storage = Some(dir.into());
        self
    }

    /// Writes the configuration and starts the registry.
    pub fn start(self) -> Result<TestRegistry, TestRegistryError> {
        let dir = tempfile::Builder::new()
            .prefix("cameleer-test-registry-")
            .tempdir()
            .map_err(io("creating the registry's directory"))?;
        let storage = self
            .storage
            .clone()
            .unwrap_or_else(|| dir.path().join("storage"));
        std::fs::create_dir_all(&storage).map_err(io(format!("creating {}", storage.display())))?;
        let ca = if self.tls {
            Some(TestCa::new(dir.path())?)
        } else {
            None
        };
        let htpasswd = match &self.htpasswd {
            Some((user, password)) => {
                let line = run(
                    "htpasswd",
                    Command::new("htpasswd").args(["-Bbn", user, password]),
                )?;
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, line).map_err(io("writing htpasswd"))?;
                Some(path)
            }
            None => None,
        };
        let mut registry = TestRegistry {
            child: None,
            port: 0,
            ca,
            credentials: self.htpasswd.clone(),
            storage,
            config: dir.path().join("config.yml"),
            log: dir.path().join("registry.log"),
            htpasswd,
            token: self.token.clone(),
            _dir: dir,
        };
        let mut last = None;
        for _ in 0..5 {
            registry.port = free_port()?;
            registry.write_config()?;
            match registry.spawn() {
                Ok(()) => return Ok(registry),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("five attempts were made"))
    }
}

/// A running `docker-registry`, killed when dropped.
#[derive(Debug)]
pub struct TestRegistry {
    child: Option<Child>,
    port: u16,
    ca: Option<TestCa>,
    credentials: Option<(String, String)>,
    storage: PathBuf,
    config: PathBuf,
    log: PathBuf,
    htpasswd: Option<PathBuf>,
    token: Option<TokenAuth>,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    /// How to start one.
    pub fn builder() -> TestRegistryBuilder {
        TestRegistryBuilder::default()
    }

    /// A registry without auth or TLS.
    pub fn start() -> Result<TestRegistry, TestRegistryError> {
        Self::builder().start()
    }

    /// `http://127.0.0.1:<port>` or `https://…`.
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<port>`, as image references name it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The test CA, when serving TLS.
    pub fn ca(&self) -> Option<&TestCa> {
        self.ca.as_ref()
    }

    /// Where the registry keeps its blobs and manifests.
    pub fn storage(&self) -> &Path {
        &self.storage
    }

    /// A client configuration for it: its URL, its CA, its htpasswd user.
    pub fn client_config(&self) -> Result<RegistryConfig, TestRegistryError> {
        let mut config = RegistryConfig::new(&self.url())?;
        if let Some(ca) = &self.ca {
            config = config.with_ca_file(&ca.ca_pem)?;
        }
        if let Some((user, password)) = &self.credentials {
            config = config.with_credentials(Credentials::new(user, password)?);
        }
        Ok(config)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) -> Result<(), TestRegistryError> {
        self.kill();
        self.spawn()
    }

    /// The blobs the registry holds, as `sha256:<hex>` (whatever
    /// repository links them).
    pub fn stored_blobs(&self) -> Vec<String> {
        let root = self.storage.join("docker/registry/v2/blobs/sha256");
        let mut out = Vec::new();
        for prefix in std::fs::read_dir(root).into_iter().flatten().flatten() {
            for blob in std::fs::read_dir(prefix.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if blob.path().join("data").is_file() {
                    out.push(format!("sha256:{}", blob.file_name().to_string_lossy()));
                }
            }
        }
        out.sort();
        out
    }

    fn write_config(&self) -> Result<(), TestRegistryError> {
        let mut y = String::new();
        let _ = writeln!(y, "version: 0.1");
        let _ = writeln!(y, "log:\n  level: info\n  accesslog:\n    disabled: false");
        let _ = writeln!(
            y,
            "storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false",
            self.storage.display()
        );
        let _ = writeln!(
            y,
            "http:\n  addr: 127.0.0.1:{}\n  secret: cameleer-test-secret",
            self.port
        );
        if let Some(ca) = &self.ca {
            let _ = writeln!(
                y,
                "  tls:\n    certificate: {}\n    key: {}",
                ca.server_cert.display(),
                ca.server_key.display()
            );
        }
        if let Some(path) = &self.htpasswd {
            let _ = writeln!(
                y,
                "auth:\n  htpasswd:\n    realm: cameleer-test\n    path: {}",
                path.display()
            );
        } else if let Some(t) = &self.token {
            let _ = writeln!(
                y,
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}",
                t.realm,
                t.service,
                t.issuer,
                t.root_cert_bundle.display()
            );
        }
        let _ = writeln!(y, "health:\n  storagedriver:\n    enabled: false");
        std::fs::write(&self.config, y).map_err(io("writing the registry config"))
    }

    fn spawn(&mut self) -> Result<(), TestRegistryError> {
        let binary = std::env::var_os("CAMELEER_DOCKER_REGISTRY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_REGISTRY_BINARY));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io("opening the registry log"))?;
        let log2 = log.try_clone().map_err(io("opening the registry log"))?;
        let mut child = Command::new(&binary)
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| TestRegistryError::Tool {
                tool: binary.display().to_string(),
                message: format!("could not start it ({e}); install docker-registry"),
            })?;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(TestRegistryError::NotStarted {
                    message: format!("it exited with {status}"),
                    log: self.log(),
                });
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(TestRegistryError::NotStarted {
                    message: format!("nothing listens on {addr} after 15 s"),
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> Result<u16, TestRegistryError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(l.local_addr().map_err(io("finding a free port"))?.port())
}
