//! Validated paths inside a layer and symlink targets.

use super::OciError;
use super::error::cut;

/// Longest path accepted, in bytes (Linux `PATH_MAX`).
const MAX_PATH: usize = 4096;
/// Longest component accepted, in bytes (Linux `NAME_MAX`).
const MAX_NAME: usize = 255;

/// A path inside a layer, relative to the image root: one or more
/// components, none of them empty, `.`, `..`, a whiteout (`.wh.`) or with
/// control characters.
///
/// Ordering is component by component, so a directory sorts right before
/// its contents (`a`, `a/b`, `a/b/c`, `a/b.txt`): the tar order is a
/// depth-first walk with names in byte order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct LayerPath(Vec<String>);

impl LayerPath {
    /// Parses `/a/b` or `a/b` (one leading `/` is optional).
    pub(crate) fn parse(s: &str) -> Result<Self, OciError> {
        let err = |reason| OciError::InvalidPath {
            path: cut(s, 300),
            reason,
        };
        let rel = s.strip_prefix('/').unwrap_or(s);
        if rel.is_empty() {
            return Err(err("the image root cannot be an entry"));
        }
        if s.len() > MAX_PATH {
            return Err(err("longer than 4096 bytes"));
        }
        let mut parts = Vec::new();
        for c in rel.split('/') {
            check_component(c).map_err(err)?;
            parts.push(c.to_owned());
        }
        Ok(Self(parts))
    }

    /// The image root: no components. Never an entry itself, only a place
    /// to [`join`](Self::join) names to.
    pub(crate) fn root() -> Self {
        Self(Vec::new())
    }

    /// Whether this is [`root`](Self::root).
    pub(crate) fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// This path with one more component.
    pub(crate) fn join(&self, name: &str) -> Result<Self, OciError> {
        let mut parts = self.0.clone();
        parts.push(name.to_owned());
        let joined = Self(parts);
        check_component(name).map_err(|reason| OciError::InvalidPath {
            path: cut(&joined.display(), 300),
            reason,
        })?;
        if joined.tar_name(false).len() > MAX_PATH {
            return Err(OciError::InvalidPath {
                path: cut(&joined.display(), 300),
                reason: "longer than 4096 bytes",
            });
        }
        Ok(joined)
    }

    /// The proper ancestors, outermost first: `a`, `a/b` for `a/b/c`.
    pub(crate) fn ancestors(&self) -> impl Iterator<Item = LayerPath> + '_ {
        (1..self.0.len()).map(|n| Self(self.0[..n].to_vec()))
    }

    /// The name in the tar: relative, `/`-joined, directories with a
    /// trailing `/` (as `docker save` and Go's `archive/tar` write them).
    pub(crate) fn tar_name(&self, dir: bool) -> String {
        let mut s = self.0.join("/");
        if dir {
            s.push('/');
        }
        s
    }

    /// The absolute path in the image, for messages.
    pub(crate) fn display(&self) -> String {
        format!("/{}", self.0.join("/"))
    }
}

fn check_component(c: &str) -> Result<(), &'static str> {
    match c {
        "" => Err("has an empty component (// or a trailing /)"),
        "." | ".." => Err("has a . or .. component"),
        _ if c.contains('/') => Err("has a / inside a file name"),
        _ if c.starts_with(".wh.") => Err("has a .wh. component (an OCI whiteout marker)"),
        _ if c.chars().any(char::is_control) => Err("has a control character"),
        _ if c.len() > MAX_NAME => Err("has a component longer than 255 bytes"),
        _ => Ok(()),
    }
}

/// Checks a symlink target: kept verbatim (relative, with `..`, or
/// absolute: it resolves inside the container's root), but not empty, not
/// longer than 4096 bytes, no control characters.
pub(crate) fn check_link_target(path: &LayerPath, target: &str) -> Result<(), OciError> {
    let reason = if target.is_empty() {
        "symlink target is empty"
    } else if target.len() > MAX_PATH {
        "symlink target is longer than 4096 bytes"
    } else if target.chars().any(char::is_control) {
        "symlink target has a control character"
    } else {
        return Ok(());
    };
    Err(OciError::InvalidPath {
        path: cut(&path.display(), 300),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_or_without_leading_slash() {
        let a = LayerPath::parse("/opt/java/bin").unwrap();
        assert_eq!(a, LayerPath::parse("opt/java/bin").unwrap());
        assert_eq!(a.tar_name(true), "opt/java/bin/");
        assert_eq!(a.tar_name(false), "opt/java/bin");
        assert_eq!(a.display(), "/opt/java/bin");
        let anc: Vec<String> = a.ancestors().map(|p| p.display()).collect();
        assert_eq!(anc, ["/opt", "/opt/java"]);
    }

    #[test]
    fn rejects_unsafe_paths() {
        for bad in [
            "",
            "/",
            "//a",
            "a//b",
            "a/",
            "a/../b",
            "..",
            "./a",
            "a/.",
            "a/\nb",
            "a/\0",
            "a/.wh.b",
            ".wh..wh..opq",
        ] {
            let e = LayerPath::parse(bad).unwrap_err();
            assert_eq!(e.code(), "invalid_path", "{bad:?}");
        }
        assert!(LayerPath::parse(&"a".repeat(256)).is_err());
        assert!(LayerPath::parse(&"a/".repeat(2100)).is_err());
        let base = LayerPath::parse("a").unwrap();
        assert!(base.join("..").is_err());
        assert!(base.join("b/c").is_err());
        assert_eq!(base.join("b").unwrap().display(), "/a/b");
    }

    #[test]
    fn orders_component_wise() {
        let mut v: Vec<LayerPath> = ["a/b.txt", "a/b/c", "a", "a/b", "B"]
            .iter()
            .map(|s| LayerPath::parse(s).unwrap())
            .collect();
        v.sort();
        let names: Vec<String> = v.iter().map(|p| p.tar_name(false)).collect();
        assert_eq!(names, ["B", "a", "a/b", "a/b/c", "a/b.txt"]);
    }

    #[test]
    fn link_targets_keep_dots_but_not_control_characters() {
        let p = LayerPath::parse("a/l").unwrap();
        assert!(check_link_target(&p, "../java.base/LICENSE").is_ok());
        assert!(check_link_target(&p, "/etc/passwd").is_ok());
        assert!(check_link_target(&p, "").is_err());
        assert!(check_link_target(&p, "a\nb").is_err());
    }
}
