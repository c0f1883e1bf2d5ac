//! `planetmint-streams client new` and `client hash-secret`: making the credentials of a client
//! configured on the node (`[[auth.clients]]`, or `[[clients]]` in `auth.clients_file`).
//!
//! `client new` draws a fresh random secret, prints it once (the node never stores it) and
//! prints the configuration entry holding its hash. `client hash-secret` reads a secret the
//! operator already has on stdin and prints its hash, for `secret_hash`. Neither needs the
//! node's configuration, and no secret is ever taken from the command line.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Read};

use anyhow::Context;
use planetmint_streams_auth::{
    check_client_secret, generate_secret, ClientConfig, ClientsFile, SecretHash,
};
use serde::Serialize;

/// Longest input `client hash-secret` reads.
pub const MAX_SECRET_INPUT_BYTES: u64 = 64 * 1024;

/// Arguments of `planetmint-streams client new`.
#[derive(Debug, Clone, clap::Args)]
pub struct NewArgs {
    /// The client's id (what it sends as stream-sea's clientId): 1 to 64 characters of
    /// A-Z a-z 0-9 _ - . @.
    #[arg(long)]
    pub id: String,
    /// What the client may read.
    #[command(flatten)]
    pub allows: crate::token::Allows,
    /// Most connections it may hold open at once.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Print the entry for a clients file (`[[clients]]`) instead of the node's configuration
    /// (`[[auth.clients]]`).
    #[arg(long)]
    pub clients_file: bool,
    /// Print JSON (`id`, `secret`, `secret_hash`, `entry`) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The flag of `client new` that sets an entry's field.
fn flag_of(field: &str) -> &'static str {
    match field {
        "id" => "--id",
        "streams" => "--stream",
        "public_keys" => "--public-key",
        "asset_ids" => "--asset-id",
        "operations" => "--operation",
        "max_connections" => "--max-connections",
        _ => "the entry",
    }
}

#[derive(Serialize)]
struct InConfig<'a> {
    auth: InAuth<'a>,
}

#[derive(Serialize)]
struct InAuth<'a> {
    clients: [&'a ClientConfig; 1],
}

/// Makes a client: returns what to print (the secret, once, and the entry with its hash).
pub fn new_client(args: &NewArgs) -> anyhow::Result<String> {
    let secret = generate_secret().map_err(|err| anyhow::anyhow!("the secret {err}"))?;
    let hash =
        SecretHash::new(secret.expose()).map_err(|err| anyhow::anyhow!("the secret {err}"))?;
    let entry = ClientConfig {
        id: args.id.clone(),
        secret_hash: Some(hash.to_string()),
        secret_file: None,
        streams: args.allows.streams.clone(),
        public_keys: args
            .allows
            .public_keys
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>(),
        asset_ids: args.allows.asset_ids.iter().cloned().collect(),
        operations: args.allows.operations.iter().cloned().collect(),
        max_connections: args.max_connections,
    };
    entry
        .check_entry()
        .map_err(|problem| anyhow::anyhow!("{}: {}", flag_of(problem.field), problem.message))?;
    let toml_text = if args.clients_file {
        toml::to_string(&ClientsFile {
            clients: vec![entry.clone()],
        })
    } else {
        toml::to_string(&InConfig {
            auth: InAuth { clients: [&entry] },
        })
    }
    .context("writing the entry as TOML")?;
    if args.json {
        return Ok(serde_json::json!({
            "id": entry.id,
            "secret": secret.expose(),
            "secret_hash": hash.to_string(),
            "entry": toml_text,
        })
        .to_string());
    }
    let target = if args.clients_file {
        "the clients file (auth.clients_file)"
    } else {
        "the node's configuration"
    };
    Ok(format!(
        "# Secret of client {id:?}: hand it to the client now. It is not shown again and the\n\
         # node keeps only its hash (a lost secret is replaced with a new `client new`).\n\
         {secret}\n\n\
         # Add to {target}, then reload (SIGHUP) or restart the node:\n\
         {toml_text}",
        id = entry.id,
        secret = secret.expose(),
    ))
}

/// `client hash-secret`: reads a secret on stdin (one line from a terminal, else the whole
/// input; surrounding whitespace ignored) and returns its hash.
pub fn hash_secret() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let mut text = String::new();
    if stdin.is_terminal() {
        eprintln!("Type the client secret, then Enter (better: pipe it in, as it is echoed):");
        stdin
            .read_line(&mut text)
            .context("reading the secret from stdin")?;
    } else {
        stdin
            .lock()
            .take(MAX_SECRET_INPUT_BYTES + 1)
            .read_to_string(&mut text)
            .context("reading the secret from stdin")?;
        if text.len() as u64 > MAX_SECRET_INPUT_BYTES {
            anyhow::bail!(
                "the input is larger than {MAX_SECRET_INPUT_BYTES} bytes: expected one secret"
            );
        }
    }
    let secret = check_client_secret(&text).map_err(|err| anyhow::anyhow!("the secret {err}"))?;
    let hash = SecretHash::new(secret).map_err(|err| anyhow::anyhow!("the secret {err}"))?;
    Ok(hash.to_string())
}
