//! API: the HTTP port (9984 by default).
//!
//! - [`discovery`]: the root documents `/` and `/api/v1/` in Planetmint's exact shape, whose
//!   `streams` and `streamedblocks` point at our stream server, so existing clients discover us
//!   unchanged.
//! - [`server`]: the routes, `/health`, `/ready` and `/metrics`.
//! - [`explorer`]: the live page `/explorer`, its script and styles, and their security headers.
//! - [`proxy`]: drop-in mode, forwarding everything else to Planetmint's own API.
//! - [`admin`]: `POST /admin/tokens`, issuing signed stream URLs on a separate address.
//! - [`config`]: the `[api]` settings.
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod discovery;
pub mod explorer;
pub mod proxy;
pub mod server;

pub use config::ApiConfig;
pub use discovery::Advertised;
pub use server::{peer_certificate, ApiContext, ExtraRoutes, PeerCertificate, Readiness};
