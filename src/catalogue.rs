//! The stream catalogue and the AsyncAPI document of this node: the broadcaster's
//! (`planetmint_streams_broadcaster::catalogue`, written from the declarations the parsers
//! read), for the stream port the root documents advertise.

use planetmint_streams_api::Advertised;
use planetmint_streams_broadcaster::catalogue::{self, Endpoint};
use serde_json::Value;

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
