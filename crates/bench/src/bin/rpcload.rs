//! `rpcload`: N subscriptions to `valid_transactions` carried by N URL connections, by
//! JSON-RPC connections or by the N members of a stream-sea consumer group, for comparing what
//! each costs the server (loopback only); also an address held at its caps without reading, a
//! close storm timed from another address, and a flood of empty continuation frames.
//!
//! By default subscription `i` of `n` follows `partition=i/n`: together the n subscriptions
//! get every transaction exactly once, whichever way they are carried. After every
//! subscription is confirmed it reads the server's RSS and CPU, writes `--ready-file` (the
//! writer starts), then reads (`--expect`, `--quiet`, `--duration`), holds without reading
//! (`--unread`) or floods (`--flood`). Prints a summary on stderr and one JSON line on stdout
//! (crates/bench/README.md).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use planetmint_streams_bench::channel::{
    self, Carrier, ChannelConfig, ChannelReport, Phase, Split,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CarrierArg {
    /// One URL connection per subscription.
    Url,
    /// JSON-RPC connections (--connections) carrying all of them.
    Rpc,
    /// One stream-sea connection per subscription, all in one consumer group.
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SplitArg {
    /// Subscription i of n takes partition=i/n.
    Partition,
    /// Every subscription asks for the same.
    None,
}

/// N subscriptions over URL connections, JSON-RPC connections or a stream-sea consumer group.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The node's stream port, `ws://127.0.0.1:PORT` (loopback only).
    #[arg(long)]
    base: String,
    /// url: one connection per subscription; rpc: JSON-RPC connections; group: stream-sea
    /// members of one consumer group.
    #[arg(long, value_enum)]
    carrier: CarrierArg,
    /// Subscriptions in all.
    #[arg(long, short = 'n', default_value_t = 100)]
    subscriptions: usize,
    /// rpc: connections carrying the subscriptions (spread evenly).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// partition: subscription i takes partition=i/n; none: all ask for the same (a group
    /// needs none: it splits the stream itself).
    #[arg(long, value_enum, default_value = "partition")]
    split: SplitArg,
    /// More options for every subscription, as a URL query string
    /// (e.g. batch=block&include=transaction).
    #[arg(long, default_value = "")]
    query: String,
    /// Subscription i filters public_key = the (i mod K)-th of K shared keys.
    #[arg(long, default_value_t = 0)]
    public_keys: usize,
    /// Connection j comes from 127.0.0.(1 + j mod K).
    #[arg(long, default_value_t = 0)]
    source_ips: usize,
    /// Events expected over all subscriptions (the run ends once they are in).
    #[arg(long)]
    expect: Option<u64>,
    /// PID of the server whose RSS and CPU are read.
    #[arg(long)]
    server_pid: u32,
    /// File written once every subscription is confirmed.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Seconds to wait after subscribing before reading the server's RSS (and after closing).
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// End once nothing arrived for this many seconds after the first event.
    #[arg(long, default_value_t = 5.0)]
    quiet: f64,
    /// Longest run in seconds after subscribing (--unread: how long to hold).
    #[arg(long, default_value_t = 300.0)]
    duration: f64,
    /// Never read after subscribing: hold for --duration, then close every connection at once.
    #[arg(long)]
    unread: bool,
    /// With --unread: probe new JSON-RPC connections from this loopback address from 2 s
    /// before the close to --probe-after s after it.
    #[arg(long)]
    probe_source: Option<Ipv4Addr>,
    /// Seconds to keep probing after the close.
    #[arg(long, default_value_t = 10.0)]
    probe_after: f64,
    /// Instead of subscribing: one connection of the carrier's kind sends empty continuation
    /// frames for this many seconds.
    #[arg(long)]
    flood: Option<f64>,
    /// Name of the run in the output.
    #[arg(long, default_value = "rpcload")]
    label: String,
}

fn seconds(value: f64, name: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("--{name}: seconds"))
}

fn config(args: Args) -> anyhow::Result<ChannelConfig> {
    let phase = match (args.flood, args.unread) {
        (Some(_), true) => anyhow::bail!("--flood and --unread exclude each other"),
        (Some(s), false) => Phase::Flood(seconds(s, "flood")?),
        (None, true) => Phase::Unread,
        (None, false) => Phase::Read,
    };
    if let Some(ip) = args.probe_source {
        if !ip.is_loopback() {
            anyhow::bail!("--probe-source {ip} is not a loopback address");
        }
    }
    Ok(ChannelConfig {
        base: args.base,
        carrier: match args.carrier {
            CarrierArg::Url => Carrier::Url,
            CarrierArg::Rpc => Carrier::Rpc,
            CarrierArg::Group => Carrier::Group,
        },
        subscriptions: args.subscriptions,
        connections: args.connections,
        split: match args.split {
            SplitArg::Partition => Split::Partition,
            SplitArg::None => Split::None,
        },
        query: args.query,
        public_keys: args.public_keys,
        source_ips: args.source_ips,
        expect: args.expect,
        server_pid: args.server_pid,
        ready_file: args.ready_file,
        settle: seconds(args.settle, "settle")?,
        quiet: seconds(args.quiet, "quiet")?,
        duration: seconds(args.duration, "duration")?,
        phase,
        probe_source: args.probe_source,
        probe_after: seconds(args.probe_after, "probe-after")?,
        label: args.label,
    })
}

/// The report for people.
fn summary(r: &ChannelReport) -> String {
    let rss = &r.server_rss;
    let mut out = format!(
        "rpcload[{}] {}: {} subscriptions over {} connection(s): {} events ({} unique, {} lost, {} duplicates; per connection min {} max {}), {:.0} events/s; server RSS KiB before {} subscribed {} peak {} end {} after {}; server CPU {:.2} s, {:.2} us per event\n",
        r.label,
        r.phase,
        r.subscriptions,
        r.connections,
        r.events,
        r.unique,
        r.lost,
        r.duplicates,
        r.per_connection_events.min,
        r.per_connection_events.max,
        r.events_per_s,
        rss.before_kib,
        rss.connected_kib,
        rss.peak_kib,
        rss.end_kib,
        rss.after_kib,
        r.server_cpu.run_s,
        r.server_cpu.per_event_us,
    );
    if let Some(p) = &r.probe {
        out.push_str(&format!(
            "probes: {} before the close (longest {:.1} ms), {} after (longest {:.1} ms, handshake alone {:.1} ms, median {:.1} ms), {} failed\n",
            p.before, p.before_max_ms, p.after, p.after_max_ms, p.after_max_handshake_ms, p.after_p50_ms, p.failed
        ));
    }
    if let Some(f) = &r.flood {
        out.push_str(&format!(
            "flood: {} empty continuation frames ({} bytes) in {:.2} s, ended by {}; server CPU {:.2} s ({:.2} s with the settle)\n",
            f.frames, f.bytes, f.seconds, f.ended_by, f.server_cpu_s, f.server_cpu_with_settle_s
        ));
    }
    out
}

fn main() -> ExitCode {
    let config = match config(Args::parse()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("rpcload: {err:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rpcload: {err}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(channel::run(config));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(report) => {
            eprint!("{}", summary(&report));
            match serde_json::to_string(&report) {
                Ok(line) => println!("{line}"),
                Err(err) => {
                    eprintln!("rpcload: {err}");
                    return ExitCode::from(1);
                }
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("rpcload: {err:#}");
            ExitCode::from(1)
        }
    }
}
