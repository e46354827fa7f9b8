//! `/admin/*`: what administrators do, by certificate or through the portal
//! ([`crate::auth::Admin`]): certificates, portal users, the queues and dead letters, and the
//! audit log. Every change is audited.

mod audit;
mod certificates;
mod system;
mod users;

use crate::AppState;
use axum::Router;
use std::sync::Arc;

pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .merge(certificates::router())
        .merge(users::router())
        .merge(system::router())
        .merge(audit::router())
}
