//! The OpenAPI document against the router it describes: every route the
//! router has is in the document with exactly its methods, every secured
//! operation says what the authentication middleware answers, and every
//! error the router itself makes (unknown route, wrong method, over-long
//! body, bad path or query) is the error envelope.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cameleer_examples::api::MAX_JSON_BODY;
use cameleer_examples::api::openapi::{PUBLIC_PATHS, SECURITY_SCHEME};
use cameleer_examples::auth::{Access, access_of};
use cameleer_runtime::memory::{MemoryArtifactStore, MemoryDeploymentStore};
use cameleer_runtime::testkit::{FakeImageBuilder, FakeOrchestrator};
use cameleer_runtime::{Platform, PlatformOptions};
use serde_json::Value;
use support::api::Authed;

/// The dashboard's static files: routes of the router, not of the API.
const NOT_API: &[&str] = &["/", "/ui/{file}"];

const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
];

async fn authed() -> Authed {
    let platform = Platform::builder()
        .orchestrator(Arc::new(FakeOrchestrator::new()))
        .image_builder(Arc::new(FakeImageBuilder::new()))
        .deployment_store(Arc::new(MemoryDeploymentStore::new()))
        .artifact_store(Arc::new(MemoryArtifactStore::new()))
        .options(PlatformOptions::default())
        .build();
    platform.start().await.unwrap();
    support::api::authed(platform)
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Option<String>, Value) {
    let reply = support::api::send(router, request).await;
    let content_type = reply.header(header::CONTENT_TYPE);
    (reply.status, content_type, reply.body)
}

fn request(method: Method, uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(body.into())
        .unwrap()
}

/// The route patterns the router holds, read from its `Debug` form (axum
/// has no other way to list them): `RouteId(n): "/path"`.
fn router_paths(router: &Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    let mut paths = BTreeSet::new();
    let mut rest = debug.as_str();
    while let Some(at) = rest.find("RouteId(") {
        rest = &rest[at..];
        let Some(quote) = rest.find(": \"") else {
            break;
        };
        let after = &rest[quote + 3..];
        let end = after.find('"').unwrap();
        let candidate = &after[..end];
        let is_id_entry = rest[..quote].ends_with(')') && !rest[..quote].contains(' ');
        // The fallback's own catch-all is axum's, not a route.
        if is_id_entry && candidate.starts_with('/') && !candidate.contains("__private__axum") {
            paths.insert(candidate.to_owned());
        }
        rest = &rest["RouteId(".len()..];
    }
    paths
}

