//! Authentication and tenancy through the HTTP API: every route walked
//! with no token, a wrong one, another tenant's, the right tenant's and the
//! admin's; tokens made, listed and revoked.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cameleer_build::testing::jars;
use cameleer_examples::api::logs::LogsApi;
use cameleer_examples::storage::{FsArtifactStore, SqliteDeploymentStore, SqliteQuotaStore};
use cameleer_runtime::logs::{ForwarderOptions, LogForwarder, MemoryLogStore};
use cameleer_runtime::testkit::{FakeImageBuilder, FakeOrchestrator};
use cameleer_runtime::{Platform, PlatformOptions, Sha256Digest};
use serde_json::{Value, json};
use support::api::Reply;

const ENV: &str = "/api/v1/tenants/acme/apps/orders/envs/dev";

struct World {
    router: Router,
    platform: Platform,
    admin: String,
    acme: String,
    other: String,
    /// A token of acme's that the walk revokes.
    doomed: String,
    jar: Vec<u8>,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite");
    let platform = Platform::builder()
        .orchestrator(Arc::new(FakeOrchestrator::new()))
        .image_builder(Arc::new(FakeImageBuilder::new()))
        .deployment_store(Arc::new(SqliteDeploymentStore::open(&db).unwrap()))
        .artifact_store(Arc::new(
            FsArtifactStore::open(dir.path().join("artifacts"), 1 << 30)
                .await
                .unwrap(),
        ))
        .quota_store(Arc::new(SqliteQuotaStore::open(&db).unwrap()))
        .options(PlatformOptions::default())
        .build();
    let store = Arc::new(MemoryLogStore::new());
    let forwarder = LogForwarder::start(&platform, store.clone(), ForwarderOptions::default());
    platform.start().await.unwrap();
    let authed = support::api::authed(platform.clone());
    let (_, acme) = authed
        .auth
        .create_token("acme".parse().unwrap(), Some("ci".into()))
        .await
        .unwrap();
    let (_, other) = authed
        .auth
        .create_token("other".parse().unwrap(), None)
        .await
        .unwrap();
    let (doomed, _) = authed
        .auth
        .create_token("acme".parse().unwrap(), Some("doomed".into()))
        .await
        .unwrap();
    World {
        router: authed
            .bare
            .layer(axum::Extension(LogsApi { store, forwarder })),
        platform,
        admin: authed.admin,
        acme: acme.expose().to_owned(),
        other: other.expose().to_owned(),
        doomed: doomed.id.to_string(),
        jar: jars::plain_jar("com.acme.Main"),
        _dir: dir,
    }
}

impl World {
    /// Sends a request; streams (events, followed logs) are not read.
    async fn send(&self, token: Option<&str>, method: &Method, uri: &str, body: Vec<u8>) -> Reply {
        let mut req = Request::builder().method(method.clone()).uri(uri);
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        support::api::send(&self.router, req.body(Body::from(body)).unwrap()).await
    }

