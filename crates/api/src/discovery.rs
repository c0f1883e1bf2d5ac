//! The root documents Planetmint serves at `/` and `/api/v1/`, with our stream URLs.
//!
//! Planetmint's `/api/v1/` uses the prefix `/` for its links (`"transactions": "/transactions/"`)
//! while `/` nests the same object under `api.v1` with the prefix `/api/v1/`; that quirk is
//! kept so clients that parse either document work unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Path of the blocks stream.
pub use planetmint_streams_broadcaster::http::VALID_BLOCKS_PATH;
/// Path of the transactions stream.
pub use planetmint_streams_broadcaster::http::VALID_TRANSACTIONS_PATH;
/// Planetmint's documentation of its HTTP API.
pub const DOCS_BASE: &str = "https://docs.planetmint.io/projects/server/en/latest/";

/// Where clients reach the stream server (not the bind address: what is published).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advertised {
    /// `ws` or `wss`.
    pub scheme: String,
    /// Host name clients use.
    pub host: String,
    /// Port clients use.
    pub port: u16,
}

impl Advertised {
    /// `scheme://host:port`.
    pub fn base(&self) -> String {
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{}:{}", self.scheme, host, self.port)
    }

    /// URL of the transactions stream.
    pub fn valid_transactions(&self) -> String {
        format!("{}{}", self.base(), VALID_TRANSACTIONS_PATH)
    }

    /// URL of the blocks stream.
    pub fn valid_blocks(&self) -> String {
        format!("{}{}", self.base(), VALID_BLOCKS_PATH)
    }
}

/// The `v1` object with links under `prefix`.
pub fn api_v1_info(prefix: &str, advertised: &Advertised) -> Value {
    json!({
        "docs": format!("{DOCS_BASE}http-client-server-api.html"),
        "transactions": format!("{prefix}transactions/"),
        "blocks": format!("{prefix}blocks/"),
        "assets": format!("{prefix}assets/"),
        "outputs": format!("{prefix}outputs/"),
        "streams": advertised.valid_transactions(),
        "streamedblocks": advertised.valid_blocks(),
        "metadata": format!("{prefix}metadata/"),
        "validators": format!("{prefix}validators"),
    })
}

/// The document at `/`.
pub fn root_document(advertised: &Advertised, version: &str) -> Value {
    json!({
        "api": {"v1": api_v1_info("/api/v1/", advertised)},
        "docs": DOCS_BASE,
        "software": "planetmint-streams",
        "version": version,
    })
}

/// The document at `/api/v1/`.
pub fn api_v1_document(advertised: &Advertised) -> Value {
    api_v1_info("/", advertised)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advertised() -> Advertised {
        Advertised {
            scheme: "wss".into(),
            host: "node.example.com".into(),
            port: 443,
        }
    }

    #[test]
    fn root_nests_v1_with_the_api_prefix() {
        let doc = root_document(&advertised(), "1.2.3");
        let v1 = &doc["api"]["v1"];
        assert_eq!(v1["transactions"], "/api/v1/transactions/");
        assert_eq!(v1["validators"], "/api/v1/validators");
        assert_eq!(
            v1["streams"],
            "wss://node.example.com:443/api/v1/streams/valid_transactions"
        );
        assert_eq!(
            v1["streamedblocks"],
            "wss://node.example.com:443/api/v1/streams/valid_blocks"
        );
        assert_eq!(doc["software"], "planetmint-streams");
        assert_eq!(doc["version"], "1.2.3");
    }

    #[test]
    fn api_v1_keeps_planetmints_slash_prefix() {
        let doc = api_v1_document(&advertised());
        assert_eq!(doc["transactions"], "/transactions/");
        assert_eq!(doc["outputs"], "/outputs/");
        assert_eq!(doc["metadata"], "/metadata/");
        let keys: Vec<&String> = doc
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            [
                "assets",
                "blocks",
                "docs",
                "metadata",
                "outputs",
                "streamedblocks",
                "streams",
                "transactions",
                "validators"
            ]
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let a = Advertised {
            scheme: "ws".into(),
            host: "::1".into(),
            port: 9985,
        };
        assert_eq!(a.base(), "ws://[::1]:9985");
    }
}
