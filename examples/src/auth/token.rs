//! Tenant tokens: `cmr_<id>_<secret>`, made from the system's random
//! source.

use cameleer_runtime::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Hex digits of a token's id.
const ID_HEX: usize = 16;
/// Hex digits of a token's secret (256 bits).
const SECRET_HEX: usize = 64;
/// What every tenant token starts with (so scanners can spot leaked ones).
const PREFIX: &str = "cmr_";

/// A tenant token's id: 16 lowercase hex digits, the `<id>` of
/// `cmr_<id>_<secret>`. Not a secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenId(String);

impl TokenId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TokenId {
    type Error = Error;

    fn try_from(value: String) -> Result<Self> {
        value.parse()
    }
}

impl From<TokenId> for String {
    fn from(id: TokenId) -> Self {
        id.0
    }
}

impl std::str::FromStr for TokenId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if is_lower_hex(s, ID_HEX) {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::InvalidId {
                kind: "token id",
                value: s.chars().take(64).collect(),
                reason: format!("a token id is {ID_HEX} lowercase hex digits"),
            })
        }
    }
}

impl std::fmt::Display for TokenId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A whole token, secret included: shown once, when made. Its `Debug`
/// hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(String);

impl TokenSecret {
    /// The token, to hand to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSecret(…)")
    }
}

/// A freshly made token, before it is stored.
pub struct NewToken {
    /// Its id.
    pub id: TokenId,
    secret: String,
}

impl NewToken {
    /// A token of random id and secret, from the system's random source.
    pub fn generate() -> Result<Self> {
        Ok(Self {
            id: TokenId(random_hex(ID_HEX / 2)?),
            secret: random_hex(SECRET_HEX / 2)?,
        })
    }

    /// SHA-256 of the secret: what is stored.
    pub fn secret_sha256(&self) -> [u8; 32] {
        sha256(self.secret.as_bytes())
    }

    /// The whole token, `cmr_<id>_<secret>`.
    pub fn into_secret(self) -> TokenSecret {
        TokenSecret(format!("{PREFIX}{}_{}", self.id, self.secret))
    }
}

/// `n` random bytes as hex.
pub(crate) fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| Error::Storage {
        message: format!("the system's random source failed: {e}"),
        source: None,
    })?;
    Ok(hex::encode(bytes))
}

/// The id and secret of a well-formed tenant token.
pub(crate) fn parse(token: &str) -> Option<(TokenId, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (is_lower_hex(id, ID_HEX) && is_lower_hex(secret, SECRET_HEX))
        .then(|| (TokenId(id.to_owned()), secret))
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
