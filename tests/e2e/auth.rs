//! Signed stream URLs end to end: a node in `signed` mode with two keys (rotation), the admin
//! endpoint, the `token issue` command, and every refusal a client can meet, each with the
//! status and reason it must get before any upgrade.

use std::time::Duration;

use planetmint_streams::config::Config;
use planetmint_streams_auth::{
    unix_now, AuthMode, Grant, KeyConfig, KeyRing, SecretString, Stream, TokenAuthority,
    TokenPolicy,
};
use planetmint_streams_devchain::fixtures::Planetmint253;
use serde_json::Value;

use crate::support::*;

const OLD_SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const NEW_SECRET: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
const ADMIN_SECRET: &str = "admin-secret-admin-secret-admin-secret-01";
const KEY: &str = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";
const OTHER_KEY: &str = "zeLcy7Xzntvupb1PChe1B3KjxRKcCdM1zJEKyKpc653";

fn signed(config: &mut Config) {
    config.auth.mode = AuthMode::Signed;
    config.auth.keys = vec![
        KeyConfig {
            id: "old".into(),
            secret: Some(SecretString::new(OLD_SECRET)),
            secret_file: None,
        },
        KeyConfig {
            id: "new".into(),
            secret: Some(SecretString::new(NEW_SECRET)),
            secret_file: None,
        },
    ];
    config.auth.issuing_key = Some("new".into());
    // auth.close_on_expiry is left at its default (on): the expiry test checks the default.
    config.auth.admin.enabled = true;
    config.auth.admin.bind = "127.0.0.1:0".into();
    config.auth.admin.secret = Some(SecretString::new(ADMIN_SECRET));
}

/// The transactions paying to [`KEY`] in the fixtures, as a stream filtered on it sends them.
fn expected_for_key(fixtures: &Planetmint253) -> Vec<Value> {
    fixtures
        .expected_transactions
        .iter()
        .filter(|e| e["public_keys"].as_array().is_some_and(|k| k.iter().any(|k| k == KEY)))
        .map(|e| serde_json::json!({"transaction_id": e["transaction_id"], "asset_id": e["asset_id"], "asset_ids": e["asset_ids"], "height": e["height"]}))
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
        .collect()
}

