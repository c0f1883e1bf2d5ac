//! `planetmint-streams subscribe --subscribe SPEC ...`: several subscriptions over one
//! connection to the JSON-RPC channel (`ws://<host>:9985/api/v1/streams`).
//!
//! Each `--subscribe` is `[NAME=]STREAM[?PARAMETERS]`: a stream's name and its URL parameters,
//! exactly as in a stream URL (`public_key`, `public_key_in`, `asset_id`, `operation`,
//! `batch`, `partition`, `include`, `from_height`). Each is sent as one `subscribe` request,
//! with `batch=block` for transactions so that a block is printed and its height recorded
//! together. Every line printed is `{"subscription": NAME, "result": EVENT}`, where `EVENT`
//! is what the single-stream mode prints for the same options (one line per transaction, or
//! per block with `batch=block` or on `valid_blocks`).
//!
//! Every subscription has its own resume height: after any disconnect (a lost connection, the
//! node's 4000 or 1001 close, a restarted node) each is subscribed again with `from_height` =
//! the last height it printed whole, so nothing is missed or printed twice. With
//! `--cursor-file` those heights are stored as one JSON object (`{"NAME": HEIGHT, ...}`,
//! written atomically after each block), so a restarted subscriber continues each
//! subscription where it stopped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use futures_util::SinkExt;
use serde_json::{json, Map, Value};

use planetmint_streams_broadcaster::close_codes as close;
use planetmint_streams_broadcaster::http::STREAMS_PATH;
use planetmint_streams_model::vocabulary::StreamKind;

use super::socket::{self, Ended, Socket, Subscription};
use super::{get_json, print_events, within_limit, write_atomically, OutputFormat, SubscribeArgs};

/// The JSON-RPC notification carrying a subscription's message.
const NOTIFICATION: &str = "subscription";
/// The notification ending one subscription the node can no longer serve.
const SUBSCRIPTION_ERROR: &str = "subscription_error";
/// The notification sent just before the node closes the connection (with `last_heights`).
const CLOSING: &str = "closing";
/// JSON-RPC error of a connection limit; only its `replays_per_address` kind passes.
const LIMIT_REACHED: i64 = -32002;
/// The filters a subscription may repeat (arrays in `subscribe`).
const REPEATABLE: [&str; 3] = ["public_key", "asset_id", "operation"];
/// Largest stream catalogue read while discovering the channel (it is a few KiB).
const CATALOGUE_MAX_BYTES: usize = 4 << 20;

/// One `--subscribe`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Its name in the output and in the cursor file.
    pub name: String,
    /// Which stream.
    pub stream: StreamKind,
    /// The `subscribe` options, except `from_height` (added at each connection).
    pub options: Map<String, Value>,
    /// One line per block (`batch=block` given, or `valid_blocks`) instead of one per
    /// transaction.
    pub per_block: bool,
    /// Its own start height, when the spec names one.
    pub from_height: Option<u64>,
}

