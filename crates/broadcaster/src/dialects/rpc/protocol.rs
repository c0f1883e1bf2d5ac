//! The JSON-RPC 2.0 messages of the stream channel: parsing a request (never panicking, every
//! refusal a typed [`RpcError`] with the code of the spec), and writing answers.
//!
//! A request is one JSON object per text frame (no batches):
//! `{"jsonrpc": "2.0", "id": <number or string>, "method": "...", "params": {...}}`. The `id`
//! is echoed exactly. `subscribe` options are the stream URL's parameters as JSON and go
//! through the same validation ([`SubscriptionBuilder`]), so a value refused in a URL is
//! refused here with the same message, as `-32602` naming the parameter.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

pub use crate::engine::connection::FilterChange;
use crate::subscription::{
    Filter, ParamError, ParamLimits, StreamKind, StreamOptions, Subscription, SubscriptionBuilder,
};

/// Not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON, but not a JSON-RPC 2.0 request.
pub const INVALID_REQUEST: i64 = -32600;
/// No such method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Bad params; `data.parameter` names the one at fault.
pub const INVALID_PARAMS: i64 = -32602;
/// Not authenticated, or the token does not allow it.
pub const NOT_AUTHORIZED: i64 = -32001;
/// A limit of the connection (subscriptions, filter values).
pub const LIMIT_REACHED: i64 = -32002;
/// `from_height` is below the stored history; `data.lowest_height` says where it starts.
pub const HISTORY_UNAVAILABLE: i64 = -32003;

/// Every error code the channel answers with (metric labels are these and `ok`).
pub const ERROR_CODES: [i64; 7] = [
    PARSE_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    INVALID_PARAMS,
    NOT_AUTHORIZED,
    LIMIT_REACHED,
    HISTORY_UNAVAILABLE,
];

/// The method of a notification carrying a subscription's message.
pub const NOTIFICATION_METHOD: &str = "subscription";
/// The method of the notification sent just before the server closes the connection, with
/// the close code, the reason and every subscription's `last_heights`.
pub const CLOSING_METHOD: &str = "closing";
/// The method of the notification ending one subscription the server can no longer serve.
pub const SUBSCRIPTION_ERROR_METHOD: &str = "subscription_error";

/// The methods of the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `authenticate {"token"}`.
    Authenticate,
    /// `subscribe {"stream", ...options}`.
    Subscribe,
    /// `unsubscribe {"subscription"}`.
    Unsubscribe,
    /// `update {"subscription", "add", "remove"}`.
    Update,
    /// `describe {"stream"}`.
    Describe,
}

impl Method {
    /// Every method.
    pub const ALL: [Method; 5] = [
        Method::Authenticate,
        Method::Subscribe,
        Method::Unsubscribe,
        Method::Update,
        Method::Describe,
    ];

    /// The method's name on the wire (and its metric label).
    pub fn name(self) -> &'static str {
        match self {
            Method::Authenticate => "authenticate",
            Method::Subscribe => "subscribe",
            Method::Unsubscribe => "unsubscribe",
            Method::Update => "update",
            Method::Describe => "describe",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// A JSON-RPC error object: `{"code", "message", "data"?}`. (Fields in name order, as every
/// message of the channel writes them.)
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct RpcError {
    /// One of the codes of the channel.
    #[schemars(extend("enum" = [-32700, -32600, -32601, -32602, -32001, -32002, -32003]))]
    pub code: i64,
    /// Details a program can use: `parameter` (-32602), `lowest_height` (-32003), `reason`
    /// (-32001), `limit` and `max` (-32002).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// What is wrong, for a person.
    pub message: String,
}

impl RpcError {
    /// An error without data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Adds `data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// `-32602` naming `parameter`.
    pub fn invalid_params(parameter: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(INVALID_PARAMS, format!("{parameter}: {message}"))
            .with_data(json!({"parameter": parameter}))
    }

    /// The error object as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl From<ParamError> for RpcError {
    fn from(err: ParamError) -> Self {
        RpcError::invalid_params(&err.parameter, err.message)
    }
}

/// A credential `authenticate` presents.
#[derive(Clone, PartialEq, Eq)]
pub enum RpcCredential {
    /// `{"token"}`: a stream token or a JWT.
    Token(String),
    /// `{"client_id", "client_secret"}`: a client configured on the node.
    Client {
        /// Its id.
        id: String,
        /// Its secret.
        secret: String,
    },
}

impl std::fmt::Debug for RpcCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret itself.
        match self {
            RpcCredential::Token(_) => f.write_str("Token(..)"),
            RpcCredential::Client { id, .. } => write!(f, "Client {{ id: {id:?}, .. }}"),
        }
    }
}

