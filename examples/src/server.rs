//! The example server: command line and wiring.
//!
//! `cargo run -p cameleer-examples --bin server -- [--listen ADDR]
//! [--data-dir DIR] [--agent-jar PATH] [--agent-args STR] [--base-image REF]
//! [--registry URL [--registry-credentials-file PATH] [--registry-ca PATH]]
//! [--backend docker|kubernetes] [--image-builder registry|kaniko]
//! [--pull-secret NAME]… [--push-secret NAME] [--insecure-registry]
//! [--log-store sqlite|clickhouse://…] [--keep-versions N]`
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
//! engine then pulls by digest. Registry credentials come from
//! `--registry-credentials-file` (one line `username:password`) or the
//! environment ([`cameleer_registry::USERNAME_ENV`],
//! [`cameleer_registry::PASSWORD_ENV`]), never from the command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use cameleer_runtime::ImageRef;

/// The server's settings, from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerArgs {
    /// Where to listen. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Where the database and artifacts live. Default `./cameleer-data`.
    pub data_dir: PathBuf,
    /// The Cameleer agent JAR; default: the demo agent, compiled from the
    /// source that ships in the repository.
    pub agent_jar: Option<PathBuf>,
    /// Arguments passed to the agent (`-javaagent:agent.jar=<args>`).
    pub agent_args: Option<String>,
    /// The JRE base image; default: one built locally with `jlink`
    /// (Docker only: a cluster needs one it can pull).
    pub base_image: Option<ImageRef>,
    /// Where apps run.
    pub backend: Backend,
    /// The registry images are pushed to (`https://host[:port]`, or
    /// `http://` on loopback), by the daemonless builder: on Docker instead
    /// of building them in the engine, on Kubernetes always. With
    /// `--image-builder kaniko`: the repository prefix the build Job pushes
    /// under (`{registry}/{tenant}/{app}:v{version}`).
    pub registry: Option<String>,
    /// A file whose first line is `username:password` for the registry.
    pub registry_credentials_file: Option<PathBuf>,
    /// A PEM file of the CA that signed the registry's certificate.
    pub registry_ca: Option<PathBuf>,
    /// Kubernetes: how images are made. Default
    /// [`ImageBuilderKind::Registry`].
    pub image_builder: ImageBuilderKind,
    /// Kubernetes: Secrets (in each tenant namespace) the cluster pulls
    /// images with.
    pub pull_secrets: Vec<String>,
    /// Kubernetes with Kaniko: the Secret with the push credentials, in the
    /// build namespace.
    pub push_secret: Option<String>,
    /// Kubernetes with Kaniko: push over plain HTTP (a local registry).
    pub insecure_registry: bool,
    /// Where app logs are kept beyond their containers.
    pub log_store: LogStoreArg,
    /// Retention: versions whose images and artifacts are kept per app and
    /// environment. Default 10.
    pub keep_versions: usize,
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
            cameleer_logstore::ClickHouseOptions::from_url(v)
                .map_err(|e| format!("--log-store: {e}"))?;
            return Ok(Self::ClickHouse(v.to_owned()));
        }
        Err(format!(
            "--log-store {v:?}: sqlite or clickhouse://[user[:password]@]host[:port][/database]"
        ))
    }
}

/// How the Kubernetes backend makes images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
        }
    }
}

/// The usage text.
pub const USAGE: &str = "usage: server [--listen ADDR] [--data-dir DIR] [--agent-jar PATH] \
[--agent-args STR] [--base-image REF] \
[--registry URL [--registry-credentials-file PATH] [--registry-ca PATH]] \
[--backend docker|kubernetes] [--image-builder registry|kaniko] [--pull-secret NAME]... \
[--push-secret NAME] [--insecure-registry] \
[--log-store sqlite|clickhouse://[user[:password]@]host[:port][/database]] [--keep-versions N]
  --log-store: where app logs are kept beyond their containers (default: sqlite, in the data dir).
  --keep-versions: retention keeps the images and artifacts of the newest N versions of each
  app and environment (default 10, at least 1); older ones are swept hourly.
  --registry: build images without the engine and push them to URL (https, or http on
  loopback); credentials from the file (one line username:password) or from
  CAMELEER_REGISTRY_USERNAME and CAMELEER_REGISTRY_PASSWORD. Needed on Kubernetes.
  --image-builder kaniko (Kubernetes): build in the cluster with a Kaniko Job instead;
  then --registry is the repository prefix the Job pushes under, and --base-image,
  --push-secret and --insecure-registry apply";