/// Parses `[NAME=]STREAM[?PARAMETERS]`.
pub fn parse_spec(text: &str) -> anyhow::Result<Spec> {
    let (head, query) = match text.split_once('?') {
        Some((head, query)) => (head, query),
        None => (text, ""),
    };
    let (name, stream) = match head.split_once('=') {
        Some((name, stream)) => (name.to_owned(), stream),
        None => (text.to_owned(), head),
    };
    if name.is_empty() {
        bail!("--subscribe {text:?}: the name before '=' is empty");
    }
    let stream: StreamKind = stream
        .parse()
        .with_context(|| format!("--subscribe {text:?}"))?;
    let mut options = Map::new();
    options.insert("stream".into(), stream.name().into());
    let mut per_block = stream == StreamKind::ValidBlocks;
    let mut from_height = None;
    let mut seen = HashSet::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let key = key.into_owned();
        let value = value.into_owned();
        if REPEATABLE.contains(&key.as_str()) {
            if let Value::Array(values) = options
                .entry(key)
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                values.push(value.into());
            }
            continue;
        }
        if !seen.insert(key.clone()) {
            bail!("--subscribe {text:?}: {key} is given twice");
        }
        match key.as_str() {
            "from_height" => {
                from_height = Some(value.parse::<u64>().with_context(|| {
                    format!("--subscribe {text:?}: from_height must be a height, not {value:?}")
                })?)
            }
            "batch" => match value.as_str() {
                "block" => per_block = true,
                "none" => per_block = stream == StreamKind::ValidBlocks,
                _ => bail!("--subscribe {text:?}: batch is block or none, not {value:?}"),
            },
            "token" => bail!(
                "--subscribe {text:?}: a token does not go in a subscription; use --token-file"
            ),
            _ => {
                options.insert(key, value.into());
            }
        }
    }
    if stream == StreamKind::ValidTransactions {
        // Whole blocks: a block is printed and its height recorded together.
        options.insert("batch".into(), "block".into());
    }
    Ok(Spec {
        name,
        stream,
        options,
        per_block,
        from_height,
    })
}

/// Reads a `--subscribe` cursor file: the last fully printed height of each subscription.
pub fn read_cursors(path: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(err) => {
            return Err(err).with_context(|| format!("reading cursor file {}", path.display()))
        }
    };
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    serde_json::from_str(&text).with_context(|| {
        format!(
            "cursor file {} is not a --subscribe cursor (a JSON object of heights by subscription \
             name; a single-stream cursor holds one height: use another file)",
            path.display()
        )
    })
}

/// A JSON-RPC error object as one line for a person: message, code and data.
fn describe_error(error: &Value) -> String {
    let message = error["message"].as_str().unwrap_or("(no message)");
    let code = error["code"]
        .as_i64()
        .map_or("?".to_owned(), |c| c.to_string());
    match error.get("data") {
        Some(data) if !data.is_null() => format!("{message} (error {code}, {data})"),
        _ => format!("{message} (error {code})"),
    }
}

/// An error worth a reconnect rather than an exit: a limit that frees itself (another
/// subscription from this address finishing its replay).
fn is_transient(error: &Value) -> bool {
    error["code"].as_i64() == Some(LIMIT_REACHED)
        && error["data"]["limit"].as_str() == Some("replays_per_address")
}

/// What an answer answers.
#[derive(Debug, Clone, Copy)]
enum Pending {
    Authenticate,
    Subscribe(usize),
}

/// The request id of `subscribe` for subscription `index` (`authenticate` is 0).
fn subscribe_id(index: usize) -> u64 {
    index as u64 + 1
}

struct Follower {
    specs: Vec<Spec>,
    /// The last height printed whole, per subscription.
    complete: Vec<Option<u64>>,
    api: String,
    stream_url: Option<String>,
    cursor_file: Option<PathBuf>,
    token: Option<String>,
    format: OutputFormat,
    limit: Option<u64>,
    client: awc::Client,
    printed: u64,
    progress: bool,
}

impl Follower {
    async fn discover(&self) -> Result<String, String> {
        if let Some(url) = &self.stream_url {
            return Ok(url.clone());
        }
        let url = format!("{}{STREAMS_PATH}", self.api.trim_end_matches('/'));
        let doc = get_json(&self.client, &url, CATALOGUE_MAX_BYTES).await?;
        doc["rpc_url"].as_str().map(str::to_owned).ok_or_else(|| {
            format!(
                "{url} names no rpc_url: this node has no JSON-RPC channel (--stream-url sets it)"
            )
        })
    }

    /// The heights as stored in the cursor file.
    fn cursors(&self) -> BTreeMap<&str, u64> {
        self.specs
            .iter()
            .zip(&self.complete)
            .filter_map(|(spec, height)| height.map(|h| (spec.name.as_str(), h)))
            .collect()
    }

