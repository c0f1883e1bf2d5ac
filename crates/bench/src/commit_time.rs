//! The commit-time encoding of benchmark transaction ids: the one place it is defined.
//!
//! A benchmark writer (`benchwriter` into Tarantool, `limitserver` from memory) gives every
//! transaction the id
//!
//! ```text
//! format!("{:016x}{:032x}{:016x}", spread(nanos), 0, nanos)   // 64 lowercase hex digits
//! ```
//!
//! where `nanos` is the commit time as nanoseconds since the Unix epoch, read from the
//! machine's realtime clock (`SystemTime::now()`, i.e. `CLOCK_REALTIME`) just before the block
//! is committed. The last 16 digits carry the time; the first 16 are [`spread`] of it, a
//! bijective mix, so that `partition=i/n` and consumer groups (which split on an id's first 16
//! digits) split benchmark transactions as evenly as real SHA3 ids; the 32 between are `0`.
//! Ids whose first 48 digits are all `0` (`format!("{:064x}", nanos)`: the Planetmint
//! harness's and `limitserver`'s) decode too.
//! `wsload` decodes the id and subtracts it from its own reading of the same clock when the
//! message arrives: latency is measured on one machine's clock, so writer and client must run
//! on the same host (they do: every tool refuses non-loopback addresses).
//!
//! Ids must be unique (they are the `transactions` primary key), so a writer stamps them with
//! a [`CommitClock`], which never hands out the same nanosecond twice: each stamp is the clock
//! or one nanosecond past the previous stamp, whichever is later. The stamps also increase in
//! commit order, which is what lets `wsload` detect messages delivered out of order.

use std::time::{SystemTime, UNIX_EPOCH};

/// Length of a transaction id (and of an encoded commit time).
pub const ID_LEN: usize = 64;
/// Digits that carry the time: the last 16 of the 64.
pub const TIME_DIGITS: usize = 16;

/// Now, as nanoseconds since the Unix epoch (0 before 1970, saturating after 2554).
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The first 16 digits of an id encoding `nanos`: SplitMix64's finalizer, a bijection that
/// spreads consecutive times over the whole range (and keeps 0 at 0).
pub fn spread(nanos: u64) -> u64 {
    let mut z = nanos;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The transaction id that encodes `nanos`: 64 lowercase hex digits (see the module).
pub fn encode(nanos: u64) -> String {
    format!("{:016x}{:032x}{nanos:016x}", spread(nanos), 0)
}

/// Writes the 16 time digits of `nanos` into `out` (for patching a pre-encoded id of zeros in
/// place: the 48 digits before them stay `0`, which decodes as well).
pub fn write_time_digits(nanos: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    debug_assert_eq!(out.len(), TIME_DIGITS);
    for (i, slot) in out.iter_mut().enumerate().take(TIME_DIGITS) {
        let shift = 4 * (TIME_DIGITS - 1 - i);
        *slot = DIGITS[((nanos >> shift) & 0xf) as usize];
    }
}

/// 16 lowercase hex digits as a number.
fn hex16(digits: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for &b in digits {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        value = (value << 4) | u64::from(digit);
    }
    Some(value)
}

/// The commit time encoded in `id`, or `None` when `id` is not such an encoding (wrong length,
/// first 16 digits neither `0` nor the spread of the time, non-zero middle digits, or not
/// lowercase hex).
pub fn decode(id: &str) -> Option<u64> {
    let bytes = id.as_bytes();
    if bytes.len() != ID_LEN {
        return None;
    }
    let (head, rest) = bytes.split_at(TIME_DIGITS);
    let (middle, low) = rest.split_at(ID_LEN - 2 * TIME_DIGITS);
    if middle.iter().any(|&b| b != b'0') {
        return None;
    }
    let value = hex16(low)?;
    let head = hex16(head)?;
    (head == 0 || head == spread(value)).then_some(value)
}

/// Hands out strictly increasing commit times: the realtime clock, or one nanosecond after
/// the previous stamp when the clock has not moved on (or stepped back).
#[derive(Debug, Default, Clone)]
pub struct CommitClock {
    last: u64,
}

impl CommitClock {
    /// A clock that has stamped nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next commit time (nanoseconds since the Unix epoch).
    pub fn stamp(&mut self) -> u64 {
        let now = now_nanos();
        self.last = now.max(self.last.saturating_add(1));
        self.last
    }

    /// The next commit time as a transaction id.
    pub fn stamp_id(&mut self) -> String {
        encode(self.stamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_decode_round_trip() {
        for nanos in [0, 1, 0xdead_beef, 1_750_000_000_123_456_789, u64::MAX] {
            let id = encode(nanos);
            assert_eq!(id.len(), ID_LEN);
            assert!(id[TIME_DIGITS..ID_LEN - TIME_DIGITS]
                .bytes()
                .all(|b| b == b'0'));
            assert_eq!(decode(&id), Some(nanos));
            // The zero-padded form (Planetmint harness, limitserver) decodes too.
            assert_eq!(decode(&format!("{nanos:064x}")), Some(nanos));
        }
    }

    #[test]
    fn partitions_of_consecutive_ids_are_even() {
        // The node's partition=i/n: the first 16 hex digits as a number, modulo n.
        let mut clock = CommitClock::new();
        let mut buckets = [0u32; 100];
        for _ in 0..20_000 {
            let id = clock.stamp_id();
            let head = u64::from_str_radix(&id[..16], 16).expect("hex");
            buckets[(head % 100) as usize] += 1;
        }
        let (min, max) = (buckets.iter().min(), buckets.iter().max());
        assert!(
            min >= Some(&140) && max <= Some(&260),
            "200 per partition expected, got {min:?}..{max:?}"
        );
    }

    #[test]
    fn patching_digits_matches_encode() {
        let nanos = 1_750_000_000_987_654_321;
        let mut id = encode(0).into_bytes();
        write_time_digits(nanos, &mut id[ID_LEN - TIME_DIGITS..]);
        let patched = String::from_utf8(id).expect("ascii");
        assert_eq!(patched, format!("{nanos:064x}"));
        assert_eq!(decode(&patched), Some(nanos));
    }

    #[test]
    fn other_ids_do_not_decode() {
        let sha = "4b3e8b1d9c1f1a5e2c2f1a3e4b5d6c7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c";
        assert_eq!(decode(sha), None, "middle digits are not zero");
        let mut forged = encode(77);
        forged.replace_range(0..1, if forged.starts_with('0') { "1" } else { "0" });
        assert_eq!(
            decode(&forged),
            None,
            "first digits are not the spread of the time"
        );
        assert_eq!(decode("00ff"), None, "too short");
        let upper = format!("{:064X}", 0xABCu64);
        assert_eq!(decode(&upper), None, "uppercase is not the encoding");
        let mut bad = encode(5);
        bad.replace_range(63..64, "g");
        assert_eq!(decode(&bad), None);
    }

    #[test]
    fn stamps_strictly_increase() {
        let mut clock = CommitClock::new();
        let stamps: Vec<u64> = (0..10_000).map(|_| clock.stamp()).collect();
        assert!(stamps.windows(2).all(|w| w[0] < w[1]));
        let wall = now_nanos();
        let last = stamps.last().copied().unwrap_or_default();
        assert!(last <= wall + 10_000, "stamps follow the clock");
    }
}
