//! Validated identifiers: tenants, apps, environments and deployments.
//!
//! Every name a backend derives (Docker networks and containers, Kubernetes
//! namespaces, Deployments, Services and label values, image repositories) is
//! built from these ids, so their rules are chosen to keep every derived name
//! legal everywhere:
//!
//! - a DNS-1035 label: lowercase `a-z`, digits and `-`, starting with a
//!   letter and ending with a letter or digit (a Kubernetes Service name must
//!   start with a letter, so we ask it of every id);
//! - [`TenantId`] ≤ 30 and [`EnvId`] ≤ 20 characters, so the namespace or
//!   network `cameleer-{tenant}-{env}` is at most 9 + 30 + 1 + 20 = 60 ≤ 63;
//! - [`AppId`] ≤ 40 characters, so a pod name `{app}-{10}-{5}` (57) and a label
//!   value stay ≤ 63.
//!
//! Ids are parsed once ([`FromStr`], or serde, which validates on
//! deserialize) and trusted afterwards: invalid input never reaches a backend.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::{Error, Result};

fn check_label(kind: &'static str, value: &str, max: usize) -> Result<()> {
    let err = |reason: String| Error::InvalidId {
        kind,
        value: value.chars().take(100).collect(),
        reason,
    };
    if value.is_empty() {
        return Err(err("must not be empty".into()));
    }
    if value.len() > max {
        return Err(err(format!(
            "at most {max} characters, got {}",
            value.len()
        )));
    }
    let bytes = value.as_bytes();
    if !bytes[0].is_ascii_lowercase() {
        return Err(err("must start with a lowercase letter".into()));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(err(format!(
            "only lowercase letters, digits and '-' are allowed, found {bad:?}"
        )));
    }
    if bytes[bytes.len() - 1] == b'-' {
        return Err(err("must not end with '-'".into()));
    }
    if value.contains("--") {
        // Keeps `{tenant}-{env}` unambiguous to read and avoids names that
        // look like punycode (`xn--`).
        return Err(err("must not contain \"--\"".into()));
    }
    Ok(())
}

/// The schema of a label id: the rules of [`check_label`] as a pattern (a
/// letter first, then letters, digits and single `-`s, no `-` last).
#[cfg(feature = "openapi")]
fn label_schema(kind: &str, max: usize) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .description(Some(format!(
            "A {kind} id: lowercase letters, digits and single '-', starting with a letter, not ending with '-'."
        )))
        .pattern(Some("^[a-z](-?[a-z0-9])*$"))
        .min_length(Some(1))
        .max_length(Some(max))
        .into()
}

macro_rules! label_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The longest accepted id, in characters.
            pub const MAX_LEN: usize = $max;

            /// Validates and wraps `value`.
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                check_label($kind, &value, Self::MAX_LEN)?;
                Ok(Self(value))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                label_schema($kind, $max)
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }
    };
}

label_id!(
    /// A tenant: the customer that owns apps. A DNS-1035 label of at most 30
    /// characters, so that every name derived from it stays legal in Docker
    /// and Kubernetes (`cameleer-{tenant}-{env}` ≤ 63).
    ///
    /// # Examples
    ///
    /// ```
    /// use cameleer_runtime::TenantId;
    ///
    /// let t: TenantId = "acme".parse().unwrap();
    /// assert_eq!(t.as_str(), "acme");
    /// assert_eq!("Acme".parse::<TenantId>().unwrap_err().code(), "invalid_id");
    /// ```
    TenantId,
    "tenant",
    30
);

label_id!(
    /// An application of a tenant. A DNS-1035 label of at most 40 characters,
    /// leaving room for a pod name's generated suffixes within 63.
    AppId,
    "app",
    40
);

label_id!(
    /// An environment, such as `dev`, `staging` or `prod`. A DNS-1035 label of
    /// at most 20 characters, so that `cameleer-{tenant}-{env}` stays ≤ 63.
    EnvId,
    "env",
    20
);

/// Where an app runs: one tenant's app in one environment.
///
/// Versions, deployments and runtime places (a network, a namespace) are all
/// per `AppRef`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppRef {
    /// The owning tenant.
    pub tenant: TenantId,
    /// The app.
    pub app: AppId,
    /// The environment.
    pub env: EnvId,
}