    fn emit(&mut self, index: usize, lines: &[Value]) -> anyhow::Result<()> {
        let spec = &self.specs[index];
        print_events(lines, |event| match self.format {
            OutputFormat::Json => json!({"subscription": spec.name, "result": event}).to_string(),
            OutputFormat::Pretty => {
                let height = event["height"].as_u64().unwrap_or_default();
                if let Some(ids) = event["transaction_ids"].as_array() {
                    format!(
                        "{}  block {height:>8}  {} transactions  {}",
                        spec.name,
                        ids.len(),
                        event["hash"].as_str().unwrap_or("")
                    )
                } else if let Some(txs) = event["transactions"].as_array() {
                    format!(
                        "{}  block {height:>8}  {} transactions",
                        spec.name,
                        txs.len()
                    )
                } else {
                    format!(
                        "{}  block {height:>8}  tx {}  asset {}",
                        spec.name,
                        event["transaction_id"].as_str().unwrap_or(""),
                        event["asset_id"].as_str().unwrap_or("")
                    )
                }
            }
        })?;
        self.printed += lines.len() as u64;
        Ok(())
    }

    /// One message of subscription `index`: printed, then its height recorded.
    fn on_event(&mut self, index: usize, message: &Value) -> anyhow::Result<()> {
        let height = message["height"]
            .as_u64()
            .context("a subscription message without height")?;
        if self.complete[index].is_some_and(|done| height <= done) {
            return Ok(()); // already printed (never sent by a planetmint-streams node)
        }
        let spec = &self.specs[index];
        let lines: Vec<Value> = match message.get("transactions").and_then(Value::as_array) {
            Some(transactions) if !spec.per_block => transactions.clone(),
            _ => vec![message.clone()],
        };
        let take = within_limit(self.limit, self.printed, lines.len());
        self.emit(index, &lines[..take])?;
        if take == lines.len() {
            self.complete[index] = Some(height);
            if let Some(path) = &self.cursor_file {
                let text = serde_json::to_string(&self.cursors())?;
                write_atomically(path, &format!("{text}\n"))?;
            }
        }
        if self.progress {
            eprint!(
                "\r{} height {height}  events {}   ",
                self.specs[index].name, self.printed
            );
        }
        Ok(())
    }

    /// One text message from the node; `Some` ends the session.
    fn on_text(
        &mut self,
        text: &str,
        pending: &mut HashMap<u64, Pending>,
        by_id: &mut HashMap<String, usize>,
    ) -> anyhow::Result<Option<Ended>> {
        let message: Value =
            serde_json::from_str(text).context("a message from the node that is not JSON")?;
        if let Some(method) = message["method"].as_str() {
            let params = &message["params"];
            let index = params["subscription"]
                .as_str()
                .and_then(|id| by_id.get(id).copied());
            match (method, index) {
                (NOTIFICATION, Some(index)) => self.on_event(index, &params["result"])?,
                (SUBSCRIPTION_ERROR, Some(index)) => bail!(
                    "the node ended subscription {:?}: {}",
                    self.specs[index].name,
                    describe_error(&params["error"])
                ),
                (CLOSING, _) => eprintln!(
                    "the node is closing the connection: {}",
                    params["reason"].as_str().unwrap_or("")
                ),
                _ => {} // a notification of a newer node: ignored
            }
            return Ok(None);
        }
        let request = message["id"].as_u64().and_then(|id| pending.remove(&id));
        let what = match request {
            Some(Pending::Authenticate) => "authenticate".to_owned(),
            Some(Pending::Subscribe(index)) => format!("subscription {:?}", self.specs[index].name),
            None => "a request".to_owned(),
        };
        if let Some(error) = message.get("error") {
            if is_transient(error) {
                return Ok(Some(Ended::Retry(format!(
                    "the node deferred {what}: {}",
                    describe_error(error)
                ))));
            }
            bail!("the node refused {what}: {}", describe_error(error));
        }
        if let Some(Pending::Subscribe(index)) = request {
            let id = match &message["result"] {
                Value::String(id) => id.clone(),
                other => other.to_string(),
            };
            by_id.insert(id, index);
        }
        Ok(None)
    }

