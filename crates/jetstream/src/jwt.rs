//! NATS JWTs (version 2), encoded and verified here: the operator, account and user claims
//! `nats-config` writes, the bearer user JWTs handed to clients, and the gateway's identity
//! JWTs.
//!
//! A NATS JWT is `base64url(header).base64url(claims).base64url(signature)` (RFC 4648 §5, no
//! padding) with header `{"typ":"JWT","alg":"ed25519-nkey"}`; the signature is Ed25519 by the
//! issuer's nkey over the first two parts. `iss` is the signer's public key, `sub` the public
//! key the claims are about, `jti` the SHA-512/256 of the claims (without `jti`) in base32,
//! `iat`/`exp` Unix seconds, and the NATS-specific part sits under `nats` with a `type`
//! (`operator`, `account`, `user`) and `version: 2`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use nkeys::KeyPair;
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::Digest;

/// `alg` of every NATS JWT.
pub const ALGORITHM: &str = "ed25519-nkey";
/// Version of the NATS claims written.
pub const CLAIMS_VERSION: u64 = 2;
/// "No limit" in NATS limits.
pub const NO_LIMIT: i64 = -1;

/// Why a JWT could not be made or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts of JSON.
    #[error("not a JWT: {0}")]
    Malformed(&'static str),
    /// Not a NATS JWT (another `typ` or `alg`).
    #[error("not an ed25519-nkey JWT")]
    Algorithm,
    /// Signed by a key we do not trust.
    #[error("issued by a key this node does not trust")]
    UntrustedIssuer,
    /// The signature does not match.
    #[error("bad signature")]
    Signature,
    /// `exp` has passed.
    #[error("expired")]
    Expired,
    /// The claims are not the kind expected (another `aud` or `type`).
    #[error("not a {0} token")]
    WrongKind(&'static str),
    /// The key cannot sign (a public key, or an nkey error).
    #[error("cannot sign: {0}")]
    Signing(String),
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `jti`: SHA-512/256 of the claims without `jti`, in unpadded base32.
fn claims_id(claims: &Map<String, Value>) -> String {
    let mut without = claims.clone();
    without.remove("jti");
    let json = serde_json::to_vec(&without).unwrap_or_default();
    let digest = sha2::Sha512_256::digest(&json);
    data_encoding::BASE32_NOPAD.encode(&digest)
}

/// Signs `claims` with `signer`: sets `iss` (the signer's public key), `iat` (`now`) and
/// `jti`, and returns the JWT.
pub fn encode(
    mut claims: Map<String, Value>,
    signer: &KeyPair,
    now: u64,
) -> Result<String, JwtError> {
    claims.insert("iss".into(), signer.public_key().into());
    claims.insert("iat".into(), now.into());
    let id = claims_id(&claims);
    claims.insert("jti".into(), id.into());
    let header = json!({"typ": "JWT", "alg": ALGORITHM});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(&serde_json::to_vec(&claims).unwrap_or_default())
    );
    let signature = signer
        .sign(input.as_bytes())
        .map_err(|e| JwtError::Signing(e.to_string()))?;
    Ok(format!("{input}.{}", b64(&signature)))
}

/// The claims of `token`, without checking anything (what a client like speedracer reads).
pub fn claims_unverified(token: &str) -> Result<Map<String, Value>, JwtError> {
    let mut parts = token.split('.');
    let (Some(_), Some(claims), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("expected three dot-separated parts"));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(claims)
        .map_err(|_| JwtError::Malformed("claims are not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed("claims are not a JSON object"))
}

/// The claims of `token` once its header is a NATS JWT's, its `iss` is `trusted` (a public
/// nkey), its signature is right and `exp` (when present) is after `now`.
pub fn verify(token: &str, trusted: &str, now: u64) -> Result<Map<String, Value>, JwtError> {
    let (input, signature) = token
        .rsplit_once('.')
        .ok_or(JwtError::Malformed("expected three dot-separated parts"))?;
    let (header, _) = input
        .split_once('.')
        .ok_or(JwtError::Malformed("expected three dot-separated parts"))?;
    let header: Value = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(JwtError::Malformed("header is not base64url JSON"))?;
    let typ_ok = header["typ"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case("JWT"));
    if !typ_ok || header["alg"].as_str() != Some(ALGORITHM) {
        return Err(JwtError::Algorithm);
    }
    let claims = claims_unverified(token)?;
    if claims.get("iss").and_then(Value::as_str) != Some(trusted) {
        return Err(JwtError::UntrustedIssuer);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| JwtError::Malformed("signature is not base64url"))?;
    let key = KeyPair::from_public_key(trusted).map_err(|_| JwtError::UntrustedIssuer)?;
    key.verify(input.as_bytes(), &signature)
        .map_err(|_| JwtError::Signature)?;
    if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
        if exp <= now {
            return Err(JwtError::Expired);
        }
    }
    Ok(claims)
}

/// Subjects a user may publish or subscribe to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Permission {
    /// Allowed subjects (wildcards allowed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
}

/// A user's permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Permissions {
    /// What it may publish (including JetStream API requests and acks).
    #[serde(rename = "pub")]
    pub publish: Permission,
    /// What it may subscribe to.
    #[serde(rename = "sub")]
    pub subscribe: Permission,
}

