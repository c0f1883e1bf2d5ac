//! Scale-out on loopback: a node reading a Tarantool read replica with the master as
//! fallback (failover and failback with nothing lost or repeated), and two nodes behind a real
//! load balancer (nginx from Debian) with a client resuming by height after one node dies.

use std::process::Stdio;
use std::time::Duration;

use crate::support::*;
use planetmint_streams_devchain::process::{free_port, TarantoolProcess};
use tokio::process::{Child, Command};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_a_replica_fails_over_to_the_master_and_back_without_loss() {
    let master = TarantoolProcess::start().await.expect("master");
    let mut replica = TarantoolProcess::start_replica_of(&master)
        .await
        .expect("replica");
    let mut config = tarantool_config(&replica.address());
    config.tarantool.fallbacks = vec![master.address()];
    config.tarantool.failback_interval = Duration::from_millis(500);
    config.tarantool.connect_timeout = Duration::from_secs(1);
    let node = planetmint_streams::start(config).await.expect("node");
    let api = node.api_addr.to_string();
    let url = format!(
        "ws://{}/api/v1/streams/valid_transactions",
        node.streams_addr
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !(node.status.is_started() && node.status.is_reachable()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node reaches the replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ws = UrlStream::connect(&url).await;

    let blocks = chain(91, 1, 90, 2);
    let expected = expected_events(&blocks);
    let (writer, mut progress) = spawn_writer(
        Store::Tarantool(master.address()),
        blocks,
        Duration::from_millis(20),
    );
    progress.wait_for(|h| *h >= 30).await.expect("progress");
    replica.kill().await;
    progress.wait_for(|h| *h >= 55).await.expect("progress");
    // The failover happens once the node has seen the replica gone (its connect timeout is
    // 1 s): on a busy machine, not always before the writer reached 55.
    let metrics = metrics_until(&api, Duration::from_secs(20), |text| {
        metric(text, "planetmint_streams_source_failovers_total", "") >= 1.0
    })
    .await;
    assert!(
        metric(&metrics, "planetmint_streams_source_failovers_total", "") >= 1.0,
        "failed over to the master"
    );
    replica.restart().await.expect("replica back");
    writer.await.expect("writer");

    let received = ws.take(expected.len(), Duration::from_secs(30)).await;
    assert_eq!(
        received, expected,
        "every event once, in order, across failover and failback"
    );
    ws.assert_silent(Duration::from_millis(300)).await;
    // The replica is taken back once it answers again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = http_get(&api, "/metrics").await;
        if metric(&metrics, "planetmint_streams_source_failovers_total", "") >= 2.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fails back to the replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.shutdown().await;
}

/// nginx in its own process group (its master and worker): stopped as a group, so that no
/// worker outlives the test, whether it ends or panics.
struct Nginx {
    child: Child,
    /// The group's id: the master's pid (it leads the group it was started in).
    pgid: u32,
    _dir: tempfile::TempDir,
}

/// Sends `signal` (a name, as `kill -s` takes it) to every process of group `pgid`; whether
/// any process received it (false once the group is empty).
fn signal_group(pgid: u32, signal: &str) -> bool {
    std::process::Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

impl Nginx {
    /// Stops nginx (SIGTERM to the group: nginx's fast shutdown, which does not wait for the
    /// proxied WebSockets to end; the master reaps its worker before exiting), reaps the master
    /// and checks that nothing of the group is left.
    async fn stop(mut self) {
        signal_group(self.pgid, "TERM");
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            signal_group(self.pgid, "KILL");
            let _ = self.child.wait().await;
        }
        // Only zombies or nothing may be left; the worker's parent was the master, which
        // reaped it, so the group must be empty.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while signal_group(self.pgid, "0") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a process of nginx's group {} outlived its master",
                self.pgid
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Nginx {
    /// A test that panics still takes the worker down with the master.
    fn drop(&mut self) {
        signal_group(self.pgid, "KILL");
    }
}

fn start_nginx(listen: u16, upstreams: &[u16]) -> Nginx {
    let dir = tempfile::tempdir().expect("tmp");
    let servers: String = upstreams
        .iter()
        .map(|p| format!("        server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;\n"))
        .collect();
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n    access_log off;\n    client_body_temp_path {dir}/body;\n    proxy_temp_path {dir}/proxy;\n\
             fastcgi_temp_path {dir}/fastcgi;\n    uwsgi_temp_path {dir}/uwsgi;\n    scgi_temp_path {dir}/scgi;\n\
             upstream streams {{\n{servers}    }}\n\
             server {{\n        listen 127.0.0.1:{listen};\n        location / {{\n\
                         proxy_pass http://streams;\n            proxy_http_version 1.1;\n\
                         proxy_set_header Upgrade $http_upgrade;\n            proxy_set_header Connection \"upgrade\";\n\
                         proxy_read_timeout 3600s;\n            proxy_connect_timeout 2s;\n\
                         proxy_next_upstream error timeout;\n        }}\n    }}\n}}\n",
        dir = dir.path().display()
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).expect("conf");
    let child = Command::new("nginx")
        .args([
            "-p",
            &dir.path().display().to_string(),
            "-c",
            &path.display().to_string(),
        ])
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect(
            "this test needs nginx (Debian package): run `make test` or scripts/ensure-deps.sh",
        );
    let pgid = child.id().expect("nginx's pid, just started");
    Nginx {
        child,
        pgid,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_behind_a_load_balancer_resumes_on_the_other_node_exactly_once() {
    let tarantool = TarantoolProcess::start().await.expect("tarantool");
    let node_processes: Vec<NodeProcess> = (0..2)
        .map(|_| NodeProcess::new(&tarantool.address()))
        .collect();
    let mut nodes: Vec<Child> = node_processes.iter().map(NodeProcess::spawn).collect();
    for node in &node_processes {
        node.wait_ready().await;
    }
    let lb_port = free_port().expect("port");
    let nginx = start_nginx(
        lb_port,
        &node_processes
            .iter()
            .map(|n| n.streams_port)
            .collect::<Vec<_>>(),
    );
    let url = format!("ws://127.0.0.1:{lb_port}/api/v1/streams/valid_transactions");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio_tungstenite::connect_async(&url).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nginx proxies WebSocket upgrades"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let blocks = chain(92, 1, 100, 2);
    let expected = expected_events(&blocks);
    let (writer, mut progress) = spawn_writer(
        Store::Tarantool(tarantool.address()),
        blocks,
        Duration::from_millis(20),
    );
    let client = tokio::spawn({
        let url = url.clone();
        let want = expected.len();
        async move {
            let mut client = ExactlyOnceClient::new(&url, Some(0));
            client
                .run_until(want, Duration::from_secs(60), || None)
                .await;
            client
        }
    });
    progress.wait_for(|h| *h >= 40).await.expect("progress");
    // Kill the node the client is on (the one with a subscriber).
    let mut victim = None;
    for (index, node) in node_processes.iter().enumerate() {
        let (_, metrics) = http_get(&node.api(), "/metrics").await;
        if metric(
            &metrics,
            "planetmint_streams_subscribers",
            "stream=\"valid_transactions\"",
        ) >= 1.0
        {
            victim = Some(index);
        }
    }
    let victim = victim.expect("the client is on one of the nodes");
    let _ = nodes[victim].start_kill();
    let _ = nodes[victim].wait().await;
    writer.await.expect("writer");
    let client = client.await.expect("client");
    assert!(client.reconnects >= 1, "the client lost its node");
    assert_eq!(
        client.events, expected,
        "every event exactly once, in order, through the balancer"
    );
    nginx.stop().await;
    for mut node in nodes {
        let _ = node.start_kill();
        let _ = node.wait().await;
    }
}
