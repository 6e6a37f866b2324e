//! The example server: command line and wiring.
//!
//! `cargo run -p cameleer-examples --bin server -- --help` lists the flags.
//! Each one may also be set from a `CAMELEER_*` environment variable named
//! after it (`--data-dir` from `CAMELEER_DATA_DIR`, `--pull-secret` from
//! `CAMELEER_PULL_SECRETS`, comma-separated); a flag wins over its
//! variable. Secrets never come from a flag: registry credentials come from
//! `--registry-credentials-file` (one line `username:password`) or the
//! environment ([`cameleer_registry::USERNAME_ENV`],
//! [`cameleer_registry::PASSWORD_ENV`]), the admin token from a file
//! (`--admin-token-file`), and a ClickHouse password in a `--log-store` URL
//! only from `CAMELEER_LOG_STORE`.
//!
//! It wires the crates exactly as a host application would: SQLite and
//! content-addressed files under the data dir for storage, the local Docker
//! engine (or, with `--backend kubernetes` and the `kubernetes` feature, the
//! cluster of the kubeconfig or the in-cluster config, images pushed to
//! `--registry` by the same daemonless builder, or built in the cluster by
//! a Kaniko Job with `--image-builder kaniko`) for containers, and
//! the [`api`](crate::api) router on top of a
//! [`Platform`](cameleer_runtime::Platform). On Docker, images are built by
//! the engine (the default), or, with `--registry`, without it: assembled by
//! `cameleer-registry`'s builder and pushed to the registry, which the
//! engine then pulls by digest.
//!
//! On SIGTERM or Ctrl-C the server stops accepting connections, ends the
//! log and event streams, and gives the requests in flight
//! `--shutdown-grace-secs` to finish; the apps keep running, and the next
//! start adopts them.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cameleer_runtime::ImageRef;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, ValueEnum};

/// What `--help` prints after the flags.
const AFTER_HELP: &str = "\
Every flag may also be set from the environment variable shown with it (a
flag wins). List-valued variables are comma-separated.

Secrets never come from a flag: registry credentials come from
--registry-credentials-file or from CAMELEER_REGISTRY_USERNAME and
CAMELEER_REGISTRY_PASSWORD; a ClickHouse password may be part of the
CAMELEER_LOG_STORE URL, not of --log-store.

On SIGTERM the server stops accepting connections, ends log and event
streams, waits up to --shutdown-grace-secs for the requests in flight, and
exits 0. Apps keep running; the next start adopts them, and records a build
or start it interrupted as FAILED (interrupted).";

