//! Connection limits, enforced before the WebSocket upgrade: a total and a per-IP count of
//! open subscriptions, and a token bucket for what each client may send.
//!
//! "Per IP" means per client group ([`client_group`]): one IPv4 address, or one IPv6 /64 (the
//! smallest network a provider hands out, so one subscriber can use a whole /64 of addresses).
//! The API port counts its connections with the same [`ConnectionLimiter`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `streams.max_connections` subscriptions are open (HTTP 503).
    Full,
    /// This IP has `streams.max_connections_per_ip` open (HTTP 429).
    TooManyFromIp,
}

/// Leading bits of an IPv6 address that name one client for the per-IP limits.
pub const IPV6_CLIENT_PREFIX_BITS: u32 = 64;

/// The key per-IP limits count under: an IPv4 address as is (also when it arrives as an
/// IPv4-mapped IPv6 address, `::ffff:a.b.c.d`), an IPv6 address reduced to its /64
/// ([`IPV6_CLIENT_PREFIX_BITS`]), since a single host or subscriber line is usually given a
/// whole /64 and could otherwise open the per-IP limit again from every address in it.
pub fn client_group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mask = u128::MAX << (128 - IPV6_CLIENT_PREFIX_BITS);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
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

    /// Takes a slot for a connection from `ip`, or says why not. `ip` is counted under its
    /// [`client_group`].
    pub fn acquire(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<ConnectionSlot, Refusal> {
        let ip = ip.map(client_group);
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
                    crate::shrink::release_unused(&mut counts.by_ip);
                }
            }
        }
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`. A session reads its
/// client's next frame only when a token is ready, so a client that sends faster is read more
/// slowly (TCP pushes back on it) instead of being cut off.
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

    fn refill(&mut self) {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
    }

    /// How long until a token is ready (zero: one is).
    pub fn ready_in(&mut self) -> Duration {
        self.refill();
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    /// Takes one token (a frame was read); the bucket never holds less than none.
    pub fn take(&mut self) {
        self.refill();
        self.tokens = (self.tokens - 1.0).max(0.0);
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
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let limiter = Arc::new(ConnectionLimiter::new(100, 2));
        let ip = |text: &str| -> IpAddr { text.parse().expect("ip") };
        let _a = limiter.acquire(Some(ip("2001:db8:1:2::1"))).expect("first");
        let _b = limiter
            .acquire(Some(ip("2001:db8:1:2:ffff:ffff:ffff:fffe")))
            .expect("same /64, second");
        assert_eq!(
            limiter.acquire(Some(ip("2001:db8:1:2:abcd::9"))).err(),
            Some(Refusal::TooManyFromIp),
            "a third address of the same /64 counts against the same limit"
        );
        let _c = limiter
            .acquire(Some(ip("2001:db8:1:3::1")))
            .expect("the neighbouring /64 is another client");
        let _d = limiter.acquire(Some(ip("10.0.0.1"))).expect("v4");
        let _e = limiter
            .acquire(Some(ip("::ffff:10.0.0.1")))
            .expect("mapped");
        assert_eq!(
            limiter.acquire(Some(ip("10.0.0.1"))).err(),
            Some(Refusal::TooManyFromIp),
            "an IPv4-mapped address is the same client as the IPv4 address"
        );
        assert_eq!(
            client_group(ip("2001:db8:1:2:abcd::9")),
            ip("2001:db8:1:2::")
        );
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(0.01, 3.0);
        for _ in 0..3 {
            assert_eq!(bucket.ready_in(), Duration::ZERO);
            bucket.take();
        }
        let wait = bucket.ready_in();
        assert!(
            wait > Duration::from_secs(90) && wait <= Duration::from_secs(100),
            "burst used up: the next token in 100 s at 0.01/s, not {wait:?}"
        );
    }
}
