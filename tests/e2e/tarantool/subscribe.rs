//! The `subscribe` command against the node binary killed, stopped and started again while
//! it follows a real Tarantool (only a Tarantool feeds the binary): the concatenated stdout of
//! a subscriber restarted with its cursor file must hold every event exactly once, in order;
//! the same with several `--subscribe` over one JSON-RPC connection across a node kill and a
//! 1001 shutdown.

use std::time::Duration;

use planetmint_streams_devchain::process::TarantoolProcess;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::subscribe::{expected_where, stop, subscriber, url_mode_events, SubscriberFiles};
use crate::support::*;

/// A node process on its own Tarantool, to be killed, stopped and started again.
struct RestartableNode {
    tarantool: TarantoolProcess,
    node: NodeProcess,
    process: Child,
}

impl RestartableNode {
    /// Tarantool and the node, ready.
    async fn start() -> Self {
        let tarantool = TarantoolProcess::start().await.expect("tarantool");
        let node = NodeProcess::new(&tarantool.address());
        let process = node.spawn();
        node.wait_ready().await;
        Self {
            tarantool,
            node,
            process,
        }
    }

    fn api_port(&self) -> u16 {
        self.node.api_port
    }

    /// Writes `blocks` into its Tarantool, one every 25 ms, in the background (see
    /// [`spawn_writer`]).
    fn write(
        &self,
        blocks: &[planetmint_streams_devchain::generate::GeneratedBlock],
    ) -> (
        tokio::task::JoinHandle<()>,
        tokio::sync::watch::Receiver<u64>,
    ) {
        spawn_writer(
            Store::Tarantool(self.tarantool.address()),
            blocks.to_vec(),
            Duration::from_millis(25),
        )
    }

    /// The node dies without a goodbye: its subscribers just lose the connection.
    async fn kill(&mut self) {
        let _ = self.process.start_kill();
        let _ = self.process.wait().await;
    }

    /// The node shuts down cleanly on SIGTERM (1001 with the last heights).
    async fn terminate(&mut self) {
        if let Some(pid) = self.process.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), self.process.wait()).await;
    }

    /// Starts the node again (on the same ports) and waits until it is ready.
    async fn restart(&mut self) {
        self.process = self.node.spawn();
        self.node.wait_ready().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_exactly_once_across_node_and_subscriber_restarts() {
    let mut node = RestartableNode::start().await;
    let files = SubscriberFiles::new("cursor");
    let mut sub = subscriber(node.api_port(), &[], &files);

    let blocks = chain(77, 1, 120, 2);
    let expected = expected_events(&blocks);
    let (writer, mut progress) = node.write(&blocks);

    progress.wait_for(|h| *h >= 30).await.expect("progress");
    stop(&mut sub).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    sub = subscriber(node.api_port(), &[], &files);

    progress.wait_for(|h| *h >= 60).await.expect("progress");
    node.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.restart().await;

    progress.wait_for(|h| *h >= 90).await.expect("progress");
    stop(&mut sub).await;
    sub = subscriber(node.api_port(), &[], &files);

    writer.await.expect("writer");
    files.wait_for_lines(expected.len()).await;
    stop(&mut sub).await;
    let got = files.lines();
    assert_eq!(got.len(), expected.len(), "every event once");
    assert_eq!(got, expected, "in order");
    assert_eq!(
        std::fs::read_to_string(&files.cursor)
            .expect("cursor")
            .trim(),
        "120"
    );
    node.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_filters_over_one_connection_get_what_two_url_streams_get_across_restarts() {
    let mut node = RestartableNode::start().await;
    let blocks = chain(79, 1, 120, 3);
    // The key that receives most often: a wallet following itself.
    let mut counts = std::collections::HashMap::<&str, usize>::new();
    for tx in blocks.iter().flat_map(|b| &b.transactions) {
        for key in &tx.output_keys {
            *counts.entry(key.as_str()).or_default() += 1;
        }
    }
    let key = counts
        .iter()
        .max_by_key(|(key, n)| (**n, **key))
        .map(|(key, _)| (*key).to_owned())
        .expect("keys");
    let by_key = expected_where(&blocks, |tx| tx.output_keys.contains(&key));
    let transfers = expected_where(&blocks, |tx| tx.operation == "TRANSFER");
    assert!(!by_key.is_empty() && !transfers.is_empty());
    let specs = [
        format!("wallet=valid_transactions?public_key={key}"),
        "transfers=valid_transactions?operation=TRANSFER".to_owned(),
    ];

    let files = SubscriberFiles::new("cursor.json");
    let mut sub = subscriber(node.api_port(), &specs, &files);
    let (writer, mut progress) = node.write(&blocks);

    // The subscriber stops and starts again from its cursor file.
    progress.wait_for(|h| *h >= 30).await.expect("progress");
    stop(&mut sub).await;
    sub = subscriber(node.api_port(), &specs, &files);

    // The node dies without a goodbye (connection lost) and comes back.
    progress.wait_for(|h| *h >= 60).await.expect("progress");
    node.kill().await;
    node.restart().await;

    // The node shuts down cleanly (1001 with last_heights) and comes back.
    progress.wait_for(|h| *h >= 90).await.expect("progress");
    node.terminate().await;
    node.restart().await;

    writer.await.expect("writer");
    let want = by_key.len() + transfers.len();
    files.wait_for_lines(want).await;
    stop(&mut sub).await;
    let log = files.log();
    let got = files.lines();
    let of = |name: &str| -> Vec<Value> {
        got.iter()
            .filter(|line| line["subscription"] == name)
            .map(|line| line["result"].clone())
            .collect()
    };
    assert_eq!(
        got.len(),
        want,
        "every event of both subscriptions once; subscriber said:\n{log}"
    );
    assert_eq!(of("wallet"), by_key, "the wallet's events, in order");
    assert_eq!(of("transfers"), transfers, "the transfers, in order");
    assert!(
        log.contains("closed by the node (1001)"),
        "the clean shutdown was a 1001 close:\n{log}"
    );

    // Exactly what the two equivalent URL streams deliver.
    let url_wallet = url_mode_events(node.api_port(), &["--public-key", &key], by_key.len()).await;
    let url_transfers = url_mode_events(
        node.api_port(),
        &["--operation", "TRANSFER"],
        transfers.len(),
    )
    .await;
    assert_eq!(of("wallet"), url_wallet);
    assert_eq!(of("transfers"), url_transfers);

    // One height per subscription: the last block each printed.
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(&files.cursor).expect("cursor"))
            .expect("JSON");
    assert_eq!(
        stored,
        serde_json::json!({
            "wallet": by_key.last().map(|e| e["height"].clone()),
            "transfers": transfers.last().map(|e| e["height"].clone()),
        })
    );
    node.kill().await;
}
