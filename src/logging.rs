//! Log output: human-readable by default, JSON lines on request.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Noisy dependencies kept at `warn` unless asked for explicitly.
const QUIET: &str = "tarantool_rs=error,actix_server=warn,actix_http=warn";

/// Installs the global subscriber. `RUST_LOG` overrides the configured level.
pub fn init(config: &LogConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new(format!("{},{QUIET}", config.level)));
    // Colour only for a person at a terminal, not in journald or log files.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr closed: a supervisor or journald gone, a
        // pipe's reader exited) is lost, nothing more. tracing-subscriber's default reports it
        // with `eprintln!`, which panics on the same closed stderr and takes down whichever
        // task was logging: the Tarantool follower, a subscriber's connection, the shutdown.
        .log_internal_errors(false)
        .with_ansi(colour);
    let _ = match config.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
