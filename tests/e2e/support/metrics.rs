//! Reading `/metrics` (Prometheus text) the simple way: a value summed over matching series,
//! and a scrape repeated until a condition holds.

use std::time::Duration;

use super::clients::http::http_get;

/// Scrapes `/metrics` on `api_addr` until `ready` holds for its text, for at most `within`:
/// for what the node counts after a client has moved on (a session ending after a close, a
/// subscription started). Returns the last text either way; the caller's assertions say what
/// is missing.
pub async fn metrics_until(
    api_addr: &str,
    within: Duration,
    ready: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (status, text) = http_get(api_addr, "/metrics").await;
        assert_eq!(status, 200, "/metrics: {text}");
        if ready(&text) || tokio::time::Instant::now() >= deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Value of a counter or gauge in Prometheus text, summed over series matching `labels`.
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(name)
                && (line[name.len()..].starts_with(' ') || line[name.len()..].starts_with('{'))
                && line.contains(labels)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
