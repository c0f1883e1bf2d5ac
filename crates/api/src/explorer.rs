//! The live explorer: `GET /explorer`, a page that follows both streams over one JSON-RPC
//! WebSocket, with its script (`/explorer.js`) and styles (`/explorer.css`) served from the
//! same node (no CDN).
//!
//! The page's Content-Security-Policy lets it run only the node's own script and styles (no
//! inline script or style, so an injected `<script>` or attribute handler never runs), talk
//! only to this API and to the advertised streams origin, and never be framed by another
//! page (`frame-ancestors 'none'`, and `X-Frame-Options: DENY` for browsers without CSP 2).

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use crate::discovery::Advertised;
use crate::server::ApiContext;

/// The page: HTML only; its script and styles are the two files below.
const EXPLORER_HTML: &str = include_str!("../assets/explorer.html");
/// The page's script: finds `rpc_url` in the catalogue (`/api/v1/streams`) and follows both
/// streams over one WebSocket.
const EXPLORER_JS: &str = include_str!("../assets/explorer.js");
/// The page's styles.
const EXPLORER_CSS: &str = include_str!("../assets/explorer.css");

/// Path of the page.
pub const EXPLORER_PATH: &str = "/explorer";
/// Path of its script (relative to the page: `explorer.js`).
pub const EXPLORER_JS_PATH: &str = "/explorer.js";
/// Path of its styles (relative to the page: `explorer.css`).
pub const EXPLORER_CSS_PATH: &str = "/explorer.css";

/// The page's Content-Security-Policy: its own script and styles only, connections to this
/// API and to the streams origin the catalogue advertises (where its JSON-RPC channel is),
/// never inside another page's frame.
pub fn explorer_csp(advertised: &Advertised) -> String {
    // CSP host sources name DNS names and IPv4 addresses only; for anything else (an IPv6
    // literal) the scheme alone is allowed, still no other kind of connection.
    let nameable = !advertised.host.is_empty()
        && advertised
            .host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    let streams = if nameable {
        advertised.base()
    } else {
        format!("{}:", advertised.scheme)
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self' {streams}; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

/// `GET /explorer`.
async fn page(ctx: web::Data<ApiContext>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            explorer_csp(&ctx.advertised),
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(EXPLORER_HTML)
}

/// A static file of the page, with its media type.
fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

/// Registers the page and its two files.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(EXPLORER_PATH, web::get().to(page))
        .route(
            EXPLORER_JS_PATH,
            web::get().to(|| async { asset("text/javascript; charset=utf-8", EXPLORER_JS) }),
        )
        .route(
            EXPLORER_CSS_PATH,
            web::get().to(|| async { asset("text/css; charset=utf-8", EXPLORER_CSS) }),
        );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advertised(host: &str) -> Advertised {
        Advertised {
            scheme: "wss".into(),
            host: host.into(),
            port: 443,
        }
    }

    #[test]
    fn the_explorer_may_connect_only_to_the_advertised_streams_origin() {
        let csp = explorer_csp(&advertised("streams.example.org"));
        assert!(
            csp.contains("connect-src 'self' wss://streams.example.org:443;"),
            "{csp}"
        );
        // An IPv6 literal cannot be named in a CSP: the scheme alone, not ws: as well.
        let csp = explorer_csp(&advertised("2001:db8::1"));
        assert!(csp.contains("connect-src 'self' wss:;"), "{csp}");
    }

    #[test]
    fn the_explorer_runs_no_inline_script_and_cannot_be_framed() {
        let csp = explorer_csp(&advertised("streams.example.org"));
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(csp.contains("style-src 'self';"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        // The page itself holds no script or style of its own to allow.
        assert!(!EXPLORER_HTML.contains("<script>"));
        assert!(!EXPLORER_HTML.contains("<style"));
        assert!(!EXPLORER_HTML.contains(" style="));
        assert!(EXPLORER_HTML.contains(r#"<script src="explorer.js"></script>"#));
        assert!(EXPLORER_HTML.contains(r#"<link rel="stylesheet" href="explorer.css">"#));
    }
}
