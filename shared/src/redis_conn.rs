//! One connection type for a single Redis and for a Redis Cluster.
//!
//! `redis_url` names either one server (`redis://host:port`) or a cluster by some of its nodes
//! (`redis+cluster://host1:port1,host2:port2`; a `user:password@` before the first node applies
//! to all). This build has no TLS to Redis, so `rediss://` and `rediss+cluster://` are refused
//! when a service loads its config. The client learns the rest of the
//! cluster from the nodes given, follows MOVED/ASK redirections and re-reads the slot map after
//! a failover. Every key of a domain carries the domain as its hash tag, so each command, script
//! and pipeline the services send touches one slot.

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use std::time::Duration;

/// Where Redis is: parsed from `redis_url`. (Its `Debug` leaves the URLs out: they may hold a
/// password.)
#[derive(Clone)]
pub enum RedisTarget {
    Single(redis::Client),
    /// Seed node URLs (`redis://[user:password@]host:port`).
    Cluster {
        nodes: Vec<String>,
        tls: bool,
    },
}

/// How long to wait: for a connection, and for each answer (`None`: as long as it takes, for
/// blocking reads).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Option<Duration>,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Single(_) => f.write_str("RedisTarget::Single"),
            Self::Cluster { nodes, .. } => write!(f, "RedisTarget::Cluster({} seeds)", nodes.len()),
        }
    }
}

impl RedisTarget {
    pub fn parse(url: &str) -> RedisResult<Self> {
        let cluster = [("redis+cluster://", false), ("rediss+cluster://", true)]
            .into_iter()
            .find_map(|(scheme, tls)| url.strip_prefix(scheme).map(|rest| (rest, tls)));
        let Some((rest, tls)) = cluster else {
            return Ok(Self::Single(redis::Client::open(url)?));
        };
        let rest = rest.split(['/', '?']).next().unwrap_or_default();
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((auth, hosts)) => (format!("{auth}@"), hosts),
            None => (String::new(), rest),
        };
        let scheme = if tls { "rediss" } else { "redis" };
        let nodes: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{auth}{h}"))
            .collect();
        if nodes.is_empty() {
            return Err(invalid("a redis+cluster:// URL names no node"));
        }
        for node in &nodes {
            redis::Client::open(node.as_str())?;
        }
        Ok(Self::Cluster { nodes, tls })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster { .. })
    }

    fn cluster_client(nodes: &[String], t: Timeouts) -> RedisResult<redis::cluster::ClusterClient> {
        let mut b = redis::cluster::ClusterClientBuilder::new(nodes.to_vec())
            .connection_timeout(t.connect)
            .retries(6)
            .min_retry_wait(50)
            .max_retry_wait(1000);
        if let Some(r) = t.response {
            // Also the bound of the whole request, retries and redirections included, as on a
            // single Redis. A write retried after a timeout may be applied twice: ingest's
            // entries carry their message_id, so the store still makes one row of them.
            b = b.response_timeout(r);
        }
        b.build()
    }

    /// A connection that connects on first use and reconnects by itself, so a service starts
    /// while Redis is down and answers "unavailable" until it is back.
    pub fn lazy(&self, t: Timeouts) -> RedisResult<RedisConn> {
        match self {
            Self::Single(client) => {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(t.connect))
                    .set_response_timeout(t.response)
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(1000));
                Ok(RedisConn::Manager(
                    redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), config)?,
                ))
            }
            Self::Cluster { nodes, .. } => Ok(RedisConn::Cluster(
                Self::cluster_client(nodes, t)?
                    .get_pending_async_connection_with_config(redis::cluster::ClusterConfig::new()),
            )),
        }
    }

    /// A connection made now (an error if Redis cannot be reached).
    pub async fn connect(&self, t: Timeouts) -> RedisResult<RedisConn> {
        match self {
            Self::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(t.connect))
                    .set_response_timeout(t.response);
                Ok(RedisConn::Multiplexed(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                ))
            }
            Self::Cluster { nodes, .. } => Ok(RedisConn::Cluster(
                Self::cluster_client(nodes, t)?
                    .get_async_connection()
                    .await?,
            )),
        }
    }

    /// A plain connection to the one server, or to the first seed node of a cluster that
    /// answers: for what any node can tell (INFO, TIME, CLUSTER INFO).
    pub async fn any_node(&self, t: Timeouts) -> RedisResult<RedisConn> {
        let Self::Cluster { nodes, .. } = self else {
            return self.connect(t).await;
        };
        let mut last = None;
        for node in nodes {
            match Self::Single(redis::Client::open(node.as_str())?)
                .connect(t)
                .await
            {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| invalid("a redis+cluster:// URL names no node")))
    }

    /// A plain connection to each master (a cluster) or to the one server: for what has to ask
    /// every node, like `SCAN`.
    pub async fn masters(&self, t: Timeouts) -> RedisResult<Vec<RedisConn>> {
        let Self::Cluster { nodes, tls } = self else {
            return Ok(vec![self.connect(t).await?]);
        };
        let mut con = self.connect(t).await?;
        let shards: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut con)
            .await?;
        // Each slot range: [start, end, [host, port, id], replicas…]; the first node is the master.
        let mut addrs: Vec<(String, i64)> = Vec::new();
        if let Value::Array(ranges) = shards {
            for range in ranges {
                if let Value::Array(parts) = range
                    && let Some(Value::Array(master)) = parts.get(2)
                    && let (Some(host), Some(Value::Int(port))) = (master.first(), master.get(1))
                {
                    let host: String = redis::from_redis_value(host.clone())?;
                    if !addrs.contains(&(host.clone(), *port)) {
                        addrs.push((host, *port));
                    }
                }
            }
        }
        let auth = nodes
            .first()
            .and_then(|n| n.split_once("://"))
            .and_then(|(_, rest)| rest.rsplit_once('@'))
            .map(|(a, _)| format!("{a}@"))
            .unwrap_or_default();
        let scheme = if *tls { "rediss" } else { "redis" };
        let mut out = Vec::new();
        for (host, port) in addrs {
            let single = Self::Single(redis::Client::open(format!(
                "{scheme}://{auth}{host}:{port}"
            ))?);
            out.push(single.connect(t).await?);
        }
        Ok(out)
    }
}

