//! Headless Chromium driven over its DevTools protocol with the WebSocket client the tests
//! already use: the live page's test and the Server-Sent Events test run real browser code.
//! Screenshots and the browser's log go to `target/test-artifacts/`; `make test` installs
//! Debian's `chromium` package (a missing browser fails the test, it never skips).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

use super::{http_get, websocket, Options, Ws};

/// Where screenshots and the browser's log are kept after the test (`target/test-artifacts`).
pub fn artifacts_dir() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is target/tmp")
        .to_path_buf();
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// Debian's Chromium (or `PMS_CHROMIUM`); a missing browser fails the test, it never skips.
pub fn chromium_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PMS_CHROMIUM") {
        return path.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| [dir.join("chromium"), dir.join("chromium-browser")])
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "this test drives headless Chromium and none is installed: run `make test` \
                 (scripts/ensure-deps.sh installs Debian's `chromium` package), or set \
                 PMS_CHROMIUM to a Chromium binary"
            )
        })
}

/// What every headless Chromium of the tests starts with: no sandbox, GPU or QUIC, and no
/// traffic of its own (first-run pages, updates, sync).
pub const HEADLESS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// A headless Chromium with one page, driven over the DevTools protocol.
pub struct Browser {
    page: Ws,
    next_id: u64,
    /// Uncaught exceptions and console errors of the page's own script.
    pub script_errors: Vec<String>,
    /// WebSockets the page opened (`Network.webSocketCreated`).
    pub websockets_created: usize,
    _child: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn launch(binary: &Path) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let log =
            std::fs::File::create(artifacts_dir().join("chromium.log")).expect("chromium log file");
        let child = Command::new(binary)
            .args(HEADLESS)
            .args([
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,1100",
                "--hide-scrollbars",
                "--lang=en-US",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut child = child;
        // Chromium writes the port it chose (and the browser target's path) to this file.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let port: u16 = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|text| text.lines().next()?.trim().parse().ok())
            {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "chromium exited at start ({status}): see target/test-artifacts/chromium.log"
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromium did not open its DevTools port in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/json/list").await;
        assert_eq!(status, 200, "DevTools /json/list: {body}");
        let targets: Value = serde_json::from_str(&body).expect("DevTools target list");
        let page_url = targets
            .as_array()
            .and_then(|list| list.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page target: {body}"))
            .to_owned();
        let mut browser = Self {
            page: websocket(&page_url, &Options::default())
                .await
                .expect("DevTools connection"),
            next_id: 0,
            script_errors: Vec::new(),
            websockets_created: 0,
            _child: child,
            _profile: profile,
        };
        browser.call("Runtime.enable", json!({})).await;
        browser.call("Page.enable", json!({})).await;
        browser.call("Network.enable", json!({})).await;
        browser
    }

    /// Sends a DevTools command and returns its result (events read meanwhile are noted).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({"id": id, "method": method, "params": params});
        self.page
            .send(Message::Text(command.to_string().into()))
            .await
            .expect("send to chromium");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let message = tokio::time::timeout_at(deadline, self.page.next())
                .await
                .unwrap_or_else(|_| panic!("chromium did not answer {method} in 20 s"))
                .expect("DevTools connection open")
                .expect("DevTools message");
            let Message::Text(text) = message else {
                continue;
            };
            let value: Value = serde_json::from_str(text.as_str()).expect("DevTools JSON");
            if value["id"] == id {
                assert!(value.get("error").is_none(), "{method}: {}", value["error"]);
                return value["result"].clone();
            }
            self.note(&value);
        }
    }

    fn note(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => self
                .script_errors
                .push(format!("uncaught: {}", params["exceptionDetails"])),
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => self
                .script_errors
                .push(format!("console.error: {}", params["args"])),
            Some("Network.webSocketCreated") => self.websockets_created += 1,
            _ => {}
        }
    }

    /// Evaluates a JavaScript expression in the page (promises awaited) and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            result.get("exceptionDetails").is_none(),
            "evaluating {expression}: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// What the page shows, for failure messages (the explorer's status first).
    pub async fn status_text(&mut self) -> String {
        self.eval(
            "(['state', 'last-close', 'filter-error', 'active-filter', 'empty']\
             .map(id => document.getElementById(id)).filter(e => e && !e.hidden)\
             .map(e => e.id + ': ' + e.innerText).join(' | ')) \
             || (document.body ? document.body.innerText.slice(0, 500) : '')",
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Polls `expression` until it is neither null nor false; on timeout saves a screenshot
    /// and fails saying what the page showed.
    pub async fn wait_for(&mut self, what: &str, expression: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let value = self.eval(expression).await;
            if !value.is_null() && value != Value::Bool(false) {
                return value;
            }
            if tokio::time::Instant::now() >= deadline {
                let shot = self.screenshot("browser-failure.png").await;
                let status = self.status_text().await;
                panic!(
                    "the page never showed {what} within {within:?}; it shows: {status}; \
                     script errors: {:?}; screenshot: {}",
                    self.script_errors,
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG of the page to `target/test-artifacts/<name>`.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let result = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": false}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(result["data"].as_str().expect("screenshot data"))
            .expect("screenshot is base64");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG screenshot");
        let path = artifacts_dir().join(name);
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Types `text` into the input `id` as a user would (focus, clear, insert).
    pub async fn type_into(&mut self, id: &str, text: &str) {
        self.eval(&format!(
            "(() => {{ const i = document.getElementById({id:?}); i.focus(); i.select(); \
             return true; }})()"
        ))
        .await;
        self.call("Input.insertText", json!({ "text": text })).await;
    }

    pub async fn click(&mut self, id: &str) {
        self.eval(&format!("document.getElementById({id:?}).click(), true"))
            .await;
    }
}
