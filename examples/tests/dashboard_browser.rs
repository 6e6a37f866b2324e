//! The dashboard in a real browser: headless Chromium, driven through
//! Debian's `chromedriver`, against the server binary on the real Docker
//! engine.
//!
//! A user signs in, uploads a JAR (the progress bar reaches its end),
//! deploys it, sees RUNNING appear without reloading, sees the app's first
//! log line in the live tail, searches the log (the server's search
//! route, or the tail filtered in the browser), is asked before promoting
//! to prod (and
//! cancelling sends nothing), stops the app and sees the typed reason in
//! the history; then the same page on a phone-sized window. Screenshots
//! (PNG) of each step are saved under `target/tmp/dashboard-screenshots/`
//! (`CARGO_TARGET_TMPDIR`); any error in the browser's console fails the
//! test.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use cameleer_build::java::fixtures::{APP_STARTED_LINE, FixtureApp, app_jar};
use serde_json::json;
use sha2::{Digest, Sha256};
use support::server::Server;
use support::webdriver::{Browser, Chromedriver};

const PATIENCE: Duration = Duration::from_secs(240);
const QUICK: Duration = Duration::from_secs(30);

fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots")
}

/// A token of `tenant`, made through the API with the admin's: what an
/// operator hands a tenant to sign in with.
async fn tenant_token(server: &Server, tenant: &str) -> String {
    let reply = support::webdriver::client()
        .post(format!(
            "http://{}/api/v1/tenants/{tenant}/tokens",
            server.addr
        ))
        .bearer_auth(&server.token)
        .body(r#"{"name": "dashboard"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    let body: serde_json::Value = serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// The text of the badge of `app` in `env` in the overview.
const CHIP_STATUS: &str = "const n = document.querySelector(`#apps button.env[data-app=\"${arguments[0]}\"][data-env=\"${arguments[1]}\"] .badge`); return n ? n.textContent : null;";

async fn assert_console_clean(browser: &Browser, step: &str) {
    let errors = browser.console_errors().await;
    assert!(
        errors.is_empty(),
        "browser console after {step}: {errors:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_upload_deploy_watch_running_and_logs_then_stop_in_a_real_browser() {
    let (docker, tenant, guard) = support::server::isolated_tenant("ui").await;
    let data = tempfile::tempdir().unwrap();
    let jar_path = app_jar(FixtureApp::Logging).unwrap();
    let sha256 = hex_sha256(&std::fs::read(&jar_path).unwrap());
    let shots = screenshot_dir();

    let server = Server::start(data.path());
    let base = format!("http://{}", server.addr);
    let token = tenant_token(&server, &tenant).await;
    let driver = Chromedriver::start().await;
    let browser = Browser::new(&driver, 1280, 1000, &shots).await;

    // Sign in.
    browser
        .open(
            &format!("{base}/"),
            "return document.documentElement.dataset.ready === 'yes';",
        )
        .await;
    browser.screenshot("01-sign-in.png").await;
    browser.fill("#signin-tenant", &tenant).await;
    browser.fill("#signin-token", &token).await;
    browser.click("#signin-submit").await;
    browser
        .wait_for(
            "the live events stream",
            QUICK,
            "return document.getElementById('live').textContent;",
            json!([]),
            |v| v == "live",
        )
        .await;
    assert_eq!(
        browser.text("#who").await.as_deref(),
        Some(format!("tenant {tenant}").as_str())
    );
    // Survives only as long as the page is not reloaded.
    browser
        .execute("window.cameleerNotReloaded = true;", json!([]))
        .await;
    assert_console_clean(&browser, "sign-in").await;

    // Upload, with the progress bar.
    browser.fill("#deploy-app", "orders").await;
    browser.fill("#deploy-env", "dev").await;
    browser
        .fill("#upload-file", jar_path.to_str().unwrap())
        .await;
    browser.click("#upload-button").await;
    browser
        .wait_for(
            "the upload",
            PATIENCE,
            "const n = document.getElementById('uploaded-sha'); return n ? n.textContent : null;",
            json!([]),
            |v| v.is_string(),
        )
        .await;
    assert_eq!(browser.text("#uploaded-sha").await.unwrap(), sha256);
    let progress = browser
        .execute(
            "const p = document.getElementById('upload-progress'); return [p.value, p.max];",
            json!([]),
        )
        .await;
    assert!(progress[1].as_f64().unwrap() > 1.0, "{progress}");
    assert_eq!(progress[0], progress[1], "the bar ends full: {progress}");
    let curl = browser.text("#curl").await.unwrap();
    assert!(
        curl.contains("-X PUT") && curl.contains("/apps/orders/envs/dev/artifacts"),
        "{curl}"
    );
    browser.screenshot("02-uploaded.png").await;

    // Deploy: RUNNING appears without a reload, from the events stream.
    let config = json!({"env": {"LOG_INTERVAL_MS": "300"}, "resources": {"memory_mb": 256, "cpu_millis": 500}});
    browser.fill("#deploy-config", &config.to_string()).await;
    browser.click("#deploy-button").await;
    browser
        .wait_for(
            "RUNNING in the overview",
            PATIENCE,
            CHIP_STATUS,
            json!(["orders", "dev"]),
            |v| v == "RUNNING",
        )
        .await;
    let curl = browser.text("#curl").await.unwrap();
    assert!(
        curl.contains("-X POST")
            && curl.contains("/envs/dev/deployments")
            && curl.contains(&sha256),
        "{curl}"
    );
    assert_eq!(
        browser.text("#current-status .badge").await.as_deref(),
        Some("RUNNING")
    );
    browser.screenshot("03-running.png").await;

    // The app's first line in the live tail.
    browser
        .wait_for(
            "the app's first log line",
            PATIENCE,
            "return [...document.querySelectorAll('#log-pane .log-text')].some(n => n.textContent === arguments[0]);",
            json!([APP_STARTED_LINE]),
            |v| v == true,
        )
        .await;
    browser.screenshot("04-logs.png").await;
    assert_console_clean(&browser, "deploy").await;

    // Search: the server's search route where it has one, else the tail
    // filtered in the browser, which says so. Either way only matching
    // lines show.
    browser.fill("#log-query", "stderr line").await;
    browser.click("#log-search button").await;
    let note = browser
        .wait_for(
            "the search",
            QUICK,
            "return document.getElementById('log-note').textContent;",
            json!([]),
            |v| v.as_str().is_some_and(|n| n.contains("\"stderr line\"")),
        )
        .await;
    let shown = browser
        .execute(
            "return [...document.querySelectorAll('#log-pane .log-line')].filter(n => !n.hidden).map(n => n.lastElementChild.textContent);",
            json!([]),
        )
        .await;
    let shown = shown.as_array().unwrap();
    assert!(!shown.is_empty(), "{note}");
    assert!(
        shown
            .iter()
            .all(|l| l.as_str().unwrap().contains("stderr line")),
        "{shown:?}"
    );
    assert!(
        browser
            .text("#curl")
            .await
            .unwrap()
            .contains("/logs/search?q=stderr%20line"),
        "the search shown as curl"
    );
    browser.screenshot("05-search.png").await;
    // A server without the route answers it 404, which the page expects
    // (and says so above); any other error fails.
    let errors: Vec<_> = browser
        .console_errors()
        .await
        .into_iter()
        .filter(|e| {
            let m = e["message"].as_str().unwrap_or_default();
            !(m.contains("/logs/search?q=") && m.contains("404"))
        })
        .collect();
    assert!(
        errors.is_empty(),
        "browser console after search: {errors:#?}"
    );

    // Promoting to prod asks first; cancelling sends nothing.
    browser.fill("#promote-to", "prod").await;
    browser.click("#promote-button").await;
    browser
        .wait_for(
            "the prod confirmation",
            QUICK,
            "return document.getElementById('confirm').open;",
            json!([]),
            |v| v == true,
        )
        .await;
    let question = browser.text("#confirm-question").await.unwrap();
    assert!(question.contains("prod"), "{question}");
    assert!(
        browser
            .text("#confirm-curl")
            .await
            .unwrap()
            .contains("/apps/orders/promote")
    );
    browser.screenshot("06-confirm-prod.png").await;
    browser.click("#confirm-no").await;
    browser
        .wait_for(
            "the dialog to close",
            QUICK,
            "return document.getElementById('confirm').open;",
            json!([]),
            |v| v == false,
        )
        .await;
    let prod = support::webdriver::client()
        .get(format!(
            "{base}/api/v1/tenants/{tenant}/apps/orders/envs/prod/deployments"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        prod.status(),
        404,
        "a cancelled promotion created nothing in prod"
    );

    // Stop: STOPPED, with its typed reason in the history.
    browser.click("#stop-button").await;
    browser
        .wait_for(
            "STOPPED in the overview",
            PATIENCE,
            CHIP_STATUS,
            json!(["orders", "dev"]),
            |v| v == "STOPPED",
        )
        .await;
    browser
        .wait_for(
            "the stop's reason in the history",
            QUICK,
            "return [...document.querySelectorAll('#history .reason-code')].map(n => n.textContent);",
            json!([]),
            |v| v.as_array().is_some_and(|codes| codes.iter().any(|c| c == "stopped_on_request")),
        )
        .await;
    assert!(
        browser
            .text("#curl")
            .await
            .unwrap()
            .contains("/envs/dev/stop")
    );
    browser.screenshot("07-stopped.png").await;

    // A phone-sized window: one column, nothing wider than the screen.
    browser.resize(390, 844).await;
    browser.execute("window.scrollTo(0, 0);", json!([])).await;
    let overflow = browser
        .wait_for(
            "the narrow layout",
            QUICK,
            "return [window.innerWidth, document.documentElement.scrollWidth, \
              [...document.querySelectorAll('body *')] \
              .filter(n => n.getBoundingClientRect().right > window.innerWidth + 1 \
                || (n.scrollWidth > n.clientWidth + 1 && getComputedStyle(n).overflowX === 'visible')) \
              .map(n => `${n.tagName}#${n.id}.${n.className}`)];",
            json!([]),
            |v| v[0].as_u64().is_some_and(|w| w < 500),
        )
        .await;
    browser.screenshot("08-narrow.png").await;
    assert!(
        overflow[1].as_u64() <= overflow[0].as_u64(),
        "wider than the screen: {overflow}"
    );

    let kept = browser
        .execute("return window.cameleerNotReloaded === true;", json!([]))
        .await;
    assert_eq!(kept, json!(true), "the page was reloaded");
    assert_console_clean(&browser, "stop").await;
    browser.quit().await;
    drop(driver);

    drop(server);
    support::server::clean_up(&docker, &tenant, guard).await;
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
