//! The SHA-256 digest type used to address artifacts, contexts and images.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest: 32 bytes, shown as 64 lowercase hex characters.
///
/// It parses from bare hex (`"9f86d0…"`) or the OCI form (`"sha256:9f86d0…"`),
/// case-insensitively, and always displays as bare lowercase hex; use
/// [`Sha256Digest::oci`] for the `sha256:` form.
///
/// # Examples
///
/// ```
/// use cameleer_build::Sha256Digest;
///
/// let d = Sha256Digest::of(b"test");
/// assert_eq!(
///     d.to_string(),
///     "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
/// );
/// assert_eq!(d.oci().parse::<Sha256Digest>().unwrap(), d);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest([u8; 32]);

/// Why a string is not a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid sha256 digest {input:?}: expected 64 hex characters, optionally prefixed by \"sha256:\""
)]
pub struct DigestParseError {
    /// The rejected input, cut to 80 characters.
    pub input: String,
}

impl DigestParseError {
    /// The stable error code: `invalid_digest`.
    pub fn code(&self) -> &'static str {
        "invalid_digest"
    }
}

impl Sha256Digest {
    /// Wraps 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Hashes a byte slice in one go.
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The OCI form: `sha256:<hex>`.
    pub fn oci(&self) -> String {
        format!("sha256:{self}")
    }

    /// The first `n` hex characters (at most 64), for short names and tags.
    pub fn short(&self, n: usize) -> String {
        let mut s = self.to_string();
        s.truncate(n.min(64));
        s
    }
}

impl From<sha2::digest::Output<Sha256>> for Sha256Digest {
    fn from(out: sha2::digest::Output<Sha256>) -> Self {
        Self(out.into())
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        // Cannot fail: the buffer is exactly twice the input length.
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

impl FromStr for Sha256Digest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DigestParseError {
            input: s.chars().take(80).collect(),
        };
        let hex_part = s
            .strip_prefix("sha256:")
            .or_else(|| s.strip_prefix("SHA256:"))
            .unwrap_or(s);
        if hex_part.len() != 64 {
            return Err(err());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| err())?;
        Ok(Self(out))
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_any_case() {
        let d = Sha256Digest::of(b"abc");
        let hex = d.to_string();
        assert_eq!(hex.parse::<Sha256Digest>().unwrap(), d);
        assert_eq!(format!("sha256:{hex}").parse::<Sha256Digest>().unwrap(), d);
        assert_eq!(hex.to_uppercase().parse::<Sha256Digest>().unwrap(), d);
    }

    #[test]
    fn rejects_wrong_length_and_non_hex() {
        for bad in [
            "",
            "abc",
            &"g".repeat(64),
            &"a".repeat(63),
            &"a".repeat(65),
            "sha512:00",
        ] {
            let e = bad.parse::<Sha256Digest>().unwrap_err();
            assert_eq!(e.code(), "invalid_digest");
        }
    }

    #[test]
    fn serde_round_trip_validates() {
        let d = Sha256Digest::of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Sha256Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Sha256Digest>("\"nope\"").is_err());
    }
}
