//! `rpcload`: the same N filtered subscriptions carried either by N URL connections or by one
//! JSON-RPC connection, for comparing what each costs the server (loopback only).
//!
//! Subscription `i` of `n` follows `valid_transactions` with `partition=i/n`: together the n
//! subscriptions get every transaction exactly once, whichever way they are carried. After
//! every subscription is open it reads the server's RSS and CPU, writes `--ready-file` (the
//! writer starts), counts every event until `--expect` arrived or nothing came for `--quiet`
//! seconds, and reads the server's CPU and RSS again. Prints a summary on stderr and one JSON
//! line on stdout: events, unique transactions, server RSS (before, connected, peak, end) and
//! server CPU per delivered event.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use planetmint_streams_bench::loopback;
use planetmint_streams_bench::system::{cpu_seconds, vm_rss_kib};
use planetmint_streams_broadcaster::http::{stream_path, STREAMS_PATH};
use planetmint_streams_model::vocabulary::StreamKind;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Most subscriptions one run may open.
const MAX_SUBSCRIPTIONS: usize = 1024;
/// How often the server's RSS is sampled for the peak.
const RSS_SAMPLE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Carrier {
    /// One URL connection per subscription.
    Url,
    /// One JSON-RPC connection for all of them.
    Rpc,
}

/// N partitioned subscriptions over N URL connections or one JSON-RPC connection.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The node's stream port, `ws://127.0.0.1:PORT` (loopback only).
    #[arg(long)]
    base: String,
    /// url: one connection per subscription; rpc: one JSON-RPC connection.
    #[arg(long, value_enum)]
    carrier: Carrier,
    /// Subscriptions (subscription i follows partition=i/n).
    #[arg(long, short = 'n', default_value_t = 100)]
    subscriptions: usize,
    /// Events expected over all subscriptions (the run ends once they are in).
    #[arg(long)]
    expect: u64,
    /// PID of the server whose RSS and CPU are read.
    #[arg(long)]
    server_pid: u32,
    /// File written once every subscription is open.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Seconds to wait after subscribing before reading the server's RSS.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// End once nothing arrived for this many seconds after the first event.
    #[arg(long, default_value_t = 5.0)]
    quiet: f64,
    /// Longest run in seconds after subscribing.
    #[arg(long, default_value_t = 300.0)]
    duration: f64,
    /// Name of the run in the output.
    #[arg(long, default_value = "rpcload")]
    label: String,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(url: &str) -> anyhow::Result<Ws> {
    loopback::ws_target(url)?;
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .with_context(|| format!("connecting to {url} timed out"))?
    .with_context(|| format!("connecting to {url}"))?;
    Ok(ws)
}

/// Reads `ws` until it ends, sending each event's transaction id to `events`. In RPC mode
/// only `subscription` notifications are events.
async fn read_events(mut ws: Ws, rpc: bool, events: mpsc::UnboundedSender<String>) {
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let event = if rpc {
            if value["method"] != "subscription" {
                continue;
            }
            value["params"]["result"].clone()
        } else {
            value
        };
        if let Some(id) = event["transaction_id"].as_str() {
            if events.send(id.to_owned()).is_err() {
                return;
            }
        }
    }
}

/// Opens the subscriptions; returns the reading tasks once every one is confirmed.
async fn subscribe(
    args: &Args,
    events: mpsc::UnboundedSender<String>,
) -> anyhow::Result<(Vec<tokio::task::JoinHandle<()>>, usize)> {
    let base = args.base.trim_end_matches('/');
    let n = args.subscriptions;
    let stream = StreamKind::ValidTransactions;
    match args.carrier {
        Carrier::Url => {
            let mut tasks = Vec::with_capacity(n);
            for i in 0..n {
                let ws = open(&format!("{base}{}?partition={i}/{n}", stream_path(stream))).await?;
                tasks.push(tokio::spawn(read_events(ws, false, events.clone())));
            }
            Ok((tasks, n))
        }
        Carrier::Rpc => {
            let mut ws = open(&format!("{base}{STREAMS_PATH}")).await?;
            for i in 0..n {
                let request = json!({"jsonrpc": "2.0", "id": i, "method": "subscribe",
                    "params": {"stream": stream.name(), "partition": format!("{i}/{n}")}});
                ws.send(Message::Text(request.to_string().into())).await?;
            }
            // Every answer before the first event: nothing is written before ready.
            let mut answered = 0;
            while answered < n {
                let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
                    .await
                    .context("no answer to subscribe within 30 s")?
                    .context("the connection ended while subscribing")??;
                let Message::Text(text) = message else {
                    continue;
                };
                let answer: Value = serde_json::from_str(text.as_str())?;
                if let Some(error) = answer.get("error") {
                    bail!("subscribe refused: {error}");
                }
                if answer.get("id").is_some() {
                    answered += 1;
                }
            }
            Ok((vec![tokio::spawn(read_events(ws, true, events))], 1))
        }
    }
}

