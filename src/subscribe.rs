//! `planetmint-streams subscribe`: a durable subscriber for people and pipelines.
//!
//! It discovers the stream from a node's API (`/api/v1/`), subscribes with the given filters,
//! prints one JSON line per event on stdout, and reconnects with backoff after any failure,
//! resuming with `from_height` so nothing is missed or repeated. With `--cursor-file` it stores
//! the last fully processed height (write, fsync, rename) after each block, so a restarted
//! subscriber continues exactly where it stopped. Status goes to stderr; a progress line only
//! when stderr is a terminal.
//!
//! Blocks are requested whole (`batch=block`), so a block is printed and its height stored
//! together. Exactly once holds across disconnects, node restarts and SIGTERM/SIGINT of the
//! subscriber; after a SIGKILL in the instant between printing a block and storing its height,
//! that one block is printed again.
//!
//! With `--subscribe` (repeatable) it follows several subscriptions over one connection to
//! the JSON-RPC channel instead (see [`rpc`]), with one resume height per subscription.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::Value;

use planetmint_streams_broadcaster::close_codes as close;

mod rpc;
mod socket;

use socket::{Ended, Socket, Subscription};

/// How long a discovery request (`GET /api/v1/` or the stream catalogue) may take.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest API root document read while discovering the stream URL (it is a few hundred bytes).
const API_MAX_BYTES: usize = 2 << 20;

/// How events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One JSON object per line (the stream's own messages).
    Json,
    /// A short human-readable line per event.
    Pretty,
}

/// Arguments of `planetmint-streams subscribe`.
#[derive(Debug, Clone, clap::Args)]
pub struct SubscribeArgs {
    /// The node's HTTP API, e.g. http://localhost:9984 (the stream URL is found in /api/v1/).
    pub api: String,
    /// Follow valid_blocks (one line per block) instead of valid_transactions.
    #[arg(long, conflicts_with = "subscriptions")]
    pub blocks: bool,
    /// Start after this height (ignored when the cursor file holds a height; with --subscribe,
    /// for every subscription without its own `from_height`).
    #[arg(long, value_name = "HEIGHT")]
    pub from_height: Option<u64>,
    /// Where to keep the last fully processed height, to resume after a restart (with
    /// --subscribe, one height per subscription name, as a JSON object).
    #[arg(long, value_name = "FILE")]
    pub cursor_file: Option<PathBuf>,
    /// Only transactions with an output to this key (repeatable).
    #[arg(
        long = "public-key",
        conflicts_with = "subscriptions",
        value_name = "KEY"
    )]
    pub public_keys: Vec<String>,
    /// Only transactions of this asset (repeatable).
    #[arg(long = "asset-id", conflicts_with = "subscriptions", value_name = "ID")]
    pub asset_ids: Vec<String>,
    /// Only transactions of this operation (repeatable).
    #[arg(
        long = "operation",
        conflicts_with = "subscriptions",
        value_name = "OP"
    )]
    pub operations: Vec<String>,
    /// Ask for more in each event, e.g. `transaction` (the whole transaction); passed to the
    /// node as the `include` parameter.
    #[arg(long, conflicts_with = "subscriptions", value_name = "WHAT")]
    pub include: Option<String>,
    /// Only this worker's share of the stream, `I/N` (worker I of N; N workers together get
    /// every event once, each resuming on its own); passed as the `partition` parameter.
    #[arg(long, conflicts_with = "subscriptions", value_name = "I/N")]
    pub partition: Option<String>,
    /// Follow several subscriptions over one connection (the JSON-RPC channel); repeatable.
    /// SPEC is `[NAME=]STREAM[?PARAMETERS]`, the stream's name and its URL parameters, e.g.
    /// `alice=valid_transactions?public_key=KEY&operation=TRANSFER` or `valid_blocks`.
    /// Each line printed is `{"subscription": NAME, "result": EVENT}`; NAME defaults to the
    /// spec itself.
    #[arg(long = "subscribe", value_name = "SPEC")]
    pub subscriptions: Vec<String>,
    /// A file holding the signed stream token (or a signed stream URL) to `authenticate`
    /// with on the JSON-RPC channel, which keeps the token out of URLs (with --subscribe).
    #[arg(long, value_name = "FILE", requires = "subscriptions")]
    pub token_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: OutputFormat,
    /// Use this stream URL instead of discovering it (e.g. a signed stream URL); with
    /// --subscribe, the JSON-RPC channel's URL (`ws://HOST:9985/api/v1/streams`).
    #[arg(long, value_name = "URL")]
    pub stream_url: Option<String>,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

/// Reads the cursor file: the last fully processed height, if any.
pub fn read_cursor(path: &Path) -> anyhow::Result<Option<u64>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            text.parse::<u64>().map(Some).with_context(|| {
                format!(
                    "cursor file {} does not hold a height: {text:?}",
                    path.display()
                )
            })
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading cursor file {}", path.display())),
    }
}