    async fn history_len(&self) -> usize {
        let reply = self
            .send(
                Some(&self.admin),
                &Method::GET,
                &format!("{ENV}/deployments"),
                vec![],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.body.as_array().unwrap().len()
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

/// Who a route is for: a tenant's own, or the admin's alone.
#[derive(Clone, Copy, PartialEq, Debug)]
enum For {
    AnyToken,
    Tenant,
    Admin,
}

/// Every route of the API but the public ones, as the acme tenant calls it,
/// with a body that makes it succeed (`doomed`: a token id to revoke, last).
fn routes(jar: &[u8], doomed: &str) -> Vec<(Method, String, Vec<u8>, For)> {
    let sha = Sha256Digest::of(jar).to_string();
    let t = "/api/v1/tenants/acme";
    let j = |v: Value| v.to_string().into_bytes();
    vec![
        (
            Method::PUT,
            format!("{ENV}/artifacts"),
            jar.to_vec(),
            For::Tenant,
        ),
        (
            Method::POST,
            format!("{ENV}/deployments"),
            j(json!({"artifact": sha, "config": {}})),
            For::Tenant,
        ),
        (
            Method::GET,
            format!("{ENV}/deployments"),
            vec![],
            For::Tenant,
        ),
        (Method::GET, ENV.to_owned(), vec![], For::Tenant),
        (Method::GET, format!("{ENV}/logs"), vec![], For::Tenant),
        (
            Method::GET,
            format!("{ENV}/logs/search?q=x"),
            vec![],
            For::Tenant,
        ),
        (Method::GET, format!("{ENV}/events"), vec![], For::Tenant),
        (Method::POST, format!("{ENV}/restart"), vec![], For::Tenant),
        (
            Method::POST,
            format!("{ENV}/rollback"),
            j(json!({"version": 1})),
            For::Tenant,
        ),
        (
            Method::POST,
            format!("{t}/apps/orders/promote"),
            j(json!({"from": "dev", "to": "staging"})),
            For::Tenant,
        ),
        (Method::POST, format!("{ENV}/stop"), vec![], For::Tenant),
        (Method::GET, format!("{t}/apps"), vec![], For::Tenant),
        (Method::GET, format!("{t}/events"), vec![], For::Tenant),
        (Method::GET, format!("{t}/quota"), vec![], For::Tenant),
        (
            Method::PUT,
            format!("{t}/quota"),
            j(json!({"apps": 100})),
            For::Admin,
        ),
        (
            Method::POST,
            format!("{t}/tokens"),
            j(json!({"name": "walk"})),
            For::Admin,
        ),
        (Method::GET, format!("{t}/tokens"), vec![], For::Admin),
        (
            Method::GET,
            "/api/v1/admin/retention?dry_run=true".into(),
            vec![],
            For::Admin,
        ),
        (
            Method::POST,
            "/api/v1/admin/retention/sweep".into(),
            vec![],
            For::Admin,
        ),
        (
            Method::GET,
            "/api/v1/log-forwarder".into(),
            vec![],
            For::Admin,
        ),
        (
            Method::GET,
            "/api/v1/openapi.json".into(),
            vec![],
            For::AnyToken,
        ),
        (
            Method::DELETE,
            format!("{t}/tokens/{doomed}"),
            vec![],
            For::Admin,
        ),
    ]
}

/// The route pattern of `uri`, as the OpenAPI document names it.
fn template(uri: &str) -> String {
    let path = uri.split('?').next().unwrap();
    let mut out = Vec::new();
    let mut before = "";
    for seg in path.split('/') {
        out.push(match before {
            "tenants" => "{tenant}",
            "apps" => "{app}",
            "envs" => "{env}",
            "tokens" => "{id}",
            _ => seg,
        });
        before = seg;
    }
    out.join("/")
}

#[tokio::test]
async fn the_walk_covers_every_secured_operation_of_the_document() {
    let w = world().await;
    let doc = w
        .send(Some(&w.other), &Method::GET, "/api/v1/openapi.json", vec![])
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op
                .get("security")
                .is_some_and(|s| !s.as_array().unwrap().is_empty())
            {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(documented.len() >= 20, "{documented:?}");
    let walked: std::collections::BTreeSet<_> = routes(&w.jar, &w.doomed)
        .iter()
        .map(|(m, uri, _, _)| (m.to_string(), template(uri)))
        .collect();
    assert_eq!(walked, documented);
}

#[tokio::test]
async fn every_route_lets_in_only_its_tenant_and_the_admin() {
    let w = world().await;
    let routes = routes(&w.jar, &w.doomed);
    assert!(routes.len() >= 20);
    let wrong = format!("cmr_{}_{}", "0".repeat(16), "0".repeat(64));

    // Something to act on: a running version 1.
    for (method, uri, body, _) in &routes[..2] {
        let reply = w.send(Some(&w.admin), method, uri, body.clone()).await;
        assert!(reply.status.is_success(), "{method} {uri}: {}", reply.body);
    }
    let before = w.history_len().await;

    // Refused, and nothing done.
    for (method, uri, body, who) in &routes {
        for token in [None, Some(wrong.as_str()), Some("not a token at all")] {
            let reply = w.send(token, method, uri, body.clone()).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} {token:?}"
            );
            assert_eq!(code(&reply.body), "unauthorized", "{method} {uri}");
            assert!(
                reply
                    .header(header::WWW_AUTHENTICATE)
                    .unwrap()
                    .starts_with("Bearer")
            );
        }
        // Another tenant: acme's routes do not exist for it; the
        // platform-wide admin routes are forbidden; the document is open.
        let reply = w.send(Some(&w.other), method, uri, body.clone()).await;
        let platform_wide = !uri.starts_with("/api/v1/tenants/acme");
        if *who == For::AnyToken {
            assert_eq!(reply.status, StatusCode::OK, "{method} {uri}");
        } else if platform_wide {
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {uri}");
            assert_eq!(code(&reply.body), "admin_only");
        } else {
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {uri}");
            assert_eq!(code(&reply.body), "not_found");
        }
        // The tenant itself, on the admin's routes.
        if *who == For::Admin {
            let reply = w.send(Some(&w.acme), method, uri, body.clone()).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {uri}");
            assert_eq!(code(&reply.body), "admin_only");
        }
    }
    assert_eq!(w.history_len().await, before, "a refused request acted");

    // Let in: the tenant on its routes, the admin on all.
    for token in [&w.acme, &w.admin] {
        for (method, uri, body, who) in &routes {
            if *who == For::Admin && token == &w.acme {
                continue;
            }
            let reply = w.send(Some(token), method, uri, body.clone()).await;
            assert!(
                reply.status.is_success(),
                "{method} {uri} as {}: {} {}",
                if token == &w.admin { "admin" } else { "acme" },
                reply.status,
                reply.body
            );
            // Let each deployment settle before the next acts on it.
            if let Some(id) = reply.body["id"].as_str().and_then(|s| s.parse().ok()) {
                w.platform
                    .wait_settled(&id, Duration::from_secs(30))
                    .await
                    .unwrap();
            }
        }
    }
}

#[tokio::test]
async fn tokens_are_made_once_listed_without_secrets_and_revoked_at_once() {
    let w = world().await;
    let tokens = "/api/v1/tenants/acme/tokens";
    let made = w
        .send(
            Some(&w.admin),
            &Method::POST,
            tokens,
            json!({"name": "deploy-bot"}).to_string().into_bytes(),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let token = made.body["token"].as_str().unwrap().to_owned();
    let id = made.body["id"].as_str().unwrap().to_owned();
    assert_eq!(made.body["tenant"], "acme");
    assert_eq!(made.body["name"], "deploy-bot");

    // It works.
    let apps = "/api/v1/tenants/acme/apps";
    let reply = w.send(Some(&token), &Method::GET, apps, vec![]).await;
    assert_eq!(reply.status, StatusCode::OK);

    // Listed without a secret: the made one and the world's `ci` and
    // `doomed` ones.
    let listed = w.send(Some(&w.admin), &Method::GET, tokens, vec![]).await;
    let items = listed.body["tokens"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{}", listed.body);
    assert!(items.iter().any(|t| t["id"] == id.as_str()));
    let text = listed.body.to_string();
    assert!(
        !text.contains(&token[token.len() - 64..]),
        "a secret was listed"
    );
    assert!(items.iter().all(|t| t.get("token").is_none()));

    // Revoked: refused at once; a second revoke, or another tenant's, is 404.
    let other_tenants = format!("/api/v1/tenants/other/tokens/{id}");
    let reply = w
        .send(Some(&w.admin), &Method::DELETE, &other_tenants, vec![])
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(code(&reply.body), "token_not_found");
    let revoke = format!("{tokens}/{id}");
    let reply = w
        .send(Some(&w.admin), &Method::DELETE, &revoke, vec![])
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = w.send(Some(&token), &Method::GET, apps, vec![]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = w
        .send(Some(&w.admin), &Method::DELETE, &revoke, vec![])
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_token_requests_are_4xx_with_stable_codes() {
    let w = world().await;
    let cases = [
        (
            Method::POST,
            "/api/v1/tenants/acme/tokens",
            json!({"name": "x".repeat(101)}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_token_name",
        ),
        (
            Method::POST,
            "/api/v1/tenants/acme/tokens",
            json!({"nam": "typo"}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            Method::POST,
            "/api/v1/tenants/Bad_Tenant/tokens",
            String::new(),
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            Method::DELETE,
            "/api/v1/tenants/acme/tokens/..%2F..%2Fetc",
            String::new(),
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
    ];
    for (method, uri, body, status, want) in cases {
        let reply = w
            .send(Some(&w.admin), &method, uri, body.into_bytes())
            .await;
        assert_eq!(reply.status, status, "{method} {uri}: {}", reply.body);
        assert_eq!(code(&reply.body), want, "{method} {uri}");
    }
}

#[tokio::test]
async fn a_percent_encoded_tenant_is_the_same_tenant() {
    let w = world().await;
    // `%61cme` is `acme` to the handler, so it is to the check too: the
    // tenant's token opens it, another's does not.
    let uri = "/api/v1/tenants/%61cme/apps";
    let reply = w.send(Some(&w.acme), &Method::GET, uri, vec![]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = w.send(Some(&w.other), &Method::GET, uri, vec![]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn healthz_needs_no_token() {
    let w = world().await;
    let reply = w.send(None, &Method::GET, "/healthz", vec![]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["ok"], true);
}

#[tokio::test]
async fn token_lifetimes_are_bounded_and_a_tenant_holds_at_most_100() {
    let w = world().await;
    let tokens = "/api/v1/tenants/acme/tokens";
    let post = |body: Value| {
        w.send(
            Some(&w.admin),
            &Method::POST,
            tokens,
            body.to_string().into_bytes(),
        )
    };
    for bad in [
        json!({"expires_in_secs": 59}),
        json!({"expires_in_secs": 400_000_000u64}),
    ] {
        let reply = post(bad.clone()).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(code(&reply.body), "invalid_token_expiry");
    }
    let made = post(json!({"name": "day", "expires_in_secs": 86_400})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert!(made.body["expires_at"].is_string(), "{}", made.body);

    // The world made two of acme's; fill up to the limit, then one more.
    let held = w.send(Some(&w.admin), &Method::GET, tokens, vec![]).await;
    let held = held.body["tokens"].as_array().unwrap().len();
    assert_eq!(held, 3);
    for _ in held..100 {
        assert_eq!(post(json!({})).await.status, StatusCode::CREATED);
    }
    let reply = post(json!({})).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert_eq!(code(&reply.body), "token_limit_reached");
    // Another tenant is not held back by acme's.
    let other = w
        .send(
            Some(&w.admin),
            &Method::POST,
            "/api/v1/tenants/other/tokens",
            vec![],
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
}
