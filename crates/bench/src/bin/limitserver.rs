//! `limitserver`: the limit baseline of the stream benchmarks.
//!
//! A minimal WebSocket server on loopback that, once N subscribers are connected, writes B
//! blocks of T pre-encoded `valid_transactions` frames from memory to every subscriber (one
//! shared buffer per block, one write per block per connection), stamping ids with the commit
//! time as each block is handed over. Exits once every block is written and every client has
//! left, at --max-run, or on SIGINT/SIGTERM. Prints a JSON line on stdout.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use planetmint_streams_bench::limit::{self, LimitConfig};
use planetmint_streams_bench::system;
use tokio_util::sync::CancellationToken;

/// Limit-baseline WebSocket server: pre-encoded frames from memory, as fast as sockets take them.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (127.0.0.0/8 or ::1 only; port 0 picks one, see --addr-file).
    #[arg(long, default_value = "127.0.0.1:9995")]
    bind: SocketAddr,
    /// Start writing once this many subscribers are connected (count never-reading ones too).
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    /// Blocks to write.
    #[arg(long, default_value_t = 10)]
    blocks: u64,
    /// Messages (transactions) per block.
    #[arg(long, default_value_t = 10)]
    txs: usize,
    /// Blocks per second; 0 writes them back to back.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Height of the first block.
    #[arg(long, default_value_t = 1)]
    first_height: u64,
    /// Seconds between the last subscriber connecting and the first block.
    #[arg(long, default_value_t = 0.0)]
    start_delay: f64,
    /// Exit after this many seconds whatever happens.
    #[arg(long, default_value_t = 300.0)]
    max_run: f64,
    /// Refuse connections beyond this many.
    #[arg(long, default_value_t = 20_000)]
    max_connections: usize,
    /// Write the bound address to this file.
    #[arg(long)]
    addr_file: Option<PathBuf>,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
}

fn run(args: Args) -> anyhow::Result<()> {
    let seconds = |v: f64, name: &str| {
        Duration::try_from_secs_f64(v)
            .with_context(|| format!("--{name} must be a non-negative number of seconds"))
    };
    let config = LimitConfig {
        bind: args.bind,
        subscribers: args.subscribers,
        blocks: args.blocks,
        txs: args.txs,
        rate: args.rate,
        first_height: args.first_height,
        start_delay: seconds(args.start_delay, "start-delay")?,
        max_run: seconds(args.max_run, "max-run")?,
        max_connections: args.max_connections,
        addr_file: args.addr_file,
    };
    let limit =
        system::raise_nofile(args.max_connections as u64 + 256).context("raising RLIMIT_NOFILE")?;
    if limit < args.max_connections as u64 {
        eprintln!("limitserver: warning: only {limit} file descriptors allowed; raise the hard limit (ulimit -Hn)");
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let stop = CancellationToken::new();
        let signals = {
            let stop = stop.clone();
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                stop.cancel();
            })
        };
        let report = limit::serve(config, stop).await;
        signals.abort();
        report
    })?;
    eprintln!(
        "limitserver: ended by {}; {} blocks x {} messages ({} bytes/block, {} bytes/message frame) in {:.3}s; peak {} connections, {} at start, {} failed handshakes, {} lagged blocks",
        report.ended_by,
        report.blocks,
        report.txs_per_block,
        report.block_bytes,
        report.message_frame_bytes,
        report.publish_s,
        report.connections_peak,
        report.connections_at_start,
        report.handshake_failures,
        report.lagged_blocks
    );
    println!("{}", serde_json::to_string(&report)?);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("limitserver: {err:#}");
            ExitCode::from(1)
        }
    }
}
