//! A token server for distribution's `token` auth, on loopback: it checks
//! basic credentials and signs ES256 JWTs with a key whose self-signed
//! certificate (made with `openssl`) the registry trusts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cameleer_registry::testing::TokenAuth;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

pub const ISSUER: &str = "cameleer-test-token-issuer";
pub const SERVICE: &str = "cameleer-test-registry";

struct Inner {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    user: String,
    password: String,
    issued: AtomicU64,
    refused: AtomicU64,
}

/// The token server; stops when dropped.
pub struct TokenServer {
    pub addr: SocketAddr,
    pub cert_pem: PathBuf,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TokenServer {
    /// Starts a server accepting `user:password`, its key and certificate
    /// in `dir`.
    pub async fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        openssl(
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "token.key",
            ],
            dir,
        );
        openssl(
            &[
                "pkcs8",
                "-topk8",
                "-nocrypt",
                "-in",
                "token.key",
                "-outform",
                "DER",
                "-out",
                "token.p8",
            ],
            dir,
        );
        openssl(
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "token.key",
                "-subj",
                "/CN=cameleer test token signer",
                "-days",
                "2",
                "-out",
                "token.pem",
            ],
            dir,
        );
        openssl(
            &[
                "x509",
                "-in",
                "token.pem",
                "-outform",
                "DER",
                "-out",
                "token.der",
            ],
            dir,
        );
        let pkcs8 = std::fs::read(dir.join("token.p8")).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &pkcs8,
            &SystemRandom::new(),
        )
        .unwrap();
        let inner = Arc::new(Inner {
            key,
            cert_der: std::fs::read(dir.join("token.der")).unwrap(),
            user: user.into(),
            password: password.into(),
            issued: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .route("/token", axum::routing::get(token))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TokenServer {
            addr,
            cert_pem: dir.join("token.pem"),
            inner,
            task,
        }
    }

    /// The registry side of it.
    pub fn auth(&self) -> TokenAuth {
        TokenAuth {
            realm: format!("http://{}/token", self.addr),
            service: SERVICE.into(),
            issuer: ISSUER.into(),
            root_cert_bundle: self.cert_pem.clone(),
        }
    }

    /// Tokens issued so far.
    pub fn issued(&self) -> u64 {
        self.inner.issued.load(Ordering::Relaxed)
    }

    /// Requests refused (wrong or no credentials).
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }
}

async fn token(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> impl IntoResponse {
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", inner.user, inner.password))
    );
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if given != expected {
        inner.refused.fetch_add(1, Ordering::Relaxed);
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"details":"incorrect username or password"}"#.to_string(),
        );
    }
    let mut access = Vec::new();
    let mut service = String::new();
    for pair in query.unwrap_or_default().split('&') {
        let Some((k, v)) = pair.split_once('=') else {
            continue;
        };
        let v = url_decode(v);
        match k {
            "scope" => {
                let mut parts = v.splitn(3, ':');
                let (Some(kind), Some(name), Some(actions)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                access.push(serde_json::json!({
                    "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()
                }));
            }
            "service" => service = v,
            _ => {}
        }
    }
    assert_eq!(
        service, SERVICE,
        "the client passes the challenge's service"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let n = inner.issued.fetch_add(1, Ordering::Relaxed);
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "x5c": [STANDARD.encode(&inner.cert_der)]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": inner.user, "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("token-{n}"),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = inner
        .key
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .unwrap();
    let jwt = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    (
        StatusCode::OK,
        serde_json::json!({"token": jwt, "expires_in": 300}).to_string(),
    )
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}
