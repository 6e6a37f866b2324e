//! The server binary's admin token: made at the first start in the data
//! dir (mode 0600), or read from
//! `--admin-token-file`, which must exist.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::Value;
use support::server::{Endpoint, Server, json_call};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_admin_token_is_made_once_with_mode_0600() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let file = data.path().join("admin-token");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let first = server.token.clone();
    assert!(first.len() >= 32);
    let api = server.endpoint();
    let (code, _) = json_call(&api, "GET", "/api/v1/tenants/acme/apps", Value::Null).await;
    assert_eq!(code, 200);
    let wrong = Endpoint {
        token: format!("{first}x"),
        ..api
    };
    let (code, body) = json_call(&wrong, "GET", "/api/v1/tenants/acme/apps", Value::Null).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    drop(server);

    // The next start keeps it.
    let again = Server::start(data.path());
    assert_eq!(again.token, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_file_is_used_and_none_is_made() {
    let data = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("admin");
    let token = "an-operator-chosen-admin-token-0123456789";
    std::fs::write(&file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = Server::start_with(
        data.path(),
        &["--admin-token-file", file.to_str().unwrap()],
        &[],
    );
    assert_eq!(server.token, token);
    assert!(!data.path().join("admin-token").exists());
    let (code, _) = json_call(
        &server.endpoint(),
        "GET",
        "/api/v1/admin/retention?dry_run=true",
        Value::Null,
    )
    .await;
    assert_eq!(code, 200);
}

#[test]
fn a_missing_admin_token_file_stops_the_start_with_its_code() {
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("no-such-file");
    let out = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg("--admin-token-file")
        .arg(&missing)
        .env_remove("CAMELEER_LOG_STORE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("admin_token_io"), "{stderr}");
    assert!(out.stdout.is_empty(), "it never said it listens");
    assert!(!data.path().join("admin-token").exists());
}