impl ServerArgs {
    /// Parses the arguments after the program name. `Ok(None)` for
    /// `--help`; `Err` names the offending argument.
    ///
    /// # Examples
    ///
    /// ```
    /// use cameleer_examples::server::ServerArgs;
    ///
    /// let args = ServerArgs::parse(["--listen", "127.0.0.1:0", "--data-dir", "/tmp/c"])
    ///     .unwrap()
    ///     .unwrap();
    /// assert_eq!(args.listen.port(), 0);
    /// assert!(ServerArgs::parse(["--nope"]).is_err());
    /// ```
    pub fn parse<I, S>(args: I) -> Result<Option<Self>, String>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut out = Self::default();
        let mut it = args.into_iter().map(Into::into);
        while let Some(flag) = it.next() {
            if flag == "--help" || flag == "-h" {
                return Ok(None);
            }
            if flag == "--insecure-registry" {
                out.insecure_registry = true;
                continue;
            }
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
                _ => (flag.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match name.as_str() {
                "--listen" => {
                    let v = value()?;
                    out.listen = v.parse().map_err(|e| {
                        format!("--listen {v:?}: not an address such as 127.0.0.1:8080 ({e})")
                    })?;
                }
                "--data-dir" => out.data_dir = PathBuf::from(value()?),
                "--agent-jar" => out.agent_jar = Some(PathBuf::from(value()?)),
                "--agent-args" => out.agent_args = Some(value()?),
                "--base-image" => {
                    let v = value()?;
                    out.base_image = Some(v.parse().map_err(|e| format!("--base-image: {e}"))?);
                }
                "--backend" => {
                    out.backend = match value()?.as_str() {
                        "docker" => Backend::Docker,
                        "kubernetes" => Backend::Kubernetes,
                        v => return Err(format!("--backend {v:?}: docker or kubernetes")),
                    };
                }
                "--registry" => out.registry = Some(value()?),
                "--registry-credentials-file" => {
                    out.registry_credentials_file = Some(PathBuf::from(value()?))
                }
                "--registry-ca" => out.registry_ca = Some(PathBuf::from(value()?)),
                "--image-builder" => {
                    out.image_builder = match value()?.as_str() {
                        "registry" => ImageBuilderKind::Registry,
                        "kaniko" => ImageBuilderKind::Kaniko,
                        v => return Err(format!("--image-builder {v:?}: registry or kaniko")),
                    };
                }
                "--pull-secret" => out.pull_secrets.push(value()?),
                "--push-secret" => out.push_secret = Some(value()?),
                "--log-store" => out.log_store = LogStoreArg::parse(&value()?)?,
                "--keep-versions" => {
                    let v = value()?;
                    out.keep_versions = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        format!("--keep-versions {v:?}: a whole number, at least 1")
                    })?;
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        out.check()?;
        Ok(Some(out))
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
mod tests {
    use super::*;

    #[test]
    fn defaults_and_every_flag() {
        assert_eq!(
            ServerArgs::parse(Vec::<String>::new()).unwrap().unwrap(),
            ServerArgs::default()
        );
        let a = ServerArgs::parse([
            "--listen=0.0.0.0:9000",
            "--data-dir",
            "/d",
            "--agent-jar",
            "/a.jar",
            "--agent-args",
            "x=1,y=2",
            "--base-image",
            "cameleer/jre:17",
            "--keep-versions",
            "3",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.keep_versions, 3);
        assert_eq!(a.listen.port(), 9000);
        assert_eq!(a.data_dir, PathBuf::from("/d"));
        assert_eq!(a.agent_jar, Some(PathBuf::from("/a.jar")));
        assert_eq!(a.agent_args.as_deref(), Some("x=1,y=2"));
        assert_eq!(a.base_image.unwrap().to_string(), "cameleer/jre:17");
        assert_eq!(ServerArgs::parse(["--help"]).unwrap(), None);
        let k = ServerArgs::parse([
            "--backend",
            "kubernetes",
            "--registry",
            "https://registry.example.com",
            "--pull-secret",
            "pull-a",
            "--pull-secret=pull-b",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(k.backend, Backend::Kubernetes);
        assert_eq!(k.image_builder, ImageBuilderKind::Registry, "the default");
        assert_eq!(k.pull_secrets, ["pull-a", "pull-b"]);
        let k = ServerArgs::parse([
            "--backend",
            "kubernetes",
            "--image-builder",
            "kaniko",
            "--registry",
            "localhost:5001/cameleer",
            "--base-image",
            "eclipse-temurin:17-jre",
            "--push-secret",
            "push",
            "--insecure-registry",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(k.image_builder, ImageBuilderKind::Kaniko);
        assert_eq!(k.registry.as_deref(), Some("localhost:5001/cameleer"));
        assert_eq!(k.push_secret.as_deref(), Some("push"));
        assert!(k.insecure_registry);
        let r = ServerArgs::parse([
            "--registry",
            "https://registry.example.com:5000",
            "--registry-credentials-file",
            "/etc/cameleer/registry",
            "--registry-ca=/etc/cameleer/ca.pem",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            r.registry.as_deref(),
            Some("https://registry.example.com:5000")
        );
        assert_eq!(
            r.registry_credentials_file,
            Some(PathBuf::from("/etc/cameleer/registry"))
        );
        assert_eq!(r.registry_ca, Some(PathBuf::from("/etc/cameleer/ca.pem")));
    }

    #[test]
    fn the_log_store_is_sqlite_or_a_clickhouse_url() {
        let a = ServerArgs::parse(["--log-store", "clickhouse://127.0.0.1:8123/logs"])
            .unwrap()
            .unwrap();
        assert_eq!(
            a.log_store,
            LogStoreArg::ClickHouse("clickhouse://127.0.0.1:8123/logs".into())
        );
        let a = ServerArgs::parse(["--log-store=sqlite"]).unwrap().unwrap();
        assert_eq!(a.log_store, LogStoreArg::Sqlite);
        for bad in ["postgres://x", "clickhouse://h/bad;db"] {
            let e = ServerArgs::parse(["--log-store", bad]).unwrap_err();
            assert!(e.contains("--log-store"), "{e}");
        }
    }

    #[test]
    fn bad_arguments_are_named() {
        for (args, needle) in [
            (vec!["--listen", "nowhere"], "--listen"),
            (vec!["--listen"], "needs a value"),
            (vec!["--base-image", "UPPER"], "--base-image"),
            (vec!["serve"], "unknown argument"),
            (vec!["--backend", "podman"], "--backend"),
            (vec!["--keep-versions", "0"], "--keep-versions"),
            (vec!["--keep-versions=ten"], "--keep-versions"),
            (vec!["--backend", "kubernetes"], "--registry"),
            (
                vec!["--backend", "kubernetes", "--registry", "localhost:5001/c"],
                "--registry",
            ),
            (
                vec![
                    "--backend",
                    "kubernetes",
                    "--image-builder",
                    "kaniko",
                    "--registry",
                    "localhost:5001/c",
                ],
                "--base-image",
            ),
            (
                vec![
                    "--backend",
                    "kubernetes",
                    "--registry",
                    "https://r.example.com",
                    "--push-secret",
                    "p",
                ],
                "kaniko",
            ),
            (vec!["--image-builder", "kaniko"], "--backend kubernetes"),
            (vec!["--image-builder", "buildah"], "--image-builder"),
            (vec!["--pull-secret", "p"], "--backend kubernetes"),
            (vec!["--registry", "http://10.0.0.1:5000"], "loopback"),
            (vec!["--registry-ca", "/ca.pem"], "need --registry"),
            (
                vec![
                    "--registry",
                    "http://127.0.0.1:5000",
                    "--base-image",
                    "a/b:1",
                ],
                "--base-image",
            ),
        ] {
            let e = ServerArgs::parse(args).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }
}