/// Stores `height` atomically: a crash leaves either the old or the new value.
pub fn write_cursor(path: &Path, height: u64) -> anyhow::Result<()> {
    write_atomically(path, &format!("{height}\n"))
}

/// Where the next contents of `path` are written before the rename: its own name plus `.tmp`,
/// so that two cursor files in one folder (`cursor` and `cursor.json`) never share one.
fn temporary_of(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces the file at `path` with `text` (write, fsync, rename, fsync the directory).
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = temporary_of(path);
    {
        let mut file =
            std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// How many of `count` new events to print so that no more than `limit` are printed in all,
/// `printed` being printed already.
fn within_limit(limit: Option<u64>, printed: u64, count: usize) -> usize {
    limit.map_or(count, |limit| {
        (limit.saturating_sub(printed) as usize).min(count)
    })
}

/// Prints `events`, one `line` each, in one write to stdout: a block reaches stdout whole.
fn print_events(events: &[Value], line: impl Fn(&Value) -> String) -> std::io::Result<()> {
    let mut out = String::new();
    for event in events {
        out.push_str(&line(event));
        out.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()
}

/// Reads the JSON document at `url` (the node's API root or stream catalogue), at most
/// `max_bytes` of it; the error names the URL and what went wrong.
async fn get_json(client: &awc::Client, url: &str, max_bytes: usize) -> Result<Value, String> {
    let mut response = client
        .get(url)
        .timeout(DISCOVERY_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", response.status()));
    }
    response
        .json()
        .limit(max_bytes)
        .await
        .map_err(|e| format!("GET {url}: {e}"))
}

struct Subscriber {
    args: SubscribeArgs,
    client: awc::Client,
    complete: Option<u64>,
    printed: u64,
    progress: bool,
}

/// The stream URL's query: the filters, the framing and where to resume, form-encoded.
fn query_string(args: &SubscribeArgs, complete: Option<u64>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for key in &args.public_keys {
        query.append_pair("public_key", key);
    }
    for asset in &args.asset_ids {
        query.append_pair("asset_id", asset);
    }
    for operation in &args.operations {
        query.append_pair("operation", operation);
    }
    if let Some(include) = &args.include {
        query.append_pair("include", include);
    }
    if let Some(partition) = &args.partition {
        query.append_pair("partition", partition);
    }
    if !args.blocks {
        query.append_pair("batch", "block");
    }
    if let Some(height) = complete {
        query.append_pair("from_height", &height.to_string());
    }
    query.finish()
}

impl Subscriber {
    async fn discover(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.args.stream_url {
            return Ok(url.clone());
        }
        let url = format!("{}/api/v1/", self.args.api.trim_end_matches('/'));
        let doc = get_json(&self.client, &url, API_MAX_BYTES)
            .await
            .map_err(anyhow::Error::msg)?;
        let key = if self.args.blocks {
            "streamedblocks"
        } else {
            "streams"
        };
        doc[key]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{url} has no {key:?} stream URL"))
    }

    fn emit(&mut self, lines: &[Value]) -> anyhow::Result<()> {
        print_events(lines, |event| match self.args.format {
            OutputFormat::Json => event.to_string(),
            OutputFormat::Pretty if self.args.blocks => format!(
                "block {:>8}  {} transactions  {}",
                event["height"].as_u64().unwrap_or_default(),
                event["transaction_ids"].as_array().map_or(0, Vec::len),
                event["hash"].as_str().unwrap_or("")
            ),
            OutputFormat::Pretty => format!(
                "block {:>8}  tx {}  asset {}",
                event["height"].as_u64().unwrap_or_default(),
                event["transaction_id"].as_str().unwrap_or(""),
                event["asset_id"].as_str().unwrap_or("")
            ),
        })?;
        self.printed += lines.len() as u64;
        Ok(())
    }

    /// Handles one message: prints it, then records its height as complete.
    fn on_message(&mut self, text: &str) -> anyhow::Result<()> {
        let message: Value =
            serde_json::from_str(text).context("a stream message that is not JSON")?;
        let height = message["height"]
            .as_u64()
            .context("a stream message without height")?;
        if self.complete.is_some_and(|done| height <= done) {
            return Ok(()); // already processed (never sent by a planetmint-streams node)
        }
        let lines: Vec<Value> = match message.get("transactions").and_then(Value::as_array) {
            Some(transactions) => transactions.clone(),
            None => vec![message],
        };
        let take = within_limit(self.args.limit, self.printed, lines.len());
        self.emit(&lines[..take])?;
        if take == lines.len() {
            self.complete = Some(height);
            if let Some(path) = &self.args.cursor_file {
                write_cursor(path, height)?;
            }
        }
        if self.progress {
            eprint!("\rheight {height}  events {}   ", self.printed);
        }
        Ok(())
    }
}

impl Subscription for Subscriber {
    fn printed(&self) -> u64 {
        self.printed
    }

    fn resumes_from(&self) -> String {
        let height = self.complete.map_or("(live)".to_owned(), |h| h.to_string());
        format!("height {height}")
    }

    fn client(&self) -> &awc::Client {
        &self.client
    }

    async fn url(&self) -> Result<String, String> {
        let base = self.discover().await.map_err(|err| format!("{err:#}"))?;
        let query = query_string(&self.args, self.complete);
        let url = if query.is_empty() {
            base
        } else if base.contains('?') {
            format!("{base}&{query}")
        } else {
            format!("{base}?{query}")
        };
        Ok(url)
    }

    async fn follow(
        &mut self,
        socket: &mut impl Socket,
        _url: &str,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<Ended> {
        let on_text = |text: &str| {
            self.on_message(text)?;
            let done = self.args.limit.is_some_and(|limit| self.printed >= limit);
            Ok(done.then_some(Ended::Done))
        };
        let fatal = |code, description: &str| {
            (code == close::HISTORY_UNAVAILABLE)
                .then(|| anyhow!("the node no longer has the history asked for: {description}"))
        };
        socket::read_until_end(socket, shutdown, on_text, fatal).await
    }
}

/// A flag raised on the first SIGTERM or SIGINT (call inside the actix system).
fn stop_on_signal() -> tokio::sync::watch::Receiver<bool> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    actix_web::rt::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            let _ = stop_tx.send(true);
        }
    });
    stop_rx
}

