//! `benchwriter`: commits Planetmint-shaped blocks into a loopback Tarantool for the stream
//! benchmarks, with transaction ids that encode their commit time (see the library's
//! `commit_time`), at a given rate or back to back; `--prefill` writes history quickly.
//! Prints a summary on stderr and a JSON line on stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use planetmint_streams_bench::loopback;
use planetmint_streams_bench::writer::{self, WriteMode, WriterConfig};

/// Commits blocks with commit-time transaction ids into Planetmint's Tarantool (loopback only).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Tarantool IPROTO address (127.0.0.0/8 or ::1 only).
    #[arg(long, default_value = "127.0.0.1:3303")]
    tarantool: String,
    /// Blocks to commit (default 100; --prefill: 1000).
    #[arg(long)]
    blocks: Option<u64>,
    /// Transactions per block (default 10; --prefill: 100).
    #[arg(long)]
    txs: Option<usize>,
    /// Blocks per second; 0 commits them back to back.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// History for the replay scenario: back to back, 10 blocks' rows at a time, progress on
    /// stderr; 1000 blocks x 100 transactions unless --blocks/--txs say otherwise.
    #[arg(long)]
    prefill: bool,
    /// batch: one eval (one transaction, block row last) per block; pipelined: one request
    /// per row, a block's rows concurrently; sequential: one request per row, one at a time
    /// (Planetmint's pattern).
    #[arg(long, value_enum, default_value = "batch")]
    write_mode: WriteMode,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Wait for this file to exist before the first block (wsload --ready-file).
    #[arg(long)]
    wait_file: Option<PathBuf>,
    /// Seconds to wait for --wait-file.
    #[arg(long, default_value_t = 120.0)]
    wait_timeout: f64,
    /// Stop after this many seconds, written or not.
    #[arg(long, default_value_t = 600.0)]
    max_run: f64,
    /// Name of the run in the output.
    #[arg(long, default_value = "benchwriter")]
    label: String,
    /// Mix every operation kind Planetmint commits into the blocks (version 2.0 CREATE and
    /// TRANSFER, COMPOSE, DECOMPOSE, elections and votes in `governance`), not only version 3.0
    /// CREATE and TRANSFER.
    #[arg(long)]
    all_operations: bool,
}

fn run(args: Args) -> anyhow::Result<()> {
    let addr = loopback::resolve_host_port(&args.tarantool)?;
    let seconds = |v: f64, name: &str| {
        Duration::try_from_secs_f64(v)
            .with_context(|| format!("--{name} must be a non-negative number of seconds"))
    };
    let config = WriterConfig {
        tarantool: addr.to_string(),
        blocks: args.blocks.unwrap_or(if args.prefill { 1000 } else { 100 }),
        txs: args.txs.unwrap_or(if args.prefill { 100 } else { 10 }),
        rate: if args.prefill { 0.0 } else { args.rate },
        seed: args.seed,
        mode: args.write_mode,
        group: if args.prefill { 10 } else { 1 },
        wait_file: args.wait_file,
        wait_timeout: seconds(args.wait_timeout, "wait-timeout")?,
        max_run: seconds(args.max_run, "max-run")?,
        progress: args.prefill,
        label: args.label,
        all_operations: args.all_operations,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(writer::run(config))?;
    eprint!("{}", writer::summary(&report));
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("benchwriter: {err:#}");
            ExitCode::from(1)
        }
    }
}
