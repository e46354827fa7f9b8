//! Where the portal's reads (`/api` lists and details) go: a MariaDB replica when one is
//! configured and keeping up, the primary otherwise. A watcher asks the replica for its
//! replication state every `check_interval`; the replica is used only while both replication
//! threads run and it is at most `max_lag` behind. Every write, and every read that must see
//! the caller's own writes (the status lookups ingest makes for clients), stays on the primary.

use crate::config::ReadReplica;
use mb_db::Db;
use mysql_async::Conn;
use mysql_async::prelude::*;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where reads go.
pub(crate) struct Reads {
    primary: Db,
    replica: Option<Replica>,
}

struct Replica {
    db: Db,
    /// Set by the watcher: replication running and within `max_lag`.
    usable: AtomicBool,
    settings: ReadReplica,
    /// 1 while reads go to the replica (`mb_store_replica_in_use`).
    in_use: Gauge,
    /// Its lag in seconds as last seen; -1 when replication is stopped or unknown.
    lag: Gauge,
}

/// How long a portal read waits for a replica connection before it reads the primary.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The pool size towards the replica (the portal's reads only).
const REPLICA_POOL_MAX: usize = 8;

impl Reads {
    pub(crate) fn new(
        primary: Db,
        replica: Option<&ReadReplica>,
        statement_cache: usize,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Self, mysql_async::Error> {
        let replica = match replica {
            None => None,
            Some(settings) => {
                let r = Replica {
                    db: Db::connect(
                        settings.mysql_url.expose(),
                        REPLICA_POOL_MAX,
                        statement_cache,
                    )?,
                    usable: AtomicBool::new(false),
                    settings: settings.clone(),
                    in_use: Gauge::default(),
                    lag: Gauge::default(),
                };
                let sub = registry.sub_registry_with_prefix("mb_store_replica");
                sub.register(
                    "in_use",
                    "1 while the portal's reads go to the read replica, 0 while they fall back to the primary",
                    r.in_use.clone(),
                );
                sub.register(
                    "lag_seconds",
                    "Replication lag of the read replica as last checked (-1: replication stopped or replica unreachable)",
                    r.lag.clone(),
                );
                Some(r)
            }
        };
        Ok(Self { primary, replica })
    }

    /// A connection for a portal read: the replica's while it is usable and answers, the
    /// primary's otherwise.
    pub(crate) async fn conn(&self) -> Result<Conn, mysql_async::Error> {
        if let Some(r) = &self.replica
            && r.usable.load(Ordering::Relaxed)
        {
            let got = tokio::time::timeout(CONNECT_TIMEOUT, r.db.pool().get_conn()).await;
            match got {
                Ok(Ok(conn)) => return Ok(conn),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "read replica unreachable; reading from the primary");
                    r.mark(false, -1);
                }
                Err(_) => {
                    tracing::warn!("read replica did not answer in time; reading from the primary");
                    r.mark(false, -1);
                }
            }
        }
        self.primary.pool().get_conn().await
    }

    /// Checks the replica every `check_interval` until the task is aborted.
    pub(crate) async fn watch(self: Arc<Self>) {
        let Some(r) = &self.replica else { return };
        let mut tick = tokio::time::interval(r.settings.check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let state = tokio::time::timeout(r.settings.check_interval, r.lag())
                .await
                .unwrap_or(Ok(None));
            let lag = match state {
                Ok(lag) => lag,
                Err(e) => {
                    tracing::debug!(error = %e, "read replica check failed");
                    None
                }
            };
            let usable = lag.is_some_and(|l| l <= r.settings.max_lag.as_secs());
            if usable != r.usable.load(Ordering::Relaxed) {
                match usable {
                    true => {
                        tracing::info!(lag_seconds = lag, "portal reads go to the read replica")
                    }
                    false => tracing::warn!(
                        lag_seconds = lag,
                        max_lag_seconds = r.settings.max_lag.as_secs(),
                        "read replica behind or stopped; portal reads go to the primary"
                    ),
                }
            }
            r.mark(usable, lag.map_or(-1, |l| l as i64));
        }
    }
}

impl Replica {
    fn mark(&self, usable: bool, lag: i64) {
        self.usable.store(usable, Ordering::Relaxed);
        self.in_use.set(i64::from(usable));
        self.lag.set(lag);
    }

    /// Seconds behind the primary, or `None` when replication is not running (either thread
    /// stopped, or the server is not a replica at all).
    async fn lag(&self) -> Result<Option<u64>, mysql_async::Error> {
        let mut conn = self.db.pool().get_conn().await?;
        let row: Option<mysql_async::Row> = conn.query_first("SHOW SLAVE STATUS").await?;
        let Some(row) = row else { return Ok(None) };
        let text = |name: &str| -> Option<String> {
            row.get_opt::<Option<String>, _>(name)
                .and_then(Result::ok)
                .flatten()
        };
        let running = text("Slave_IO_Running").as_deref() == Some("Yes")
            && text("Slave_SQL_Running").as_deref() == Some("Yes");
        let behind = text("Seconds_Behind_Master").and_then(|s| s.parse().ok());
        Ok(if running { behind } else { None })
    }
}
