//! `planetmint-streams`: the command line. Parses flags, loads the configuration, runs the
//! node until SIGTERM or SIGINT, then closes every subscriber with 1001 and drains. More
//! SIGTERMs never cut the drain (a supervisor sends SIGKILL for that); a second Ctrl-C (SIGINT)
//! at least a second after the first exits at once.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use figment::providers::Serialized;
use figment::Figment;
use planetmint_streams::config::{Config, LogFormat};
use planetmint_streams::subscribe::SubscribeArgs;
use planetmint_streams::{logging, node, subscribe};

/// jemalloc, whose background threads give memory freed after a burst of connections back to
/// the system within seconds (glibc's malloc kept it for good; ADR 0005).
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// mimalloc, only for comparing allocators (`--features mimalloc`; ADR 0005).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Event stream server for Planetmint: follows committed blocks in Tarantool and pushes them
/// to WebSocket subscribers (Planetmint-compatible).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (default: config/default.toml when it exists).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Tarantool IPROTO address (tarantool.address).
    #[arg(long, value_name = "HOST:PORT")]
    tarantool: Option<String>,
    /// Address of the WebSocket stream server (streams.bind).
    #[arg(long, value_name = "ADDR")]
    streams_bind: Option<String>,
    /// Address of the HTTP API (api.bind).
    #[arg(long, value_name = "ADDR")]
    api_bind: Option<String>,
    /// Host published in the root document's stream URLs (streams.advertised_host).
    #[arg(long, value_name = "HOST")]
    advertised_host: Option<String>,
    /// Port published in the root document's stream URLs (streams.advertised_port).
    #[arg(long, value_name = "PORT")]
    advertised_port: Option<u16>,
    /// Scheme published in the root document's stream URLs: ws or wss (streams.advertised_scheme).
    #[arg(long, value_name = "SCHEME")]
    advertised_scheme: Option<String>,
    /// Log format: pretty or json (log.format).
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Check the configuration, print it as TOML and exit.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Subcommands (without one, the node runs).
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Follow a node's stream: one JSON line per event on stdout, reconnecting and resuming
    /// by height (durably with --cursor-file); several subscriptions over one connection with
    /// repeated --subscribe.
    Subscribe(SubscribeArgs),
    /// Signed stream URLs.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Clients configured on the node (id and secret, as stream-sea's basic method sends).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Write the keys and nats-server configuration of the JetStream tier in operator mode:
    /// DIR/auth.conf (include it in nats-server's configuration), DIR/publisher.creds (for
    /// nats.credentials_file) and DIR/account-signing.nk (for nats.account_signing_key_file).
    NatsConfig(NatsConfigArgs),
}

/// `client` subcommands.
#[derive(Debug, clap::Subcommand)]
enum ClientCommand {
    /// Make a client: print a fresh secret once, and the configuration entry holding its hash.
    New(planetmint_streams::clients::NewArgs),
    /// Read a client secret on stdin and print its hash (for secret_hash).
    HashSecret,
}

/// `nats-config` options.
#[derive(Debug, clap::Args)]
struct NatsConfigArgs {
    /// Directory to write the three files into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Name of the NATS account holding the streams.
    #[arg(long, value_name = "NAME", default_value = "planetmint")]
    account_name: String,
    /// Replace existing files (new keys: every credential made with the old ones stops working).
    #[arg(long)]
    force: bool,
}

fn nats_config(args: &NatsConfigArgs) -> anyhow::Result<String> {
    let setup = planetmint_streams_jetstream::NatsSetup::generate(&args.account_name)?;
    let written = setup.write_to(&args.out, args.force)?;
    let mut out = String::new();
    for path in &written {
        out.push_str(&format!("wrote {}\n", path.display()));
    }
    let dir = args.out.display();
    out.push_str(&format!(
        "account {account} (JetStream enabled)\n\n\
         nats-server.conf:   include {dir}/auth.conf   (plus jetstream {{ store_dir: ... }})\n\
         node config:        [nats]\n\
         \x20                   url = \"nats://<nats-server>:4222\"\n\
         \x20                   credentials_file = \"{dir}/publisher.creds\"\n\
         \x20                   account_signing_key_file = \"{dir}/account-signing.nk\"",
        account = setup.account,
    ));
    Ok(out)
}

/// `token` subcommands.
#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Print a signed, expiring stream URL (keys from the configuration's [auth] section).
    Issue(planetmint_streams::token::IssueArgs),
}