/// What a user JWT says (besides `iss`, `iat`, `jti`).
#[derive(Debug, Clone)]
pub struct UserSpec<'a> {
    /// The user's public nkey (`U...`).
    pub user: &'a str,
    /// A name shown in the server's logs and monitoring.
    pub name: &'a str,
    /// The account, when the signer is one of its signing keys (not the account itself).
    pub issuer_account: Option<&'a str>,
    /// `None`: may publish and subscribe to anything in its account.
    pub permissions: Option<Permissions>,
    /// A bearer token: the server skips the nonce signature (speedracer sends none).
    pub bearer: bool,
    /// Unix seconds after which the server refuses it; `None`: never.
    pub expires: Option<u64>,
}

/// The claims of a user JWT.
pub fn user_claims(spec: &UserSpec<'_>) -> Map<String, Value> {
    let mut nats = json!({
        "subs": NO_LIMIT,
        "data": NO_LIMIT,
        "payload": NO_LIMIT,
        "type": "user",
        "version": CLAIMS_VERSION,
    });
    if let Some(permissions) = &spec.permissions {
        let permissions = serde_json::to_value(permissions).unwrap_or_default();
        if let (Some(nats), Some(permissions)) = (nats.as_object_mut(), permissions.as_object()) {
            nats.extend(permissions.clone());
        }
    }
    if spec.bearer {
        nats["bearer_token"] = true.into();
    }
    if let Some(account) = spec.issuer_account {
        nats["issuer_account"] = account.into();
    }
    let mut claims = Map::new();
    claims.insert("sub".into(), spec.user.into());
    claims.insert("name".into(), spec.name.into());
    if let Some(expires) = spec.expires {
        claims.insert("exp".into(), expires.into());
    }
    claims.insert("nats".into(), nats);
    claims
}

/// The claims of an account JWT: no limits, JetStream enabled when `jetstream`, and the
/// signing keys that may sign its users.
pub fn account_claims(
    account: &str,
    name: &str,
    signing_keys: &[String],
    jetstream: bool,
) -> Map<String, Value> {
    let storage = if jetstream { NO_LIMIT } else { 0 };
    let mut nats = json!({
        "limits": {
            "subs": NO_LIMIT, "data": NO_LIMIT, "payload": NO_LIMIT,
            "imports": NO_LIMIT, "exports": NO_LIMIT, "wildcards": true,
            "conn": NO_LIMIT, "leaf": NO_LIMIT,
            "mem_storage": storage, "disk_storage": storage,
            "streams": if jetstream { NO_LIMIT } else { 0 },
            "consumer": if jetstream { NO_LIMIT } else { 0 },
        },
        "default_permissions": {"pub": {}, "sub": {}},
        "type": "account",
        "version": CLAIMS_VERSION,
    });
    if !signing_keys.is_empty() {
        nats["signing_keys"] = signing_keys.into();
    }
    let mut claims = Map::new();
    claims.insert("sub".into(), account.into());
    claims.insert("name".into(), name.into());
    claims.insert("nats".into(), nats);
    claims
}