impl AppRef {
    /// Builds a reference from validated ids.
    pub fn new(tenant: TenantId, app: AppId, env: EnvId) -> Self {
        Self { tenant, app, env }
    }

    /// Parses three strings, naming the first invalid one in the error.
    ///
    /// # Examples
    ///
    /// ```
    /// use cameleer_runtime::AppRef;
    ///
    /// let r = AppRef::parse("acme", "orders", "dev").unwrap();
    /// assert_eq!(r.to_string(), "acme/orders/dev");
    /// assert!(AppRef::parse("acme", "../etc", "dev").is_err());
    /// ```
    pub fn parse(tenant: &str, app: &str, env: &str) -> Result<Self> {
        Ok(Self {
            tenant: tenant.parse()?,
            app: app.parse()?,
            env: env.parse()?,
        })
    }

    /// The same app in another environment (used by promotion).
    pub fn in_env(&self, env: EnvId) -> Self {
        Self {
            env,
            ..self.clone()
        }
    }
}

impl fmt::Display for AppRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.app, self.env)
    }
}

impl fmt::Debug for AppRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppRef({self})")
    }
}

/// The unique id of one deployment (one version of one [`AppRef`]).
///
/// A random UUID, shown in its hyphenated lowercase form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeploymentId(uuid::Uuid);

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for DeploymentId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .format(Some(SchemaFormat::Custom("uuid".into())))
            .description(Some("A deployment id (a UUID)."))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for DeploymentId {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("DeploymentId")
    }
}

impl DeploymentId {
    /// A fresh random id.
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }
}

impl FromStr for DeploymentId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        uuid::Uuid::parse_str(s)
            .map(Self)
            .map_err(|e| Error::InvalidId {
                kind: "deployment",
                value: s.chars().take(100).collect(),
                reason: e.to_string(),
            })
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeploymentId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_1035_labels() {
        for ok in ["a", "acme", "a1", "my-app-2", &"a".repeat(30)] {
            assert_eq!(TenantId::new(ok).unwrap().as_str(), ok);
        }
        assert!(AppId::new("a".repeat(40)).is_ok());
        assert!(EnvId::new("a".repeat(20)).is_ok());
    }

    #[test]
    fn rejects_everything_else_with_a_reason() {
        for bad in [
            "",
            "1abc",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            "a b",
            "a/b",
            "..",
            "a--b",
            "é",
            "a\0",
            &"a".repeat(31),
        ] {
            let e = TenantId::new(bad).unwrap_err();
            assert_eq!(e.code(), "invalid_id", "{bad:?}");
            assert!(e.to_string().contains("tenant"), "{e}");
        }
        assert!(AppId::new("a".repeat(41)).is_err());
        assert!(EnvId::new("a".repeat(21)).is_err());
    }

    #[test]
    fn derived_names_fit_kubernetes_and_docker() {
        let longest = format!(
            "cameleer-{}-{}",
            "t".repeat(TenantId::MAX_LEN),
            "e".repeat(EnvId::MAX_LEN)
        );
        assert!(longest.len() <= 63);
        let pod = format!(
            "{}-{}-{}",
            "a".repeat(AppId::MAX_LEN),
            "h".repeat(10),
            "p".repeat(5)
        );
        assert!(pod.len() <= 63);
    }

    #[test]
    fn serde_validates_on_deserialize() {
        let r: AppRef =
            serde_json::from_str(r#"{"tenant":"acme","app":"orders","env":"dev"}"#).unwrap();
        assert_eq!(r, AppRef::parse("acme", "orders", "dev").unwrap());
        let err =
            serde_json::from_str::<AppRef>(r#"{"tenant":"ACME","app":"o","env":"d"}"#).unwrap_err();
        assert!(err.to_string().contains("tenant"), "{err}");
    }

    #[test]
    fn deployment_ids_round_trip() {
        let id = DeploymentId::new_random();
        assert_eq!(id.to_string().parse::<DeploymentId>().unwrap(), id);
        assert_eq!(
            "nope".parse::<DeploymentId>().unwrap_err().code(),
            "invalid_id"
        );
    }
}
