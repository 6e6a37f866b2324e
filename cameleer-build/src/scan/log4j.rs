//! Log4Shell: log4j-core before 2.17.1 with `JndiLookup.class` present.

use crate::manifest::Manifest;

/// The JndiLookup class, at its home path or relocated by shading.
pub(crate) const JNDI_LOOKUP_SUFFIX: &str = "org/apache/logging/log4j/core/lookup/JndiLookup.class";
/// Where Maven puts log4j-core's coordinates.
pub(crate) const POM_PROPERTIES: &str =
    "META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties";

/// True for `…/JndiLookup.class` at its own path or under a relocated
/// package (`com/acme/shaded/org/apache/…`).
pub(crate) fn is_jndi_lookup(name: &str) -> bool {
    name.strip_suffix(JNDI_LOOKUP_SUFFIX)
        .is_some_and(|prefix| prefix.is_empty() || prefix.ends_with('/'))
}

/// The `version` property of a `pom.properties` file.
pub(crate) fn pom_version(text: &[u8]) -> Option<String> {
    String::from_utf8_lossy(text).lines().find_map(|line| {
        let (k, v) = line.split_once(['=', ':'])?;
        (k.trim() == "version")
            .then(|| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    })
}

/// The version a log4j-core JAR's own manifest states.
pub(crate) fn manifest_version(m: &Manifest) -> Option<String> {
    let is_core = m
        .get_trimmed("Bundle-SymbolicName")
        .is_some_and(|s| s.starts_with("org.apache.logging.log4j.core"))
        || m.get_trimmed("Implementation-Title")
            .is_some_and(|t| t.contains("log4j-core") || t == "Apache Log4j Core");
    is_core
        .then(|| {
            m.get_trimmed("Implementation-Version")
                .or(m.get_trimmed("Bundle-Version"))
        })
        .flatten()
        .map(str::to_owned)
}

/// The version in a `log4j-core-<version>.jar` file name.
pub(crate) fn file_name_version(archive_path: &str) -> Option<String> {
    let file = archive_path.rsplit(['/', '!']).next()?;
    let v = file.strip_prefix("log4j-core-")?.strip_suffix(".jar")?;
    v.starts_with(|c: char| c.is_ascii_digit())
        .then(|| v.to_owned())
}

/// Whether a log4j-core version is exposed to CVE-2021-44228 and its
/// follow-ups (45046, 45105, 44832). Fixed: 2.17.1 and later, the 2.12.4+
/// line for Java 7, the 2.3.2+ line for Java 6. `None` when the version
/// cannot be read.
pub(crate) fn is_vulnerable(version: &str) -> Option<bool> {
    let (release, pre) = match version.split_once(['-', '+']) {
        Some((r, suffix)) => (r, !suffix.is_empty()),
        None => (version, false),
    };
    let mut parts = release.split('.').map(|p| p.parse::<u32>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    if major != 2 {
        // 1.x has no JndiLookup; 3.x is after the fix.
        return Some(false);
    }
    // A pre-release (2.17.1-rc1) sorts before its release.
    let at_least = |m: u32, p: u32| (minor, patch) > (m, p) || ((minor, patch) == (m, p) && !pre);
    let fixed =
        at_least(17, 1) || (minor == 12 && at_least(12, 4)) || (minor == 3 && at_least(3, 2));
    Some(!fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_fixed_lines() {
        for v in [
            "2.0-beta9",
            "2.0",
            "2.3.1",
            "2.12.1",
            "2.12.3",
            "2.14.1",
            "2.15.0",
            "2.16.0",
            "2.17.0",
            "2.17.1-rc1",
        ] {
            assert_eq!(is_vulnerable(v), Some(true), "{v}");
        }
        for v in [
            "2.3.2",
            "2.12.4",
            "2.17.1",
            "2.17.2",
            "2.20.0",
            "2.24.3",
            "3.0.0-beta2",
            "1.2.17",
        ] {
            assert_eq!(is_vulnerable(v), Some(false), "{v}");
        }
        assert_eq!(is_vulnerable("banana"), None);
        assert_eq!(is_vulnerable(""), None);
    }

    #[test]
    fn finds_jndi_lookup_shaded_or_not() {
        assert!(is_jndi_lookup(JNDI_LOOKUP_SUFFIX));
        assert!(is_jndi_lookup(&format!(
            "com/acme/shaded/{JNDI_LOOKUP_SUFFIX}"
        )));
        assert!(!is_jndi_lookup(&format!("x{JNDI_LOOKUP_SUFFIX}")));
        assert!(!is_jndi_lookup(
            "org/apache/logging/log4j/core/lookup/JndiLookup$1.class"
        ));
    }

    #[test]
    fn reads_versions() {
        assert_eq!(
            pom_version(b"#c\ngroupId=x\nversion = 2.14.1\n").as_deref(),
            Some("2.14.1")
        );
        assert_eq!(
            file_name_version("BOOT-INF/lib/log4j-core-2.14.1.jar").as_deref(),
            Some("2.14.1")
        );
        assert_eq!(file_name_version("BOOT-INF/lib/log4j-core-api.jar"), None);
    }
}
