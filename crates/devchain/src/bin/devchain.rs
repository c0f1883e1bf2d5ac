//! `planetmint-streams-devchain`: commits Planetmint-shaped blocks into a development Tarantool
//! at a chosen rate, the way Planetmint does (transactions first, block row last), with every
//! operation kind Planetmint commits unless told otherwise. The data depends only on the flags:
//! the same `--seed` gives the same keys and, from the same height, the same blocks on every
//! start (a restart over its own chain continues it as if it had never stopped).

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use planetmint_streams_devchain::demo;
use planetmint_streams_devchain::fixtures::Planetmint253;
use planetmint_streams_devchain::generate::ChainGenerator;
use planetmint_streams_devchain::writer::PlanetmintWriter;

/// Writes demo blocks into a Tarantool that has Planetmint's schema.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Tarantool IPROTO address.
    #[arg(long, default_value = "127.0.0.1:3303")]
    tarantool: String,
    /// Blocks committed per second.
    #[arg(long, default_value_t = 1.0)]
    blocks_per_second: f64,
    /// Transactions per block.
    #[arg(long, default_value_t = demo::TRANSACTIONS_PER_BLOCK)]
    transactions: usize,
    /// Stop after this many blocks (default: run until interrupted).
    #[arg(long)]
    count: Option<u64>,
    /// First write the blocks Planetmint 2.5.3 itself wrote with every operation kind
    /// (tests/fixtures/planetmint-2.5.3-all-ops), when the database is empty.
    #[arg(long)]
    with_fixtures: bool,
    /// Generate only version 3.0 CREATE and TRANSFER transactions (default: every kind
    /// Planetmint commits, elections and votes included).
    #[arg(long)]
    create_transfer_only: bool,
    /// Seed for the generated data (keys, assets, blocks): the same seed gives the same chain.
    #[arg(long, default_value_t = demo::SEED)]
    seed: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tarantool_rs=warn".into()),
        )
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        args.blocks_per_second > 0.0,
        "--blocks-per-second must be positive"
    );
    let mut writer = PlanetmintWriter::connect(&args.tarantool)
        .await
        .with_context(|| format!("connecting to Tarantool at {}", args.tarantool))?;
    let fixtures =
        Planetmint253::load_all_ops().context("reading tests/fixtures/planetmint-2.5.3-all-ops")?;
    let mut head = writer.head_height().await?;
    if args.with_fixtures && head.is_none() {
        for height in fixtures.heights() {
            fixtures.write_block(&writer, height).await?;
        }
        tracing::info!(
            blocks = fixtures.heights().len(),
            "wrote the blocks Planetmint 2.5.3 wrote"
        );
        head = writer.head_height().await?;
    }
    // The generated chain always starts at the same height with the same seed, so every start
    // (and every machine) has the same keys, assets and blocks: the ones the docs name.
    let first = if args.with_fixtures {
        fixtures.heights().iter().max().map_or(1, |h| h + 1)
    } else {
        1
    };
    let mut chain = ChainGenerator::new(args.seed, first, demo::WALLETS);
    if !args.create_transfer_only {
        chain = chain.with_all_operations();
    }
    if let Some(head) = head.filter(|head| *head >= first) {
        // Started again over a chain: make its blocks again (without writing them) to continue
        // it exactly where it stopped.
        let made = chain.catch_up(head, args.transactions);
        let written = writer.head_block().await?.map(|(_, hash)| hash);
        if made.map(|block| block.app_hash) != written {
            tracing::warn!(
                head,
                "the database holds blocks this generator did not write (another --seed, \
                 --transactions or version): new blocks use the same keys but other assets; \
                 start from an empty database (rm -rf .demo) for the documented ones"
            );
        } else {
            tracing::info!(head, "continuing the demo chain");
        }
    }
    let first = chain.next_height();
    tracing::info!(keys = ?chain.wallets(), "the demo's wallet keys");
    let period = Duration::from_secs_f64(1.0 / args.blocks_per_second);
    let mut ticker = tokio::time::interval(period);
    let mut written = 0u64;
    tracing::info!(
        first_height = first,
        every_ms = period.as_millis() as u64,
        "committing blocks"
    );
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick() => {}
        }
        let block = chain.block(args.transactions);
        writer
            .write_block_retrying(&args.tarantool, &block, Duration::from_secs(3600))
            .await?;
        tracing::info!(
            height = block.height,
            transactions = block.transactions.len(),
            "committed block"
        );
        written += 1;
        if args.count.is_some_and(|count| written >= count) {
            break;
        }
    }
    Ok(())
}