/// What a request asks for, with its params validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Present a credential.
    Authenticate(RpcCredential),
    /// Open a subscription.
    Subscribe(Subscription),
    /// Close a subscription.
    Unsubscribe {
        /// Its id.
        subscription: String,
    },
    /// Change a subscription's filters.
    Update {
        /// Its id.
        subscription: String,
        /// Values added.
        add: FilterChange,
        /// Values removed (after adding).
        remove: FilterChange,
    },
    /// A stream's catalogue entry.
    Describe {
        /// Which stream.
        stream: StreamKind,
    },
}

impl Call {
    /// The method called.
    pub fn method(&self) -> Method {
        match self {
            Call::Authenticate(_) => Method::Authenticate,
            Call::Subscribe(_) => Method::Subscribe,
            Call::Unsubscribe { .. } => Method::Unsubscribe,
            Call::Update { .. } => Method::Update,
            Call::Describe { .. } => Method::Describe,
        }
    }
}

/// A valid request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The id to echo (a number or a string).
    pub id: Value,
    /// What it asks for.
    pub call: Call,
}

/// A refused request: what to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The request's id when it could be read, else `null`.
    pub id: Value,
    /// The method when it could be read (for metrics).
    pub method: Option<Method>,
    /// The error.
    pub error: RpcError,
}

/// Parses one text message from a client. Never panics, whatever the bytes.
pub fn parse_request(text: &[u8]) -> Result<Request, Refused> {
    let refuse = |id: &Value, method: Option<Method>, error: RpcError| Refused {
        id: id.clone(),
        method,
        error,
    };
    let value: Value = serde_json::from_slice(text).map_err(|_| {
        refuse(
            &Value::Null,
            None,
            RpcError::new(PARSE_ERROR, "parse error: the message is not JSON"),
        )
    })?;
    let Value::Object(mut object) = value else {
        let message = if value.is_array() {
            "batches are not supported: send one request per message"
        } else {
            "a request is a JSON object"
        };
        return Err(refuse(
            &Value::Null,
            None,
            RpcError::new(INVALID_REQUEST, message),
        ));
    };
    let id = match object.remove("id") {
        Some(id @ (Value::Number(_) | Value::String(_))) => id,
        Some(_) => {
            return Err(refuse(
                &Value::Null,
                None,
                RpcError::new(INVALID_REQUEST, "id must be a number or a string"),
            ))
        }
        None => {
            return Err(refuse(
                &Value::Null,
                None,
                RpcError::new(
                    INVALID_REQUEST,
                    "id is required (notifications are not accepted)",
                ),
            ))
        }
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(refuse(
            &id,
            None,
            RpcError::new(INVALID_REQUEST, "jsonrpc must be \"2.0\""),
        ));
    }
    let Some(Value::String(name)) = object.remove("method") else {
        return Err(refuse(
            &id,
            None,
            RpcError::new(INVALID_REQUEST, "method must be a string"),
        ));
    };
    let Some(method) = Method::from_name(&name) else {
        let shown: String = name.chars().take(64).collect();
        return Err(refuse(
            &id,
            None,
            RpcError::new(METHOD_NOT_FOUND, format!("unknown method {shown:?}"))
                .with_data(json!({"methods": Method::ALL.map(Method::name)})),
        ));
    };
    let params = match object.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(params)) => params,
        Some(_) => {
            return Err(refuse(
                &id,
                Some(method),
                RpcError::invalid_params("params", "params must be an object"),
            ))
        }
    };
    let call = parse_params(method, params).map_err(|error| refuse(&id, Some(method), error))?;
    Ok(Request { id, call })
}

