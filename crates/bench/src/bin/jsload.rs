//! `jsload`: JetStream consumer load client for the JetStream tier's benchmarks (loopback
//! only). Creates N consumers of a stream, then measures every message as `wsload` does
//! (commit-to-consumer latency from the commit time encoded in the transaction id, events/s,
//! loss, duplicates, order). Prints a human summary on stderr and one JSON line on stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use planetmint_streams_bench::jetstream::{self, JsLoadConfig, Kind, Start};
use planetmint_streams_bench::{loopback, system};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KindArg {
    /// Ordered pull consumers (no acknowledgements).
    Ordered,
    /// Durable pull consumers, each message acknowledged.
    Durable,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StartArg {
    /// Messages stored after the consumer exists.
    New,
    /// The whole stream.
    All,
}

/// JetStream consumer load client: N consumers of a stream on a loopback NATS.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// NATS URL (nats:// on 127.0.0.0/8 or ::1 only).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// JetStream stream.
    #[arg(long, default_value = "valid_transactions")]
    stream: String,
    /// Consumers.
    #[arg(long, short = 'n', default_value_t = 10)]
    consumers: usize,
    /// NATS connections they share (default: one each).
    #[arg(long)]
    connections: Option<usize>,
    /// ordered or durable.
    #[arg(long, value_enum, default_value = "ordered")]
    kind: KindArg,
    /// new (live only) or all (the whole stream).
    #[arg(long, value_enum, default_value = "new")]
    start: StartArg,
    /// Events each consumer should receive (the run ends once every consumer has them).
    #[arg(long)]
    expect: Option<u64>,
    /// Longest run in seconds after the consumers exist.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// End once nothing arrived for this many seconds after the first event.
    #[arg(long, default_value_t = 3.0)]
    quiet: f64,
    /// Consumers created at once.
    #[arg(long, default_value_t = 64)]
    create_concurrency: usize,
    /// Most latency samples kept per consumer.
    #[arg(long, default_value_t = 2_000_000)]
    max_samples: usize,
    /// File written once every consumer exists (start the writer when it appears).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Report the CPU seconds of a process during the run: NAME=PID (repeatable).
    #[arg(long = "pid", value_name = "NAME=PID")]
    pids: Vec<String>,
    /// Tokio worker threads (default: CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// Name in the output.
    #[arg(long, default_value = "jsload")]
    label: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("jsload: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let host = args
        .nats
        .strip_prefix("nats://")
        .context("--nats must be nats://HOST:PORT")?;
    let authority = host.split('/').next().unwrap_or(host);
    loopback::resolve_host_port(authority)?;
    let pids = args
        .pids
        .iter()
        .map(|p| {
            let (name, pid) = p.split_once('=').context("--pid NAME=PID")?;
            Ok((
                name.to_owned(),
                pid.parse::<u32>().context("--pid NAME=PID")?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let _ = system::raise_nofile((args.consumers as u64).saturating_mul(2) + 1024);
    let config = JsLoadConfig {
        label: args.label,
        nats_url: args.nats,
        stream: args.stream,
        consumers: args.consumers,
        connections: args.connections.unwrap_or(args.consumers).max(1),
        kind: match args.kind {
            KindArg::Ordered => Kind::Ordered,
            KindArg::Durable => Kind::Durable,
        },
        start: match args.start {
            StartArg::New => Start::New,
            StartArg::All => Start::All,
        },
        expect: args.expect,
        duration: Duration::from_secs_f64(args.duration),
        quiet: Duration::from_secs_f64(args.quiet),
        max_samples: args.max_samples,
        create_concurrency: args.create_concurrency,
        ready_file: args.ready_file,
        pids,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let report = runtime
        .enable_all()
        .build()?
        .block_on(jetstream::run(config))?;
    eprintln!("{}", jetstream::summary(&report));
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
