//! The Tarantool source against a real Tarantool (Debian's 2.6 in CI): the relay that makes
//! tarantool-rs work there, the long-poll, bulk reads, poll mode, and restarts of Tarantool.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use planetmint_streams_devchain::fixtures::Planetmint253;
use planetmint_streams_devchain::generate::ChainGenerator;
use planetmint_streams_devchain::process::{TarantoolOptions, TarantoolProcess};
use planetmint_streams_devchain::writer::PlanetmintWriter;
use planetmint_streams_ingest::tarantool::{ReadMode, TarantoolConfig, TarantoolSource};
use planetmint_streams_model::BlockSource;

fn config(address: String) -> TarantoolConfig {
    TarantoolConfig {
        address,
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        request_timeout: Duration::from_secs(3),
        ..TarantoolConfig::default()
    }
}

#[tokio::test]
async fn reads_the_blocks_planetmint_wrote_with_its_own_fields() {
    let tarantool = TarantoolProcess::start().await.expect("tarantool starts");
    let fixtures = Planetmint253::load().expect("fixtures");
    let writer = PlanetmintWriter::connect(&tarantool.address())
        .await
        .expect("writer");
    for height in fixtures.heights() {
        fixtures.write_block(&writer, height).await.expect("write");
    }
    let source = TarantoolSource::new(config(tarantool.address()))
        .await
        .expect("source");
    let bounds = source.bounds().await.expect("bounds").expect("some blocks");
    assert_eq!((bounds.lowest, bounds.highest), (0, 8));
    let batch = source
        .next_blocks(0, 100, Duration::ZERO)
        .await
        .expect("read");
    assert_eq!(
        source.is_pushing().await,
        Some(true),
        "the Lua helpers are installed"
    );
    assert_eq!(batch.head, 8);
    let heights: Vec<u64> = batch.blocks.iter().map(|b| b.height).collect();
    assert_eq!(heights, (1..=8).collect::<Vec<_>>());
    let events: Vec<(String, String, u64)> = batch
        .blocks
        .iter()
        .flat_map(|b| {
            b.transactions
                .iter()
                .map(move |tx| (tx.id.clone(), tx.asset_id.clone(), b.height))
        })
        .collect();
    let expected: Vec<(String, String, u64)> = fixtures
        .expected_transactions
        .iter()
        .map(|e| {
            (
                e["transaction_id"].as_str().unwrap_or_default().to_owned(),
                e["asset_id"].as_str().unwrap_or_default().to_owned(),
                e["height"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(events, expected);
    for (block, want) in batch.blocks.iter().zip(&fixtures.expected_blocks) {
        assert_eq!(block.hash, want["hash"].as_str().unwrap_or_default());
        // Kept for include=transaction: the rows rebuild this block's transactions.
        let rebuilt = block.rows.as_ref().expect("rows kept").api_transactions();
        let ids: Vec<String> = rebuilt
            .expect("a block record")
            .into_iter()
            .map(|tx| {
                tx.expect("a transaction")["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(ids, block.transaction_ids().collect::<Vec<_>>());
        // Committed before the helpers were installed: no commit time is known.
        assert_eq!(block.committed_at, None);
    }
    // Bounded reads for replay.
    let middle = source.blocks_between(2, 5, 100).await.expect("range");
    assert_eq!(
        middle.iter().map(|b| b.height).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    let two = source.blocks_between(0, 8, 2).await.expect("range");
    assert_eq!(two.len(), 2);
}

#[tokio::test]
async fn a_commit_wakes_the_long_poll_at_once() {
    let tarantool = TarantoolProcess::start().await.expect("tarantool starts");
    let writer = PlanetmintWriter::connect(&tarantool.address())
        .await
        .expect("writer");
    let source = Arc::new(
        TarantoolSource::new(config(tarantool.address()))
            .await
            .expect("source"),
    );
    // Empty database: nothing yet, the wait times out empty.
    let started = Instant::now();
    let empty = source
        .next_blocks(0, 10, Duration::from_millis(300))
        .await
        .expect("read");
    assert!(empty.blocks.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "it waited on the server"
    );

    let mut chain = ChainGenerator::new(1, 1, 4);
    let block = chain.block(3);
    let waiting = {
        let source = source.clone();
        tokio::spawn(async move { source.next_blocks(0, 10, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let written_at = Instant::now();
    let before_write = SystemTime::now();
    writer.write_block(&block).await.expect("write");
    let batch = waiting.await.expect("join").expect("read");
    let woke_after = written_at.elapsed();
    // The commit time (Tarantool's clock, the same host's) lies within the write.
    let committed_at = batch.blocks[0].committed_at.expect("a commit time");
    let slack = Duration::from_millis(50);
    assert!(
        committed_at + slack >= before_write,
        "{committed_at:?} {before_write:?}"
    );
    assert!(committed_at <= SystemTime::now() + slack);
    assert_eq!(batch.blocks.len(), 1);
    assert_eq!(batch.blocks[0].height, 1);
    assert_eq!(
        batch.blocks[0].transaction_ids().collect::<Vec<_>>(),
        block.transaction_ids()
    );
    // Far below the 10 s wait: the commit trigger woke it.
    assert!(
        woke_after < Duration::from_secs(2),
        "woke after {woke_after:?}"
    );
}

#[tokio::test]
async fn poll_mode_works_for_users_without_eval() {
    let tarantool = TarantoolProcess::start_with(TarantoolOptions {
        extra_lua: "box.once('reader', function() \
                      box.schema.user.create('reader', { password = 'secret' }) \
                      box.schema.user.grant('reader', 'read', 'universe') \
                    end)"
            .into(),
        ..TarantoolOptions::default()
    })
    .await
    .expect("tarantool starts");
    let fixtures = Planetmint253::load().expect("fixtures");
    let writer = PlanetmintWriter::connect(&tarantool.address())
        .await
        .expect("writer");
    for height in fixtures.heights() {
        fixtures.write_block(&writer, height).await.expect("write");
    }
    let mut cfg = config(tarantool.address());
    cfg.user = Some("reader".into());
    cfg.password = Some("secret".into());
    let source = TarantoolSource::new(cfg.clone()).await.expect("source");
    let batch = source
        .next_blocks(4, 100, Duration::ZERO)
        .await
        .expect("read by select");
    assert_eq!(
        source.is_pushing().await,
        Some(false),
        "fell back to polling"
    );
    assert_eq!(
        batch.blocks.iter().map(|b| b.height).collect::<Vec<_>>(),
        vec![5, 6, 7, 8]
    );
    assert_eq!(batch.head, 8);
    let all_ids: Vec<String> = batch
        .blocks
        .iter()
        .flat_map(|b| b.transaction_ids().map(str::to_owned))
        .collect();
    let expected: Vec<String> = fixtures
        .expected_transactions
        .iter()
        .filter(|e| e["height"].as_u64().unwrap_or(0) > 4)
        .map(|e| e["transaction_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(all_ids, expected);

    // Push mode insisted on: the lack of eval permission is an error, not a silent fallback.
    cfg.mode = ReadMode::Push;
    let push_only = TarantoolSource::new(cfg).await.expect("source");
    let err = push_only
        .next_blocks(0, 1, Duration::ZERO)
        .await
        .expect_err("eval is denied");
    assert_eq!(err.kind(), "refused", "{err}");
}

#[tokio::test]
async fn survives_tarantool_being_killed_and_restarted() {
    let mut tarantool = TarantoolProcess::start().await.expect("tarantool starts");
    let address = tarantool.address();
    let mut writer = PlanetmintWriter::connect(&address).await.expect("writer");
    let mut chain = ChainGenerator::new(2, 1, 4);
    let first = chain.block(2);
    writer.write_block(&first).await.expect("write");
    let source = TarantoolSource::new(config(address.clone()))
        .await
        .expect("source");
    let batch = source
        .next_blocks(0, 10, Duration::ZERO)
        .await
        .expect("read");
    assert_eq!(batch.blocks.len(), 1);

    tarantool.kill().await;
    let err = source
        .next_blocks(1, 10, Duration::ZERO)
        .await
        .expect_err("down");
    assert_eq!(err.kind(), "unavailable", "{err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while source.relay_state().reachable() {
        assert!(Instant::now() < deadline, "the relay notices the outage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    tarantool.restart().await.expect("restart");
    let second = chain.block(2);
    writer
        .write_block_retrying(&address, &second, Duration::from_secs(20))
        .await
        .expect("write after restart");
    // The Lua helpers were lost with the old process: they are installed again and the
    // long-poll works on the new one.
    let deadline = Instant::now() + Duration::from_secs(20);
    let batch = loop {
        match source.next_blocks(1, 10, Duration::from_millis(200)).await {
            Ok(batch) if !batch.blocks.is_empty() => break batch,
            Ok(_) | Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("no block after restart: {other:?}"),
        }
    };
    assert_eq!(
        batch.blocks.iter().map(|b| b.height).collect::<Vec<_>>(),
        vec![2]
    );
    assert!(source.relay_state().reachable());
    assert!(source.relay_state().sessions() >= 2);
}

#[tokio::test]
async fn a_read_only_replica_pushes_rows_applied_by_replication() {
    let master = TarantoolProcess::start().await.expect("master");
    let replica = TarantoolProcess::start_replica_of(&master)
        .await
        .expect("replica");
    let writer = PlanetmintWriter::connect(&master.address())
        .await
        .expect("writer");
    let mut chain = ChainGenerator::new(9, 1, 4);
    writer.write_block(&chain.block(2)).await.expect("write");
    let source = Arc::new(
        TarantoolSource::new(config(replica.address()))
            .await
            .expect("source"),
    );
    // The first block arrives through replication.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let batch = source
            .next_blocks(0, 10, Duration::from_millis(200))
            .await
            .expect("read replica");
        if !batch.blocks.is_empty() {
            break batch;
        }
        assert!(Instant::now() < deadline, "replication delivers the block");
    };
    assert_eq!(first.blocks[0].height, 1);
    assert_eq!(
        source.is_pushing().await,
        Some(true),
        "eval and triggers work on a read-only replica"
    );
    // A commit on the master wakes a long-poll on the replica.
    let waiting = {
        let source = source.clone();
        tokio::spawn(async move { source.next_blocks(1, 10, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let block = chain.block(3);
    let written_at = Instant::now();
    writer.write_block(&block).await.expect("write");
    let batch = waiting.await.expect("join").expect("read");
    assert_eq!(
        batch.blocks.iter().map(|b| b.height).collect::<Vec<_>>(),
        vec![2]
    );
    assert!(
        written_at.elapsed() < Duration::from_secs(2),
        "woken by the replicated commit"
    );
}
