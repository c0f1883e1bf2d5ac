//! The live page (`GET /explorer`) in Debian's headless Chromium against the node: after
//! blocks are committed the page shows their transactions (checked on the DOM against what was
//! written), the filter form validates what a user types and follows a public key, and the page
//! resumes across a node restart without missing or repeating a block. The page follows both
//! streams over one JSON-RPC WebSocket: changing the filter (adding a key) must not open
//! another one, which the test counts in Chromium's own network events and in the node's
//! metrics. Screenshots go to
//! `target/test-artifacts/`. Chromium is driven over its DevTools protocol with the WebSocket
//! client the other tests already use; `make test` installs the `chromium` package.

use std::time::Duration;

use planetmint_streams_devchain::fixtures::Planetmint253;
use planetmint_streams_devchain::generate::{ChainGenerator, GeneratedBlock};
use serde_json::{json, Value};

use crate::support::browser::{chromium_binary, Browser};
use crate::support::*;

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
