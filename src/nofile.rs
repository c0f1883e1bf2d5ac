//! The open-file limit (`RLIMIT_NOFILE`) against `streams.max_connections`.
//!
//! Every subscriber is a socket, so a node whose soft `nofile` limit is below
//! `streams.max_connections` plus what it needs besides subscribers ([`NOFILE_RESERVE`]) cannot
//! hold the connections it was configured for: past the limit `accept` fails with EMFILE and
//! new subscribers see refused or stalled connects. At start the node reads the limit, raises
//! the soft limit towards the hard limit when that helps (an unprivileged process may), logs a
//! warning when it is still too low and publishes the numbers as gauges.

use prometheus::{IntGauge, Registry};
use rlimit::Resource;
use tracing::{info, warn};

/// Descriptors a node needs besides its subscribers: listeners, Tarantool connections, API and
/// admin clients, TLS and log files, and connections being refused or closing. The warning
/// fires when the soft limit is below `streams.max_connections` plus this.
pub const NOFILE_RESERVE: u64 = 256;

/// What the check found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileStatus {
    /// The soft limit found at start.
    pub soft_at_start: u64,
    /// The soft limit in force after the check (raised or not).
    pub soft: u64,
    /// The hard limit (`rlimit::INFINITY` when unlimited).
    pub hard: u64,
    /// `streams.max_connections` + [`NOFILE_RESERVE`].
    pub required: u64,
}

impl NofileStatus {
    /// Whether the soft limit in force holds `streams.max_connections` subscribers.
    pub fn sufficient(&self) -> bool {
        self.soft >= self.required
    }

    /// Whether the check raised the soft limit.
    pub fn raised(&self) -> bool {
        self.soft > self.soft_at_start
    }
}

/// Descriptors a node configured for `max_connections` subscribers needs.
pub fn required(max_connections: usize) -> u64 {
    u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(NOFILE_RESERVE)
}

/// The soft limit to ask for, if raising helps: when `soft` is below `required` and the hard
/// limit allows more, as much as the hard limit allows (an unlimited hard limit: `required`,
/// since the kernel's `fs.nr_open` still bounds the soft limit).
pub fn raise_to(soft: u64, hard: u64, required: u64) -> Option<u64> {
    if soft >= required || hard <= soft {
        return None;
    }
    Some(if hard == rlimit::INFINITY {
        required
    } else {
        hard
    })
}

/// Reads this process's `nofile` limit, raises the soft limit when that helps, logs (info when
/// raised, warn when still below what `max_connections` needs) and registers the gauges
/// `planetmint_streams_open_files_limit`, `..._open_files_required` and
/// `..._open_files_limit_low` (1 while too low). A limit that cannot be read is logged and
/// reported as 0 (low); only a failure to register the gauges is an error.
pub fn check(
    max_connections: usize,
    registry: &Registry,
) -> Result<Option<NofileStatus>, prometheus::Error> {
    let limit = IntGauge::new(
        "planetmint_streams_open_files_limit",
        "Soft RLIMIT_NOFILE of the node after start (raised towards the hard limit when needed)",
    )?;
    let needed = IntGauge::new(
        "planetmint_streams_open_files_required",
        "Open files streams.max_connections needs: max_connections + 256 for everything else",
    )?;
    let low = IntGauge::new(
        "planetmint_streams_open_files_limit_low",
        "1 when the open-file limit is below what streams.max_connections needs",
    )?;
    registry.register(Box::new(limit.clone()))?;
    registry.register(Box::new(needed.clone()))?;
    registry.register(Box::new(low.clone()))?;
    let required = required(max_connections);
    needed.set(i64::try_from(required).unwrap_or(i64::MAX));

    let (soft_at_start, hard) = match rlimit::getrlimit(Resource::NOFILE) {
        Ok(limits) => limits,
        Err(err) => {
            warn!(error = %err, "cannot read the open-file limit (RLIMIT_NOFILE)");
            low.set(1);
            return Ok(None);
        }
    };
    let mut soft = soft_at_start;
    if let Some(target) = raise_to(soft, hard, required) {
        match rlimit::setrlimit(Resource::NOFILE, target, hard) {
            Ok(()) => {
                soft = target;
                info!(
                    from = soft_at_start,
                    to = soft,
                    hard = %show(hard),
                    "raised the open-file soft limit (RLIMIT_NOFILE) for streams.max_connections"
                );
            }
            Err(err) => warn!(
                error = %err,
                to = target,
                "cannot raise the open-file soft limit (RLIMIT_NOFILE)"
            ),
        }
    }
    let status = NofileStatus {
        soft_at_start,
        soft,
        hard,
        required,
    };
    limit.set(i64::try_from(soft).unwrap_or(i64::MAX));
    low.set(i64::from(!status.sufficient()));
    if !status.sufficient() {
        warn!(
            limit = soft,
            hard = %show(hard),
            max_connections,
            required,
            usable_connections = soft.saturating_sub(NOFILE_RESERVE),
            "open-file limit is below what streams.max_connections needs; connections past it will fail"
        );
    }
    Ok(Some(status))
}

