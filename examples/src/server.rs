//! The example server: command line and wiring.
//!
//! `cargo run -p cameleer-examples --bin server -- [--listen ADDR]
//! [--data-dir DIR] [--agent-jar PATH] [--agent-args STR] [--base-image REF]
//! [--registry URL [--registry-credentials-file PATH] [--registry-ca PATH]]
//! [--backend docker|kubernetes] [--push-secret NAME] [--insecure-registry]
//! [--keep-versions N]`
//!
//! It wires the crates exactly as a host application would: SQLite and
//! content-addressed files under the data dir for storage, the local Docker
//! engine (or, with `--backend kubernetes` and the `kubernetes` feature, the
//! cluster of the kubeconfig or the in-cluster config) for containers, and
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
    /// Docker: push images to this registry (`https://host[:port]`, or
    /// `http://` on loopback) instead of building them in the engine.
    /// Kubernetes: the repository prefix images are pushed under
    /// (`{registry}/{tenant}/{app}:v{version}`).
    pub registry: Option<String>,
    /// A file whose first line is `username:password` for the registry.
    pub registry_credentials_file: Option<PathBuf>,
    /// A PEM file of the CA that signed the registry's certificate.
    pub registry_ca: Option<PathBuf>,
    /// Kubernetes: the Secret with the push credentials, in the build
    /// namespace.
    pub push_secret: Option<String>,
    /// Kubernetes: push over plain HTTP (a local registry).
    pub insecure_registry: bool,
    /// Retention: versions whose images and artifacts are kept per app and
    /// environment. Default 10.
    pub keep_versions: usize,
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
            push_secret: None,
            insecure_registry: false,
            keep_versions: 10,
        }
    }
}

/// The usage text.
pub const USAGE: &str = "usage: server [--listen ADDR] [--data-dir DIR] [--agent-jar PATH] \
[--agent-args STR] [--base-image REF] \
[--registry URL [--registry-credentials-file PATH] [--registry-ca PATH]] \
[--backend docker|kubernetes] [--push-secret NAME] [--insecure-registry] [--keep-versions N]
  --keep-versions: retention keeps the images and artifacts of the newest N versions of each
  app and environment (default 10, at least 1); older ones are swept hourly.
  --registry: on Docker, build images without the engine and push them to URL (https, or
  http on loopback); credentials from the file (one line username:password) or from
  CAMELEER_REGISTRY_USERNAME and CAMELEER_REGISTRY_PASSWORD. On Kubernetes, the
  repository images are pushed under";

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
                "--push-secret" => out.push_secret = Some(value()?),
                "--keep-versions" => {
                    let v = value()?;
                    out.keep_versions = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        format!("--keep-versions {v:?}: a whole number, at least 1")
                    })?;
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if out.registry.is_none()
            && (out.registry_credentials_file.is_some() || out.registry_ca.is_some())
        {
            return Err("--registry-credentials-file and --registry-ca need --registry".into());
        }
        if out.backend == Backend::Kubernetes {
            if out.registry.is_none() {
                return Err(
                    "--backend kubernetes needs --registry REPO (where images are pushed)".into(),
                );
            }
            if out.base_image.is_none() {
                return Err("--backend kubernetes needs --base-image REF (a JRE image the cluster can pull)".into());
            }
        } else if let Some(v) = &out.registry {
            cameleer_registry::RegistryConfig::new(v).map_err(|e| format!("--registry: {e}"))?;
            if out.base_image.is_some() {
                return Err(
                    "--base-image is for engine builds; with --registry the JRE layer is built with jlink"
                        .into(),
                );
            }
        }
        Ok(Some(out))
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
            "localhost:5001/cameleer",
            "--base-image",
            "eclipse-temurin:17-jre",
            "--push-secret",
            "push",
            "--insecure-registry",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(k.backend, Backend::Kubernetes);
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