/// Runs the subscriber until it is interrupted or `--limit` is reached.
pub fn run(args: SubscribeArgs) -> anyhow::Result<()> {
    if !args.subscriptions.is_empty() {
        return rpc::run(args);
    }
    let complete = match &args.cursor_file {
        Some(path) => read_cursor(path)?.or(args.from_height),
        None => args.from_height,
    };
    socket::run_reconnecting(|| Subscriber {
        progress: std::io::stderr().is_terminal(),
        client: awc::Client::builder().disable_redirects().finish(),
        complete,
        printed: 0,
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_files_round_trip_and_refuse_garbage() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("cursor");
        assert_eq!(read_cursor(&path).expect("missing is fine"), None);
        write_cursor(&path, 42).expect("write");
        assert_eq!(read_cursor(&path).expect("read"), Some(42));
        write_cursor(&path, 43).expect("overwrite");
        assert_eq!(read_cursor(&path).expect("read"), Some(43));
        std::fs::write(&path, "forty-two").expect("write");
        assert!(read_cursor(&path).is_err());
    }

    #[test]
    fn two_cursor_files_in_one_folder_are_written_at_once_without_a_clash() {
        // The README's examples keep `./cursor` and `./cursor.json` side by side.
        let dir = tempfile::tempdir().expect("tmp");
        let writers: Vec<_> = ["cursor", "cursor.json"]
            .into_iter()
            .map(|name| {
                let path = dir.path().join(name);
                std::thread::spawn(move || {
                    for height in 0..300 {
                        write_cursor(&path, height).expect("every write succeeds");
                    }
                    read_cursor(&path).expect("read")
                })
            })
            .collect();
        for writer in writers {
            assert_eq!(writer.join().expect("thread"), Some(299));
        }
        assert_ne!(
            temporary_of(Path::new("d/cursor")),
            temporary_of(Path::new("d/cursor.json"))
        );
    }

    #[test]
    fn the_limit_cuts_a_block_at_the_events_still_allowed() {
        assert_eq!(within_limit(None, 1_000, 7), 7);
        assert_eq!(within_limit(Some(10), 0, 7), 7);
        assert_eq!(within_limit(Some(10), 5, 7), 5);
        assert_eq!(within_limit(Some(10), 10, 7), 0);
        assert_eq!(within_limit(Some(10), 12, 7), 0);
    }

    #[test]
    fn query_strings_carry_filters_batch_and_resume_height() {
        let args = SubscribeArgs {
            api: "http://x".into(),
            blocks: false,
            from_height: None,
            cursor_file: None,
            public_keys: vec!["K1".into()],
            asset_ids: vec![],
            operations: vec!["TRANSFER".into()],
            format: OutputFormat::Json,
            stream_url: None,
            limit: None,
            include: Some("transaction".into()),
            partition: Some("1/4".into()),
            subscriptions: vec![],
            token_file: None,
        };
        assert_eq!(
            query_string(&args, Some(7)),
            "public_key=K1&operation=TRANSFER&include=transaction&partition=1%2F4&batch=block&from_height=7"
        );
        assert_eq!(
            query_string(
                &SubscribeArgs {
                    blocks: true,
                    ..args
                },
                None
            ),
            "public_key=K1&operation=TRANSFER&include=transaction&partition=1%2F4"
        );
    }
}
