//! `wsload`: WebSocket load client for the stream benchmarks (loopback only).
//!
//! Opens N subscribers to a stream URL at a fixed connect rate (plus K that never read), then
//! measures every message (commit-to-arrival latency from the commit time encoded in the
//! transaction id, events/s, loss, duplicates, order) or holds the connections idle. An
//! `http://` URL is read as Server-Sent Events (`Accept: text/event-stream`), the same
//! messages measured the same way. Prints a human summary on stderr and one JSON line on
//! stdout. See crates/bench/README.md.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use planetmint_streams_bench::load::{self, LoadConfig, Mode};
use planetmint_streams_bench::{loopback, system};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    /// Parse every message: latency, events/s, loss.
    Measure,
    /// Hold the connections open for --duration, answering pings.
    Idle,
}

/// WebSocket load client: N subscribers to a loopback stream URL.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Stream URL on 127.0.0.0/8 or ::1 only: ws:// (WebSocket) or http:// (Server-Sent
    /// Events).
    #[arg(
        long,
        default_value = "ws://127.0.0.1:9985/api/v1/streams/valid_transactions"
    )]
    url: String,
    /// Subscribers that read.
    #[arg(long, short = 'n', default_value_t = 10)]
    subscribers: usize,
    /// Additional subscribers that connect and never read.
    #[arg(long, default_value_t = 0)]
    stalled: usize,
    /// measure or idle.
    #[arg(long, value_enum, default_value = "measure")]
    mode: ModeArg,
    /// New connections per second.
    #[arg(long, default_value_t = 2000.0)]
    connect_rate: f64,
    /// Most handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Seconds allowed for one connect plus handshake.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// Events each reading subscriber should receive (loss is counted against it; the run
    /// ends early once every subscriber has them).
    #[arg(long)]
    expect: Option<u64>,
    /// Longest run in seconds after the connect phase (idle mode: how long to hold).
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Measure mode: end once nothing arrived for this many seconds after the first event.
    #[arg(long, default_value_t = 3.0)]
    quiet: f64,
    /// Spread connections over 127.0.0.1..127.0.0.K as source addresses (default: only when
    /// the ephemeral port range would not hold them all).
    #[arg(long)]
    source_ips: Option<usize>,
    /// The first source address (e.g. 127.0.0.2 for a bystander beside load from 127.0.0.1);
    /// alone, every connection comes from it.
    #[arg(long)]
    source_ip: Option<Ipv4Addr>,
    /// WebSocket read buffer per connection in bytes (default 64 KiB, idle mode 4 KiB).
    #[arg(long)]
    read_buffer: Option<usize>,
    /// Most latency samples kept per subscriber (memory bound; 16 bytes each).
    #[arg(long, default_value_t = 2_000_000)]
    max_samples: usize,
    /// PID of the server: sample its RSS (VmRSS) before, after connecting, peak and end.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds to wait after connecting before reading the server's RSS.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// File written once every connection is open (start the writer when it appears).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Seconds to read the never-reading subscribers at the end to see how they ended.
    #[arg(long, default_value_t = 3.0)]
    stalled_drain: f64,
    /// Seconds allowed for each closing handshake at the end.
    #[arg(long, default_value_t = 2.0)]
    close_timeout: f64,
    /// Name of the run in the output.
    #[arg(long, default_value = "wsload")]
    label: String,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Include each subscriber's unique event count in the JSON.
    #[arg(long)]
    per_subscriber: bool,
}

fn seconds(value: f64, name: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("--{name} must be a non-negative number of seconds"))
}

/// Ports of the ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`).
fn ephemeral_ports() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<usize>().ok());
            let (low, high) = (parts.next()??, parts.next()??);
            Some(high.saturating_sub(low) + 1)
        })
        .unwrap_or(28_232)
}

fn run(args: Args) -> anyhow::Result<()> {
    let target = loopback::target(&args.url)?;
    let total = args.subscribers + args.stalled;
    let source_ips = args.source_ips.unwrap_or_else(|| {
        // Keep half the range free for other sockets and TIME_WAIT.
        let budget = (ephemeral_ports() / 2).max(1);
        if total > budget && target.addr.is_ipv4() {
            total.div_ceil(budget)
        } else {
            usize::from(args.source_ip.is_some())
        }
    });
    if let Some(ip) = args.source_ip {
        if !ip.is_loopback() {
            anyhow::bail!("--source-ip {ip} is not a loopback address");
        }
    }
    let mode = match args.mode {
        ModeArg::Measure => Mode::Measure,
        ModeArg::Idle => Mode::Idle,
    };
    let limit = system::raise_nofile(total as u64 + 256).context("raising RLIMIT_NOFILE")?;
    if limit < total as u64 + 64 {
        eprintln!(
            "wsload: warning: only {limit} file descriptors allowed for {total} connections; raise the hard limit (ulimit -Hn)"
        );
    }
    let config = LoadConfig {
        target,
        mode,
        subscribers: args.subscribers,
        stalled: args.stalled,
        connect_rate: args.connect_rate,
        connect_concurrency: args.connect_concurrency,
        connect_timeout: seconds(args.connect_timeout, "connect-timeout")?,
        expect: args.expect,
        duration: seconds(args.duration, "duration")?,
        quiet: seconds(args.quiet, "quiet")?,
        source_ips,
        source_base: args.source_ip.unwrap_or(Ipv4Addr::new(127, 0, 0, 1)),
        read_buffer: args.read_buffer.unwrap_or(match mode {
            Mode::Measure => 64 * 1024,
            Mode::Idle => 4 * 1024,
        }),
        max_samples: args.max_samples,
        server_pid: args.server_pid,
        settle: seconds(args.settle, "settle")?,
        ready_file: args.ready_file,
        stalled_drain: seconds(args.stalled_drain, "stalled-drain")?,
        close_timeout: seconds(args.close_timeout, "close-timeout")?,
        label: args.label,
        per_subscriber: args.per_subscriber,
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    let report = runtime.block_on(load::run(config))?;
    eprint!("{}", load::summary(&report));
    println!("{}", serde_json::to_string(&report)?);
    // Connections still closing must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("wsload: {err:#}");
            ExitCode::from(1)
        }
    }
}
