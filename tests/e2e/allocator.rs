//! The node binary publishes its allocator's statistics (ADR 0005): the gauges an operator reads
//! to tell memory the node's structures hold from memory jemalloc keeps, and they follow the
//! process's memory as subscribers come and go. Only in builds with jemalloc (the default).
#![cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]

use std::time::Duration;

use crate::support::*;
use planetmint_streams_devchain::process::TarantoolProcess;

const ALLOCATOR: &str = "planetmint_streams_allocator_bytes";

async fn allocator(api: &str) -> (f64, f64, f64, f64) {
    let (status, text) = http_get(api, "/metrics").await;
    assert_eq!(status, 200);
    for kind in [
        "allocated",
        "active",
        "metadata",
        "metadata_edata",
        "metadata_rtree",
        "resident",
        "mapped",
        "retained",
    ] {
        assert!(
            text.contains(&format!("{ALLOCATOR}{{kind=\"{kind}\"}}")),
            "/metrics has {ALLOCATOR}{{kind=\"{kind}\"}}"
        );
    }
    let get = |kind: &str| metric(&text, ALLOCATOR, &format!("kind=\"{kind}\""));
    (
        get("allocated"),
        get("active"),
        get("metadata"),
        get("resident"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_publishes_jemallocs_statistics_and_they_follow_its_subscribers() {
    let tarantool = TarantoolProcess::start().await.expect("tarantool");
    let node = NodeProcess::new(&tarantool.address());
    let mut child = node.spawn();
    node.wait_ready().await;
    let api = node.api();

    let (allocated, active, metadata, resident) = allocator(&api).await;
    assert!(allocated > 0.0, "the node has allocated something");
    assert!(active >= allocated, "pages in use hold the allocations");
    assert!(metadata > 0.0);
    let (status, text) = http_get(&api, "/metrics").await;
    assert_eq!(status, 200);
    let edata = metric(&text, ALLOCATOR, "kind=\"metadata_edata\"");
    let rtree = metric(&text, ALLOCATOR, "kind=\"metadata_rtree\"");
    let all = metric(&text, ALLOCATOR, "kind=\"metadata\"");
    assert!(
        edata > 0.0 && rtree > 0.0 && edata + rtree <= all,
        "extent descriptors ({edata}) and the radix tree ({rtree}) are parts of metadata ({all})"
    );
    assert!(
        resident >= active,
        "resident covers the pages in use ({resident} < {active})"
    );

    // 100 subscribers hold two 8 KiB dispatcher buffers each: the live bytes grow by well over
    // 1 MB while they are connected, and go back down once they have left.
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(UrlStream::connect(&node.transactions_url()).await);
    }
    let (with_clients, ..) = allocator(&api).await;
    assert!(
        with_clients > allocated + 1_000_000.0,
        "allocated {with_clients} with 100 subscribers, {allocated} without"
    );
    drop(clients);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (now, ..) = allocator(&api).await;
        if now < with_clients - 1_000_000.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "allocated still {now} 20 s after the subscribers left ({with_clients} with them)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}
