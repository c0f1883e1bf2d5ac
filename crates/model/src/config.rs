//! The error every configuration section's `validate` returns: the dotted key at fault and what
//! is wrong with its value. Its message is the one a user sees, formed here and nowhere else
//! (the binary only wraps it).

/// A configuration value that is not acceptable, naming its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {key}: {problem}")]
pub struct ConfigProblem {
    /// The dotted key, e.g. `streams.ping_interval`.
    pub key: &'static str,
    /// What is wrong with its value, e.g. `must be greater than zero`.
    pub problem: String,
}

impl ConfigProblem {
    /// A problem with the value of `key`.
    pub fn new(key: &'static str, problem: impl Into<String>) -> Self {
        Self {
            key,
            problem: problem.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_key_then_the_problem() {
        let problem = ConfigProblem::new("streams.ping_interval", "must be greater than zero");
        assert_eq!(
            problem.to_string(),
            "invalid configuration: streams.ping_interval: must be greater than zero"
        );
    }
}
