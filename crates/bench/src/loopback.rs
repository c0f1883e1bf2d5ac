//! Loopback-only targets: every tool resolves its addresses here and refuses anything outside
//! 127.0.0.0/8 and ::1 (load is never sent to another machine). `ws://` URLs are WebSockets,
//! `http://` URLs plain HTTP streams (Server-Sent Events for `wsload`).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// An address that is not (or does not resolve only to) loopback, or cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The address is outside 127.0.0.0/8 and ::1.
    #[error("{0} is not a loopback address: the benchmark tools only talk to 127.0.0.0/8 or ::1")]
    NotLoopback(String),
    /// The name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// What was resolved.
        host: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The URL is not `ws://host[:port]/path[?query]`.
    #[error("bad URL {url}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// Whether `ip` is loopback (IPv4-mapped loopback counts).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Resolves `host:port` and returns its first address; fails unless every address it
/// resolves to is loopback.
pub fn resolve(host: &str, port: u16) -> Result<SocketAddr, TargetError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|source| TargetError::Resolve {
            host: host.to_owned(),
            source,
        })?
        .collect();
    if let Some(bad) = addrs.iter().find(|a| !is_loopback(a.ip())) {
        return Err(TargetError::NotLoopback(format!("{host} ({})", bad.ip())));
    }
    // Prefer IPv4 (local source addresses are spread over 127.0.0.x).
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| TargetError::Resolve {
            host: host.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
        })
}

/// Resolves `HOST:PORT` (as given on a command line) to a loopback address.
pub fn resolve_host_port(address: &str) -> Result<SocketAddr, TargetError> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| TargetError::BadUrl {
            url: address.to_owned(),
            reason: "expected HOST:PORT".into(),
        })?;
    let port = port.parse::<u16>().map_err(|_| TargetError::BadUrl {
        url: address.to_owned(),
        reason: format!("bad port {port:?}"),
    })?;
    resolve(host, port)
}

/// How a target is spoken to, from its URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// `ws://`: a WebSocket.
    Ws,
    /// `http://`: plain HTTP (the load client reads it as Server-Sent Events).
    Http,
}

/// A `ws://` (or `http://`) URL split for connecting: the resolved loopback address and the
/// URL itself.
#[derive(Debug, Clone)]
pub struct WsTarget {
    /// The URL as given (sent in the handshake).
    pub url: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// `ws://` or `http://`.
    pub scheme: Scheme,
    /// The `Host` header: the URL's authority.
    pub host: String,
    /// The request target: the URL's path and query (`/` when it has none).
    pub path_and_query: String,
}

/// Parses `ws://host[:port]/path[?query]` and resolves its host to loopback.
pub fn ws_target(url: &str) -> Result<WsTarget, TargetError> {
    if url.starts_with("http://") {
        return Err(TargetError::BadUrl {
            url: url.to_owned(),
            reason: "only ws:// URLs are supported here".to_owned(),
        });
    }
    target(url)
}

/// Parses `ws://` or `http://host[:port]/path[?query]` and resolves its host to loopback.
pub fn target(url: &str) -> Result<WsTarget, TargetError> {
    let bad = |reason: &str| TargetError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("ws://") {
        (Scheme::Ws, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(bad("only ws:// and http:// URLs are supported"));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("expected ws://host[:port]/path"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("unclosed [ in host"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None if after.is_empty() => 80,
            None => return Err(bad("bad host")),
        };
        (host.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().map_err(|_| bad("bad port"))?),
            None => (authority.to_owned(), 80),
        }
    };
    let tail = &rest[authority.len()..];
    let path_and_query = if tail.starts_with('/') {
        tail.to_owned()
    } else {
        format!("/{tail}")
    };
    Ok(WsTarget {
        url: url.to_owned(),
        addr: resolve(&host, port)?,
        scheme,
        host: authority.to_owned(),
        path_and_query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_resolve() {
        let t = ws_target("ws://127.0.0.1:9985/api/v1/streams/valid_transactions?from_height=0")
            .expect("loopback");
        assert_eq!(t.addr, "127.0.0.1:9985".parse().expect("addr"));
        let t = ws_target("ws://127.3.4.5/x").expect("127/8");
        assert_eq!(t.addr.port(), 80);
        let t = ws_target("ws://[::1]:9/x").expect("::1");
        assert!(t.addr.ip().is_loopback());
        assert!(ws_target("ws://localhost:9985/").is_ok());
        let t =
            target("http://127.0.0.1:9985/api/v1/streams/valid_blocks?batch=block").expect("http");
        assert_eq!(t.scheme, Scheme::Http);
        assert_eq!(t.host, "127.0.0.1:9985");
        assert_eq!(t.path_and_query, "/api/v1/streams/valid_blocks?batch=block");
        let t = target("ws://127.0.0.1:9985?x=1").expect("no path");
        assert_eq!((t.scheme, t.path_and_query.as_str()), (Scheme::Ws, "/?x=1"));
    }

    #[test]
    fn other_addresses_are_refused() {
        for url in [
            "ws://10.0.0.1:9985/",
            "ws://192.168.1.2/",
            "ws://8.8.8.8:80/",
            "ws://[2001:db8::1]:80/",
        ] {
            assert!(
                matches!(ws_target(url), Err(TargetError::NotLoopback(_))),
                "{url} must be refused"
            );
        }
        assert!(matches!(
            ws_target("wss://127.0.0.1/"),
            Err(TargetError::BadUrl { .. })
        ));
        assert!(matches!(
            ws_target("http://127.0.0.1/"),
            Err(TargetError::BadUrl { .. })
        ));
        assert!(matches!(
            target("http://10.0.0.1:9985/"),
            Err(TargetError::NotLoopback(_))
        ));
        assert!(matches!(
            target("https://127.0.0.1/"),
            Err(TargetError::BadUrl { .. })
        ));
        assert!(matches!(
            resolve_host_port("10.1.2.3:3303"),
            Err(TargetError::NotLoopback(_))
        ));
        assert!(resolve_host_port("127.0.0.1:3303").is_ok());
    }
}