/// `authenticate`'s params: a stream token or JWT, or a configured client's id and secret.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthenticateParams {
    /// A stream token the node issued (or the operator's identity provider's JWT).
    pub token: Option<String>,
    /// The id of a client configured on the node (with `client_secret`, instead of `token`).
    pub client_id: Option<String>,
    /// That client's secret.
    pub client_secret: Option<String>,
}

/// `subscribe`'s params: the stream, and the options of its URL
/// ([`StreamOptions`]) as JSON beside it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct SubscribeParams {
    /// Which stream.
    pub stream: StreamKind,
}

/// `unsubscribe`'s params.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeParams {
    /// The subscription's id, as `subscribe` answered it.
    pub subscription: String,
}

/// `update`'s params: filter values to add and to remove (`public_key`, `asset_id`,
/// `operation`, as in [`StreamOptions`]).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateParams {
    /// The subscription's id, as `subscribe` answered it.
    pub subscription: String,
    /// Filter values to add.
    pub add: Option<StreamOptions>,
    /// Filter values to remove (after adding).
    pub remove: Option<StreamOptions>,
}

/// `describe`'s params.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescribeParams {
    /// Which stream.
    pub stream: StreamKind,
}

/// The filter options `update` changes.
pub const FILTER_OPTIONS: [&str; 3] = ["public_key", "asset_id", "operation"];

/// Deserializes `params` into `T`, naming the parameter at fault: one its declaration does
/// not have (`declared`: its JSON Schema's properties), one it requires, or the first of its
/// path where a value does not fit.
fn typed<T: DeserializeOwned>(
    method: Method,
    params: Map<String, Value>,
    declared: &Value,
) -> Result<T, RpcError> {
    let properties = declared["properties"].as_object();
    if let Some(unknown) = params
        .keys()
        .find(|name| !properties.is_some_and(|p| p.contains_key(*name)))
    {
        let name: String = unknown.chars().take(64).collect();
        return Err(RpcError::invalid_params(
            &name,
            format!("unknown parameter of {}", method.name()),
        ));
    }
    for required in declared["required"].as_array().into_iter().flatten() {
        if let Some(name) = required.as_str().filter(|name| !params.contains_key(*name)) {
            return Err(RpcError::invalid_params(name, "required"));
        }
    }
    serde_path_to_error::deserialize(Value::Object(params)).map_err(|err| {
        let parameter = err
            .path()
            .iter()
            .find_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "params".to_owned());
        RpcError::invalid_params(&parameter, err.inner().to_string())
    })
}

/// The declared schema of `T`, made once.
macro_rules! declared {
    ($t:ty) => {{
        static SCHEMA: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
        SCHEMA.get_or_init(crate::catalogue::schema_of::<$t>)
    }};
}

/// Limits of the shared parser: none here; the frame size bounds a request, and the
/// connection's own limits (filter values per connection) are checked by the session.
const UNLIMITED: ParamLimits = ParamLimits {
    max_query_len: usize::MAX,
    max_values: usize::MAX,
};