impl Args {
    fn overrides(&self) -> Figment {
        let mut figment = Figment::new();
        let mut set = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                figment = std::mem::take(&mut figment).merge(Serialized::default(key, value));
            }
        };
        set("tarantool.address", self.tarantool.clone());
        set("streams.bind", self.streams_bind.clone());
        set("api.bind", self.api_bind.clone());
        set("streams.advertised_host", self.advertised_host.clone());
        set("streams.advertised_scheme", self.advertised_scheme.clone());
        set("log.format", self.log_format.clone());
        if let Some(port) = self.advertised_port {
            figment = figment.merge(Serialized::default("streams.advertised_port", port));
        }
        figment
    }
}

/// Prints a one-shot command's output, or its error named after the command.
fn report(command: &str, output: anyhow::Result<String>) -> std::process::ExitCode {
    match output {
        Ok(output) => {
            println!("{output}");
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("planetmint-streams {command}: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn main() -> std::process::ExitCode {
    #[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
    planetmint_streams::allocator::install();
    let args = Args::parse();
    if let Some(Command::Token(TokenCommand::Issue(issue))) = &args.command {
        let config = match Config::load(args.config.as_deref(), args.overrides()) {
            Ok(config) => config,
            Err(err) => {
                eprintln!("planetmint-streams: {err}");
                return std::process::ExitCode::from(2);
            }
        };
        return report(
            "token issue",
            planetmint_streams::token::issue(&config, issue),
        );
    }
    if let Some(Command::Client(command)) = &args.command {
        let output = match command {
            ClientCommand::New(new) => planetmint_streams::clients::new_client(new),
            ClientCommand::HashSecret => planetmint_streams::clients::hash_secret(),
        };
        return report("client", output);
    }
    if let Some(Command::NatsConfig(nats_args)) = &args.command {
        return report("nats-config", nats_config(nats_args));
    }
    if let Some(Command::Subscribe(subscribe_args)) = args.command {
        return match subscribe::run(subscribe_args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("planetmint-streams subscribe: {err:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let config = match Config::load(args.config.as_deref(), args.overrides()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("planetmint-streams: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    // The credential files (keys, clients, JWT keys) are configuration too: a bad entry stops
    // the node here, naming its key, like any other configuration problem.
    if let Err(problem) = node::gatekeeper(&config) {
        eprintln!("planetmint-streams: {problem}");
        return std::process::ExitCode::from(2);
    }
    if args.check_config {
        match toml_of(&config) {
            Ok(text) => {
                print!("{text}");
                return std::process::ExitCode::SUCCESS;
            }
            Err(err) => {
                eprintln!("planetmint-streams: {err}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    logging::init(&config.log);
    if config.log.format == LogFormat::Pretty {
        tracing::debug!("pretty logs; use --log-format json for machine-readable lines");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("planetmint-streams: cannot start the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("planetmint-streams: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn toml_of(config: &Config) -> anyhow::Result<String> {
    Ok(toml::to_string_pretty(config)?)
}

/// A second SIGINT this soon after the first stop signal is taken for the same request (a
/// terminal's Ctrl-C reaches a whole process group, and a wrapper script may pass it on), not
/// for "exit at once".
const REPEAT_WINDOW: Duration = Duration::from_secs(1);

async fn run(config: Config) -> anyhow::Result<()> {
    // Listening before the node starts: a stop signal that arrives once it says it started
    // (or while it starts) is never the default action, an exit without any 1001.
    let mut signals = StopSignals::new()?;
    let running = node::start(config).await?;
    let first = signals.next().await;
    let first_at = tokio::time::Instant::now();
    match first {
        Stop::Terminate => tracing::info!("SIGTERM received"),
        Stop::Interrupt => tracing::info!("SIGINT received"),
    }
    let shutdown = tokio::spawn(running.shutdown());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            again = signals.next() => {
                if again == Stop::Interrupt && first_at.elapsed() >= REPEAT_WINDOW {
                    tracing::warn!("second signal: exiting at once");
                    std::process::exit(130);
                }
                // A supervisor (systemd, Kubernetes, `docker stop`) that wants the process
                // gone sooner sends SIGKILL; a repeated SIGTERM never cuts the drain.
                tracing::info!("{again} during the shutdown: still closing every subscriber with 1001 (Ctrl-C again after {REPEAT_WINDOW:?} exits at once)");
            }
        }
    }
}

/// Which stop signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Terminate,
    Interrupt,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stop::Terminate => "SIGTERM",
            Stop::Interrupt => "SIGINT",
        })
    }
}

/// SIGTERM and SIGINT, listened to from start to exit (none is missed between two waits).
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> Stop {
        tokio::select! {
            _ = self.term.recv() => Stop::Terminate,
            _ = self.int.recv() => Stop::Interrupt,
        }
    }
}
