//! The read budget: how much history replays may ask of Planetmint's Tarantool.
//!
//! The Tarantool we read is the one a validator commits through (its single transaction
//! thread), so replays get a bounded share of it, whatever clients do:
//! - at most `replay_reads_in_flight` history reads at the source at once, from the request
//!   until the source has answered (decoding is not counted: it is the node's work). Live
//!   ingest is never budgeted, so a live read waits behind at most that many replay reads;
//! - at most `replay_transactions_per_second` transactions read for replays, on average;
//! - at most `replay_max_concurrent` subscribers replaying from the source at once; the others
//!   wait, connected and pinged, for a turn (slower catch-up, counted in a metric).
//!
//! The per-address limit (`replay_max_per_ip`) is a refusal before the upgrade, in `server`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntCounterVec;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// Limits of the read budget (from `[streams]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetLimits {
    /// History reads in flight at once.
    pub reads_in_flight: usize,
    /// Transactions read per second for replays, on average; 0: no rate limit.
    pub transactions_per_second: u32,
    /// Subscribers replaying from the source at once.
    pub max_concurrent_replays: usize,
}

/// Average rate with a one-second burst, charged after each read (a read's size is known
/// only once it has been made, so the rate may go into debt, which the next read waits off).
#[derive(Debug)]
struct Rate {
    per_second: f64,
    available: f64,
    last: Instant,
}

impl Rate {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.available = (self.available + elapsed * self.per_second).min(self.per_second);
        self.last = now;
    }

    /// How long to wait until the debt is paid.
    fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.available >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.available / self.per_second)
        }
    }
}

/// Shared by every replay of a stream server.
#[derive(Debug)]
pub struct ReadBudget {
    reads: Semaphore,
    rate: Option<Mutex<Rate>>,
    replays: Arc<Semaphore>,
    waits: IntCounterVec,
}

/// A turn to read from the source, until it has answered ([`ReadTurn::answered`]).
#[derive(Debug)]
pub struct ReadTurn<'a> {
    budget: &'a ReadBudget,
    _permit: SemaphorePermit<'a>,
}

impl<'a> ReadTurn<'a> {
    /// Ends the turn once the source has answered, so the next read may go while this
    /// answer is decoded; [`ReadCharge::charge`] then counts what it held.
    pub fn answered(self) -> ReadCharge<'a> {
        ReadCharge {
            budget: self.budget,
        }
    }
}

/// What an answered read still owes the rate.
#[derive(Debug)]
pub struct ReadCharge<'a> {
    budget: &'a ReadBudget,
}

impl ReadCharge<'_> {
    /// Counts `transactions` read against the rate.
    pub fn charge(self, transactions: usize) {
        if let Some(rate) = &self.budget.rate {
            let mut rate = rate.lock().unwrap_or_else(|p| p.into_inner());
            rate.refill(Instant::now());
            rate.available -= transactions as f64;
        }
    }
}

/// A subscriber's turn to replay from the source; released when dropped.
#[derive(Debug)]
pub struct ReplayTurn(#[allow(dead_code)] OwnedSemaphorePermit);

impl ReadBudget {
    /// A budget with `limits`; `waits` counts every wait, by `reason`.
    pub fn new(limits: BudgetLimits, waits: IntCounterVec) -> Self {
        let rate = (limits.transactions_per_second > 0).then(|| {
            let per_second = f64::from(limits.transactions_per_second);
            Mutex::new(Rate {
                per_second,
                available: per_second,
                last: Instant::now(),
            })
        });
        Self {
            reads: Semaphore::new(limits.reads_in_flight.max(1)),
            rate,
            replays: Arc::new(Semaphore::new(limits.max_concurrent_replays.max(1))),
            waits,
        }
    }

    /// Waits for a read slot and for the rate's debt to be paid.
    pub async fn read_turn(&self) -> ReadTurn<'_> {
        let permit = match self.reads.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                self.waits.with_label_values(&["reads_in_flight"]).inc();
                // The semaphore is never closed.
                match self.reads.acquire().await {
                    Ok(permit) => permit,
                    Err(_) => unreachable_closed(),
                }
            }
        };
        if let Some(rate) = &self.rate {
            let wait = rate
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .wait(Instant::now());
            if !wait.is_zero() {
                self.waits.with_label_values(&["read_rate"]).inc();
                tokio::time::sleep(wait).await;
            }
        }
        ReadTurn {
            budget: self,
            _permit: permit,
        }
    }

    /// Waits for a turn to replay from the source.
    pub async fn replay_turn(&self) -> ReplayTurn {
        let permit = match self.replays.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.waits.with_label_values(&["concurrent_replays"]).inc();
                match self.replays.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => unreachable_closed(),
                }
            }
        };
        ReplayTurn(permit)
    }
}

/// The budget's semaphores are owned by it and never closed.
fn unreachable_closed() -> ! {
    unreachable!("the read budget's semaphores are never closed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Opts;

    fn budget(limits: BudgetLimits) -> ReadBudget {
        let waits = IntCounterVec::new(Opts::new("waits", "waits"), &["reason"]).expect("metric");
        ReadBudget::new(limits, waits)
    }

    #[tokio::test(start_paused = true)]
    async fn reads_are_paced_to_the_transaction_rate() {
        let budget = budget(BudgetLimits {
            reads_in_flight: 1,
            transactions_per_second: 1000,
            max_concurrent_replays: 1,
        });
        let start = Instant::now();
        // 10 reads of 500 transactions. A read is charged after it is made, so the tenth
        // starts once the first nine (4,500) are paid for: the one-second burst covers 1,000,
        // the other 3,500 take 3.5 s at 1,000/s.
        for _ in 0..10 {
            budget.read_turn().await.answered().charge(500);
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(3500) && took <= Duration::from_millis(3600),
            "took {took:?}"
        );
        assert_eq!(budget.waits.with_label_values(&["read_rate"]).get(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_replay_waits_for_the_first_to_end() {
        let budget = Arc::new(budget(BudgetLimits {
            reads_in_flight: 1,
            transactions_per_second: 0,
            max_concurrent_replays: 1,
        }));
        let first = budget.replay_turn().await;
        let second = tokio::spawn({
            let budget = budget.clone();
            async move { budget.replay_turn().await }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished(), "the second replay waits");
        drop(first);
        second
            .await
            .expect("second replay runs once the first ended");
        assert_eq!(
            budget
                .waits
                .with_label_values(&["concurrent_replays"])
                .get(),
            1
        );
    }
}