    fn resume_heights(&self) -> String {
        self.specs
            .iter()
            .zip(&self.complete)
            .map(|(spec, height)| {
                let height = height
                    .or(spec.from_height)
                    .map_or("(live)".to_owned(), |h| h.to_string());
                format!("{} {height}", spec.name)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Subscription for Follower {
    fn printed(&self) -> u64 {
        self.printed
    }

    fn resumes_from(&self) -> String {
        format!("heights: {}", self.resume_heights())
    }

    fn client(&self) -> &awc::Client {
        &self.client
    }

    async fn url(&self) -> Result<String, String> {
        self.discover().await
    }

    async fn follow(
        &mut self,
        socket: &mut impl Socket,
        url: &str,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<Ended> {
        let mut pending = HashMap::new();
        let mut requests = Vec::new();
        if let Some(token) = &self.token {
            pending.insert(0, Pending::Authenticate);
            requests.push(json!({"jsonrpc": "2.0", "id": 0, "method": "authenticate", "params": {"token": token}}));
        }
        for (index, spec) in self.specs.iter().enumerate() {
            let mut params = spec.options.clone();
            if let Some(height) = self.complete[index].or(spec.from_height) {
                params.insert("from_height".into(), height.into());
            }
            pending.insert(subscribe_id(index), Pending::Subscribe(index));
            requests.push(json!({"jsonrpc": "2.0", "id": subscribe_id(index), "method": "subscribe", "params": params}));
        }
        for request in requests {
            if let Err(err) = socket
                .send(awc::ws::Message::Text(request.to_string().into()))
                .await
            {
                return Ok(Ended::Retry(format!("cannot send to {url}: {err}")));
            }
        }
        let mut by_id = HashMap::new();
        let on_text = |text: &str| {
            if let Some(ended) = self.on_text(text, &mut pending, &mut by_id)? {
                return Ok(Some(ended));
            }
            let done = self.limit.is_some_and(|limit| self.printed >= limit);
            Ok(done.then_some(Ended::Done))
        };
        // A refused or expired token: reconnecting would not help.
        let fatal = |code, description: &str| {
            (code == close::POLICY)
                .then(|| anyhow!("the node closed the connection (1008) {description}"))
        };
        socket::read_until_end(socket, shutdown, on_text, fatal).await
    }
}

/// Reads the token of `--token-file`: a bare token, or a signed stream URL holding one.
fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading token file {}", path.display()))?;
    let text = text.trim();
    let token = match text.split_once('?') {
        Some((_, query)) => form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "token")
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default(),
        None => text.to_owned(),
    };
    if token.is_empty() {
        bail!("token file {} holds no token", path.display());
    }
    Ok(token)
}

/// Runs `subscribe --subscribe ...` until it is interrupted or `--limit` is reached.
pub fn run(args: SubscribeArgs) -> anyhow::Result<()> {
    let specs = args
        .subscriptions
        .iter()
        .map(|text| parse_spec(text))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut names = HashSet::new();
    if let Some(twice) = specs.iter().find(|spec| !names.insert(spec.name.as_str())) {
        bail!(
            "two subscriptions are named {:?}: name them with NAME=STREAM?...",
            twice.name
        );
    }
    let stored = match &args.cursor_file {
        Some(path) => read_cursors(path)?,
        None => BTreeMap::new(),
    };
    let complete = specs
        .iter()
        .map(|spec| {
            stored
                .get(&spec.name)
                .copied()
                .or(spec.from_height)
                .or(args.from_height)
        })
        .collect();
    let token = args.token_file.as_deref().map(read_token).transpose()?;
    socket::run_reconnecting(|| Follower {
        specs,
        complete,
        api: args.api,
        stream_url: args.stream_url,
        cursor_file: args.cursor_file,
        token,
        format: args.format,
        limit: args.limit,
        client: awc::Client::builder().disable_redirects().finish(),
        printed: 0,
        progress: std::io::stderr().is_terminal(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";

    #[test]
    fn specs_name_a_stream_and_carry_its_parameters() {
        let spec = parse_spec(&format!(
            "alice=valid_transactions?public_key={KEY}&operation=TRANSFER&operation=CREATE&include=transaction&partition=1/4"
        ))
        .expect("valid");
        assert_eq!(spec.name, "alice");
        assert_eq!(spec.stream, StreamKind::ValidTransactions);
        assert!(!spec.per_block);
        assert_eq!(
            Value::Object(spec.options),
            json!({"stream": "valid_transactions", "public_key": [KEY],
                   "operation": ["TRANSFER", "CREATE"], "include": "transaction",
                   "partition": "1/4", "batch": "block"})
        );
        let blocks = parse_spec("valid_blocks?from_height=7").expect("valid");
        assert_eq!(blocks.name, "valid_blocks?from_height=7");
        assert!(blocks.per_block);
        assert_eq!(blocks.from_height, Some(7));
        assert_eq!(
            Value::Object(blocks.options),
            json!({"stream": "valid_blocks"})
        );
        assert!(
            parse_spec("valid_transactions?batch=block")
                .expect("valid")
                .per_block
        );
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        for (spec, says) in [
            ("valid_things", "unknown stream"),
            ("=valid_blocks", "name"),
            ("valid_blocks?from_height=-1", "from_height"),
            ("valid_blocks?from_height=1&from_height=2", "twice"),
            ("valid_transactions?batch=tx", "batch"),
            ("valid_transactions?token=abc", "--token-file"),
        ] {
            let err = format!("{:#}", parse_spec(spec).expect_err(spec));
            assert!(err.contains(says), "{spec}: {err}");
        }
    }

    #[test]
    fn cursor_files_hold_one_height_per_subscription() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("cursor");
        assert!(read_cursors(&path).expect("missing is fine").is_empty());
        write_atomically(&path, "{\"a\":3,\"b=valid_blocks\":9}\n").expect("write");
        let cursors = read_cursors(&path).expect("read");
        assert_eq!(cursors.get("a"), Some(&3));
        assert_eq!(cursors.get("b=valid_blocks"), Some(&9));
        write_atomically(&path, "42\n").expect("write");
        let err = format!("{:#}", read_cursors(&path).expect_err("a single height"));
        assert!(err.contains("not a --subscribe cursor"), "{err}");
    }

    #[test]
    fn errors_read_as_message_code_and_data() {
        let error = json!({"code": -32602, "message": "public_key: bad", "data": {"parameter": "public_key"}});
        assert_eq!(
            describe_error(&error),
            "public_key: bad (error -32602, {\"parameter\":\"public_key\"})"
        );
        assert!(!is_transient(&error));
        assert!(is_transient(
            &json!({"code": -32002, "message": "busy", "data": {"limit": "replays_per_address"}})
        ));
        assert!(!is_transient(
            &json!({"code": -32002, "message": "too many", "data": {"limit": "subscriptions"}})
        ));
    }

    #[test]
    fn token_files_hold_a_token_or_a_signed_url() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("token");
        std::fs::write(&path, "abc.def\n").expect("write");
        assert_eq!(read_token(&path).expect("token"), "abc.def");
        std::fs::write(
            &path,
            "ws://h:9985/api/v1/streams/valid_transactions?token=xyz.123&public_key=K",
        )
        .expect("write");
        assert_eq!(read_token(&path).expect("token"), "xyz.123");
        std::fs::write(&path, "ws://h:9985/api/v1/streams/valid_blocks?x=1").expect("write");
        assert!(read_token(&path).is_err());
    }
}