fn parse_params(method: Method, mut params: Map<String, Value>) -> Result<Call, RpcError> {
    Ok(match method {
        Method::Authenticate => {
            let params: AuthenticateParams = typed(method, params, declared!(AuthenticateParams))?;
            Call::Authenticate(match params {
                AuthenticateParams {
                    token: Some(token),
                    client_id: None,
                    client_secret: None,
                } => RpcCredential::Token(token),
                AuthenticateParams {
                    token: None,
                    client_id: Some(id),
                    client_secret: Some(secret),
                } => RpcCredential::Client { id, secret },
                AuthenticateParams { token: None, .. } => {
                    return Err(RpcError::invalid_params(
                        "token",
                        "required (or client_id with client_secret)",
                    ))
                }
                _ => {
                    return Err(RpcError::invalid_params(
                        "token",
                        "give token, or client_id with client_secret, not both",
                    ))
                }
            })
        }
        Method::Subscribe => {
            // `stream` first (declared by SubscribeParams), the rest are the stream's options.
            let stream = params.remove("stream");
            if params.contains_key("token") {
                return Err(RpcError::invalid_params(
                    "token",
                    "send the token with authenticate, not with subscribe",
                ));
            }
            let head = Map::from_iter(stream.map(|stream| ("stream".to_owned(), stream)));
            let SubscribeParams { stream } = typed(method, head, declared!(SubscribeParams))?;
            let options: StreamOptions = typed(method, params, StreamOptions::schema())?;
            let mut builder = SubscriptionBuilder::new(stream);
            options.apply(&mut builder, &UNLIMITED)?;
            Call::Subscribe(builder.finish()?)
        }
        Method::Unsubscribe => {
            let UnsubscribeParams { subscription } =
                typed(method, params, declared!(UnsubscribeParams))?;
            Call::Unsubscribe { subscription }
        }
        Method::Update => {
            for change in ["add", "remove"] {
                let names = params.get(change).and_then(Value::as_object);
                if let Some(other) = names
                    .into_iter()
                    .flat_map(|values| values.keys())
                    .find(|name| !FILTER_OPTIONS.contains(&name.as_str()))
                {
                    let shown: String = other.chars().take(64).collect();
                    return Err(RpcError::invalid_params(
                        &shown,
                        format!("{change} takes public_key, asset_id and operation"),
                    ));
                }
            }
            let UpdateParams {
                subscription,
                add,
                remove,
            } = typed(method, params, declared!(UpdateParams))?;
            Call::Update {
                subscription,
                add: filter_change(add)?,
                remove: filter_change(remove)?,
            }
        }
        Method::Describe => {
            let DescribeParams { stream } = typed(method, params, declared!(DescribeParams))?;
            Call::Describe { stream }
        }
    })
}

/// `add` or `remove` of `update`, with the values checked as a URL's.
fn filter_change(options: Option<StreamOptions>) -> Result<FilterChange, RpcError> {
    let Some(options) = options else {
        return Ok(FilterChange::default());
    };
    let mut builder = SubscriptionBuilder::new(StreamKind::ValidTransactions);
    options.apply(&mut builder, &UNLIMITED)?;
    let Filter {
        public_keys,
        asset_ids,
        operations,
        ..
    } = builder.finish()?.filter;
    Ok(FilterChange {
        public_keys,
        asset_ids,
        operations,
    })
}

/// `"2.0"`: the version every message of the channel names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum JsonRpcVersion {
    /// JSON-RPC 2.0.
    #[serde(rename = "2.0")]
    V2,
}

/// The answer to a request: its `result`, or an `error`, with the request's `id`.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(extend("oneOf" = [{"required": ["result"]}, {"required": ["error"]}]))]
pub struct Answer<'a> {
    /// The error, when the request was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a RpcError>,
    /// The request's id, as it was sent (`null` when it could not be read).
    pub id: &'a Value,
    /// `"2.0"`.
    pub jsonrpc: JsonRpcVersion,
    /// The result: `authenticate` `{streams, expires_at}`; `subscribe` the subscription id (a
    /// string); `unsubscribe` `true`; `update` `{applies_after_height}`; `describe` the
    /// stream's catalogue entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'a Value>,
}

/// A message the server sends unasked.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Notification<'a, P> {
    /// `"2.0"`.
    pub jsonrpc: JsonRpcVersion,
    /// What it is: `subscription`, `closing`, `subscription_error`.
    pub method: &'a str,
    /// What it says.
    pub params: P,
}

/// `subscription`: one message of a subscription, exactly what the URL stream with the same
/// options sends in one frame. (Written around the block's shared bytes by the
/// subscription's envelope, in this order.)
#[derive(Debug, Serialize, JsonSchema)]
pub struct SubscriptionMessage {
    /// The subscription's id.
    pub subscription: String,
    /// The URL stream's message.
    pub result: Value,
}

/// `closing`: sent just before the server closes the connection (too slow, no pong,
/// shutdown, token expired), with every subscription's last height completely sent;
/// resubscribe with `from_height` = that height.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Closing {
    /// The close code that follows.
    pub code: u16,
    /// Each subscription's last height completely sent (`null`: none yet), by id.
    pub last_heights: std::collections::BTreeMap<String, Option<u64>>,
    /// Why.
    pub reason: String,
}