fn show(limit: u64) -> String {
    if limit == rlimit::INFINITY {
        "unlimited".to_owned()
    } else {
        limit.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_only_when_it_helps() {
        // Enough already: nothing to do.
        assert_eq!(raise_to(65_536, 65_536, 20_256), None);
        assert_eq!(raise_to(30_000, 1_048_576, 20_256), None);
        // Too low, the hard limit allows more: all of it.
        assert_eq!(raise_to(1_024, 524_288, 20_256), Some(524_288));
        // Too low and the hard limit is too: still raise, it holds more than before.
        assert_eq!(raise_to(1_024, 4_096, 20_256), Some(4_096));
        // Hard limit already reached: nothing to gain.
        assert_eq!(raise_to(4_096, 4_096, 20_256), None);
        // Unlimited hard limit: ask for what is needed.
        assert_eq!(raise_to(1_024, rlimit::INFINITY, 20_256), Some(20_256));
        assert_eq!(required(20_000), 20_256);
    }

    fn gauge(registry: &Registry, name: &str) -> i64 {
        registry
            .gather()
            .iter()
            .find(|family| family.name() == name)
            .map(|family| family.get_metric()[0].get_gauge().get_value() as i64)
            .unwrap_or(-1)
    }

    #[test]
    fn reports_the_limit_and_whether_it_is_too_low() {
        let (_, hard) = rlimit::getrlimit(Resource::NOFILE).expect("getrlimit");
        // Few connections: the limit holds them.
        let registry = Registry::new();
        let status = check(16, &registry).expect("gauges").expect("limit read");
        assert!(status.sufficient());
        assert_eq!(
            gauge(&registry, "planetmint_streams_open_files_limit_low"),
            0
        );
        assert_eq!(
            gauge(&registry, "planetmint_streams_open_files_required"),
            16 + NOFILE_RESERVE as i64
        );
        assert_eq!(
            gauge(&registry, "planetmint_streams_open_files_limit"),
            status.soft as i64
        );
        // More connections than the hard limit allows: raised as far as it goes, still low.
        if hard != rlimit::INFINITY {
            let registry = Registry::new();
            let too_many = usize::try_from(hard).expect("fits") + 1_000;
            let status = check(too_many, &registry)
                .expect("gauges")
                .expect("limit read");
            assert!(!status.sufficient());
            assert_eq!(status.soft, hard, "soft limit raised to the hard limit");
            assert_eq!(
                gauge(&registry, "planetmint_streams_open_files_limit_low"),
                1
            );
            assert_eq!(
                rlimit::getrlimit(Resource::NOFILE).expect("getrlimit").0,
                hard
            );
        }
    }
}
