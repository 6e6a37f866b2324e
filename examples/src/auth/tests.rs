use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use axum::http::Method;

use super::*;
use crate::storage::SqliteTokenStore;

fn tenant(s: &str) -> TenantId {
    s.parse().unwrap()
}

fn auth_in(dir: &std::path::Path) -> (Auth, AdminToken) {
    let admin = AdminToken::read_or_create(&dir.join("admin-token")).unwrap();
    let store = Arc::new(SqliteTokenStore::in_memory().unwrap());
    (Auth::new(&admin, store), admin)
}

#[tokio::test]
async fn a_new_token_opens_its_tenant_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, admin) = auth_in(dir.path());
    let (info, secret) = auth
        .create_token(tenant("acme"), Some("ci".into()))
        .await
        .unwrap();
    assert!(secret.expose().starts_with(&format!("cmr_{}_", info.id)));
    assert_eq!(
        auth.authenticate(secret.expose()).await.unwrap(),
        Some(Principal::Tenant {
            tenant: tenant("acme"),
            token: info.id.clone()
        })
    );
    assert_eq!(
        auth.authenticate(admin.expose()).await.unwrap(),
        Some(Principal::Admin)
    );
    let listed = auth.tokens(&tenant("acme")).await.unwrap();
    assert_eq!(listed, vec![info.clone()]);
    assert!(auth.tokens(&tenant("other")).await.unwrap().is_empty());

    // Another tenant cannot revoke it; its own tenant can, once.
    assert!(!auth.revoke(&tenant("other"), &info.id).await.unwrap());
    assert!(auth.revoke(&tenant("acme"), &info.id).await.unwrap());
    assert!(!auth.revoke(&tenant("acme"), &info.id).await.unwrap());
    assert_eq!(auth.authenticate(secret.expose()).await.unwrap(), None);
}

#[tokio::test]
async fn a_token_with_a_wrong_secret_or_shape_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, admin) = auth_in(dir.path());
    let (info, secret) = auth.create_token(tenant("acme"), None).await.unwrap();
    let good = secret.expose();
    // The right id with one secret digit changed.
    let last = good.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &good[..good.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    let wrong = [
        flipped.as_str(),
        &good[..good.len() - 1],
        &format!("{good}0"),
        &good.to_uppercase(),
        &format!("cmr_{}_", info.id),
        "",
        "cmr_",
        &admin.expose()[1..],
        &format!("{}x", admin.expose()),
    ];
    for token in wrong {
        assert_eq!(auth.authenticate(token).await.unwrap(), None, "{token:?}");
    }
}

#[test]
fn tokens_are_random_and_well_formed() {
    let a = NewToken::generate().unwrap().into_secret();
    let b = NewToken::generate().unwrap().into_secret();
    assert_ne!(a, b);
    for t in [&a, &b] {
        let (id, secret) = token::parse(t.expose()).unwrap();
        assert_eq!(id.as_str().len(), 16);
        assert_eq!(secret.len(), 64);
    }
    assert_eq!(format!("{a:?}"), "TokenSecret(…)");
}

#[test]
fn token_ids_are_checked() {
    assert!("0123456789abcdef".parse::<TokenId>().is_ok());
    for bad in [
        "",
        "0123456789ABCDEF",
        "0123456789abcde",
        "../../etc/passwd0",
    ] {
        let err = bad.parse::<TokenId>().unwrap_err();
        assert_eq!(err.code(), "invalid_id", "{bad:?}");
    }
}

#[test]
fn the_admin_token_is_made_once_with_mode_0600_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin-token");
    let first = AdminToken::read_or_create(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(first.expose().len() >= MIN_ADMIN_TOKEN_LEN);
    let again = AdminToken::read_or_create(&path).unwrap();
    assert_eq!(first.expose(), again.expose());
    assert_eq!(format!("{first:?}"), "AdminToken(…)");
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn servers_starting_at_once_agree_on_one_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin-token");
    let tokens: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| AdminToken::read_or_create(&path).unwrap()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().expose().to_owned())
            .collect()
    });
    assert_eq!(tokens.len(), 8);
    assert!(tokens.iter().all(|t| t == &tokens[0]));
}

#[test]
fn an_admin_token_file_must_hold_a_long_single_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "short\n").unwrap();
    assert_eq!(
        AdminToken::read(&path).unwrap_err().code(),
        "admin_token_too_short"
    );
    std::fs::write(&path, "a-long-enough-token with-a-space-inside\n").unwrap();
    assert_eq!(
        AdminToken::read(&path).unwrap_err().code(),
        "admin_token_malformed"
    );
    let missing = AdminToken::read(&dir.path().join("missing")).unwrap_err();
    assert_eq!(missing.code(), "admin_token_io");
    let token = "  0123456789abcdef0123456789abcdef-from-a-vault  ";
    std::fs::write(&path, format!("{token}\n")).unwrap();
    assert_eq!(AdminToken::read(&path).unwrap().expose(), token.trim());
}

#[test]
fn admin_routes_are_the_platform_wide_ones_and_the_tenant_admin_ones() {
    let t = "/api/v1/tenants/{tenant}";
    let cases = [
        (Method::GET, format!("{t}/apps"), Access::Tenant),
        (Method::GET, format!("{t}/quota"), Access::Tenant),
        (Method::PUT, format!("{t}/quota"), Access::Admin),
        (Method::POST, format!("{t}/tokens"), Access::Admin),
        (Method::GET, format!("{t}/tokens"), Access::Admin),
        (Method::DELETE, format!("{t}/tokens/{{id}}"), Access::Admin),
        (
            Method::PUT,
            format!("{t}/apps/{{app}}/envs/{{env}}/artifacts"),
            Access::Tenant,
        ),
        (Method::GET, "/api/v1/admin/retention".into(), Access::Admin),
        (Method::GET, "/api/v1/log-forwarder".into(), Access::Admin),
        // Fail closed: anything without a tenant is the admin's.
        (Method::GET, "/api/v1/something-new".into(), Access::Admin),
        (
            Method::GET,
            "/api/v1/tenantsx/{tenant}".into(),
            Access::Admin,
        ),
    ];
    for (method, path, want) in cases {
        assert_eq!(access_of(&method, &path), want, "{method} {path}");
    }
}

#[tokio::test]
async fn an_expired_token_is_refused_and_an_unexpired_one_works() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, _) = auth_in(dir.path());
    let hour = std::time::Duration::from_secs(3600);
    let (info, live) = auth
        .create_token_expiring(tenant("acme"), None, Some(hour))
        .await
        .unwrap();
    let expires = info.expires_at.unwrap();
    assert!(expires > info.created_at && expires - info.created_at == hour);
    assert!(auth.authenticate(live.expose()).await.unwrap().is_some());
    // Listed with its expiry, read back from the store.
    let listed = auth.tokens(&tenant("acme")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].expires_at.map(|t| t.unix_timestamp()),
        Some(expires.unix_timestamp())
    );

    let (_, dead) = auth
        .create_token_expiring(tenant("acme"), None, Some(std::time::Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(auth.authenticate(dead.expose()).await.unwrap(), None);
}
