//! Every runnable code block of README.md and docs/*.md, run as printed against a real node, so
//! that a documented example can never silently break.
//!
//! A block is runnable when the line just before its opening fence is a marker comment:
//!
//! ```text
//! <!-- doc-test: file=NAME run="COMMAND" stream="STREAM?QUERY" -->
//! ```
//!
//! (docs/clients.md, "How these examples are checked", describes every attribute.) The blocks
//! are read from the markdown when the test runs; nothing is copied here. The node is the
//! binary on free loopback ports, reading a real Tarantool that holds `make demo`'s chain (the
//! fixtures Planetmint 2.5.3 wrote, then crates/devchain's demo blocks), so the key and asset
//! the docs name have events. Every example runs at once while blocks keep coming; examples
//! that do not reconnect (`resumes=no`) are checked and stopped first; then the node is stopped
//! with SIGTERM and started again, killed with SIGKILL and started again, more blocks come, and
//! every example's output must hold exactly the transactions of its stream, in order, once.
//!
//! `make test` installs what the examples use (scripts/ensure-deps.sh): Python's `websockets`,
//! websocat, curl, jq, Node's `ws` and Chromium.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::browser::{chromium_binary, HEADLESS};
use crate::support::*;
use planetmint_streams_devchain::demo;
use planetmint_streams_devchain::fixtures::Planetmint253;
use planetmint_streams_devchain::generate::GeneratedBlock;
use planetmint_streams_devchain::process::{free_port, TarantoolProcess};
use planetmint_streams_devchain::writer::PlanetmintWriter;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const NODE: &str = env!("CARGO_BIN_EXE_planetmint-streams");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Height the follow examples of the docs start after.
const GENERATED_BEFORE_START: u64 = 30;

// ---------------------------------------------------------------------------------------------
// The markdown: marked blocks.

/// One marked code block.
#[derive(Debug, Clone)]
struct Block {
    /// `docs/clients.md:123` (the fence's line).
    place: String,
    /// The fence's language tag.
    lang: String,
    text: String,
    attrs: BTreeMap<String, String>,
}

/// `key=value key="a value" ...`
fn parse_attrs(text: &str, place: &str) -> BTreeMap<String, String> {
    let mut attrs = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .unwrap_or_else(|| panic!("{place}: marker attribute without `=`: {rest:?}"));
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .find('"')
                .unwrap_or_else(|| panic!("{place}: unterminated quote in the marker"));
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        attrs.insert(key.trim().to_owned(), value.to_owned());
        rest = after.trim_start();
    }
    attrs
}

/// The marked blocks of one markdown file (markers inside code blocks are text, not markers).
fn marked_blocks(relative: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(Path::new(ROOT).join(relative))
        .unwrap_or_else(|e| panic!("{relative}: {e}"));
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        if line.starts_with("```") {
            // A code block without a marker: skip to its end (a marker inside is only text).
            i += 1;
            while i < lines.len() && lines[i].trim_start() != "```" {
                i += 1;
            }
            i += 1;
            continue;
        }
        if let Some(marker) = line.strip_prefix("<!-- doc-test:") {
            let place = format!("{relative}:{}", i + 2);
            let marker = marker
                .trim_end()
                .strip_suffix("-->")
                .unwrap_or_else(|| panic!("{place}: a marker is one line ending in -->"));
            let fence = lines
                .get(i + 1)
                .and_then(|l| l.trim_start().strip_prefix("```"))
                .unwrap_or_else(|| panic!("{place}: a marker must be just before a ``` fence"));
            let mut body = Vec::new();
            let mut j = i + 2;
            while j < lines.len() && lines[j].trim_start() != "```" {
                body.push(lines[j]);
                j += 1;
            }
            assert!(j < lines.len(), "{place}: unclosed code block");
            blocks.push(Block {
                place: place.clone(),
                lang: fence.trim().to_owned(),
                text: body.join("\n") + "\n",
                attrs: parse_attrs(marker, &place),
            });
            i = j + 1;
            continue;
        }
        i += 1;
    }
    blocks
}

