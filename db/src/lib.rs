//! The MySQL side of mb that more than one program needs: the connection pool (every session
//! in UTC, prepared statements cached), the schema migrations embedded from `sql/` (applied by
//! mb-store at startup and by `mbctl migrate`, never by hand), the audit log every
//! administrative change writes to, and the portal's users and sessions ([`users`]). The
//! queries of one program live with that program.

pub mod keys;
pub mod listing;
pub mod messages;
pub mod users;

use mysql_async::Pool;
use mysql_async::prelude::*;

mod embedded {
    refinery::embed_migrations!("../sql");
}

/// How long a pooled connection above the pool's minimum may idle before it is closed.
const IDLE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// A pool of MySQL connections.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
}

impl Db {
    /// A pool of at most `pool_max` connections to `url` (`mysql://user:pass@host:port/db`);
    /// `statement_cache` prepared statements are kept per connection.
    pub fn connect(
        url: &str,
        pool_max: usize,
        statement_cache: usize,
    ) -> Result<Self, mysql_async::Error> {
        let opts = mysql_async::Opts::from_url(url)?;
        let constraints =
            mysql_async::PoolConstraints::new(1, pool_max.max(1)).expect("1 <= pool_max");
        let opts = mysql_async::OptsBuilder::from_opts(opts)
            // Connections and their prepared statements are kept, not made again per query.
            // mysql_async's defaults did both: with no idle TTL the pool keeps only `min` (1)
            // idle connections and closes every other one it gets back, and its
            // COM_RESET_CONNECTION on return deallocates the prepared statements. Measured under
            // ops/bench: ~94 new connections a second, a prepare for every execute. Nothing
            // here leaves session state behind: a transaction not committed is rolled back by
            // the pool, and the one named lock (the re-encryption pass) opts back in to the
            // reset. Idle connections above `min` are closed after `IDLE_TTL`.
            .pool_opts(
                mysql_async::PoolOpts::default()
                    .with_constraints(constraints)
                    .with_inactive_connection_ttl(IDLE_TTL)
                    .with_reset_connection(false),
            )
            // `setup`, not `init`: it runs on every new connection and again after a reset.
            .setup(vec!["SET time_zone = '+00:00'"])
            .stmt_cache_size(statement_cache);
        Ok(Self {
            pool: Pool::new(opts),
        })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Applies the migrations in `sql/` that are not applied yet.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let mut pool = self.pool.clone();
        let report = embedded::migrations::runner().run_async(&mut pool).await?;
        for m in report.applied_migrations() {
            tracing::info!(migration = %m, "applied migration");
        }
        Ok(())
    }

    /// Which embedded migrations (`sql/V*.sql`) the database has not applied, read from
    /// refinery's `refinery_schema_history` (no such table: none applied), for `mbctl doctor`.
    pub async fn pending_migrations(&self) -> Result<MigrationState, mysql_async::Error> {
        let embedded = embedded::migrations::runner();
        let known: Vec<(i64, String)> = embedded
            .get_migrations()
            .iter()
            .map(|m| {
                (
                    i64::from(m.version()),
                    format!("V{}__{}", m.version(), m.name()),
                )
            })
            .collect();
        let applied: Vec<i64> = match self
            .pool
            .get_conn()
            .await?
            .query("SELECT CAST(version AS SIGNED) FROM refinery_schema_history")
            .await
        {
            Ok(v) => v,
            // ER_NO_SUCH_TABLE: never migrated.
            Err(mysql_async::Error::Server(e)) if e.code == 1146 => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(MigrationState {
            latest: known.iter().map(|(v, _)| *v).max().unwrap_or(0),
            latest_applied: applied.iter().copied().max(),
            pending: known
                .into_iter()
                .filter(|(v, _)| !applied.contains(v))
                .map(|(_, name)| name)
                .collect(),
        })
    }

    pub async fn close(&self) {
        let _ = self.pool.clone().disconnect().await;
    }
}

/// What [`Db::pending_migrations`] found.
#[derive(Debug, Clone)]
pub struct MigrationState {
    /// The highest version embedded in this build (`sql/V<n>__*.sql`).
    pub latest: i64,
    /// The highest version the database has applied, if any (above `latest`: a newer build
    /// migrated it).
    pub latest_applied: Option<i64>,
    /// Embedded migrations not applied yet, as `V<n>__<name>`, ascending.
    pub pending: Vec<String>,
}

/// One `audit_log` row: who (`mbctl:<user>`, `admin:<CN>`, `user:<name>`) did what to what,
/// and in which domain (so that domain's administrators see it).
pub struct AuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub domain: Option<&'a str>,
    pub details: &'a str,
}

pub async fn audit<Q: Queryable>(
    con: &mut Q,
    e: &AuditEntry<'_>,
) -> Result<(), mysql_async::Error> {
    con.exec_drop(
        "INSERT INTO audit_log (actor, action, target, domain, details) VALUES (?, ?, ?, ?, ?)",
        (e.actor, e.action, e.target, e.domain, e.details),
    )
    .await
}