/// A concrete path for a pattern.
fn concrete(pattern: &str) -> String {
    pattern
        .replace("{tenant}", "acme")
        .replace("{app}", "orders")
        .replace("{env}", "dev")
        .replace("{id}", "0123456789abcdef")
        .replace("{file}", "index.html")
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if METHODS
                .iter()
                .any(|m| m.as_str().eq_ignore_ascii_case(method))
            {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

async fn document(router: &Router) -> Value {
    let (status, content_type, doc) = send(
        router,
        request(Method::GET, "/api/v1/openapi.json", Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(content_type.as_deref(), Some("application/json"));
    doc
}

#[tokio::test]
async fn the_document_needs_a_token_and_a_tenants_reads_it() {
    let api = authed().await;
    let (status, _, body) = send(
        &api.bare,
        request(Method::GET, "/api/v1/openapi.json", Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (_, tenant) = api
        .auth
        .create_token("acme".parse().unwrap(), None)
        .await
        .unwrap();
    let mut req = request(Method::GET, "/api/v1/openapi.json", Body::empty());
    req.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {}", tenant.expose()).parse().unwrap(),
    );
    let (status, _, doc) = send(&api.bare, req).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert_eq!(
        doc["components"]["securitySchemes"][SECURITY_SCHEME]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn every_route_of_the_router_is_documented_with_exactly_its_methods() {
    let api = authed().await;
    let doc = document(&api.router).await;
    let paths = router_paths(&api.bare);
    assert!(paths.len() > 20, "routes read from the router: {paths:?}");
    let mut routed = BTreeSet::new();
    for path in paths.iter().filter(|p| !NOT_API.contains(&p.as_str())) {
        for method in METHODS {
            // With the admin token: past authentication, to the route.
            let (status, _, _) = send(
                &api.router,
                request(method.clone(), &concrete(path), Body::empty()),
            )
            .await;
            if status != StatusCode::METHOD_NOT_ALLOWED {
                routed.insert((method.as_str().to_owned(), path.clone()));
            }
        }
    }
    assert_eq!(routed, documented(&doc));
}

#[tokio::test]
async fn every_secured_operation_documents_what_authentication_answers() {
    let api = authed().await;
    let doc = document(&api.router).await;
    let ops = documented(&doc);
    assert!(ops.len() > 20, "{ops:?}");
    for (method, path) in ops {
        let op = &doc["paths"][&path][method.to_lowercase()];
        let responses = &op["responses"];
        if PUBLIC_PATHS.contains(&path.as_str()) {
            assert!(op.get("security").is_none(), "{method} {path}");
            continue;
        }
        assert_eq!(
            op["security"],
            serde_json::json!([{ SECURITY_SCHEME: [] }]),
            "{method} {path}"
        );
        assert!(responses.get("401").is_some(), "{method} {path}");
        let method: Method = method.parse().unwrap();
        match access_of(&method, &path) {
            Access::AnyToken => {}
            Access::Tenant => assert!(responses.get("404").is_some(), "{method} {path}"),
            Access::Admin => assert!(responses.get("403").is_some(), "{method} {path}"),
        }
    }
}

#[tokio::test]
async fn every_documented_error_is_the_envelope() {
    let api = authed().await;
    let doc = document(&api.router).await;
    let mut errors = 0;
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    errors += 1;
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error",
                        "{status}: {response}"
                    );
                }
            }
        }
    }
    assert!(errors > 40, "{errors}");
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        let description = schema["description"].as_str().unwrap_or("");
        assert!(!description.contains("```"), "{name}: {description}");
    }
    let envelope = &doc["components"]["schemas"]["Error"];
    assert_eq!(
        envelope["required"],
        serde_json::json!(["error"]),
        "{envelope}"
    );
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn an_unknown_route_is_404_not_found_in_the_envelope() {
    let api = authed().await;
    for uri in ["/nope", "/api/v1/tenants/acme/apps/orders/nope", "/api/v2"] {
        let (status, content_type, body) =
            send(&api.bare, request(Method::GET, uri, Body::empty())).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(content_type.as_deref(), Some("application/json"), "{uri}");
        assert_eq!(code(&body), "not_found", "{uri}: {body}");
    }
}

#[tokio::test]
async fn a_wrong_method_is_405_method_not_allowed_in_the_envelope() {
    let api = authed().await;
    for (method, uri) in [
        (Method::DELETE, "/healthz"),
        (Method::POST, "/api/v1/openapi.json"),
        (Method::PATCH, "/api/v1/tenants/acme/apps"),
        (
            Method::GET,
            "/api/v1/tenants/acme/apps/orders/envs/dev/stop",
        ),
    ] {
        let (status, _, body) =
            send(&api.router, request(method.clone(), uri, Body::empty())).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert_eq!(code(&body), "method_not_allowed", "{method} {uri}: {body}");
    }
}

#[tokio::test]
async fn an_over_long_json_body_is_413_body_too_large_in_the_envelope() {
    let api = authed().await;
    let big = vec![b' '; MAX_JSON_BODY + 1];
    for uri in [
        "/api/v1/tenants/acme/apps/orders/envs/dev/deployments",
        "/api/v1/tenants/acme/apps/orders/promote",
        "/api/v1/tenants/acme/quota",
    ] {
        let method = if uri.ends_with("quota") {
            Method::PUT
        } else {
            Method::POST
        };
        let (status, _, body) = send(&api.router, request(method, uri, big.clone())).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{uri}");
        assert_eq!(code(&body), "body_too_large", "{uri}: {body}");
    }
}

#[tokio::test]
async fn a_query_that_does_not_parse_is_400_invalid_query_in_the_envelope() {
    let api = authed().await;
    for uri in [
        "/api/v1/tenants/acme/apps/orders/envs/dev/logs?since=a&since=b",
        "/api/v1/admin/retention?dry_run=true&dry_run=true",
    ] {
        let (status, _, body) = send(&api.router, request(Method::GET, uri, Body::empty())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(code(&body), "invalid_query", "{uri}: {body}");
    }
}

#[tokio::test]
async fn a_path_that_does_not_decode_is_400_invalid_path_in_the_envelope() {
    let api = authed().await;
    let (status, _, body) = send(
        &api.router,
        request(Method::GET, "/api/v1/tenants/%FF/apps", Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&body), "invalid_path", "{body}");
}

// What schemathesis found (examples/scripts/schemathesis.sh with
// CHECKS=all): requests the document allowed and the server refused, or
// the other way round. Each now agrees.

#[tokio::test]
async fn a_null_body_is_a_left_out_body_as_the_document_says() {
    let api = authed().await;
    let doc = document(&api.router).await;
    for (path, method) in [
        ("/api/v1/tenants/{tenant}/tokens", "post"),
        (
            "/api/v1/tenants/{tenant}/apps/{app}/envs/{env}/rollback",
            "post",
        ),
        ("/api/v1/tenants/{tenant}/quota", "put"),
    ] {
        let body = &doc["paths"][path][method]["requestBody"];
        assert_ne!(body["required"], true, "{method} {path}: {body}");
    }
    // Found: `null` was 422 `invalid_request`.
    let (status, _, body) = send(
        &api.router,
        request(Method::POST, "/api/v1/tenants/acme/tokens", "null"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _, body) = send(
        &api.router,
        request(
            Method::POST,
            "/api/v1/tenants/acme/apps/orders/envs/dev/rollback",
            "null",
        ),
    )
    .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    // Found: a PUT of the quota without a body was 200 while the document
    // said the body was required.
    let (status, _, body) = send(
        &api.router,
        request(Method::PUT, "/api/v1/tenants/acme/quota", Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn the_documented_query_values_are_the_ones_accepted() {
    let api = authed().await;
    let doc = document(&api.router).await;
    let param = |path: &str, name: &str| -> Value {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["schema"]
            .clone()
    };
    // Found: `dry_run=false` was documented (a boolean) and is refused.
    let dry_run = param("/api/v1/admin/retention", "dry_run");
    assert_eq!(
        dry_run["enum"],
        serde_json::json!(["true", "1"]),
        "{dry_run}"
    );
    let (status, _, _) = send(
        &api.router,
        request(
            Method::GET,
            "/api/v1/admin/retention?dry_run=false",
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Found: `limit=0` was documented and is refused.
    let limit = param(
        "/api/v1/tenants/{tenant}/apps/{app}/envs/{env}/logs/search",
        "limit",
    );
    assert_eq!(
        (limit["minimum"].as_u64(), limit["maximum"].as_u64()),
        (Some(1), Some(10_000))
    );
    // Found: a token name with control characters was documented and is
    // refused.
    let name = &doc["components"]["schemas"]["CreateToken"]["properties"]["name"];
    assert_eq!(name["maxLength"], 100, "{name}");
    assert!(name["pattern"].as_str().unwrap().contains("x1F"), "{name}");
}