/// README.md, then docs/*.md in name order: `(document, its marked blocks)`.
fn documents() -> Vec<(String, Vec<Block>)> {
    let mut names = vec!["README.md".to_owned()];
    let mut docs: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/")
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|name| {
            let blocks = marked_blocks(&name);
            (name, blocks)
        })
        .filter(|(_, blocks)| !blocks.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The data: what the test wrote, and what a stream URL must give of it.

/// A committed transaction, with what the filters look at.
#[derive(Debug, Clone)]
struct Tx {
    height: u64,
    id: String,
    operation: String,
    /// `asset_id`, then the ids in `asset_ids` (a version 2.0 object's `id`).
    assets: Vec<String>,
    output_keys: Vec<String>,
}

fn fixture_txs(fixtures: &Planetmint253) -> Vec<Tx> {
    fixtures
        .expected_transactions
        .iter()
        .map(|e| {
            let mut assets = vec![e["asset_id"].as_str().unwrap_or_default().to_owned()];
            for entry in e["asset_ids"].as_array().into_iter().flatten() {
                if let Some(id) = entry.as_str().or_else(|| entry["id"].as_str()) {
                    assets.push(id.to_owned());
                }
            }
            Tx {
                height: e["height"].as_u64().expect("height"),
                id: e["transaction_id"].as_str().expect("id").to_owned(),
                operation: e["operation"].as_str().expect("operation").to_owned(),
                assets,
                output_keys: e["public_keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect(),
            }
        })
        .collect()
}

fn generated_txs(block: &GeneratedBlock) -> Vec<Tx> {
    block
        .transactions
        .iter()
        .map(|tx| {
            let mut assets = vec![tx.asset_id.clone()];
            for entry in &tx.asset_ids {
                if let Some(id) = entry.as_str().or_else(|| entry["id"].as_str()) {
                    assets.push(id.to_owned());
                }
            }
            Tx {
                height: block.height,
                id: tx.id.clone(),
                operation: tx.operation.clone(),
                assets,
                output_keys: tx.output_keys.clone(),
            }
        })
        .collect()
}

/// A stream URL's path and query, read as the filters of the reference.
#[derive(Debug, Clone, Default)]
struct Query {
    blocks: bool,
    from: Option<u64>,
    keys: Vec<String>,
    assets: Vec<String>,
    operations: Vec<String>,
    partition: Option<(u64, u64)>,
}

impl Query {
    fn parse(spec: &str, place: &str) -> Self {
        let (stream, query) = spec.split_once('?').unwrap_or((spec, ""));
        let mut q = Query {
            blocks: match stream {
                "valid_transactions" => false,
                "valid_blocks" => true,
                other => panic!("{place}: unknown stream {other:?}"),
            },
            ..Query::default()
        };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.into_owned();
            match key.as_ref() {
                "from_height" => q.from = Some(value.parse().expect("from_height")),
                "public_key" => q.keys.push(value),
                "asset_id" => q.assets.push(value),
                "operation" => q.operations.push(value),
                "partition" => {
                    let (i, n) = value.split_once('/').expect("partition i/n");
                    q.partition = Some((i.parse().expect("i"), n.parse().expect("n")));
                }
                // They change the framing or the payload, not which transactions come.
                "batch" | "include" => {}
                other => panic!("{place}: the doc test does not know the parameter {other:?}: teach reference() about it"),
            }
        }
        q
    }

    fn wants(&self, tx: &Tx) -> bool {
        (self.keys.is_empty() || tx.output_keys.iter().any(|k| self.keys.contains(k)))
            && (self.assets.is_empty() || tx.assets.iter().any(|a| self.assets.contains(a)))
            && (self.operations.is_empty() || self.operations.contains(&tx.operation))
            && self.partition.is_none_or(|(i, n)| {
                if self.blocks {
                    tx.height % n == i
                } else {
                    u64::from_str_radix(&tx.id[..16], 16).expect("hex id") % n == i
                }
            })
    }

    /// The transaction ids this stream gives after `from_height` (from the start without one),
    /// in order.
    fn reference(&self, chain: &[Tx]) -> Vec<String> {
        chain
            .iter()
            .filter(|tx| self.from.is_none_or(|from| tx.height > from) && self.wants(tx))
            .map(|tx| tx.id.clone())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// What an example printed.

/// The transaction ids of one line, and the subscription it belongs to (`""` outside the
/// JSON-RPC multi-subscription output).
fn ids_of_line(line: &str, committed: &HashSet<String>) -> (String, Vec<String>) {
    fn collect(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(id) = map.get("transaction_id").and_then(Value::as_str) {
                    // An event: its id; what it carries (a whole transaction) is not an event.
                    out.push(id.to_owned());
                    return;
                }
                if let Some(ids) = map.get("transaction_ids").and_then(Value::as_array) {
                    out.extend(ids.iter().filter_map(|v| v.as_str().map(str::to_owned)));
                    return;
                }
                map.values().for_each(|v| collect(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    if let Ok(value) = serde_json::from_str::<Value>(line) {
        if value.is_object() {
            let group = value["subscription"].as_str().unwrap_or("").to_owned();
            let mut ids = Vec::new();
            collect(&value, &mut ids);
            return (group, ids);
        }
    }
    let first = line
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|word| word.len() == 64 && committed.contains(*word))
        .map(str::to_owned);
    (String::new(), first.into_iter().collect())
}

/// How the output is judged.
#[derive(Debug, Clone)]
enum Expect {
    /// Per subscription group (`""` for plain output): the stream it must equal.
    Streams {
        groups: BTreeMap<String, Query>,
        any_order: bool,
    },
    /// Every line matches, at least one line.
    Lines(regex_lite::Regex),
}

/// Whether `lines` hold what `expect` asks; `Err` says what is wrong. `reaches_the_end`: the
/// ids must also reach the stream's last transaction (the run is over).
fn judge(
    lines: &[String],
    expect: &Expect,
    chain: &[Tx],
    committed: &HashSet<String>,
    reaches_the_end: bool,
) -> Result<(), String> {
    match expect {
        Expect::Lines(pattern) => {
            if lines.is_empty() {
                return Err("no output yet".into());
            }
            match lines.iter().find(|l| !pattern.is_match(l)) {
                Some(bad) => Err(format!("a line does not match {pattern}: {bad:?}")),
                None => Ok(()),
            }
        }
        Expect::Streams { groups, any_order } => {
            let mut printed: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for line in lines {
                let (group, ids) = ids_of_line(line, committed);
                if !ids.is_empty() {
                    printed.entry(group).or_default().extend(ids);
                }
            }
            if let Some(extra) = printed.keys().find(|g| !groups.contains_key(*g)) {
                return Err(format!(
                    "output for subscription {extra:?}, which the marker does not expect"
                ));
            }
            for (group, query) in groups {
                let got = printed.get(group).cloned().unwrap_or_default();
                let want = query.reference(chain);
                let name = if group.is_empty() {
                    "output".to_owned()
                } else {
                    format!("subscription {group:?}")
                };
                if got.is_empty() {
                    return Err(format!(
                        "{name}: no transaction yet ({} expected)",
                        want.len()
                    ));
                }
                let mut seen = HashSet::new();
                if let Some(twice) = got.iter().find(|id| !seen.insert(id.as_str())) {
                    return Err(format!("{name}: {twice} printed twice"));
                }
                if *any_order {
                    let (mut a, mut b) = (got.clone(), want.clone());
                    a.sort();
                    b.sort();
                    if a != b {
                        return Err(format!(
                            "{name}: {} of {} transactions, or others",
                            got.len(),
                            want.len()
                        ));
                    }
                    continue;
                }
                let start = if query.from.is_some() {
                    0
                } else {
                    // Live: an unbroken run of the stream from wherever it joined.
                    match want.iter().position(|id| *id == got[0]) {
                        Some(at) => at,
                        None => return Err(format!("{name}: {} is not on this stream", got[0])),
                    }
                };
                let run = &want[start..want.len().min(start + got.len())];
                if run != got.as_slice() {
                    let at = run
                        .iter()
                        .zip(&got)
                        .position(|(a, b)| a != b)
                        .unwrap_or(run.len());
                    return Err(format!(
                        "{name}: differs from the stream at its {at}th transaction (printed {}, stream {})",
                        got.get(at).map_or("nothing", String::as_str),
                        run.get(at).map_or("nothing more", String::as_str)
                    ));
                }
                if reaches_the_end && start + got.len() < want.len() {
                    return Err(format!(
                        "{name}: {} of {} transactions so far",
                        got.len(),
                        want.len() - start
                    ));
                }
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running an example.

/// One runnable block, ready to start.
struct Example {
    place: String,
    dir: PathBuf,
    command: String,
    expect: Expect,
    resumes: bool,
}

/// A started example: its process group and what it printed so far.
struct Running {
    example: Example,
    child: Child,
    helpers: Vec<Child>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn stop(&mut self) {
        for child in std::iter::once(&mut self.child).chain(self.helpers.iter_mut()) {
            if let Some(pgid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pgid}")])
                    .status();
            }
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.example.dir.join(log_name(&self.example.place)))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

fn log_name(place: &str) -> String {
    format!(".doc-test-{}.log", place.replace(['/', ':', '.'], "_"))
}

/// The addresses of the docs (`localhost:9984`, `localhost:9985`) made the test node's.
fn localize(text: &str, api: &str, streams: &str) -> String {
    text.replace("localhost:9984", api)
        .replace("localhost:9985", streams)
}

/// Saves a document's files in its folder and returns its runnable examples.
fn prepare(doc: &str, blocks: &[Block], dir: &Path, api: &str, streams: &str) -> Vec<Example> {
    std::fs::create_dir_all(dir).expect("example dir");
    // Node's `ws` for the JavaScript examples (ES modules look for node_modules upwards).
    let modules = Path::new(ROOT).join("target/node/node_modules");
    assert!(
        modules.join("ws").is_dir(),
        "target/node/node_modules/ws is missing: run scripts/ensure-deps.sh (make test does)"
    );
    let _ = std::os::unix::fs::symlink(&modules, dir.join("node_modules"));
    let mut examples = Vec::new();
    for (n, block) in blocks.iter().enumerate() {
        let place = &block.place;
        let text = localize(&block.text, api, streams);
        if let Some(file) = block.attrs.get("file") {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &text).expect("save the block");
            if text.starts_with("#!") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
        }
        let Some(run) = block.attrs.get("run") else {
            assert!(
                block.attrs.contains_key("file"),
                "{place}: a marked block needs `run` or `file`"
            );
            continue;
        };
        let command = if run == "sh" {
            let script = format!(".doc-test-{n}.sh");
            std::fs::write(dir.join(&script), &text).expect("save the script");
            format!("bash {script}")
        } else {
            localize(run, api, streams)
        };
        let expect = if let Some(pattern) = block.attrs.get("match") {
            Expect::Lines(
                regex_lite::Regex::new(pattern).unwrap_or_else(|e| panic!("{place}: match: {e}")),
            )
        } else {
            let mut groups = BTreeMap::new();
            for (key, value) in &block.attrs {
                if key == "stream" {
                    groups.insert(String::new(), Query::parse(value, place));
                } else if let Some(name) = key.strip_prefix("stream.") {
                    groups.insert(name.to_owned(), Query::parse(value, place));
                }
            }
            assert!(
                !groups.is_empty(),
                "{place}: a runnable block needs `stream` or `match`"
            );
            Expect::Streams {
                groups,
                any_order: block.attrs.get("order").is_some_and(|o| o == "any"),
            }
        };
        for key in block.attrs.keys() {
            assert!(
                ["file", "run", "stream", "match", "order", "resumes"].contains(&key.as_str())
                    || key.starts_with("stream."),
                "{place}: unknown marker attribute {key:?}"
            );
        }
        examples.push(Example {
            place: format!("{place} ({} {})", block.lang, doc),
            dir: dir.to_owned(),
            command,
            expect,
            resumes: block.attrs.get("resumes").is_none_or(|r| r != "no"),
        });
    }
    examples
}

/// The environment examples run in: the node binary, the venv's Python (with `websockets` and
/// websocat) first on the PATH, Cargo builds in a shared target directory.
fn example_env() -> Vec<(String, String)> {
    let python_dir = Path::new(&python()).parent().expect("venv bin").to_owned();
    let node_dir = Path::new(NODE).parent().expect("bin dir").to_owned();
    let path = std::env::join_paths([node_dir, python_dir].into_iter().chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    vec![
        ("PATH".into(), path.to_string_lossy().into_owned()),
        (
            "CARGO_TARGET_DIR".into(),
            format!("{ROOT}/target/doc-examples"),
        ),
    ]
}

/// Chromium headless with `url` and the profile `dir`; its console lines are on its stderr.
fn browser(url: &str, dir: &Path, log: std::fs::File) -> Child {
    Command::new(chromium_binary())
        .args(HEADLESS)
        .args(["--enable-logging=stderr", "--v=0"])
        // A profile of its own: a second Chromium on the same profile hands its page to the
        // first one and exits.
        .arg(format!("--user-data-dir={}", dir.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("chromium starts (make test installs Debian's chromium)")
}

/// Starts an example in a process group of its own.
async fn start(example: Example) -> Running {
    let env = example_env();
    let log = std::fs::File::create(example.dir.join(log_name(&example.place))).expect("log");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let mut helpers = Vec::new();
    let (child, output) = if let Some(page) = example.command.strip_prefix("browser ") {
        // The page on another origin than the node's: a static server of the folder.
        let port = free_port().expect("port");
        let server = Command::new(python())
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(&example.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("a static server");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the static server never listened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        helpers.push(server);
        let profile = example
            .dir
            .join(format!("{}.chromium", log_name(&example.place)));
        let mut child = browser(
            &format!("http://127.0.0.1:{port}/{}", page.trim()),
            &profile,
            log,
        );
        let stderr = child.stderr.take().expect("stderr");
        (
            child,
            Box::new(stderr) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        )
    } else {
        let mut child = Command::new("bash")
            .args(["-c", &example.command])
            .current_dir(&example.dir)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("bash runs");
        let stdout = child.stdout.take().expect("stdout");
        (
            child,
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        )
    };
    let is_browser = example.command.starts_with("browser ");
    let sink = lines.clone();
    // The browser's own log goes to the example's log file too (its stdout already does).
    let mut browser_log = is_browser.then(|| {
        std::fs::OpenOptions::new()
            .append(true)
            .open(example.dir.join(log_name(&example.place)))
            .expect("log")
    });
    tokio::spawn(async move {
        use std::io::Write as _;
        let console =
            regex_lite::Regex::new(r#":CONSOLE[:(][0-9]*\)?\] "(.*)", source: "#).expect("regex");
        let mut reader = BufReader::new(output).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if let Some(log) = browser_log.as_mut() {
                let _ = writeln!(log, "{line}");
            }
            let line = if is_browser {
                match console.captures(&line) {
                    Some(c) => c[1].to_owned(),
                    None => continue,
                }
            } else {
                line
            };
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    });
    Running {
        example,
        child,
        helpers,
        lines,
    }
}

/// Builds a Cargo example before it runs (`cargo run ARGS -- ...` -> `cargo build ARGS`), so
/// that it takes part in the restarts instead of compiling through them.
async fn prebuild(example: &Example) {
    let Some(rest) = example.command.strip_prefix("cargo run") else {
        return;
    };
    let args = rest.split(" -- ").next().unwrap_or("").trim();
    let status = Command::new("bash")
        .args(["-c", &format!("cargo build {args}")])
        .current_dir(&example.dir)
        .envs(example_env())
        .stdin(Stdio::null())
        .status()
        .await
        .expect("cargo runs");
    assert!(
        status.success(),
        "{}: `cargo build {args}` failed",
        example.place
    );
}

// ---------------------------------------------------------------------------------------------
// The node and the data.

struct Node {
    _tarantool: TarantoolProcess,
    address: String,
    process: NodeProcess,
    child: Child,
    writer: PlanetmintWriter,
    chain: planetmint_streams_devchain::generate::ChainGenerator,
    written: Vec<Tx>,
}

impl Node {
    async fn start() -> Self {
        let tarantool = TarantoolProcess::start().await.expect("tarantool");
        let address = tarantool.address();
        let process = NodeProcess::new(&address);
        let child = process.spawn();
        process.wait_ready().await;
        let writer = PlanetmintWriter::connect(&address).await.expect("writer");
        // make demo's chain: Planetmint 2.5.3's blocks, then the demo's generated ones.
        let fixtures = Planetmint253::load_all_ops().expect("fixtures");
        for height in fixtures.heights() {
            fixtures.write_block(&writer, height).await.expect("write");
        }
        let written = fixture_txs(&fixtures);
        Self {
            _tarantool: tarantool,
            address,
            process,
            child,
            writer,
            chain: demo::chain(demo::FIRST_GENERATED_HEIGHT),
            written,
        }
    }

    /// Commits the next demo block.
    async fn write_block(&mut self) {
        let block = self.chain.block(demo::TRANSACTIONS_PER_BLOCK);
        self.writer
            .write_block_retrying(&self.address, &block, Duration::from_secs(30))
            .await
            .expect("write");
        self.written.extend(generated_txs(&block));
    }

    async fn write_blocks(&mut self, n: usize, pause: Duration) {
        for _ in 0..n {
            self.write_block().await;
            tokio::time::sleep(pause).await;
        }
    }

    async fn signal(&mut self, name: &str) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args([&format!("-{name}"), &pid.to_string()])
                .status()
                .await;
        }
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the node stops")
            .expect("wait");
        if name == "TERM" {
            assert_eq!(status.code(), Some(0), "SIGTERM: a clean exit");
        }
    }

    async fn restart(&mut self) {
        self.child = self.process.spawn();
        self.process.wait_ready().await;
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_example_prints_its_stream_through_node_restarts() {
    let documents = documents();
    let count: usize = documents
        .iter()
        .map(|(_, b)| b.iter().filter(|b| b.attrs.contains_key("run")).count())
        .sum();
    assert!(
        count >= 10,
        "found only {count} runnable examples: {documents:?}"
    );

    let mut node = Node::start().await;
    let api = node.process.api();
    let streams = format!("127.0.0.1:{}", node.process.streams_port);
    while node.chain.next_height() <= GENERATED_BEFORE_START {
        node.write_block().await;
    }
    let work = tempfile::tempdir().expect("temp dir");
    let mut examples = Vec::new();
    for (doc, blocks) in &documents {
        let dir = work.path().join(doc.replace(['/', '.'], "_"));
        examples.extend(prepare(doc, blocks, &dir, &api, &streams));
    }
    for example in &examples {
        prebuild(example).await;
    }
    let mut running = Vec::new();
    for example in examples {
        running.push(start(example).await);
    }

    let committed = |node: &Node| {
        node.written
            .iter()
            .map(|t| t.id.clone())
            .collect::<HashSet<_>>()
    };
    // Blocks keep coming until every example has printed something (live ones join now).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        node.write_blocks(1, Duration::from_millis(300)).await;
        let ids = committed(&node);
        let silent: Vec<&str> = running
            .iter()
            .filter(|r| {
                let lines = r.lines();
                match &r.example.expect {
                    Expect::Lines(_) => lines.is_empty(),
                    Expect::Streams { groups, .. } => {
                        let mut seen: HashSet<String> = HashSet::new();
                        for line in &lines {
                            let (group, found) = ids_of_line(line, &ids);
                            if !found.is_empty() {
                                seen.insert(group);
                            }
                        }
                        groups.keys().any(|g| !seen.contains(g))
                    }
                }
            })
            .map(|r| r.example.place.as_str())
            .collect();
        if silent.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let logs: Vec<String> = running
                .iter()
                .filter(|r| silent.contains(&r.example.place.as_str()))
                .map(|r| format!("{}:\n{}", r.example.place, r.log_tail()))
                .collect();
            panic!(
                "examples that printed nothing in 180 s: {silent:?}\n{}",
                logs.join("\n\n")
            );
        }
    }
    node.write_blocks(3, Duration::from_millis(300)).await;

    // The examples that do not reconnect: checked now, then stopped.
    let mut failures = Vec::new();
    let settle = tokio::time::Instant::now() + Duration::from_secs(20);
    for r in running.iter_mut().filter(|r| !r.example.resumes) {
        let ids = committed(&node);
        let verdict = loop {
            let verdict = judge(&r.lines(), &r.example.expect, &node.written, &ids, false);
            if verdict.is_ok() || tokio::time::Instant::now() > settle {
                break verdict;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if let Err(why) = verdict {
            failures.push(format!("{}: {why}\n{}", r.example.place, r.log_tail()));
        }
        r.stop();
    }
    running.retain(|r| r.example.resumes);

    // SIGTERM (close 1001) and a start again; SIGKILL and a start again; blocks meanwhile.
    node.signal("TERM").await;
    node.write_blocks(2, Duration::from_millis(100)).await;
    node.restart().await;
    node.write_blocks(4, Duration::from_millis(300)).await;
    node.signal("KILL").await;
    node.write_blocks(2, Duration::from_millis(100)).await;
    node.restart().await;
    node.write_blocks(6, Duration::from_millis(300)).await;

    // Every example catches up with the last block, with nothing missing or repeated.
    let ids = committed(&node);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let mut pending: HashMap<usize, String> = HashMap::new();
    loop {
        pending.clear();
        for (i, r) in running.iter().enumerate() {
            if let Err(why) = judge(&r.lines(), &r.example.expect, &node.written, &ids, true) {
                pending.insert(i, why);
            }
        }
        if pending.is_empty() || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (i, why) in &pending {
        let r = &running[*i];
        failures.push(format!("{}: {why}\n{}", r.example.place, r.log_tail()));
    }
    for r in running.iter_mut() {
        r.stop();
    }
    assert!(
        failures.is_empty(),
        "documented examples that failed:\n\n{}",
        failures.join("\n\n")
    );
}

#[test]
fn markers_are_read_from_the_markdown_as_documented() {
    let blocks = marked_blocks("docs/clients.md");
    let python = blocks
        .iter()
        .find(|b| b.attrs.get("file").is_some_and(|f| f == "follow.py"))
        .expect("the Python example is marked");
    assert_eq!(python.lang, "python");
    assert!(python.text.contains("async def follow(complete):"));
    assert_eq!(
        python.attrs["run"],
        "python3 follow.py http://localhost:9984 5"
    );
    // The marker shown inside a code block (the syntax example) is not a marker.
    assert!(blocks.iter().all(|b| !b.attrs.contains_key("NAME")));
    let attrs = parse_attrs(r#"run=sh stream.a="valid_blocks?x=1&y=2" order=any"#, "t");
    assert_eq!(attrs["run"], "sh");
    assert_eq!(attrs["stream.a"], "valid_blocks?x=1&y=2");
    assert_eq!(attrs["order"], "any");
    let committed: HashSet<String> = ["a".repeat(64), "b".repeat(64)].into_iter().collect();
    let (group, ids) = ids_of_line(
        &format!("12 {} {}", "a".repeat(64), "b".repeat(64)),
        &committed,
    );
    assert_eq!((group.as_str(), ids), ("", vec!["a".repeat(64)]));
    let line = serde_json::json!({"subscription": "w", "result": {"height": 3, "transactions": [
        {"transaction_id": "b".repeat(64), "transaction": {"inputs": [{"fulfills": {"transaction_id": "a".repeat(64)}}]}}]}});
    let (group, ids) = ids_of_line(&line.to_string(), &committed);
    assert_eq!((group.as_str(), ids), ("w", vec!["b".repeat(64)]));
}