/// `subscription_error`: one subscription the server ended (its replay found the history
/// pruned; a new credential does not allow it).
#[derive(Debug, Serialize, JsonSchema)]
pub struct SubscriptionEnded {
    /// Why.
    pub error: RpcError,
    /// Its last height completely sent: resubscribe after it.
    pub last_height: Option<u64>,
    /// The subscription's id.
    pub subscription: String,
}

fn written(message: &impl Serialize) -> String {
    serde_json::to_string(message).unwrap_or_default()
}

/// A success answer.
pub fn result_message(id: &Value, result: Value) -> String {
    written(&Answer {
        error: None,
        id,
        jsonrpc: JsonRpcVersion::V2,
        result: Some(&result),
    })
}

/// An error answer.
pub fn error_message(id: &Value, error: &RpcError) -> String {
    written(&Answer {
        error: Some(error),
        id,
        jsonrpc: JsonRpcVersion::V2,
        result: None,
    })
}

/// A notification of the server (`closing`, `subscription_error`).
pub fn notification_message(method: &str, params: impl Serialize) -> String {
    written(&Notification {
        jsonrpc: JsonRpcVersion::V2,
        method,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::{Framing, KeyRole};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const KEY: &str = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";
    const KEY2: &str = "zeLcy7Xzntvupb1PChe1B3KjxRKcCdM1zJEKyKpc653";

    fn parse(text: &str) -> Result<Request, Refused> {
        parse_request(text.as_bytes())
    }

    fn refused(text: &str) -> Refused {
        parse(text).expect_err(text)
    }

    #[test]
    fn ids_are_echoed_whether_numbers_or_strings() {
        for id in [
            json!(1),
            json!("abc"),
            json!(-7),
            json!(1.5),
            json!(u64::MAX),
        ] {
            let text = json!({"jsonrpc": "2.0", "id": id, "method": "describe", "params": {"stream": "valid_blocks"}}).to_string();
            let request = parse(&text).expect("valid");
            assert_eq!(request.id, id);
            assert_eq!(
                request.call,
                Call::Describe {
                    stream: StreamKind::ValidBlocks
                }
            );
            // Even a refused request answers with its id.
            let bad = json!({"jsonrpc": "2.0", "id": id, "method": "nope"}).to_string();
            assert_eq!(refused(&bad).id, id);
        }
    }

    #[test]
    fn each_malformation_gets_the_code_of_the_spec() {
        for (text, code) in [
            ("", PARSE_ERROR),
            ("{", PARSE_ERROR),
            ("not json", PARSE_ERROR),
            ("[]", INVALID_REQUEST),
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"describe"}]"#,
                INVALID_REQUEST,
            ),
            ("42", INVALID_REQUEST),
            (r#"{"jsonrpc":"2.0","method":"describe"}"#, INVALID_REQUEST),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"describe"}"#,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":{},"method":"describe"}"#,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"1.0","id":1,"method":"describe"}"#,
                INVALID_REQUEST,
            ),
            (r#"{"id":1,"method":"describe"}"#, INVALID_REQUEST),
            (r#"{"jsonrpc":"2.0","id":1,"method":7}"#, INVALID_REQUEST),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe"}"#,
                METHOD_NOT_FOUND,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"describe","params":[]}"#,
                INVALID_PARAMS,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"describe","params":{}}"#,
                INVALID_PARAMS,
            ),
        ] {
            assert_eq!(refused(text).error.code, code, "{text}");
        }
    }

    #[test]
    fn subscribe_options_are_the_url_parameters_as_json() {
        let text = json!({"jsonrpc": "2.0", "id": 3, "method": "subscribe", "params": {
            "stream": "valid_transactions", "from_height": 41, "public_key": [KEY, KEY2],
            "public_key_in": "any", "asset_id": ["AB".repeat(32)], "operation": ["transfer"],
            "batch": "block", "partition": "2/4"}})
        .to_string();
        let Call::Subscribe(s) = parse(&text).expect("valid").call else {
            panic!("subscribe")
        };
        let url = Subscription::parse(
            StreamKind::ValidTransactions,
            &format!(
                "from_height=41&public_key={KEY}&public_key={KEY2}&public_key_in=any&asset_id={}&operation=transfer&batch=block&partition=2/4",
                "AB".repeat(32)
            ),
            &ParamLimits::default(),
        )
        .expect("url");
        assert_eq!(s, url, "the same subscription as the equivalent URL");
        assert_eq!(s.filter.key_role, KeyRole::Any);
        assert_eq!(s.framing, Framing::PerBlock);
    }

    #[test]
    fn options_given_as_null_are_options_not_given() {
        let text = json!({"jsonrpc": "2.0", "id": 4, "method": "subscribe", "params": {
            "stream": "valid_transactions", "from_height": null, "public_key": null,
            "include": null, "partition": null}})
        .to_string();
        let Call::Subscribe(s) = parse(&text).expect("valid").call else {
            panic!("subscribe")
        };
        let url = Subscription::parse(StreamKind::ValidTransactions, "", &ParamLimits::default())
            .expect("url");
        assert_eq!(s, url, "the stream with no options");
    }

    #[test]
    fn bad_options_name_their_parameter_as_the_url_parser_does() {
        for (params, parameter) in [
            (json!({}), "stream"),
            (json!({"stream": "valid_things"}), "stream"),
            (json!({"stream": 5}), "stream"),
            (
                json!({"stream": "valid_blocks", "from_height": -1}),
                "from_height",
            ),
            (
                json!({"stream": "valid_blocks", "from_height": "12"}),
                "from_height",
            ),
            (
                json!({"stream": "valid_blocks", "from_height": 1.5}),
                "from_height",
            ),
            (
                json!({"stream": "valid_blocks", "public_key": ["0OIl"]}),
                "public_key",
            ),
            (
                json!({"stream": "valid_blocks", "public_key": KEY}),
                "public_key",
            ),
            (
                json!({"stream": "valid_blocks", "public_key": [KEY, 7]}),
                "public_key",
            ),
            (
                json!({"stream": "valid_blocks", "asset_id": ["xyz"]}),
                "asset_id",
            ),
            (
                json!({"stream": "valid_blocks", "operation": ["MINT"]}),
                "operation",
            ),
            (json!({"stream": "valid_blocks", "batch": "tx"}), "batch"),
            (
                json!({"stream": "valid_blocks", "partition": "4/4"}),
                "partition",
            ),
            (
                json!({"stream": "valid_blocks", "partition": 1}),
                "partition",
            ),
            (
                json!({"stream": "valid_blocks", "public_key_in": "inputs"}),
                "public_key_in",
            ),
            (json!({"stream": "valid_blocks", "token": "v1.x"}), "token"),
            (
                json!({"stream": "valid_blocks", "colour": "blue"}),
                "colour",
            ),
        ] {
            let text = json!({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": params})
                .to_string();
            let error = refused(&text).error;
            assert_eq!(error.code, INVALID_PARAMS, "{text}");
            assert_eq!(error.data, Some(json!({"parameter": parameter})), "{text}");
        }
    }

    #[test]
    fn update_reads_add_and_remove() {
        let text = json!({"jsonrpc": "2.0", "id": "u", "method": "update", "params": {
            "subscription": "4", "add": {"public_key": [KEY2], "operation": ["vote"]},
            "remove": {"public_key": [KEY]}}})
        .to_string();
        let Call::Update {
            subscription,
            add,
            remove,
        } = parse(&text).expect("valid").call
        else {
            panic!("update")
        };
        assert_eq!(subscription, "4");
        assert!(add.public_keys.contains(KEY2) && add.operations.contains("VOTE"));
        assert_eq!(remove.len(), 1);
        for (params, parameter) in [
            (json!({"add": {}}), "subscription"),
            (json!({"subscription": "1", "add": []}), "add"),
            (
                json!({"subscription": "1", "add": {"batch": ["block"]}}),
                "batch",
            ),
            (
                json!({"subscription": "1", "remove": {"asset_id": ["no"]}}),
                "asset_id",
            ),
            (json!({"subscription": "1", "extra": 1}), "extra"),
        ] {
            let text = json!({"jsonrpc": "2.0", "id": 1, "method": "update", "params": params})
                .to_string();
            assert_eq!(
                refused(&text).error.data,
                Some(json!({"parameter": parameter})),
                "{text}"
            );
        }
    }

    #[test]
    fn answers_are_json_rpc_2() {
        let ok: Value = serde_json::from_str(&result_message(&json!(7), json!("1"))).expect("json");
        assert_eq!(ok, json!({"jsonrpc": "2.0", "id": 7, "result": "1"}));
        let error = RpcError::invalid_params("stream", "required");
        let err: Value = serde_json::from_str(&error_message(&json!("x"), &error)).expect("json");
        assert_eq!(
            err,
            json!({"jsonrpc": "2.0", "id": "x", "error": {"code": -32602, "message": "stream: required", "data": {"parameter": "stream"}}})
        );
    }

    /// Pieces a hostile client might assemble requests from.
    const PIECES: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "\\",
        "\\u0000",
        "\\ud800",
        "null",
        "true",
        "-0",
        "1e999",
        "18446744073709551616",
        "\"jsonrpc\"",
        "\"2.0\"",
        "\"id\"",
        "\"method\"",
        "\"params\"",
        "\"subscribe\"",
        "\"update\"",
        "\"unsubscribe\"",
        "\"describe\"",
        "\"authenticate\"",
        "\"stream\"",
        "\"valid_blocks\"",
        "\"valid_transactions\"",
        "\"from_height\"",
        "\"public_key\"",
        "\"asset_id\"",
        "\"operation\"",
        "\"batch\"",
        "\"block\"",
        "\"add\"",
        "\"remove\"",
        "\"subscription\"",
        "\"token\"",
        "\"CREATE\"",
        "\"4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW\"",
        "\u{20ac}",
        " ",
        "\n",
        "42",
    ];

    #[test]
    fn junk_never_panics_and_what_is_accepted_is_valid() {
        let mut rng = StdRng::seed_from_u64(0x2545_f491_4f6c_dd1d);
        let mut accepted = 0;
        let valid = json!({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": {
            "stream": "valid_transactions", "from_height": 7, "public_key": [KEY], "operation": ["CREATE"]}})
        .to_string()
        .into_bytes();
        for round in 0..30_000 {
            let text = if round % 3 == 1 {
                // A valid request with a few bytes replaced.
                let mut text = valid.clone();
                for _ in 0..1 + rng.gen_range(0..3) {
                    let at = rng.gen_range(0..text.len());
                    text[at] = rng.gen::<u8>();
                }
                text
            } else {
                let mut text = Vec::new();
                if round % 3 == 0 {
                    // A well-formed envelope around junk params, so deeper code is reached.
                    text.extend_from_slice(br#"{"jsonrpc":"2.0","id":1,"method":"#);
                    text.extend_from_slice(PIECES[18 + rng.gen_range(0..7)].as_bytes());
                    text.extend_from_slice(br#","params":{"#);
                }
                for _ in 0..rng.gen_range(0..24) {
                    if rng.gen_range(0..8) == 0 {
                        text.push(rng.gen::<u8>());
                    } else {
                        text.extend_from_slice(PIECES[rng.gen_range(0..PIECES.len())].as_bytes());
                    }
                }
                text
            };
            match parse_request(&text) {
                Ok(request) => {
                    accepted += 1;
                    assert!(request.id.is_number() || request.id.is_string());
                    if let Call::Subscribe(s) = &request.call {
                        let f = &s.filter;
                        assert!(f
                            .public_keys
                            .iter()
                            .all(|k| { planetmint_streams_model::ids::is_public_key(k) }));
                        assert!(f
                            .asset_ids
                            .iter()
                            .all(|a| { planetmint_streams_model::ids::is_transaction_id(a) }));
                    }
                }
                Err(refused) => {
                    assert!(ERROR_CODES.contains(&refused.error.code), "{refused:?}");
                    if refused.error.code == INVALID_PARAMS {
                        assert!(refused
                            .error
                            .data
                            .as_ref()
                            .is_some_and(|d| d["parameter"].is_string()));
                    }
                }
            }
        }
        // Also deeply nested JSON (serde_json's recursion limit answers, no stack overflow).
        let deep = "[".repeat(100_000);
        assert_eq!(parse(&deep).expect_err("deep").error.code, PARSE_ERROR);
        // Some mutants stay valid (a changed digit, key character or id): they went the
        // whole way through the option parser.
        assert!(accepted > 0);
    }
}