/// An issuer holding only `id` with `secret` (a backend with its own copy of a key).
fn issuer(id: &str, secret: &str) -> TokenAuthority {
    TokenAuthority::new(
        KeyRing::new(id, &hex(secret)).expect("key"),
        TokenPolicy {
            default_ttl: Duration::from_secs(120),
            max_ttl: Duration::from_secs(3600),
            clock_skew: Duration::from_secs(30),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_mode_refuses_every_bad_token_and_streams_with_a_good_one() {
    let harness = Harness::start_with(signed).await;
    let streams = harness.node().streams_addr.to_string();
    let tx = "/api/v1/streams/valid_transactions";
    let new = issuer("new", NEW_SECRET);
    let wallet = Grant::new([Stream::ValidTransactions]).public_key(KEY);
    let good = new.issue(&wallet, None).expect("issue").token;

    let cases: Vec<(String, u16, &str)> = vec![
        (format!("{tx}?public_key={KEY}"), 401, "missing_token"),
        (
            format!("{tx}?public_key={KEY}&token=abc"),
            401,
            "malformed_token",
        ),
        (
            format!(
                "{tx}?public_key={KEY}&token={}",
                issuer("new", &"ab".repeat(32))
                    .issue(&wallet, None)
                    .expect("forged")
                    .token
            ),
            403,
            "bad_signature",
        ),
        (
            format!("{tx}?public_key={KEY}&token={}", tamper(&good)),
            403,
            "bad_signature",
        ),
        (
            format!(
                "{tx}?public_key={KEY}&token={}",
                issuer("gone", NEW_SECRET)
                    .issue(&wallet, None)
                    .expect("unknown key")
                    .token
            ),
            403,
            "unknown_key",
        ),
        (
            format!(
                "{tx}?public_key={KEY}&token={}",
                new.issue_at(&wallet, Some(Duration::from_secs(60)), unix_now() - 3600)
                    .expect("old")
                    .token
            ),
            403,
            "expired",
        ),
        (
            format!(
                "/api/v1/streams/valid_blocks?public_key={KEY}&token={}",
                good
            ),
            403,
            "stream_not_allowed",
        ),
        (
            format!("{tx}?public_key={OTHER_KEY}&token={good}"),
            403,
            "filter_not_allowed",
        ),
        (format!("{tx}?token={good}"), 403, "filter_not_allowed"),
    ];
    for (path, status, reason) in &cases {
        let (got, body) = upgrade_status(&streams, path).await;
        assert_eq!(got, *status, "{path}: {body}");
        assert_eq!(body["reason"], *reason, "{path}: {body}");
        assert!(
            !body.to_string().contains(&good),
            "refusals never echo a token"
        );
    }

    // The good token streams the wallet's transactions; a token signed with the old key
    // (rotation) is still accepted.
    let fixtures = Planetmint253::load().expect("fixtures");
    let mut ws =
        UrlStream::connect(&format!("ws://{streams}{tx}?public_key={KEY}&token={good}")).await;
    let old = issuer("old", OLD_SECRET)
        .issue(&Grant::new([Stream::ValidBlocks]), None)
        .expect("issue")
        .token;
    let mut blocks_ws = UrlStream::connect(&format!(
        "ws://{streams}/api/v1/streams/valid_blocks?token={old}"
    ))
    .await;
    harness.writer().await.write_fixtures(&fixtures).await;
    let expected = expected_for_key(&fixtures);
    assert_eq!(
        ws.take(expected.len(), Duration::from_secs(10)).await,
        expected
    );
    assert_eq!(
        blocks_ws.take(8, Duration::from_secs(10)).await,
        fixtures.expected_blocks
    );

    let (_, metrics) = http_get(&harness.node().api_addr.to_string(), "/metrics").await;
    for (_, _, reason) in &cases {
        assert!(
            metric(
                &metrics,
                "planetmint_streams_rejected_connections_total",
                &format!("reason=\"{reason}\"")
            ) >= 1.0,
            "{reason} counted"
        );
    }
}

/// Flips one character of the claims part.
fn tamper(token: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let claims = &mut parts[2];
    let last = claims.pop().unwrap_or('A');
    claims.push(if last == 'A' { 'B' } else { 'A' });
    parts.join(".")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_issues_urls_only_with_its_secret() {
    let harness = Harness::start_with(signed).await;
    let admin = harness
        .node()
        .admin_addr
        .expect("admin endpoint")
        .to_string();
    let body =
        format!(r#"{{"streams": ["valid_transactions"], "public_keys": ["{KEY}"], "ttl": "1m"}}"#);
    let post = |auth: Option<&str>| {
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "POST /admin/tokens HTTP/1.1\r\nHost: {admin}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let (status, _) = http_request(&admin, &post(None)).await;
    assert_eq!(status, 401);
    let (status, _) = http_request(
        &admin,
        &post(Some("Bearer not-the-secret-not-the-secret-000")),
    )
    .await;
    assert_eq!(status, 401);
    let (status, reply) =
        http_request(&admin, &post(Some(&format!("Bearer {ADMIN_SECRET}")))).await;
    assert_eq!(status, 200, "{reply}");
    let reply: Value = serde_json::from_str(&reply).expect("JSON");
    let token = reply["token"].as_str().expect("token");
    assert!(
        token.starts_with("v1.new."),
        "issued with the new key: {token}"
    );
    assert!(reply["expires_at"].as_u64().expect("expiry") <= unix_now() + 61);
    let url = reply["urls"]["valid_transactions"].as_str().expect("url");
    assert!(url.starts_with(&format!(
        "{}/api/v1/streams/valid_transactions?",
        harness.streams_base()
    )));
    let ws = UrlStream::connect(url).await;
    ws.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_close_with_1008_when_their_token_expires_by_default() {
    let harness = Harness::start_with(signed).await;
    assert!(
        planetmint_streams::config::Config::default()
            .auth
            .close_on_expiry
    );
    let token = issuer("new", NEW_SECRET)
        .issue(
            &Grant::new([Stream::ValidBlocks]),
            Some(Duration::from_secs(2)),
        )
        .expect("issue")
        .token;
    let mut ws = UrlStream::connect(&format!(
        "{}/api/v1/streams/valid_blocks?token={token}",
        harness.streams_base()
    ))
    .await;
    let started = std::time::Instant::now();
    let (_, frame) = ws.until_close(Duration::from_secs(6)).await;
    let frame = frame.expect("close frame");
    assert_eq!(frame.code, 1008);
    assert!(frame.reason.contains("token expired"));
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "not before the expiry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_issue_command_prints_a_working_url() {
    let harness = Harness::start_with(signed).await;
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("node.toml");
    planetmint_streams_auth::write_secret_file(&dir.path().join("new.key"), NEW_SECRET)
        .expect("key file");
    std::fs::write(
        &config,
        format!(
            "[streams]\nbind = \"127.0.0.1:{port}\"\nadvertised_host = \"127.0.0.1\"\n\n[auth]\nmode = \"signed\"\n\n[[auth.keys]]\nid = \"new\"\nsecret_file = \"{key}\"\n",
            port = harness.node().streams_addr.port(),
            key = dir.path().join("new.key").display()
        ),
    )
    .expect("config");
    let url = stdout_of(tokio::process::Command::new(BIN).args([
        "--config",
        &config.display().to_string(),
        "token",
        "issue",
        "--ttl",
        "2m",
        "--stream",
        "valid_transactions",
        "--public-key",
        KEY,
    ]))
    .await;
    let url = url.trim().to_owned();
    assert!(
        url.contains(&format!("public_key={KEY}")) && url.contains("&token=v1.new."),
        "{url}"
    );
    let ws = UrlStream::connect(&url).await;
    ws.close().await;
}

/// The decision of docs/tokens.md: a token pins which keys (assets, operations) a URL may
/// follow, not where in a transaction the key is looked for (`public_key_in`) nor where the
/// stream starts (`from_height`): a client resumes with a new `from_height` under the same
/// token, and looking for its own key among inputs shows it nothing of another key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_token_resumes_at_any_height_and_looks_anywhere_for_its_key() {
    let harness = Harness::start_with(signed).await;
    let streams = harness.node().streams_addr.to_string();
    let tx = "/api/v1/streams/valid_transactions";
    let fixtures = Planetmint253::load().expect("fixtures");
    harness.writer().await.write_fixtures(&fixtures).await;
    let token = issuer("new", NEW_SECRET)
        .issue(
            &Grant::new([Stream::ValidTransactions]).public_key(KEY),
            None,
        )
        .expect("issue")
        .token;
    for public_key_in in ["outputs", "inputs", "any"] {
        // `connect` fails the test unless the upgrade succeeds.
        let ws = UrlStream::connect(&format!(
            "ws://{streams}{tx}?public_key={KEY}&public_key_in={public_key_in}&from_height=1&token={token}"
        ))
        .await;
        ws.close().await;
    }
    // Still only within the pins.
    let (status, body) = upgrade_status(
        &streams,
        &format!("{tx}?public_key={OTHER_KEY}&public_key_in=inputs&from_height=1&token={token}"),
    )
    .await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("filter_not_allowed"))
    );

    // Resuming from the first height under the same token replays the key's history.
    let first = fixtures.heights().into_iter().min().expect("a block");
    let expected = expected_for_key(&fixtures);
    assert!(!expected.is_empty());
    let mut ws = UrlStream::connect(&format!(
        "ws://{streams}{tx}?public_key={KEY}&public_key_in=outputs&from_height={first}&token={token}"
    ))
    .await;
    assert_eq!(
        ws.take(expected.len(), Duration::from_secs(10)).await,
        expected
    );
    ws.close().await;
}
