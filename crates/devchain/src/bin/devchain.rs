//! `planetmint-streams-devchain`: commits Planetmint-shaped blocks into a development Tarantool
//! at a chosen rate, the way Planetmint does (transactions first, block row last), with every
//! operation kind Planetmint commits unless told otherwise.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
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
    #[arg(long, default_value_t = 5)]
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
    /// Seed for the generated data.
    #[arg(long, default_value_t = 1)]
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
    let mut head = writer.head_height().await?;
    if args.with_fixtures && head.is_none() {
        let fixtures = Planetmint253::load_all_ops()
            .context("reading tests/fixtures/planetmint-2.5.3-all-ops")?;
        for height in fixtures.heights() {
            fixtures.write_block(&writer, height).await?;
        }
        tracing::info!(
            blocks = fixtures.heights().len(),
            "wrote the blocks Planetmint 2.5.3 wrote"
        );
        head = writer.head_height().await?;
    }
    let first = head.map_or(1, |h| h + 1);
    let mut chain = ChainGenerator::new(args.seed ^ first, first, 8);
    if !args.create_transfer_only {
        chain = chain.with_all_operations();
    }
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