fn invalid(msg: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, msg))
}

/// A connection to a single Redis or to a cluster; cheap to clone (clones share it).
#[derive(Clone)]
pub enum RedisConn {
    Manager(redis::aio::ConnectionManager),
    Multiplexed(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Manager(c) => c.req_packed_command(cmd),
            Self::Multiplexed(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Multiplexed(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Manager(c) => c.get_db(),
            Self::Multiplexed(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A few connections to the same Redis (or cluster), handed out in turn; cheap to clone.
///
/// Redis reads at most 16 KiB from a connection in each pass of its event loop, and with
/// `appendfsync always` it writes and fsyncs the AOF once per pass, before it answers. All the
/// writes of a busy service on one connection would share each fsync 16 KiB at a time; over
/// several connections, one fsync covers up to 16 KiB from each.
///
/// Commands that belong together (a write and the `WAIT` for it) go in one pipeline, which
/// is sent on one connection. After a failed command, [`RedisPool::recover`] wakes the other
/// connections if this one was found dropped, and says whether the command may be sent again.
#[derive(Clone)]
pub struct RedisPool {
    conns: std::sync::Arc<[RedisConn]>,
    next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// A wake is under way: requests that find a dropped connection meanwhile do not repeat it.
    waking: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RedisPool {
    /// `size` lazy connections (at least one); see [`RedisTarget::lazy`].
    pub fn lazy(target: &RedisTarget, t: Timeouts, size: usize) -> RedisResult<Self> {
        let conns = (0..size.max(1))
            .map(|_| target.lazy(t))
            .collect::<RedisResult<Vec<_>>>()?;
        Ok(Self {
            conns: conns.into(),
            next: Default::default(),
            waking: Default::default(),
        })
    }

    /// The next connection in turn.
    pub fn get(&self) -> RedisConn {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.conns[i % self.conns.len()].clone()
    }

    /// After `con` failed with `e`. A connection found dropped (Redis restarted or went away)
    /// wakes the others, so they reconnect now instead of each failing its next request. True
    /// when the command may be sent again: on a single Redis, a refused connection means
    /// nothing was sent (the manager connects before it writes), and the refusal may be a
    /// reconnect that failed while Redis was still down. A cluster connection retries by
    /// itself, and there a refusal can follow an attempt that was sent, so it is not repeated.
    pub async fn recover(&self, con: &RedisConn, e: &redis::RedisError) -> bool {
        match after(con, e) {
            After::Retry => true,
            After::WakeAll => {
                self.wake_all().await;
                false
            }
            After::Done => false,
        }
    }

    /// PING on every connection at once: all of them answer, or the first error.
    pub async fn ping_all(&self) -> RedisResult<()> {
        let pings = self.conns.iter().map(|c| {
            let mut con = c.clone();
            async move {
                let ping = || redis::cmd("PING");
                match ping().query_async::<()>(&mut con).await {
                    Err(e) if self.recover(&con, &e).await => {
                        ping().query_async::<()>(&mut con).await
                    }
                    r => r,
                }
            }
        });
        futures::future::join_all(pings).await.into_iter().collect()
    }

    /// A PING on each connection: one that is dropped fails it at once and starts
    /// reconnecting. Waits at most 250 ms (a PING may queue behind a slow command).
    async fn wake_all(&self) {
        use std::sync::atomic::Ordering;
        /// Clears the flag however the wake ends (its request may be dropped mid-way).
        struct Waking<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Waking<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        if self.waking.swap(true, Ordering::AcqRel) {
            return;
        }
        let _waking = Waking(&self.waking);
        let pings = self.conns.iter().map(|c| {
            let mut con = c.clone();
            async move { redis::cmd("PING").query_async::<()>(&mut con).await }
        });
        let _ = tokio::time::timeout(Duration::from_millis(250), futures::future::join_all(pings))
            .await;
    }
}

/// What to do after a failed command.
enum After {
    Done,
    Retry,
    WakeAll,
}

fn after(con: &RedisConn, e: &redis::RedisError) -> After {
    if e.is_connection_refusal() {
        if matches!(con, RedisConn::Manager(_)) {
            After::Retry
        } else {
            After::Done
        }
    } else if e.is_connection_dropped() {
        After::WakeAll
    } else {
        After::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refusal_is_repeated_on_a_single_redis_only_and_a_drop_wakes_the_pool() {
        let t = Timeouts {
            connect: Duration::from_millis(100),
            response: Some(Duration::from_millis(100)),
        };
        let single = RedisTarget::parse("redis://127.0.0.1:1")
            .unwrap()
            .lazy(t)
            .unwrap();
        let cluster = RedisTarget::parse("redis+cluster://127.0.0.1:1")
            .unwrap()
            .lazy(t)
            .unwrap();
        let io = |kind| -> redis::RedisError { std::io::Error::from(kind).into() };
        use std::io::ErrorKind::{BrokenPipe, ConnectionRefused, ConnectionReset};
        assert!(matches!(
            after(&single, &io(ConnectionRefused)),
            After::Retry
        ));
        assert!(matches!(
            after(&cluster, &io(ConnectionRefused)),
            After::Done
        ));
        let reply: redis::RedisError = (
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "x",
        )
            .into();
        for con in [&single, &cluster] {
            assert!(matches!(after(con, &io(BrokenPipe)), After::WakeAll));
            assert!(matches!(after(con, &io(ConnectionReset)), After::WakeAll));
            assert!(matches!(after(con, &reply), After::Done));
        }
    }

    #[test]
    fn a_single_url_is_one_server_and_a_cluster_url_lists_its_seed_nodes() {
        assert!(
            !RedisTarget::parse("redis://127.0.0.1:6379")
                .unwrap()
                .is_cluster()
        );
        match RedisTarget::parse("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001/").unwrap() {
            RedisTarget::Cluster { nodes, tls } => {
                assert!(!tls);
                assert_eq!(
                    nodes,
                    ["redis://:pw@10.0.0.1:7000", "redis://:pw@10.0.0.2:7001"]
                );
            }
            other => panic!("not a cluster: {other:?}"),
        }
        // This build has no TLS to Redis (as for a single `rediss://` server): refused at load.
        let err = RedisTarget::parse("rediss+cluster://h:1").unwrap_err();
        assert!(err.to_string().contains("TLS"), "{err}");
        assert!(RedisTarget::parse("redis+cluster://").is_err());
        assert!(RedisTarget::parse("redis+cluster://h:notaport").is_err());
        assert!(RedisTarget::parse("http://h").is_err());
    }
}
