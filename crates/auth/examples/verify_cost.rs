//! What one credential check costs, per way in: `cargo run --release -p
//! planetmint-streams-auth --example verify_cost`. Any client can make the node run a check
//! (ADR 0006), so these are the CPU costs an unauthenticated client can ask for. Builds a
//! [`Gatekeeper`] with a signing key, a configured client and one JWT key of each algorithm
//! (the test keys of `testdata/jwt`), then times accepted and refused credentials.

use std::path::PathBuf;
use std::time::Instant;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use planetmint_streams_auth::{
    AuthConfig, AuthMode, ClientConfig, Credential, Gatekeeper, Grant, JwtAlgorithm, JwtConfig,
    JwtKeyConfig, KeyConfig, SecretHash, SecretString, Stream,
};

const ROUNDS: u32 = 2_000;
const HS_SECRET: &str = "an-hs256-secret-of-the-identity-provider-0001";
const CLIENT_SECRET: &str = "Zb8Q2yJ1mW7kR4tV9xC3nL6pF0sD5gH8aaaaaaaaaa";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/jwt")
        .join(name)
}

fn jwt_key(algorithm: JwtAlgorithm, id: &str, public: Option<&str>) -> JwtKeyConfig {
    JwtKeyConfig {
        id: Some(id.into()),
        algorithm: Some(algorithm),
        secret: public.is_none().then(|| SecretString::new(HS_SECRET)),
        secret_file: None,
        public_key_file: public.map(fixture),
    }
}

fn sign(algorithm: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.into());
    let claims = serde_json::json!({
        "iss": "https://idp.example", "sub": "indexer", "exp": planetmint_streams_auth::unix_now() + 3600,
        "streams": ["valid_transactions"]
    });
    match jsonwebtoken::encode(&header, &claims, key) {
        Ok(jwt) => jwt,
        Err(err) => panic!("signing a {algorithm:?} JWT: {err}"),
    }
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|err| panic!("{name}: {err}"))
}

/// Mean time of `ROUNDS` checks of `credential`, in microseconds; asserts the outcome.
fn time(gate: &Gatekeeper, name: &str, credential: Credential<'_>, accepted: bool) {
    let started = Instant::now();
    for _ in 0..ROUNDS {
        let outcome = gate.verify(credential);
        assert_eq!(outcome.is_ok(), accepted, "{name}: {outcome:?}");
    }
    let mean = started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);
    println!("| {name} | {mean:.1} µs |");
}

fn main() {
    let hash = SecretHash::new(CLIENT_SECRET).expect("a valid secret");
    let config = AuthConfig {
        mode: AuthMode::Signed,
        keys: vec![KeyConfig {
            id: "k1".into(),
            secret: Some(SecretString::new("00".repeat(32))),
            secret_file: None,
        }],
        clients: vec![ClientConfig {
            id: "acme".into(),
            secret_hash: Some(hash.to_string()),
            streams: vec!["valid_transactions".into()],
            ..ClientConfig::default()
        }],
        jwt: JwtConfig {
            keys: vec![
                jwt_key(JwtAlgorithm::HS256, "hs", None),
                jwt_key(JwtAlgorithm::EdDSA, "ed", Some("ed25519-a.pub")),
                jwt_key(JwtAlgorithm::ES256, "ec", Some("p256-a.pub")),
                jwt_key(JwtAlgorithm::RS256, "rsa", Some("rsa2048-a.pub")),
            ],
            ..JwtConfig::default()
        },
        ..AuthConfig::default()
    };
    let gate = Gatekeeper::new(&config).expect("the configuration is valid");
    let token = gate
        .token_authority()
        .expect("a signing key")
        .issue(&Grant::new([Stream::ValidTransactions]), None)
        .expect("a token")
        .token;
    let hs = sign(
        Algorithm::HS256,
        "hs",
        &EncodingKey::from_secret(HS_SECRET.as_bytes()).expect("key"),
    );
    let ed = sign(
        Algorithm::EdDSA,
        "ed",
        &EncodingKey::from_ed_pem(&pem("ed25519-a.key")).expect("key"),
    );
    let ec = sign(
        Algorithm::ES256,
        "ec",
        &EncodingKey::from_ec_pem(&pem("p256-a.key")).expect("key"),
    );
    let rsa = sign(
        Algorithm::RS256,
        "rsa",
        &EncodingKey::from_rsa_pem(&pem("rsa2048-a.key")).expect("key"),
    );
    let forged_rsa = format!("{}AAAA", &rsa[..rsa.len() - 4]);
    let wrong_secret = "x".repeat(43);
    let basic = |client_id, secret| Credential::ClientSecret { client_id, secret };
    let jwt = |jwt| Credential::Jwt {
        client_id: None,
        jwt,
    };
    println!("| credential ({ROUNDS} checks each) | mean per check |");
    println!("|---|---|");
    time(
        &gate,
        "stream token (`?token=`)",
        Credential::StreamToken(&token),
        true,
    );
    time(
        &gate,
        "configured client, right secret",
        basic("acme", CLIENT_SECRET),
        true,
    );
    time(
        &gate,
        "configured client, wrong secret",
        basic("acme", &wrong_secret),
        false,
    );
    time(
        &gate,
        "unknown client id",
        basic("nobody", CLIENT_SECRET),
        false,
    );
    time(
        &gate,
        "stream token as a basic secret",
        basic("any", &token),
        true,
    );
    time(&gate, "JWT HS256", jwt(&hs), true);
    time(&gate, "JWT EdDSA", jwt(&ed), true);
    time(&gate, "JWT ES256", jwt(&ec), true);
    time(&gate, "JWT RS256 (2048 bits)", jwt(&rsa), true);
    time(&gate, "JWT RS256, bad signature", jwt(&forged_rsa), false);
    time(&gate, "Bearer JWT EdDSA", Credential::Bearer(&ed), true);
}