async fn run(args: Args) -> anyhow::Result<Value> {
    if args.subscriptions == 0 || args.subscriptions > MAX_SUBSCRIPTIONS {
        bail!("--subscriptions must be 1 to {MAX_SUBSCRIPTIONS}");
    }
    let secs = |v: f64, name: &str| {
        Duration::try_from_secs_f64(v).with_context(|| format!("--{name}: seconds"))
    };
    let (quiet, duration, settle) = (
        secs(args.quiet, "quiet")?,
        secs(args.duration, "duration")?,
        secs(args.settle, "settle")?,
    );
    let pid = args.server_pid;
    let rss_before = vm_rss_kib(pid)?;
    let cpu_before_connect = cpu_seconds(pid)?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let connect_started = Instant::now();
    let (tasks, connections) = subscribe(&args, tx).await?;
    let connect_s = connect_started.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let rss_connected = vm_rss_kib(pid)?;
    let cpu_start = cpu_seconds(pid)?;
    let peak = Arc::new(AtomicU64::new(rss_connected));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RSS_SAMPLE).await;
                if let Ok(rss) = vm_rss_kib(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
            }
        })
    };
    if let Some(path) = &args.ready_file {
        std::fs::write(path, "ready\n").with_context(|| format!("writing {}", path.display()))?;
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut events = 0u64;
    let mut unique = HashSet::new();
    let mut first: Option<Instant> = None;
    let mut last = started;
    while events < args.expect {
        let until = match first {
            Some(_) => (last + quiet).min(deadline),
            None => deadline,
        };
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Some(id)) => {
                events += 1;
                unique.insert(id);
                last = Instant::now();
                first.get_or_insert(last);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let cpu_end = cpu_seconds(pid)?;
    let rss_end = vm_rss_kib(pid)?;
    sampler.abort();
    for task in &tasks {
        task.abort();
    }
    let run_cpu = cpu_end - cpu_start;
    let delivery_s = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    Ok(json!({
        "tool": "rpcload",
        "label": args.label,
        "carrier": args.carrier,
        "subscriptions": args.subscriptions,
        "connections": connections,
        "expected": args.expect,
        "events": events,
        "unique": unique.len(),
        "lost": args.expect.saturating_sub(unique.len() as u64),
        "duplicates": events - unique.len() as u64,
        "connect_s": connect_s,
        "delivery_s": delivery_s,
        "server_rss": {
            "before_kib": rss_before,
            "connected_kib": rss_connected,
            "peak_kib": peak.load(Ordering::Relaxed),
            "end_kib": rss_end,
            "connected_over_before_kib": rss_connected.saturating_sub(rss_before),
        },
        "server_cpu": {
            "connect_s": cpu_start - cpu_before_connect,
            "run_s": run_cpu,
            "per_event_us": if events > 0 { run_cpu * 1e6 / events as f64 } else { 0.0 },
        },
    }))
}

fn main() -> ExitCode {
    let args = Args::parse();
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
    match runtime.block_on(run(args)) {
        Ok(report) => {
            eprintln!(
                "rpcload[{}]: {} subscriptions over {} connection(s): {} events ({} unique, {} lost); server RSS {} KiB before, {} KiB subscribed, peak {} KiB; server CPU {:.2} s, {:.1} us per event",
                report["label"].as_str().unwrap_or(""),
                report["subscriptions"],
                report["connections"],
                report["events"],
                report["unique"],
                report["lost"],
                report["server_rss"]["before_kib"],
                report["server_rss"]["connected_kib"],
                report["server_rss"]["peak_kib"],
                report["server_cpu"]["run_s"].as_f64().unwrap_or(0.0),
                report["server_cpu"]["per_event_us"].as_f64().unwrap_or(0.0),
            );
            println!("{report}");
            runtime.shutdown_timeout(Duration::from_secs(1));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("rpcload: {err:#}");
            ExitCode::from(1)
        }
    }
}
