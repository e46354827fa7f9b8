//! Library shared by every mb service: configuration loading, the message model and its
//! validation, crypto (AES-256-GCM-SIV keyring, HMAC), TLS helpers and the mTLS accept loop,
//! Redis stream names and scripts, the internal wire types between deliver and store, and
//! telemetry (tracing and Prometheus metrics).
//!
//! Services depend on this crate, never on each other.

pub mod api;
pub mod config;
pub mod crypto;
pub mod domains;
pub mod error_body;
pub mod extract;
pub mod identity;
pub mod internal;
pub mod message;
pub mod redis_conn;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod status;
pub mod streams;
pub mod telemetry;
pub mod time;
pub mod tls;
