//! `planetmint-streams token issue`: prints a signed, expiring stream URL, signed with the
//! configured issuing key (`[auth]`), for a backend or an operator to hand to a client.
//! Secrets come from the configuration file or environment, never from this command line.

use std::time::Duration;

use anyhow::Context;
use planetmint_streams_api::Advertised;
use planetmint_streams_auth::{signed_url, Grant, Stream};

use crate::config::Config;

/// Arguments of `planetmint-streams token issue`.
#[derive(Debug, Clone, clap::Args)]
pub struct IssueArgs {
    /// How long the URL may be used to connect, e.g. 2m, 1h (default: auth.default_ttl).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Option<Duration>,
    /// What the token allows.
    #[command(flatten)]
    pub allows: Allows,
    /// Print JSON (`token`, `expires_at`, `urls`) instead of one URL per line.
    #[arg(long)]
    pub json: bool,
}

/// What a credential allows, as the command line gives it (`token issue`, `client new`).
#[derive(Debug, Clone, clap::Args)]
pub struct Allows {
    /// Stream it opens (repeatable): valid_transactions or valid_blocks.
    #[arg(
        long = "stream",
        value_name = "STREAM",
        default_value = "valid_transactions"
    )]
    pub streams: Vec<String>,
    /// Pin its subscriptions to this output key (repeatable).
    #[arg(long = "public-key", value_name = "KEY")]
    pub public_keys: Vec<String>,
    /// Pin its subscriptions to this asset (repeatable).
    #[arg(long = "asset-id", value_name = "ID")]
    pub asset_ids: Vec<String>,
    /// Pin its subscriptions to this operation (repeatable).
    #[arg(long = "operation", value_name = "OP")]
    pub operations: Vec<String>,
}

/// Issues a token as configured; returns what to print.
pub fn issue(config: &Config, args: &IssueArgs) -> anyhow::Result<String> {
    let authority = config.auth.authority()?;
    let mut streams = Vec::new();
    for name in &args.allows.streams {
        streams.push(
            name.parse::<Stream>()
                .map_err(|e| anyhow::anyhow!("--stream: {e}"))?,
        );
    }
    let mut grant = Grant::new(streams.iter().copied());
    for key in &args.allows.public_keys {
        grant = grant.public_key(key.clone());
    }
    for asset in &args.allows.asset_ids {
        grant = grant.asset_id(asset.clone());
    }
    for operation in &args.allows.operations {
        grant = grant.operation(operation.clone());
    }
    let issued = authority
        .issue(&grant, args.ttl)
        .map_err(|e| anyhow::anyhow!("{}: {e}", e.parameter()))?;
    let port = match config.streams.advertised_port {
        Some(port) => port,
        None => config
            .streams
            .bind
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .context("streams.bind has no port")?,
    };
    let advertised = Advertised {
        scheme: config.advertised_scheme(),
        host: config.streams.advertised_host.clone(),
        port,
    };
    let mut urls = serde_json::Map::new();
    for stream in &streams {
        let base = match stream {
            Stream::ValidTransactions => advertised.valid_transactions(),
            Stream::ValidBlocks => advertised.valid_blocks(),
        };
        let url = signed_url(&base, issued.claims.pins.query_pairs(), &issued.token)?;
        urls.insert(stream.name().to_owned(), url.into());
    }
    if args.json {
        return Ok(serde_json::json!({
            "token": issued.token,
            "expires_at": issued.claims.expires_at,
            "urls": urls,
        })
        .to_string());
    }
    Ok(urls
        .values()
        .filter_map(|u| u.as_str())
        .collect::<Vec<_>>()
        .join("\n"))
}
