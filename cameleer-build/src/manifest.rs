//! The main section of `META-INF/MANIFEST.MF`, parsed the way the JVM
//! parses it.

/// The main attributes of a JAR manifest.
///
/// Parsing follows `java.util.jar.Manifest`: lines end with CRLF, LF or CR;
/// a line starting with one space continues the previous value (writers
/// wrap at 72 bytes, possibly inside a multi-byte UTF-8 character, so the
/// pieces are joined as bytes before decoding); the main section ends at the
/// first empty line; a last line without a line end is ignored, as the JVM
/// ignores it; a line longer than 511 bytes is an error, as it is for the
/// JVM. Names are matched case-insensitively.
///
/// # Examples
///
/// ```
/// use cameleer_build::Manifest;
///
/// let m = Manifest::parse(
///     b"Manifest-Version: 1.0\r\nMain-Class: com.acme.VeryLongPackageName.Sub\r\n package.Main\r\n\r\n",
/// )
/// .unwrap();
/// assert_eq!(m.get("main-class"), Some("com.acme.VeryLongPackageName.Subpackage.Main"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    attrs: Vec<(String, String)>,
    unterminated_last_line: bool,
}

/// Longest physical manifest line the JVM reads, line end included.
const MAX_LINE: usize = 512;

impl Manifest {
    /// Parses the main section. The error says what is wrong and where.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let mut raw: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut rest = bytes;
        let mut line_no = 0usize;
        let mut unterminated_last_line = false;
        while !rest.is_empty() {
            line_no += 1;
            let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                unterminated_last_line = true;
                break;
            };
            let line = &rest[..end];
            let eol = if rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            rest = &rest[end + eol..];
            if line.len() + eol > MAX_LINE {
                return Err(format!(
                    "line {line_no} is longer than {} bytes",
                    MAX_LINE - 1
                ));
            }
            if line.is_empty() {
                break;
            }
            if let Some(cont) = line.strip_prefix(b" ") {
                let Some((_, value)) = raw.last_mut() else {
                    return Err(format!(
                        "line {line_no} continues a header that does not exist"
                    ));
                };
                value.extend_from_slice(cont);
                continue;
            }
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .filter(|&i| line.get(i + 1) == Some(&b' '))
                .ok_or_else(|| format!("line {line_no} is not a \"Name: value\" header"))?;
            let name = &line[..colon];
            if name.is_empty()
                || name.len() > 70
                || !name
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!("line {line_no} has an invalid header name"));
            }
            raw.push((name.to_vec(), line[colon + 2..].to_vec()));
        }
        let mut attrs = Vec::with_capacity(raw.len());
        for (name, value) in raw {
            // Names are ASCII by the check above.
            let name = String::from_utf8_lossy(&name).into_owned();
            let value = String::from_utf8(value)
                .map_err(|_| format!("the value of {name} is not valid UTF-8"))?;
            if value.contains('\0') {
                return Err(format!("the value of {name} contains NUL"));
            }
            attrs.push((name, value));
        }
        Ok(Self {
            attrs,
            unterminated_last_line,
        })
    }

    /// The value of a main attribute, by case-insensitive name; the first
    /// one wins, as in the JVM.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value, trimmed, when present and not blank.
    pub fn get_trimmed(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// True when the text ended with a line that has no line end (the JVM
    /// ignores such a line; a `Main-Class` there is lost).
    pub fn has_unterminated_last_line(&self) -> bool {
        self.unterminated_last_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_continuations_as_bytes_before_decoding() {
        // "é" is C3 A9; a writer wrapping at 72 bytes may split it.
        let text = b"Implementation-Title: caf\xc3\r\n \xa9\r\nMain-Class: a.B\r\n\r\nName: x\r\nMain-Class: other\r\n";
        let m = Manifest::parse(text).unwrap();
        assert_eq!(m.get("Implementation-Title"), Some("café"));
        assert_eq!(
            m.get("MAIN-CLASS"),
            Some("a.B"),
            "per-entry sections are not main attributes"
        );
    }

    #[test]
    fn accepts_lf_and_cr_line_ends() {
        for text in [
            &b"Main-Class: a.B\n\n"[..],
            b"Main-Class: a.B\r\r",
            b"Main-Class: a.B\n",
        ] {
            assert_eq!(
                Manifest::parse(text).unwrap().get("Main-Class"),
                Some("a.B")
            );
        }
    }

    #[test]
    fn ignores_an_unterminated_last_line_like_the_jvm() {
        let m = Manifest::parse(b"Manifest-Version: 1.0\nMain-Class: a.B").unwrap();
        assert_eq!(m.get("Main-Class"), None);
        assert!(m.has_unterminated_last_line());
    }

    #[test]
    fn rejects_what_the_jvm_rejects() {
        for (text, why) in [
            (&b"Main-Class a.B\n"[..], "not a \"Name: value\""),
            (b"Main-Class:a.B\n", "not a \"Name: value\""),
            (b" continued\n", "does not exist"),
            (b"Bad Name: x\n", "invalid header name"),
            (b"X: \xff\n", "not valid UTF-8"),
        ] {
            let e = Manifest::parse(text).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
        let long = format!("X: {}\n", "a".repeat(600));
        assert!(
            Manifest::parse(long.as_bytes())
                .unwrap_err()
                .contains("longer than")
        );
    }
}
