//! Registry authentication: the `WWW-Authenticate` challenge, basic auth,
//! and bearer tokens from the registry's token server, cached by scope.
//!
//! A registry says how it wants to be spoken to when `GET /v2/` answers
//! 401: `Basic realm="…"` (htpasswd) or `Bearer realm="…",service="…"`
//! (a token server: Docker Hub, GitLab, Harbor, distribution's `token`
//! auth). For `Bearer` we ask the realm for a token that covers the
//! scopes of the whole push (`repository:<repo>:pull,push` and `pull` on
//! the repository layers are mounted from), sending the credentials as
//! basic auth, and cache it until shortly before it expires.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Deserialize;

/// How the registry wants to be authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// HTTP basic auth.
    Basic,
    /// A bearer token from `realm`.
    Bearer {
        /// The token server's URL.
        realm: String,
        /// The `service` parameter, when given.
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header: `Basic realm="x"` or
/// `Bearer realm="https://auth",service="registry",scope="…"`.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let params = parse_params(rest);
            let realm = params.get("realm")?.clone();
            Some(Challenge::Bearer {
                realm,
                service: params.get("service").cloned(),
            })
        }
        _ => None,
    }
}

/// `key=value` or `key="quoted, \"value\""` pairs, comma separated.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
}

/// The scopes a token must cover, sorted: `repository:<name>:<actions>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct Scopes(Vec<String>);

impl Scopes {
    /// `pull,push` on `repo`, and `pull` on each of `pull_from`.
    pub(crate) fn push(repo: &str, pull_from: &[&str]) -> Self {
        let mut v = vec![format!("repository:{repo}:pull,push")];
        for from in pull_from {
            if *from != repo {
                v.push(format!("repository:{from}:pull"));
            }
        }
        v.sort();
        v.dedup();
        Self(v)
    }

    /// `pull` on `repo`.
    pub(crate) fn pull(repo: &str) -> Self {
        Self(vec![format!("repository:{repo}:pull")])
    }

    /// No scope: `GET /v2/`.
    pub(crate) fn none() -> Self {
        Self(Vec::new())
    }

    pub(crate) fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// A bearer token and when to stop using it.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) value: String,
    pub(crate) renew_at: Instant,
}

/// The token server's answer (`token` per the Docker spec, `access_token`
/// per OAuth 2).
#[derive(Debug, Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token, valid until 30 s before it expires (60 s when the server
    /// does not say, as the spec defaults).
    pub(crate) fn into_token(self) -> Option<Token> {
        let value = self.token.or(self.access_token).filter(|t| !t.is_empty())?;
        let lifetime = Duration::from_secs(self.expires_in.unwrap_or(60).max(1));
        let margin = Duration::from_secs(30).min(lifetime / 2);
        Some(Token {
            value,
            renew_at: Instant::now() + lifetime - margin,
        })
    }
}

/// The token request URL: the realm with `service` and one `scope` per
/// scope.
pub(crate) fn token_url(
    realm: &str,
    service: Option<&str>,
    scopes: &Scopes,
    account: Option<&str>,
) -> Result<Url, url::ParseError> {
    let mut url = Url::parse(realm)?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(s) = service {
            q.append_pair("service", s);
        }
        for scope in scopes.as_slice() {
            q.append_pair("scope", scope);
        }
        if let Some(a) = account {
            q.append_pair("account", a);
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(r#"Basic realm="basic-realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example.com/token?x=1,2",service="registry.example.com",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token?x=1,2".into(),
                service: Some("registry.example.com".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"bearer realm=http://127.0.0.1:1/t"#),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: None
            })
        );
        assert_eq!(parse_challenge("Bearer service=\"x\""), None, "no realm");
        assert_eq!(parse_challenge("Negotiate abc"), None);
        let p = parse_params(r#"a="x \"q\" y", b=2,c"#);
        assert_eq!(p["a"], "x \"q\" y");
        assert_eq!(p["b"], "2");
        assert_eq!(p["c"], "");
    }

    #[test]
    fn scopes_cover_the_push_and_the_mount_sources() {
        let s = Scopes::push(
            "cameleer/acme/orders",
            &["cameleer/base", "cameleer/acme/orders"],
        );
        assert_eq!(
            s.as_slice(),
            [
                "repository:cameleer/acme/orders:pull,push",
                "repository:cameleer/base:pull"
            ]
        );
        let url = token_url("https://auth/token", Some("reg"), &s, Some("ci")).unwrap();
        assert_eq!(
            url.as_str(),
            "https://auth/token?service=reg&scope=repository%3Acameleer%2Facme%2Forders%3Apull%2Cpush&scope=repository%3Acameleer%2Fbase%3Apull&account=ci"
        );
    }

    #[test]
    fn tokens_expire_early() {
        let r: TokenResponse =
            serde_json::from_str(r#"{"access_token":"t","expires_in":300}"#).unwrap();
        let t = r.into_token().unwrap();
        assert_eq!(t.value, "t");
        assert!(t.renew_at > Instant::now() + Duration::from_secs(260));
        let r: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert!(r.into_token().is_none());
    }
}
