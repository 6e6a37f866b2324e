//! The embedded assets: served right, complete, and free of what the CSP
//! or safe DOM handling forbids.

use std::collections::BTreeSet;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use super::*;

fn text(name: &str) -> &'static str {
    std::str::from_utf8(asset(name).unwrap().bytes).unwrap()
}

fn scripts() -> impl Iterator<Item = &'static Asset> {
    ASSETS.iter().filter(|a| a.name.ends_with(".js"))
}

/// Every quoted string that follows `prefix` up to the next `"`.
fn quoted_after<'a>(haystack: &'a str, prefix: &str) -> Vec<&'a str> {
    haystack
        .match_indices(prefix)
        .filter_map(|(i, _)| {
            let rest = &haystack[i + prefix.len()..];
            rest.split_once('"').map(|(s, _)| s)
        })
        .collect()
}

async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = router::<()>()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, headers, body.to_vec())
}

#[tokio::test]
async fn every_asset_is_served_with_its_type_and_the_csp() {
    assert!(ASSETS.len() >= 4);
    for a in ASSETS {
        let (status, headers, body) = get(&format!("/ui/{}", a.name)).await;
        assert_eq!(status, StatusCode::OK, "{}", a.name);
        assert_eq!(headers[header::CONTENT_TYPE], a.content_type, "{}", a.name);
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(body, a.bytes, "{}", a.name);
    }
    let (status, headers, body) = get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(body, asset("index.html").unwrap().bytes);
}

#[tokio::test]
async fn an_unknown_file_is_404_with_the_error_envelope() {
    for path in ["/ui/nope.js", "/ui/..%2FCargo.toml", "/ui/mod.rs"] {
        let (status, _, body) = get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
}

#[test]
fn the_csp_allows_nothing_inline_and_nothing_from_elsewhere() {
    for directive in CONTENT_SECURITY_POLICY.split(';') {
        let directive = directive.trim();
        assert!(!directive.contains("unsafe"), "{directive}");
        assert!(!directive.contains('*'), "{directive}");
        assert!(!directive.contains("http"), "{directive}");
    }
    assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'none'"));
}

#[test]
fn the_page_has_no_inline_script_style_or_handler() {
    let html = text("index.html");
    let scripts: Vec<_> = html.match_indices("<script").collect();
    assert!(!scripts.is_empty());
    for (i, _) in scripts {
        let tag = &html[i..i + html[i..].find('>').unwrap()];
        assert!(tag.contains(" src=\"/ui/"), "inline script: {tag}");
    }
    let lower = html.to_lowercase();
    for forbidden in [
        " style=",
        "<style",
        "javascript:",
        " onclick",
        " onload",
        " onsubmit",
    ] {
        assert!(!lower.contains(forbidden), "index.html has {forbidden}");
    }
}

#[test]
fn every_reference_resolves_and_every_asset_is_used() {
    let html = text("index.html");
    let mut used = BTreeSet::from(["index.html"]);
    for reference in quoted_after(html, "=\"/ui/") {
        assert!(asset(reference).is_some(), "index.html: /ui/{reference}");
        used.insert(asset(reference).unwrap().name);
    }
    for script in scripts() {
        let source = std::str::from_utf8(script.bytes).unwrap();
        for import in quoted_after(source, "from \"./") {
            assert!(asset(import).is_some(), "{}: ./{import}", script.name);
            used.insert(asset(import).unwrap().name);
        }
    }
    let all: BTreeSet<_> = ASSETS.iter().map(|a| a.name).collect();
    assert_eq!(used, all, "assets that nothing loads");
}

#[test]
fn every_element_the_scripts_look_up_is_on_the_page() {
    let html = text("index.html");
    let ids: BTreeSet<_> = quoted_after(html, " id=\"").into_iter().collect();
    let mut looked_up = 0;
    for script in scripts() {
        let source = std::str::from_utf8(script.bytes).unwrap();
        for id in quoted_after(source, "byId(\"") {
            looked_up += 1;
            assert!(
                ids.contains(id),
                "{}: #{id} is not in index.html",
                script.name
            );
        }
    }
    assert!(looked_up > 10, "{looked_up}");
}

#[test]
fn the_scripts_never_parse_markup_or_code_from_strings() {
    for script in scripts() {
        let source = std::str::from_utf8(script.bytes).unwrap();
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "new EventSource",
            "localStorage",
        ] {
            assert!(
                !source.contains(forbidden),
                "{} uses {forbidden}",
                script.name
            );
        }
    }
}

#[test]
fn every_status_reason_has_its_sentence() {
    let detail = text("detail.js");
    assert!(!cameleer_runtime::StatusReason::CODES.is_empty());
    for code in cameleer_runtime::StatusReason::CODES {
        assert!(
            detail.contains(&format!("case \"{code}\":")),
            "detail.js does not describe {code}"
        );
    }
}
