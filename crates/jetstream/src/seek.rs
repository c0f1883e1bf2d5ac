//! Seek by height: the stream sequence of the first event at or above a height, found by a
//! binary search over the stream's messages (each carries `Planetmint-Height`; heights never
//! decrease along the sequence), about log2(messages) message reads.

use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::Context;
use serde::Serialize;

use crate::names::{StreamNames, HEIGHT_HEADER};

/// The answer of `GET /api/v1/streams/<stream>/jetstream?height=H`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeekAnswer {
    /// The JetStream stream.
    pub stream: String,
    /// Its subject.
    pub subject: String,
    /// The sequence to start from (`DeliverPolicy::ByStartSequence`): the first event at
    /// height >= H. Past the last event: the sequence the next one will get.
    pub sequence: u64,
    /// The height of the event at `sequence` (`None`: no such event yet).
    pub height: Option<u64>,
    /// The lowest sequence the stream still holds (older ones aged out).
    pub first_sequence: u64,
    /// The sequence of the last event the stream holds (0: none yet).
    pub last_sequence: u64,
}

/// Why a seek could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum SeekError {
    /// Not connected to NATS (yet).
    #[error("not connected to NATS")]
    NotConnected,
    /// JetStream did not answer.
    #[error("JetStream: {0}")]
    JetStream(String),
    /// A message of the stream carries no height (not published by planetmint-streams).
    #[error("message {0} of the stream has no {HEIGHT_HEADER} header")]
    Foreign(u64),
}

async fn height_at(stream: &Stream, sequence: u64) -> Result<u64, SeekError> {
    let message = stream
        .get_raw_message(sequence)
        .await
        .map_err(|e| SeekError::JetStream(e.to_string()))?;
    message
        .headers
        .get(HEIGHT_HEADER)
        .and_then(|value| value.as_str().parse().ok())
        .ok_or(SeekError::Foreign(sequence))
}

/// The first sequence of `names`' stream whose event is at `height` or above.
pub async fn sequence_for_height(
    context: &Context,
    names: &StreamNames,
    height: u64,
) -> Result<SeekAnswer, SeekError> {
    let jetstream = |e: &dyn std::fmt::Display| SeekError::JetStream(e.to_string());
    let mut stream = context
        .get_stream(&names.stream)
        .await
        .map_err(|e| jetstream(&e))?;
    let state = stream
        .info()
        .await
        .map_err(|e| jetstream(&e))?
        .state
        .clone();
    let (first, last) = (state.first_sequence, state.last_sequence);
    let answer = |sequence: u64, at: Option<u64>| SeekAnswer {
        stream: names.stream.clone(),
        subject: names.subject.clone(),
        sequence,
        height: at,
        first_sequence: first,
        last_sequence: last,
    };
    if state.messages == 0 || first > last {
        return Ok(answer(last + 1, None));
    }
    if height_at(&stream, last).await? < height {
        return Ok(answer(last + 1, None));
    }
    // Invariant: the event at `high` is at `height` or above; every one before `low` is below.
    let (mut low, mut high) = (first, last);
    while low < high {
        let middle = low + (high - low) / 2;
        if height_at(&stream, middle).await? >= height {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    let at = height_at(&stream, high).await?;
    Ok(answer(high, Some(at)))
}
