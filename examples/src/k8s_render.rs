//! The command line of `k8s-render`: every object the Kubernetes backend
//! would apply for one deployment, as one multi-document YAML, with no
//! cluster.
//!
//! ```sh
//! cargo run -p cameleer-examples --features kubernetes --bin k8s-render -- \
//!     --tenant acme --app orders --env dev \
//!     --image localhost:5001/cameleer/acme/orders@sha256:… [--config config.json] \
//!     [--version N] [--deployment UUID] [--pull-secret NAME]… | kubectl apply -f -
//! ```

use std::path::PathBuf;

use cameleer_runtime::{AppConfig, AppRef, DeployRequest, DeploymentId, ImageRef};
use cameleer_runtime_k8s::{KubernetesOptions, render};
use sha2::{Digest, Sha256};

/// The usage text.
pub const USAGE: &str = "usage: k8s-render --tenant T --app A --env E --image REF@sha256:DIGEST \
[--config config.json] [--version N] [--deployment UUID] [--pull-secret NAME]...";

/// What `k8s-render` was asked to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderArgs {
    /// Which app, where.
    pub app: AppRef,
    /// The image, pinned to a digest.
    pub image: ImageRef,
    /// The app's config (`--config`, JSON), default [`AppConfig::default`].
    pub config_path: Option<PathBuf>,
    /// The version. Default 1.
    pub version: u64,
    /// The deployment id. Default: derived from the other arguments, so the
    /// same command prints the same YAML.
    pub deployment: Option<DeploymentId>,
    /// Image pull secrets.
    pub pull_secrets: Vec<String>,
}

impl RenderArgs {
    /// Parses the arguments after the program name; `Ok(None)` for `--help`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Self>, String> {
        let (mut tenant, mut app, mut env, mut image) = (None, None, None, None);
        let mut config_path = None;
        let mut version = 1;
        let mut deployment = None;
        let mut pull_secrets = Vec::new();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            if flag == "--help" || flag == "-h" {
                return Ok(None);
            }
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--tenant" => tenant = Some(value()?),
                "--app" => app = Some(value()?),
                "--env" => env = Some(value()?),
                "--image" => image = Some(value()?),
                "--config" => config_path = Some(PathBuf::from(value()?)),
                "--version" => {
                    version = value()?.parse().map_err(|e| format!("--version: {e}"))?;
                }
                "--deployment" => {
                    deployment = Some(value()?.parse().map_err(|e| format!("--deployment: {e}"))?);
                }
                "--pull-secret" => pull_secrets.push(value()?),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        let need = |v: Option<String>, name: &str| v.ok_or_else(|| format!("{name} is required"));
        let app = AppRef::parse(
            &need(tenant, "--tenant")?,
            &need(app, "--app")?,
            &need(env, "--env")?,
        )
        .map_err(|e| e.to_string())?;
        let image: ImageRef = need(image, "--image")?
            .parse()
            .map_err(|e: cameleer_build::ImageRefError| e.to_string())?;
        if image.digest().is_none() {
            return Err(format!("--image {image} must be pinned: REF@sha256:DIGEST"));
        }
        Ok(Some(Self {
            app,
            image,
            config_path,
            version,
            deployment,
            pull_secrets,
        }))
    }

    /// The deploy request, with `config`.
    pub fn request(&self, config: AppConfig) -> DeployRequest {
        let deployment = self.deployment.unwrap_or_else(|| {
            let digest = Sha256::digest(format!(
                "{}\n{}\n{}\n{}",
                self.app,
                self.image,
                self.version,
                serde_json::to_string(&config).unwrap_or_default()
            ));
            let hex = hex_of(&digest[..16]);
            format!(
                "{}-{}-4{}-8{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[13..16],
                &hex[17..20],
                &hex[20..32]
            )
            .parse()
            .unwrap_or_else(|_| DeploymentId::new_random())
        });
        DeployRequest {
            app: self.app.clone(),
            deployment,
            version: self.version,
            image: self.image.clone(),
            config,
        }
    }

    /// The backend's options for these arguments.
    pub fn options(&self) -> KubernetesOptions {
        KubernetesOptions {
            image_pull_secrets: self.pull_secrets.clone(),
            ..KubernetesOptions::default()
        }
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the config file (JSON, as the API takes it), if any.
pub fn read_config(path: Option<&std::path::Path>) -> Result<AppConfig, String> {
    let Some(path) = path else {
        return Ok(AppConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let config: AppConfig =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// The YAML for `args`.
pub fn render_yaml(args: &RenderArgs) -> Result<String, String> {
    let config = read_config(args.config_path.as_deref())?;
    let request = args.request(config);
    let objects =
        render::deployment_objects(&request, &args.options()).map_err(|e| e.to_string())?;
    render::to_yaml(&objects).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const IMAGE: &str = "localhost:5001/cameleer/acme/orders@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_and_renders_the_same_yaml_twice() {
        let a = RenderArgs::parse(args(&[
            "--tenant", "acme", "--app", "orders", "--env", "dev", "--image", IMAGE,
        ]))
        .unwrap()
        .unwrap();
        let yaml = render_yaml(&a).unwrap();
        assert_eq!(yaml, render_yaml(&a).unwrap());
        assert!(yaml.starts_with("---\n"));
        for kind in [
            "Namespace",
            "NetworkPolicy",
            "ResourceQuota",
            "LimitRange",
            "Deployment",
        ] {
            assert!(yaml.contains(&format!("kind: {kind}")), "{kind}");
        }
    }

    #[test]
    fn refuses_what_the_backend_would() {
        let err = RenderArgs::parse(args(&[
            "--tenant",
            "acme",
            "--app",
            "orders",
            "--env",
            "dev",
            "--image",
            "localhost:5001/orders:1",
        ]))
        .unwrap_err();
        assert!(err.contains("pinned"), "{err}");
        assert!(RenderArgs::parse(args(&["--tenant", "Acme"])).is_err());
        assert_eq!(RenderArgs::parse(args(&["--help"])).unwrap(), None);
    }
}
