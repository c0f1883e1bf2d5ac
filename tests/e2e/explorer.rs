//! The live page (`GET /explorer`) in Debian's headless Chromium against the node: after
//! blocks are committed the page shows their transactions (checked on the DOM against what was
//! written), the filter form validates what a user types and follows a public key, and the page
//! resumes across a node restart without missing or repeating a block. The page follows both
//! streams over one JSON-RPC WebSocket: changing the filter (adding a key) must not open
//! another one, which the test counts in Chromium's own network events and in the node's
//! metrics. Screenshots go to
//! `target/test-artifacts/`. Chromium is driven over its DevTools protocol with the WebSocket
//! client the other tests already use; `make test` installs the `chromium` package.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use planetmint_streams_devchain::fixtures::Planetmint253;
use planetmint_streams_devchain::generate::{ChainGenerator, GeneratedBlock};
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

/// Where screenshots and the browser's log are kept after the test (`target/test-artifacts`).
fn artifacts_dir() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is target/tmp")
        .to_path_buf();
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// Debian's Chromium (or `PMS_CHROMIUM`); a missing browser fails the test, it never skips.
fn chromium_binary() -> PathBuf {
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

/// A headless Chromium with one page, driven over the DevTools protocol.
struct Browser {
    page: Ws,
    next_id: u64,
    /// Uncaught exceptions and console errors of the page's own script.
    script_errors: Vec<String>,
    /// WebSockets the page opened (`Network.webSocketCreated`).
    websockets_created: usize,
    _child: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn launch(binary: &Path) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let log = std::fs::File::create(artifacts_dir().join("explorer-chromium.log"))
            .expect("chromium log file");
        let child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
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
                panic!("chromium exited at start ({status}): see target/test-artifacts/explorer-chromium.log");
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
    async fn call(&mut self, method: &str, params: Value) -> Value {
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
    async fn eval(&mut self, expression: &str) -> Value {
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

    /// What a user sees of the connection, for failure messages.
    async fn status_text(&mut self) -> String {
        self.eval(
            "['state', 'last-close', 'filter-error', 'active-filter', 'empty']\
             .map(id => document.getElementById(id)).filter(e => e && !e.hidden)\
             .map(e => e.id + ': ' + e.innerText).join(' | ')",
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Polls `expression` until it is neither null nor false; on timeout saves a screenshot
    /// and fails saying what the page showed.
    async fn wait_for(&mut self, what: &str, expression: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let value = self.eval(expression).await;
            if !value.is_null() && value != Value::Bool(false) {
                return value;
            }
            if tokio::time::Instant::now() >= deadline {
                let shot = self.screenshot("explorer-failure.png").await;
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
    async fn screenshot(&mut self, name: &str) -> PathBuf {
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
    async fn type_into(&mut self, id: &str, text: &str) {
        self.eval(&format!(
            "(() => {{ const i = document.getElementById({id:?}); i.focus(); i.select(); \
             return true; }})()"
        ))
        .await;
        self.call("Input.insertText", json!({ "text": text })).await;
    }

    async fn click(&mut self, id: &str) {
        self.eval(&format!("document.getElementById({id:?}).click(), true"))
            .await;
    }
}

/// One block as the page shows it: `None` until both its hash and its transactions are in.
fn shown_block_js(height: u64) -> String {
    format!(
        "(() => {{ const b = document.querySelector('#blocks [data-height=\"{height}\"]'); \
         if (!b || b.dataset.complete !== 'true') return null; \
         return {{ hash: b.dataset.hash, text: b.innerText, \
           ids: [...b.querySelectorAll('[data-transaction-id]')].map(t => t.dataset.transactionId), \
           assets: [...b.querySelectorAll('[data-transaction-id]')].map(t => t.dataset.assetId) }}; }})()"
    )
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks what the page shows of block `height`: its hash, and exactly the transactions
/// `ids` (in block order) with their asset ids, each id visible as text.
fn assert_block_shown(shown: &Value, height: u64, hash: &str, ids: &[String], assets: &[String]) {
    assert_eq!(shown["hash"], hash, "hash of block {height}");
    assert_eq!(
        strings(&shown["ids"]),
        ids,
        "transactions of block {height}"
    );
    assert_eq!(
        strings(&shown["assets"]),
        assets,
        "asset ids of block {height}"
    );
    let text = shown["text"].as_str().unwrap_or_default();
    for id in ids.iter().chain([&hash.to_owned()]) {
        assert!(
            text.contains(id.as_str()),
            "{id} visible in block {height}: {text}"
        );
    }
}

/// A wallet that receives some but not all transactions of `first`, and some of `second`.
fn key_for(first: &GeneratedBlock, second: &GeneratedBlock) -> String {
    let gets = |block: &GeneratedBlock, key: &str| {
        block
            .transactions
            .iter()
            .filter(|tx| tx.output_keys.iter().any(|k| k == key))
            .count()
    };
    first
        .transactions
        .iter()
        .flat_map(|tx| tx.output_keys.clone())
        .find(|key| {
            let n = gets(first, key);
            n > 0 && n < first.transactions.len() && gets(second, key) > 0
        })
        .expect("the seeded chain has a key for the filter test")
}

fn matching(block: &GeneratedBlock, keys: &[&str]) -> (Vec<String>, Vec<String>) {
    block
        .transactions
        .iter()
        .filter(|tx| tx.output_keys.iter().any(|k| keys.contains(&k.as_str())))
        .map(|tx| (tx.id.clone(), tx.asset_id.clone()))
        .unzip()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_shows_committed_blocks_follows_a_filter_and_resumes() {
    let started = std::time::Instant::now();
    let chromium = chromium_binary();
    let mut harness = Harness::start().await;
    let api = harness.api();
    let (_, catalogue) = get_json(&harness.node().api_addr.to_string(), "/api/v1/streams").await;
    let mut writer = harness.writer().await;

    let mut browser = Browser::launch(&chromium).await;
    browser
        .call("Page.navigate", json!({ "url": format!("{api}/explorer") }))
        .await;
    browser
        .wait_for(
            "the connection state 'live'",
            "document.getElementById('state')?.dataset.state === 'live'",
            Duration::from_secs(20),
        )
        .await;
    let endpoints = browser
        .eval("document.getElementById('endpoints').innerText")
        .await;
    let endpoints = endpoints.as_str().unwrap_or_default();
    let rpc_url = catalogue["rpc_url"]
        .as_str()
        .expect("rpc_url in the catalogue");
    assert!(
        endpoints.contains(rpc_url),
        "page names {rpc_url}: {endpoints}"
    );

    // Blocks Planetmint 2.5.3 wrote, committed while the page is open: every one shows up
    // with its hash and its transactions.
    let fixtures = Planetmint253::load().expect("fixtures");
    for height in fixtures.heights() {
        writer.write_fixture(&fixtures, height).await;
    }
    let mut fixture_transactions = 0;
    // The transactions stream resumes after the last block it delivered, the last one with
    // transactions (empty blocks come only on valid_blocks).
    let mut last_with_transactions = 0;
    for expected in &fixtures.expected_blocks {
        let height = expected["height"].as_u64().expect("height");
        let shown = browser
            .wait_for(
                &format!("block {height}"),
                &shown_block_js(height),
                Duration::from_secs(20),
            )
            .await;
        let events = fixtures.expected_events(height);
        let ids: Vec<String> = events
            .iter()
            .map(|e| e["transaction_id"].as_str().expect("id").to_owned())
            .collect();
        let assets: Vec<String> = events
            .iter()
            .map(|e| e["asset_id"].as_str().expect("asset").to_owned())
            .collect();
        assert_eq!(ids, strings(&expected["transaction_ids"]));
        fixture_transactions += ids.len();
        if !ids.is_empty() {
            last_with_transactions = height;
        }
        assert_block_shown(
            &shown,
            height,
            expected["hash"].as_str().expect("hash"),
            &ids,
            &assets,
        );
    }
    let count = browser
        .eval("document.getElementById('count-transactions').dataset.value")
        .await;
    assert_eq!(count, fixture_transactions.to_string(), "transaction count");
    let shot = browser.screenshot("explorer-live.png").await;
    eprintln!("screenshot: {}", shot.display());

    // What is not a key or an id is refused in the form; the stream is left as it was.
    browser.type_into("filter", "not-a-key").await;
    browser.click("apply").await;
    let error = browser
        .wait_for(
            "an error for an invalid filter",
            "(e => !e.hidden && e.innerText)(document.getElementById('filter-error'))",
            Duration::from_secs(5),
        )
        .await;
    assert!(
        error.as_str().unwrap_or_default().contains("not-a-key"),
        "the error names the bad value: {error}"
    );
    let state = browser.status_text().await;
    assert!(
        state.contains("state: Live") && state.contains("Showing every transaction"),
        "{state}"
    );

    // A wallet's public key: blocks after the last one received, only its transactions.
    let mut chain = ChainGenerator::new(8_080, 9, 4);
    let ninth = chain.block(6);
    let tenth = chain.block(6);
    let eleventh = chain.block(5);
    let key = key_for(&ninth, &eleventh);
    browser.type_into("filter", &key).await;
    browser.click("apply").await;
    browser
        .wait_for(
            "the key filter applied and live",
            &format!(
                "document.getElementById('active-filter').dataset.filter === {key:?} && \
                 document.getElementById('state').dataset.state === 'live' && \
                 document.querySelectorAll('#blocks [data-height]').length === 0 && \
                 document.getElementById('cursor').dataset.value === '{last_with_transactions}'"
            ),
            Duration::from_secs(10),
        )
        .await;
    writer.write(&ninth).await;
    let shown = browser
        .wait_for("block 9", &shown_block_js(9), Duration::from_secs(20))
        .await;
    let (ids, assets) = matching(&ninth, &[&key]);
    assert_block_shown(&shown, 9, &ninth.app_hash, &ids, &assets);
    let summary = format!(
        "{} of {} transactions match",
        ids.len(),
        ninth.transactions.len()
    );
    assert!(
        shown["text"]
            .as_str()
            .unwrap_or_default()
            .contains(&summary),
        "{summary}: {}",
        shown["text"]
    );

    // A second key is added: the same socket carries the new subscriptions (no new WebSocket
    // in the browser, one JSON-RPC connection on the node), and events of both keys arrive.
    let second = tenth
        .transactions
        .iter()
        .flat_map(|tx| tx.output_keys.iter())
        .find(|k| {
            **k != key
                && tenth
                    .transactions
                    .iter()
                    .any(|tx| tx.output_keys.contains(k) && !tx.output_keys.contains(&key))
        })
        .expect("block 10 has a transaction for another key")
        .clone();
    let sockets_before = browser.websockets_created;
    assert_eq!(sockets_before, 1, "one WebSocket so far");
    let both = format!("{key} {second}");
    browser.type_into("filter", &both).await;
    browser.click("apply").await;
    browser
        .wait_for(
            "the two-key filter applied and live",
            &format!(
                "document.getElementById('active-filter').dataset.filter === {:?} && \
                 document.getElementById('state').dataset.state === 'live'",
                format!("{key},{second}")
            ),
            Duration::from_secs(10),
        )
        .await;
    writer.write(&tenth).await;
    let shown = browser
        .wait_for("block 10", &shown_block_js(10), Duration::from_secs(20))
        .await;
    let (ids, assets) = matching(&tenth, &[&key, &second]);
    assert_block_shown(&shown, 10, &tenth.app_hash, &ids, &assets);
    assert!(
        ids.iter()
            .any(|id| matching(&tenth, &[&second]).0.contains(id)),
        "the second key's transactions arrive"
    );
    let mut filtered_transactions = ids.len();
    assert_eq!(
        browser.websockets_created, sockets_before,
        "adding a key opened no WebSocket"
    );
    let page_sockets = browser
        .eval("document.getElementById('count-sockets').dataset.value")
        .await;
    assert_eq!(page_sockets, "1", "the page counts one connection");
    let (_, metrics) = http_get(&harness.node().api_addr.to_string(), "/metrics").await;
    assert_eq!(
        metric(&metrics, "planetmint_streams_rpc_connections", ""),
        1.0,
        "one JSON-RPC connection on the node"
    );
    assert_eq!(
        metric(&metrics, "planetmint_streams_rpc_subscriptions", ""),
        2.0,
        "the old subscriptions were ended, the new two are open"
    );
    assert_eq!(
        metric(
            &metrics,
            "planetmint_streams_rpc_requests_total",
            "method=\"unsubscribe\""
        ),
        4.0,
        "each of the two filter changes unsubscribed both streams"
    );

    // The node stops (1001, with the last height) and comes back on the same ports; a block
    // committed meanwhile is shown once, and nothing before it again.
    let node = harness.node.take().expect("node");
    let (streams_addr, api_addr) = (node.streams_addr, node.api_addr);
    node.shutdown().await;
    browser
        .wait_for(
            "the 1001 close and a reconnect",
            "document.getElementById('last-close').dataset.code === '1001' && \
             document.getElementById('state').dataset.state !== 'live'",
            Duration::from_secs(10),
        )
        .await;
    writer.write(&eleventh).await;
    harness.restart_on(streams_addr, api_addr).await;
    harness.wait_ready().await;
    let shown = browser
        .wait_for("block 11", &shown_block_js(11), Duration::from_secs(30))
        .await;
    let (ids, assets) = matching(&eleventh, &[&key, &second]);
    assert_block_shown(&shown, 11, &eleventh.app_hash, &ids, &assets);
    assert!(
        !matching(&eleventh, &[&key]).0.is_empty(),
        "the first key's transactions arrive too"
    );
    filtered_transactions += ids.len();
    browser
        .wait_for(
            "the connection state 'live' again",
            "document.getElementById('state').dataset.state === 'live'",
            Duration::from_secs(20),
        )
        .await;
    let totals = browser
        .eval(
            "({ heights: [...document.querySelectorAll('#blocks [data-height]')].map(b => b.dataset.height), \
                transactions: document.querySelectorAll('#blocks [data-transaction-id]').length, \
                counted: document.getElementById('count-transactions').dataset.value, \
                duplicates: document.getElementById('count-duplicates').dataset.value, \
                reconnects: Number(document.getElementById('count-reconnects').dataset.value), \
                closed: document.getElementById('last-close').innerText })",
        )
        .await;
    assert_eq!(totals["heights"], json!(["11", "10"]), "{totals}");
    assert_eq!(totals["transactions"], filtered_transactions, "{totals}");
    assert_eq!(totals["counted"], filtered_transactions.to_string());
    assert_eq!(totals["duplicates"], "0", "{totals}");
    assert!(totals["reconnects"].as_u64() >= Some(1), "{totals}");
    let closed = totals["closed"].as_str().unwrap_or_default();
    assert!(
        closed.contains("1001") && closed.contains("server shutting down"),
        "the page says why it reconnected: {closed}"
    );
    let shot = browser.screenshot("explorer-filtered.png").await;
    eprintln!("screenshot: {}", shot.display());

    // Replaying the whole chain without filter: every block once, all transactions.
    browser.click("clear").await;
    browser.type_into("from-height", "0").await;
    browser.click("apply").await;
    browser
        .wait_for(
            "block 11 replayed",
            &shown_block_js(11),
            Duration::from_secs(20),
        )
        .await;
    let replayed = browser
        .eval("document.querySelectorAll('#blocks [data-transaction-id]').length")
        .await;
    assert_eq!(
        replayed,
        fixture_transactions
            + ninth.transactions.len()
            + tenth.transactions.len()
            + eleventh.transactions.len(),
        "every transaction of the chain, once"
    );
    assert!(
        browser.script_errors.is_empty(),
        "the page's script failed: {:?}",
        browser.script_errors
    );
    eprintln!("explorer e2e took {:?}", started.elapsed());
}