/// The server's settings, from the command line and the environment.
///
/// Parse them with [`ServerArgs::from_args`] (or [`ServerArgs::from_env`]
/// in a binary), which also checks the rules between flags.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "server",
    version,
    about = "The Cameleer example server: the platform's HTTP API on embedded defaults.",
    long_about = None,
    after_help = AFTER_HELP
)]
pub struct ServerArgs {
    /// Where to listen.
    #[arg(
        long,
        env = "CAMELEER_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// Where the database and artifacts live.
    #[arg(
        long,
        env = "CAMELEER_DATA_DIR",
        value_name = "DIR",
        default_value = "cameleer-data"
    )]
    pub data_dir: PathBuf,
    /// The Cameleer agent JAR; default: the demo agent, compiled from the
    /// source that ships in the repository.
    #[arg(long, env = "CAMELEER_AGENT_JAR", value_name = "PATH")]
    pub agent_jar: Option<PathBuf>,
    /// Arguments passed to the agent (`-javaagent:agent.jar=<args>`).
    #[arg(long, env = "CAMELEER_AGENT_ARGS", value_name = "STR")]
    pub agent_args: Option<String>,
    /// The JRE base image; default: one built locally with `jlink`
    /// (Docker only: a cluster needs one it can pull).
    #[arg(long, env = "CAMELEER_BASE_IMAGE", value_name = "REF")]
    pub base_image: Option<ImageRef>,
    /// Where apps run.
    #[arg(long, env = "CAMELEER_BACKEND", value_enum, default_value_t)]
    pub backend: Backend,
    /// The registry images are pushed to (`https://host[:port]`, or
    /// `http://` on loopback), by the daemonless builder: on Docker instead
    /// of building them in the engine, on Kubernetes always. With
    /// `--image-builder kaniko`: the repository prefix the build Job pushes
    /// under (`{registry}/{tenant}/{app}:v{version}`).
    #[arg(long, env = "CAMELEER_REGISTRY", value_name = "URL")]
    pub registry: Option<String>,
    /// A file whose first line is `username:password` for the registry.
    #[arg(long, env = "CAMELEER_REGISTRY_CREDENTIALS_FILE", value_name = "PATH")]
    pub registry_credentials_file: Option<PathBuf>,
    /// A PEM file of the CA that signed the registry's certificate.
    #[arg(long, env = "CAMELEER_REGISTRY_CA", value_name = "PATH")]
    pub registry_ca: Option<PathBuf>,
    /// Kubernetes: how images are made.
    #[arg(long, env = "CAMELEER_IMAGE_BUILDER", value_enum, default_value_t)]
    pub image_builder: ImageBuilderKind,
    /// Kubernetes: Secrets (in each tenant namespace) the cluster pulls
    /// images with. Repeatable.
    #[arg(
        long = "pull-secret",
        env = "CAMELEER_PULL_SECRETS",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub pull_secrets: Vec<String>,
    /// Kubernetes with Kaniko: the Secret with the push credentials, in the
    /// build namespace.
    #[arg(long, env = "CAMELEER_PUSH_SECRET", value_name = "NAME")]
    pub push_secret: Option<String>,
    /// Kubernetes with Kaniko: push over plain HTTP (a local registry).
    #[arg(
        long,
        env = "CAMELEER_INSECURE_REGISTRY",
        action = ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub insecure_registry: bool,
    /// Where app logs are kept beyond their containers: `sqlite` (in the
    /// data dir) or `clickhouse[s]://[user@]host[:port][/database]`.
    #[arg(
        long,
        env = "CAMELEER_LOG_STORE",
        hide_env_values = true,
        value_name = "sqlite|clickhouse://…",
        value_parser = LogStoreArg::parse,
        default_value = "sqlite"
    )]
    pub log_store: LogStoreArg,
    /// Retention: versions whose images and artifacts are kept per app and
    /// environment (at least 1); older ones are swept hourly.
    #[arg(
        long,
        env = "CAMELEER_KEEP_VERSIONS",
        value_name = "N",
        value_parser = at_least_one,
        default_value = "10"
    )]
    pub keep_versions: usize,
    /// The file holding the admin token; default `<data-dir>/admin-token`,
    /// created (mode 0600) at first start.
    #[arg(long, env = "CAMELEER_ADMIN_TOKEN_FILE", value_name = "PATH")]
    pub admin_token_file: Option<PathBuf>,
    /// How the server's own log lines are written to stderr.
    #[arg(long, env = "CAMELEER_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// On SIGTERM, how long requests in flight may take to finish before
    /// they are cut off (seconds).
    #[arg(
        long = "shutdown-grace-secs",
        env = "CAMELEER_SHUTDOWN_GRACE_SECS",
        value_name = "N",
        value_parser = seconds,
        default_value = "30"
    )]
    pub shutdown_grace: Duration,
}

/// `--keep-versions`: a whole number, at least 1.
fn at_least_one(v: &str) -> Result<usize, String> {
    v.parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| "a whole number, at least 1".to_owned())
}

/// `--shutdown-grace-secs`: whole seconds.
fn seconds(v: &str) -> Result<Duration, String> {
    v.parse()
        .map(Duration::from_secs)
        .map_err(|_| "a whole number of seconds".to_owned())
}

/// `--log-format`: how the server writes its own log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, the default.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`,
    /// `target`), for log shippers.
    Json,
}

/// `--log-store`: where app logs are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LogStoreArg {
    /// SQLite in the data dir (`logs.sqlite`), the default.
    #[default]
    Sqlite,
    /// ClickHouse at this `clickhouse://` (or `clickhouses://`) URL.
    ClickHouse(String),
}

impl LogStoreArg {
    /// Reads `sqlite` or `clickhouse[s]://…`.
    pub fn parse(v: &str) -> Result<Self, String> {
        if v == "sqlite" {
            return Ok(Self::Sqlite);
        }
        if v.starts_with("clickhouse://") || v.starts_with("clickhouses://") {
            cameleer_logstore::ClickHouseOptions::from_url(v).map_err(|e| e.to_string())?;
            return Ok(Self::ClickHouse(v.to_owned()));
        }
        Err("sqlite or clickhouse://[user[:password]@]host[:port][/database]".to_owned())
    }

    /// Whether the value carries a password.
    fn has_password(&self) -> bool {
        match self {
            Self::Sqlite => false,
            Self::ClickHouse(url) => cameleer_logstore::ClickHouseOptions::from_url(url)
                .is_ok_and(|o| o.password.is_some()),
        }
    }
}

