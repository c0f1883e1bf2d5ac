//! Connection limits, enforced before the WebSocket upgrade: a total and a per-IP count of
//! open subscriptions, and a token bucket for what each client may send.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `streams.max_connections` subscriptions are open (HTTP 503).
    Full,
    /// This IP has `streams.max_connections_per_ip` open (HTTP 429).
    TooManyFromIp,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Counts open subscriptions.
#[derive(Debug)]
pub struct ConnectionLimiter {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<Counts>,
}

/// One counted subscription; released when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    limiter: Arc<ConnectionLimiter>,
    ip: Option<IpAddr>,
}

impl ConnectionLimiter {
    /// A limiter allowing `max_total` subscriptions, `max_per_ip` from one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            max_total,
            max_per_ip,
            counts: Mutex::new(Counts::default()),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for a subscription from `ip`, or says why not.
    pub fn acquire(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<ConnectionSlot, Refusal> {
        let mut counts = self.counts();
        if counts.total >= self.max_total {
            return Err(Refusal::Full);
        }
        if let Some(ip) = ip {
            let from_ip = counts.by_ip.entry(ip).or_default();
            if *from_ip >= self.max_per_ip {
                return Err(Refusal::TooManyFromIp);
            }
            *from_ip += 1;
        }
        counts.total += 1;
        Ok(ConnectionSlot {
            limiter: self.clone(),
            ip,
        })
    }

    /// Open subscriptions.
    pub fn open(&self) -> usize {
        self.counts().total
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.limiter.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(ip) = self.ip {
            if let Some(n) = counts.by_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    counts.by_ip.remove(&ip);
                }
            }
        }
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes one token; false when the bucket is empty.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_per_ip_counts_are_enforced_and_released() {
        let limiter = Arc::new(ConnectionLimiter::new(3, 2));
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let s1 = limiter.acquire(Some(a)).expect("first");
        let _s2 = limiter.acquire(Some(a)).expect("second");
        assert_eq!(limiter.acquire(Some(a)).err(), Some(Refusal::TooManyFromIp));
        let _s3 = limiter.acquire(Some(b)).expect("other ip");
        assert_eq!(limiter.acquire(Some(b)).err(), Some(Refusal::Full));
        drop(s1);
        assert_eq!(limiter.open(), 2);
        let _s4 = limiter.acquire(Some(a)).expect("slot released");
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(1.0, 3.0);
        assert!(bucket.take() && bucket.take() && bucket.take());
        assert!(!bucket.take(), "burst used up");
    }
}
