//! Building the signed stream URL handed to a client: the stream's URL, the subscription's
//! query parameters, and the token last.

use url::Url;

/// A stream URL that cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not an absolute URL.
    #[error("not a stream URL: {0}")]
    Invalid(String),
    /// Not a WebSocket (or HTTP) URL.
    #[error("stream URL scheme must be ws, wss, http or https, not {0:?}")]
    Scheme(String),
    /// The URL already carries a token or a fragment.
    #[error("stream URL must not already have a token parameter or a #fragment")]
    AlreadySigned,
}

/// The signed URL of a stream: `stream_url` (e.g.
/// `wss://node.example.com/api/v1/streams/valid_transactions`, as published by the API's
/// discovery documents) with `params` appended to its query, percent-encoded, and
/// `token=<token>` last.
///
/// For a token that pins filters, pass at least the filters the subscription will use, e.g.
/// [`crate::Pins::query_pairs`]; other parameters (`from_height`, `batch`) may be added too.
pub fn signed_url<I, K, V>(stream_url: &str, params: I, token: &str) -> Result<String, UrlError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut url = Url::parse(stream_url).map_err(|err| UrlError::Invalid(err.to_string()))?;
    if !matches!(url.scheme(), "ws" | "wss" | "http" | "https") {
        return Err(UrlError::Scheme(url.scheme().to_owned()));
    }
    if url.fragment().is_some() || url.query_pairs().any(|(key, _)| key == "token") {
        return Err(UrlError::AlreadySigned);
    }
    {
        let mut query = url.query_pairs_mut();
        for (key, value) in params {
            query.append_pair(key.as_ref(), value.as_ref());
        }
        query.append_pair("token", token);
    }
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "wss://node.example.com/api/v1/streams/valid_transactions";

    #[test]
    fn parameters_then_the_token_are_appended() {
        let url = signed_url(
            BASE,
            [("public_key", "K1"), ("batch", "block")],
            "v1.k1.abc.d-_",
        )
        .expect("url");
        assert_eq!(
            url,
            format!("{BASE}?public_key=K1&batch=block&token=v1.k1.abc.d-_")
        );
    }

    #[test]
    fn an_existing_query_is_kept_and_values_are_encoded() {
        let url = signed_url(
            "ws://localhost:9985/api/v1/streams/valid_blocks?from_height=7",
            [("operation", "A&B=C")],
            "t",
        )
        .expect("url");
        assert_eq!(
            url,
            "ws://localhost:9985/api/v1/streams/valid_blocks?from_height=7&operation=A%26B%3DC&token=t"
        );
        let parsed = Url::parse(&url).expect("parses");
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        assert_eq!(pairs[1], ("operation".into(), "A&B=C".into()));
    }

    #[test]
    fn with_no_parameters_only_the_token_is_added() {
        let none: [(&str, &str); 0] = [];
        assert_eq!(
            signed_url(BASE, none, "t").expect("url"),
            format!("{BASE}?token=t")
        );
    }

    #[test]
    fn unusable_base_urls_are_refused() {
        let none: [(&str, &str); 0] = [];
        assert!(matches!(
            signed_url("/api/v1/streams/valid_blocks", none, "t"),
            Err(UrlError::Invalid(_))
        ));
        assert_eq!(
            signed_url("ftp://host/x", none, "t"),
            Err(UrlError::Scheme("ftp".into()))
        );
        assert_eq!(
            signed_url(&format!("{BASE}?token=old"), none, "t"),
            Err(UrlError::AlreadySigned)
        );
        assert_eq!(
            signed_url(&format!("{BASE}#frag"), none, "t"),
            Err(UrlError::AlreadySigned)
        );
    }
}
