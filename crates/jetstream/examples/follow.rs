//! Follow a planetmint-streams stream in NATS JetStream with async-nats: a durable pull
//! consumer that starts at a stream sequence (ask the node for the sequence of a height:
//! `GET <api>/api/v1/streams/<stream>/jetstream?height=H`) or at a time, acknowledges each
//! event after handling it, and continues where it stopped when run again with the same name.
//! Run several with the same name to share the work (each event goes to one of them).
//!
//! usage: follow NATS_URL STREAM DURABLE_NAME [START_SEQUENCE | START_TIME (RFC 3339)]
//! e.g.   cargo run --example follow -- nats://localhost:4222 valid_transactions indexer 1

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), async_nats::Error> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, stream, durable, rest @ ..] = args.as_slice() else {
        eprintln!("usage: follow NATS_URL STREAM DURABLE_NAME [START_SEQUENCE | START_TIME]");
        std::process::exit(2);
    };
    let deliver_policy = match rest.first() {
        None => DeliverPolicy::All,
        Some(start) => match start.parse::<u64>() {
            Ok(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
            Err(_) => DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::parse(
                    start,
                    &time::format_description::well_known::Rfc3339,
                )?,
            },
        },
    };
    let jetstream = async_nats::jetstream::new(async_nats::connect(url).await?);
    // Where it starts matters only the first time: afterwards the server remembers the
    // consumer's position (delete the consumer to start elsewhere).
    let consumer: async_nats::jetstream::consumer::PullConsumer = jetstream
        .get_stream(stream)
        .await?
        .get_or_create_consumer(
            durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                deliver_policy,
                ack_policy: AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let height = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Planetmint-Height"))
            .map(|h| h.as_str().to_owned())
            .unwrap_or_default();
        // The payload is exactly what the WebSocket stream sends for this event.
        println!("{height} {}", String::from_utf8_lossy(&message.payload));
        message.ack().await?;
    }
    Ok(())
}
