//! Headless Chromium through Debian's `chromedriver`, spoken to in plain
//! W3C WebDriver over HTTP: the few commands a UI test needs, no client
//! crate.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How Chromium reports a request it cut because the machine's network
/// interfaces changed: Docker creates a bridge for every new network (ours,
/// and those of tests running beside this one), and Chromium aborts what is
/// in flight. Not an error of the page; the dashboard's streams reconnect.
pub const ENVIRONMENTAL: &str = "Failed to load resource: net::ERR_NETWORK_CHANGED";

/// The browser binary Debian's `chromium` package installs.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// A `chromedriver` on a free loopback port; killed on drop.
pub struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    /// Starts `chromedriver` and waits until it accepts sessions.
    pub async fn start() -> Chromedriver {
        // A port the kernel just handed out; chromedriver binds it next.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromedriver is not installed (Debian: apt-get install chromium chromium-driver; \
                 .ci/run installs them)",
            );
        let driver = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let http = client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/status", driver.url)).send().await
                && let Ok(body) = r.bytes().await
                && serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["value"]["ready"] == true)
            {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client for loopback: chromedriver and the server. Plain HTTP
/// only, but reqwest still wants a TLS config, and the workspace's reqwest
/// comes without a crypto provider of its own.
pub fn client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client")
}

/// One browser session. Screenshots go to `shots`.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    shots: PathBuf,
}

impl Browser {
    /// A new headless session in a window of `width`×`height`, with the
    /// browser's console kept for [`console_errors`](Self::console_errors).
    pub async fn new(driver: &Chromedriver, width: u32, height: u32, shots: &Path) -> Browser {
        std::fs::create_dir_all(shots).unwrap();
        let http = client();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    // Tests run as root in CI containers, where the sandbox cannot start.
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    format!("--window-size={width},{height}"),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let response = http
            .post(format!("{}/session", driver.url))
            .body(capabilities.to_string())
            .send()
            .await
            .expect("chromedriver answers");
        let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        let id = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {body}"));
        Browser {
            http,
            session: format!("{}/session/{id}", driver.url),
            shots: shots.to_path_buf(),
        }
    }

    /// One WebDriver command; the `value` of its answer. Panics with the
    /// driver's error.
    pub async fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.session);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).body(body.to_string()),
        };
        let response = request.send().await.expect("chromedriver answers");
        let status = response.status();
        let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert!(status.is_success(), "WebDriver {method} {path}: {body}");
        body["value"].clone()
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.command("POST", "/url", json!({ "url": url })).await;
    }

    /// Opens `url` and waits until `ready` (a function body) returns true,
    /// loading it again (up to 3 times) when a request of the page was cut
    /// by a network change (see [`ENVIRONMENTAL`]).
    pub async fn open(&self, url: &str, ready: &str) {
        for _ in 0..3 {
            self.goto(url).await;
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(15) {
                if self.execute(ready, json!([])).await == json!(true) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.screenshot("failure-open.png").await;
        panic!("{url} never got ready: {:?}", self.console_errors().await);
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .command(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    /// Clicks the element `css` selects.
    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.command("POST", &format!("/element/{id}/click"), json!({}))
            .await;
    }

    /// Replaces the value of the input `css` selects by typing `text` (for
    /// a file input: the path of the file to choose).
    pub async fn fill(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        if !css.contains("file") {
            self.command("POST", &format!("/element/{id}/clear"), json!({}))
                .await;
        }
        self.command(
            "POST",
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// The text content of the element `css` selects, or None.
    pub async fn text(&self, css: &str) -> Option<String> {
        let value = self
            .execute(
                "const n = document.querySelector(arguments[0]); return n ? n.textContent : null;",
                json!([css]),
            )
            .await;
        value.as_str().map(str::to_owned)
    }

    /// Resizes the window (to check the narrow-screen layout).
    pub async fn resize(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    /// Saves a PNG of the viewport as `name` in the screenshot directory.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let png = self.command("GET", "/screenshot", Value::Null).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a base64 PNG"))
            .expect("base64");
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        let path = self.shots.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Everything the page logged at level SEVERE since the last call:
    /// `console.error`, uncaught exceptions, CSP violations, failed loads;
    /// only requests cut by a network change of the machine
    /// ([`ENVIRONMENTAL`]) are left out, and printed.
    pub async fn console_errors(&self) -> Vec<Value> {
        let entries = self
            .command("POST", "/se/log", json!({"type": "browser"}))
            .await;
        let (environmental, errors): (Vec<Value>, Vec<Value>) = entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .cloned()
            .partition(|e| {
                e["source"] == "network"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.ends_with(ENVIRONMENTAL))
            });
        for e in environmental {
            eprintln!("left out of the console check (the machine's network changed): {e}");
        }
        errors
    }

    /// Polls `script` (a function body returning a value) until `done`
    /// holds for its result; on a timeout saves `failure-<what>.png` and
    /// panics with the last result and the console.
    pub async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        script: &str,
        args: Value,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let value = self.execute(script, args.clone()).await;
            if done(&value) {
                return value;
            }
            if start.elapsed() > limit {
                let shot = self
                    .screenshot(&format!("failure-{}.png", what.replace(' ', "-")))
                    .await;
                let console = self.console_errors().await;
                panic!(
                    "waited {limit:?} for {what}; last: {value}; screenshot {}; console {console:?}",
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Ends the session (closes the browser).
    pub async fn quit(self) {
        self.command("DELETE", "", Value::Null).await;
    }
}
