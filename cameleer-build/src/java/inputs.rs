//! Checking what callers give [`compile_jar`](super::compile_jar), and the
//! manifest text `jar` reads.

use std::collections::BTreeSet;
use std::path::{Component, Path};

use super::JdkError;

pub(super) fn validate_name(name: &str) -> Result<(), JdkError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(JdkError::input(
            "name",
            format!("{name:?} must be 1 to 64 of [A-Za-z0-9._-], not starting with '.'"),
        ))
    }
}

/// Checks source paths (relative, no `..`, `.java`, unique) and sorts them.
pub(super) fn validate_sources<'a>(
    sources: &[(&'a str, &'a str)],
) -> Result<Vec<(&'a str, &'a str)>, JdkError> {
    if sources.is_empty() {
        return Err(JdkError::input(
            "sources",
            "at least one source file is needed",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, (path, _)) in sources.iter().enumerate() {
        let p = Path::new(path);
        let relative =
            !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
        if !relative || !path.ends_with(".java") || path.len() > 255 {
            return Err(JdkError::input(
                format!("sources[{i}].path"),
                format!("{path:?} must be a relative path without '..' ending in .java"),
            ));
        }
        if !seen.insert(*path) {
            return Err(JdkError::input(
                format!("sources[{i}].path"),
                format!("{path:?} is given twice"),
            ));
        }
    }
    let mut sorted = sources.to_vec();
    sorted.sort();
    Ok(sorted)
}

/// The manifest as `jar --manifest` reads it: `Manifest-Version` first, then
/// the entries, each line wrapped at 72 bytes with continuation lines that
/// start with a space (longer lines are rejected by `java.util.jar`).
pub(super) fn manifest_text(entries: &[(&str, &str)]) -> Result<String, JdkError> {
    let mut text = String::from("Manifest-Version: 1.0\n");
    let mut seen = BTreeSet::new();
    for (key, value) in entries {
        let field = format!("manifest.{key}");
        let key_ok = !key.is_empty()
            && key.len() <= 70
            && key.as_bytes()[0].is_ascii_alphanumeric()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        if !key_ok {
            return Err(JdkError::input(
                field,
                "a header name is 1 to 70 of [A-Za-z0-9_-]",
            ));
        }
        if key.eq_ignore_ascii_case("Manifest-Version") || !seen.insert(key.to_ascii_lowercase()) {
            return Err(JdkError::input(
                field,
                "given twice (Manifest-Version is always written)",
            ));
        }
        if value.len() > 4096 || value.contains(['\r', '\n', '\0']) {
            return Err(JdkError::input(
                field,
                "a value is one line of at most 4096 bytes",
            ));
        }
        wrap_manifest_line(&format!("{key}: {value}"), &mut text);
    }
    Ok(text)
}

fn wrap_manifest_line(line: &str, out: &mut String) {
    let mut rest = line;
    let mut limit = 72;
    loop {
        if rest.len() <= limit {
            out.push_str(rest);
            out.push('\n');
            return;
        }
        let mut cut = limit;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push_str("\n ");
        rest = &rest[cut..];
        limit = 71;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_manifest_lines_wrap_at_72_bytes() {
        let value = "é".repeat(100);
        let text = manifest_text(&[("Premain-Class", &value)]).unwrap();
        assert!(text.lines().all(|l| l.len() <= 72), "{text}");
        let joined: String = text
            .lines()
            .skip(1)
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .collect();
        assert_eq!(joined, format!("Premain-Class: {value}"));
    }

    #[test]
    fn bad_inputs_are_typed_errors_naming_the_field() {
        let err = validate_name("../x").unwrap_err();
        assert_eq!(err.code(), "jar_input_invalid");
        let err = validate_sources(&[("../Evil.java", "")]).unwrap_err();
        assert!(err.to_string().contains("sources[0].path"), "{err}");
        let err = validate_sources(&[("a/A.java", ""), ("a/A.java", "")]).unwrap_err();
        assert!(err.to_string().contains("sources[1].path"), "{err}");
        assert!(validate_sources(&[]).is_err());
        assert!(validate_sources(&[("/abs/A.java", "")]).is_err());
        let err = manifest_text(&[("Main Class", "x")]).unwrap_err();
        assert!(err.to_string().contains("manifest.Main Class"), "{err}");
        assert!(manifest_text(&[("Main-Class", "a\nEvil: yes")]).is_err());
        assert!(manifest_text(&[("A", "1"), ("a", "2")]).is_err());
    }
}
