//! Validated container image references.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Sha256Digest;

/// A container image reference: `[registry/]repository[:tag][@sha256:digest]`.
///
/// The grammar is the Docker/OCI distribution one, restricted to what we
/// produce and accept: the repository is lowercase path components of
/// `[a-z0-9]` joined by `.`, `_`, `__` or `-` runs, separated by `/`; the
/// first component counts as a registry host when it contains `.` or `:` or
/// is `localhost`; tags are `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`. An image is
/// pinned when it carries a digest, and only a pinned reference names
/// immutable content.
///
/// # Examples
///
/// ```
/// use cameleer_build::ImageRef;
///
/// let r: ImageRef = "localhost:5000/cameleer/acme/orders:v3".parse().unwrap();
/// assert_eq!(r.registry(), Some("localhost:5000"));
/// assert_eq!(r.repository(), "cameleer/acme/orders");
/// assert_eq!(r.tag(), Some("v3"));
/// assert!(r.digest().is_none());
/// assert!("Bad/Upper:case".parse::<ImageRef>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: Option<String>,
    repository: String,
    tag: Option<String>,
    digest: Option<Sha256Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ImageRefError {
    /// The rejected input, cut to 200 characters.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl ImageRefError {
    /// The stable error code: `invalid_image_ref`.
    pub fn code(&self) -> &'static str {
        "invalid_image_ref"
    }
}

/// Longest reference accepted, as Docker limits it.
const MAX_LEN: usize = 255;

impl ImageRef {
    /// Builds a reference from parts, validating each.
    pub fn new(
        registry: Option<&str>,
        repository: &str,
        tag: Option<&str>,
        digest: Option<Sha256Digest>,
    ) -> Result<Self, ImageRefError> {
        let mut s = String::new();
        if let Some(r) = registry {
            s.push_str(r);
            s.push('/');
        }
        s.push_str(repository);
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = digest {
            s.push('@');
            s.push_str(&d.oci());
        }
        s.parse()
    }

    /// The registry host (and port), when there is one.
    pub fn registry(&self) -> Option<&str> {
        self.registry.as_deref()
    }

    /// The repository path, without registry, tag or digest.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, when there is one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The content digest, when the reference is pinned.
    pub fn digest(&self) -> Option<&Sha256Digest> {
        self.digest.as_ref()
    }

    /// The same reference pinned to `digest` (any tag is kept for display).
    pub fn with_digest(&self, digest: Sha256Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same reference with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ImageRefError> {
        Self::new(self.registry(), self.repository(), Some(tag), None)
    }

    /// `registry/repository` without tag or digest: the name to push to.
    pub fn name(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/{}", self.repository),
            None => self.repository.clone(),
        }
    }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_registry(r: &str) -> bool {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (r, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl FromStr for ImageRef {
    type Err = ImageRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ImageRefError {
            input: s.chars().take(200).collect(),
            reason,
        };
        if s.is_empty() {
            return Err(err("empty"));
        }
        if s.len() > MAX_LEN {
            return Err(err("longer than 255 characters"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                if !d.starts_with("sha256:") {
                    return Err(err("digest must be sha256:<64 hex>"));
                }
                let d: Sha256Digest = d
                    .parse()
                    .map_err(|_| err("digest must be sha256:<64 hex>"))?;
                (rest, Some(d))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(err("tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !valid_registry(first) {
                    return Err(err("registry must be host[:port]"));
                }
                (Some(first), remainder)
            }
            _ => (None, name),
        };
        if repository.is_empty() || !repository.split('/').all(valid_component) {
            return Err(err(
                "repository components must be lowercase [a-z0-9] separated by '.', '_', '__' or '-'",
            ));
        }
        Ok(Self {
            registry: registry.map(str::to_owned),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{}", d.oci())?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageRef({self})")
    }
}

impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let d = Sha256Digest::of(b"img");
        for s in [
            "busybox",
            "cameleer/acme/orders:v1",
            "localhost:5000/cameleer/acme/orders:v12",
            "registry.example.com/a_b/c__d/e--f:1.0-rc_1",
        ] {
            let r: ImageRef = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
            let pinned = r.with_digest(d);
            assert_eq!(pinned.to_string().parse::<ImageRef>().unwrap(), pinned);
        }
    }

    #[test]
    fn splits_registry_port_from_tag() {
        let r: ImageRef = "localhost:5000/app".parse().unwrap();
        assert_eq!(r.registry(), Some("localhost:5000"));
        assert_eq!(r.tag(), None);
        let r: ImageRef = "app:5000".parse().unwrap();
        assert_eq!(r.registry(), None);
        assert_eq!(r.tag(), Some("5000"));
    }

    #[test]
    fn rejects_bad_references() {
        for s in [
            "",
            "UPPER/case",
            "a//b",
            "-lead",
            "trail-/x",
            "a:bad tag",
            "a:",
            "a@sha256:nothex",
            "a@md5:00",
            "a\nFROM evil",
            "a:.dot",
            &"a".repeat(256),
        ] {
            let e = s.parse::<ImageRef>().unwrap_err();
            assert_eq!(e.code(), "invalid_image_ref", "{s:?}");
        }
    }
}
