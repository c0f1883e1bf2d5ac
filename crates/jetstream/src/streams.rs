//! The two JetStream streams: created when missing, checked (and their limits brought to the
//! configured ones) when they exist.

use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::Context;

use crate::config::NatsConfig;
use crate::names::StreamNames;

/// Why a stream could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StreamSetupError {
    /// JetStream did not answer, or refused.
    #[error("JetStream stream {stream}: {message}")]
    JetStream {
        /// The stream.
        stream: String,
        /// What happened.
        message: String,
    },
    /// An existing stream cannot hold our events as they must be held.
    #[error("JetStream stream {stream} exists but does not fit: {problem} (change or delete it, or set nats.prefix)")]
    Unfit {
        /// The stream.
        stream: String,
        /// Why not.
        problem: String,
    },
}

/// Whether a stream lookup failed because the stream does not exist.
fn is_not_found(kind: &async_nats::jetstream::context::GetStreamErrorKind) -> bool {
    matches!(
        kind,
        async_nats::jetstream::context::GetStreamErrorKind::JetStream(error)
            if error.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// The configuration our stream must have.
pub fn stream_config(config: &NatsConfig, names: &StreamNames) -> Config {
    Config {
        name: names.stream.clone(),
        subjects: vec![names.subject.clone()],
        description: Some(format!(
            "planetmint-streams: {} events, one message each, in chain order",
            names.kind.name()
        )),
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        discard: DiscardPolicy::Old,
        max_age: config.max_age,
        max_bytes: if config.max_bytes == 0 {
            -1
        } else {
            i64::try_from(config.max_bytes).unwrap_or(i64::MAX)
        },
        max_messages: -1,
        max_messages_per_subject: -1,
        max_consumers: -1,
        num_replicas: config.replicas,
        duplicate_window: config.duplicate_window,
        ..Config::default()
    }
}

/// Creates the stream of `names`, or checks the existing one: it must take exactly our
/// subject, keep messages by limits (not as a work queue) on disk; its age, size, replica
/// and de-duplication limits are updated to the configured ones when they differ.
pub async fn ensure_stream(
    context: &Context,
    config: &NatsConfig,
    names: &StreamNames,
) -> Result<(), StreamSetupError> {
    let wanted = stream_config(config, names);
    let jetstream = |e: &dyn std::fmt::Display| StreamSetupError::JetStream {
        stream: names.stream.clone(),
        message: e.to_string(),
    };
    let existing = match context.get_stream(&names.stream).await {
        Ok(mut stream) => stream
            .info()
            .await
            .map_err(|e| jetstream(&e))?
            .config
            .clone(),
        Err(err) if is_not_found(&err.kind()) => {
            context
                .create_stream(wanted)
                .await
                .map_err(|e| jetstream(&e))?;
            tracing::info!(stream = %names.stream, subject = %names.subject, "JetStream stream created");
            return Ok(());
        }
        Err(err) => return Err(jetstream(&err)),
    };
    let unfit = |problem: String| StreamSetupError::Unfit {
        stream: names.stream.clone(),
        problem,
    };
    if existing.subjects != wanted.subjects {
        return Err(unfit(format!(
            "its subjects are {:?}, expected [{:?}]",
            existing.subjects, names.subject
        )));
    }
    if existing.retention != RetentionPolicy::Limits {
        return Err(unfit(
            "its retention is not limits (a work queue or interest stream loses events)".into(),
        ));
    }
    if existing.storage != StorageType::File {
        return Err(unfit(
            "its storage is memory (a NATS restart would lose it)".into(),
        ));
    }
    let differs = existing.max_age != wanted.max_age
        || existing.max_bytes != wanted.max_bytes
        || existing.num_replicas != wanted.num_replicas
        || existing.duplicate_window != wanted.duplicate_window
        || existing.discard != wanted.discard;
    if differs {
        let updated = Config {
            max_age: wanted.max_age,
            max_bytes: wanted.max_bytes,
            num_replicas: wanted.num_replicas,
            duplicate_window: wanted.duplicate_window,
            discard: wanted.discard,
            ..existing
        };
        context
            .update_stream(updated)
            .await
            .map_err(|e| jetstream(&e))?;
        tracing::info!(stream = %names.stream, "JetStream stream limits updated to the configured ones");
    }
    Ok(())
}