/// The claims of a (self-signed) operator JWT naming its system account.
pub fn operator_claims(operator: &str, name: &str, system_account: &str) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("sub".into(), operator.into());
    claims.insert("name".into(), name.into());
    claims.insert(
        "nats".into(),
        json!({"system_account": system_account, "type": "operator", "version": CLAIMS_VERSION}),
    );
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_user_jwt_verifies_and_carries_its_claims() {
        let account = KeyPair::new_account();
        let user = KeyPair::new_user();
        let permissions = Permissions {
            publish: Permission {
                allow: vec!["$JS.API.INFO".into()],
            },
            subscribe: Permission {
                allow: vec!["_INBOX.>".into()],
            },
        };
        let claims = user_claims(&UserSpec {
            user: &user.public_key(),
            name: "reader",
            issuer_account: Some("AXXX"),
            permissions: Some(permissions),
            bearer: true,
            expires: Some(2_000),
        });
        let token = encode(claims, &account, 1_000).expect("signs");
        let claims = verify(&token, &account.public_key(), 1_500).expect("verifies");
        assert_eq!(claims["sub"], user.public_key());
        assert_eq!(claims["iss"], account.public_key());
        assert_eq!(claims["iat"], 1_000);
        assert_eq!(claims["exp"], 2_000);
        let nats = &claims["nats"];
        assert_eq!(nats["type"], "user");
        assert_eq!(nats["version"], 2);
        assert_eq!(nats["bearer_token"], true);
        assert_eq!(nats["issuer_account"], "AXXX");
        assert_eq!(nats["pub"]["allow"][0], "$JS.API.INFO");
        assert_eq!(nats["sub"]["allow"][0], "_INBOX.>");
        // jti is the hash of the claims without it.
        let jti = claims["jti"].as_str().expect("jti").to_owned();
        assert_eq!(jti, claims_id(&claims));
        assert_eq!(jti.len(), 52);
    }

    #[test]
    fn tampered_foreign_expired_and_other_algorithms_are_refused() {
        let key = KeyPair::new_account();
        let other = KeyPair::new_account();
        let mut claims = Map::new();
        claims.insert("sub".into(), "x".into());
        claims.insert("exp".into(), 100.into());
        let token = encode(claims, &key, 10).expect("signs");
        assert_eq!(
            verify(&token, &other.public_key(), 50),
            Err(JwtError::UntrustedIssuer)
        );
        assert_eq!(
            verify(&token, &key.public_key(), 100),
            Err(JwtError::Expired)
        );
        let (head, rest) = token.split_once('.').expect("parts");
        let (_, signature) = rest.split_once('.').expect("parts");
        let mut forged = claims_unverified(&token).expect("claims");
        forged.insert("sub".into(), "y".into());
        let forged = format!(
            "{head}.{}.{signature}",
            b64(&serde_json::to_vec(&forged).expect("json"))
        );
        assert_eq!(
            verify(&forged, &key.public_key(), 50),
            Err(JwtError::Signature)
        );
        let hs256 = format!("{}.{}", b64(br#"{"typ":"JWT","alg":"HS256"}"#), rest);
        assert_eq!(
            verify(&hs256, &key.public_key(), 50),
            Err(JwtError::Algorithm)
        );
        assert!(matches!(
            verify("abc", &key.public_key(), 50),
            Err(JwtError::Malformed(_))
        ));
    }

    #[test]
    fn account_and_operator_claims_enable_jetstream_and_name_the_system_account() {
        let account = account_claims("AABC", "planetmint", &["ASIGN".to_owned()], true);
        assert_eq!(account["nats"]["limits"]["disk_storage"], -1);
        assert_eq!(account["nats"]["limits"]["mem_storage"], -1);
        assert_eq!(account["nats"]["signing_keys"][0], "ASIGN");
        let system = account_claims("ASYS", "SYS", &[], false);
        assert_eq!(system["nats"]["limits"]["disk_storage"], 0);
        let operator = operator_claims("OABC", "op", "ASYS");
        assert_eq!(operator["nats"]["system_account"], "ASYS");
        assert_eq!(operator["nats"]["type"], "operator");
    }
}