/// How the Kubernetes backend makes images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ImageBuilderKind {
    /// Assembled in this process without a container engine and pushed to
    /// `--registry` (`cameleer-registry`): the default.
    #[default]
    Registry,
    /// A Kaniko-compatible build Job in the cluster, pushing to
    /// `--registry` (upstream Kaniko is archived; the executor image is
    /// configurable in the library).
    Kaniko,
}

/// Which backend the server runs apps on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// The local Docker engine.
    #[default]
    Docker,
    /// The cluster of the kubeconfig (or the in-cluster config).
    Kubernetes,
}

impl Default for ServerArgs {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("cameleer-data"),
            agent_jar: None,
            agent_args: None,
            base_image: None,
            backend: Backend::Docker,
            registry: None,
            registry_credentials_file: None,
            registry_ca: None,
            image_builder: ImageBuilderKind::Registry,
            pull_secrets: Vec::new(),
            push_secret: None,
            insecure_registry: false,
            log_store: LogStoreArg::Sqlite,
            keep_versions: 10,
            admin_token_file: None,
            log_format: LogFormat::Text,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl ServerArgs {
    /// Parses the arguments after the program name, and the `CAMELEER_*`
    /// environment variables of the flags not given, then checks the rules
    /// between flags.
    ///
    /// The error is clap's: [`clap::Error::kind`] is
    /// [`ErrorKind::DisplayHelp`] or [`ErrorKind::DisplayVersion`] for
    /// `--help` and `--version` (printed by [`clap::Error::exit`] with exit
    /// code 0), and any other kind names the offending flag (exit code 2).
    ///
    /// # Examples
    ///
    /// ```
    /// use cameleer_examples::server::ServerArgs;
    ///
    /// let args = ServerArgs::from_args(["--listen", "127.0.0.1:0", "--data-dir", "/tmp/c"]).unwrap();
    /// assert_eq!(args.listen.port(), 0);
    /// assert_eq!(ServerArgs::from_args(["--nope"]).unwrap_err().exit_code(), 2);
    /// ```
    pub fn from_args<I, S>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString> + Clone,
    {
        let mut command = Self::command();
        let matches = command.try_get_matches_from_mut(
            std::iter::once(OsString::from("server")).chain(args.into_iter().map(Into::into)),
        )?;
        let out = Self::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
        if matches.value_source("log_store") == Some(ValueSource::CommandLine)
            && out.log_store.has_password()
        {
            return Err(command.error(
                ErrorKind::ValueValidation,
                "--log-store: a password on the command line is visible to every user \
                 (ps); put the URL in CAMELEER_LOG_STORE instead",
            ));
        }
        out.check()
            .map_err(|e| command.error(ErrorKind::ArgumentConflict, e))?;
        Ok(out)
    }

    /// [`from_args`](Self::from_args) on this process's arguments.
    pub fn from_env() -> Result<Self, clap::Error> {
        Self::from_args(std::env::args_os().skip(1))
    }

    /// The rules between flags, per backend and image builder.
    fn check(&self) -> Result<(), String> {
        let kaniko =
            self.backend == Backend::Kubernetes && self.image_builder == ImageBuilderKind::Kaniko;
        if self.registry.is_none()
            && (self.registry_credentials_file.is_some() || self.registry_ca.is_some())
        {
            return Err("--registry-credentials-file and --registry-ca need --registry".into());
        }
        if self.backend == Backend::Docker {
            if self.image_builder == ImageBuilderKind::Kaniko {
                return Err("--image-builder kaniko needs --backend kubernetes".into());
            }
            if !self.pull_secrets.is_empty() {
                return Err("--pull-secret is for --backend kubernetes".into());
            }
        }
        if !kaniko && (self.push_secret.is_some() || self.insecure_registry) {
            return Err(
                "--push-secret and --insecure-registry are for --image-builder kaniko (Kubernetes)"
                    .into(),
            );
        }
        if self.backend == Backend::Kubernetes && self.registry.is_none() {
            return Err("--backend kubernetes needs --registry (where images are pushed)".into());
        }
        if kaniko {
            if self.base_image.is_none() {
                return Err(
                    "--image-builder kaniko needs --base-image REF (a JRE image the cluster can pull)"
                        .into(),
                );
            }
            if self.registry_credentials_file.is_some() || self.registry_ca.is_some() {
                return Err("with --image-builder kaniko the build Job pushes: credentials come from --push-secret".into());
            }
        } else if let Some(v) = &self.registry {
            cameleer_registry::RegistryConfig::new(v).map_err(|e| format!("--registry: {e}"))?;
            if self.base_image.is_some() {
                return Err(
                    "--base-image is for engine and Kaniko builds; with --registry the JRE layer is built with jlink"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
