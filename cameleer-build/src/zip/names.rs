//! Entry names that are safe to extract and unambiguous to look up.

use crate::ValidationError;

/// Checks a raw entry name and returns it as UTF-8.
///
/// Rejected: names longer than `max_len`; invalid UTF-8 (the JVM decodes JAR
/// names as UTF-8); empty names; NUL and other control characters (C0, DEL,
/// C1); backslashes; absolute paths; drive letters (`C:`); `.`, `..` and
/// empty path components (which alias other names). A trailing `/` marks a
/// directory and is allowed.
///
/// `display` turns a name into its full path (nested archives) for messages.
pub(crate) fn check_name(
    raw: &[u8],
    max_len: usize,
    display: impl Fn(&str) -> String,
) -> Result<&str, ValidationError> {
    let lossy = || display(&String::from_utf8_lossy(raw));
    if raw.len() > max_len {
        return Err(ValidationError::EntryNameTooLong {
            name: lossy().chars().take(200).collect(),
            len: raw.len(),
            limit: max_len,
        });
    }
    let invalid = |reason| ValidationError::InvalidEntryName {
        name: lossy(),
        reason,
    };
    let name = std::str::from_utf8(raw).map_err(|_| invalid("not valid UTF-8"))?;
    if name.is_empty() {
        return Err(invalid("empty name"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("contains a NUL or control character"));
    }
    if name.contains('\\') {
        return Err(invalid("contains a backslash"));
    }
    if name.starts_with('/') {
        return Err(invalid("absolute path"));
    }
    let b = name.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Err(invalid("starts with a drive letter"));
    }
    let body = name.strip_suffix('/').unwrap_or(name);
    for component in body.split('/') {
        match component {
            ".." => return Err(invalid("parent directory component '..'")),
            "." => return Err(invalid("current directory component '.'")),
            "" => return Err(invalid("empty path component")),
            _ => {}
        }
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &[u8]) -> Result<&str, ValidationError> {
        check_name(name, 1024, |n| n.to_owned())
    }

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            "META-INF/",
            "META-INF/MANIFEST.MF",
            "com/acme/Main$1.class",
            "BOOT-INF/lib/a-1.0.jar",
            "é/ü.txt",
            "a..b/c..",
        ] {
            assert_eq!(check(ok.as_bytes()).unwrap(), ok);
        }
    }

    #[test]
    fn rejects_unsafe_names() {
        for (bad, why) in [
            (&b"../evil"[..], "'..'"),
            (b"a/../../evil", "'..'"),
            (b"/etc/passwd", "absolute"),
            (b"a\\b", "backslash"),
            (b"C:/x", "drive"),
            (b"c:x", "drive"),
            (b"a\0b", "control"),
            (b"a\nb", "control"),
            (b"a\x7fb", "control"),
            (b"a\xc2\x85b", "control"),
            (b"\xff\xfe", "UTF-8"),
            (b"", "empty"),
            (b"a//b", "empty path"),
            (b"./a", "'.'"),
        ] {
            let e = check(bad).unwrap_err();
            assert_eq!(e.code(), "invalid_entry_name", "{bad:?}");
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn rejects_long_names() {
        let e = check_name(&[b'a'; 11], 10, |n| n.to_owned()).unwrap_err();
        assert_eq!(e.code(), "entry_name_too_long");
        assert!(check_name(&[b'a'; 10], 10, |n| n.to_owned()).is_ok());
    }
}
