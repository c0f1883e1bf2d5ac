//! The stream catalogue and the AsyncAPI document of this node: the broadcaster's
//! (`planetmint_streams_broadcaster::catalogue`, written from the declarations the parsers
//! read), for the stream port the root documents advertise.

use planetmint_streams_api::Advertised;
use planetmint_streams_broadcaster::catalogue::{self, Endpoint};
use serde_json::{json, Value};

fn endpoint(advertised: &Advertised) -> Endpoint<'_> {
    Endpoint {
        scheme: &advertised.scheme,
        host: &advertised.host,
        port: advertised.port,
    }
}

/// `GET /api/v1/streams`.
pub fn catalogue(advertised: &Advertised) -> Value {
    catalogue::catalogue(&endpoint(advertised))
}

/// `GET /api/v1/streams/asyncapi.json`.
pub fn asyncapi(advertised: &Advertised, version: &str) -> Value {
    catalogue::asyncapi(&endpoint(advertised), version)
}

/// With the JetStream tier: the catalogue names the NATS URLs (top-level `jetstream`) and, in
/// each stream's entry, the JetStream stream and subject holding its events.
pub fn add_jetstream(
    catalogue: &mut Value,
    nats: &planetmint_streams_jetstream::NatsConfig,
    names: &[planetmint_streams_jetstream::StreamNames],
) {
    let websocket = (!nats.websocket_url.is_empty()).then(|| nats.websocket_url.clone());
    catalogue["jetstream"] = json!({
        "nats_urls": nats.server_urls(),
        "nats_websocket_url": websocket,
        "config": crate::jetstream::CONFIG_PATH,
        "seek_by_height": "/api/v1/streams/{stream}/jetstream?height={height}",
        "max_age_seconds": nats.max_age.as_secs(),
        "docs": "docs/jetstream.md",
    });
    let Some(streams) = catalogue["streams"].as_array_mut() else {
        return;
    };
    for entry in streams {
        let name = entry["name"].as_str().unwrap_or_default().to_owned();
        if let Some(names) = names.iter().find(|n| n.kind.name() == name) {
            entry["jetstream"] = json!({"stream": names.stream, "subject": names.subject});
        }
    }
}
