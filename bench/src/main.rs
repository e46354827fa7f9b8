//! mb-bench: the load generator behind `ops/bench`.
//!
//! It opens `--connections` keep-alive mutual-TLS connections to ingest and submits
//! `--messages` messages, either as fast as the connections allow (closed loop, `--rate 0`) or
//! on a fixed schedule (open loop, `--rate R`, latency measured from each message's scheduled
//! time so a stall is not hidden). It then waits until every accepted message is committed in
//! MySQL, checks that none is lost or duplicated, and reports throughput, HDR-histogram
//! latencies, and the peak RSS and CPU time of the services whose pids it is given.
//! `--timeline FILE` also writes one CSV row per interval for soak runs (`timeline.rs`).

mod load;
mod report;
mod timeline;
mod verify;

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug, Clone)]
#[command(version, about = "Load generator for mb (ops/bench)")]
pub struct Args {
    /// Ingest base URL.
    #[arg(long, default_value = "https://localhost:8001")]
    pub url: String,
    #[arg(long)]
    pub ca: PathBuf,
    #[arg(long)]
    pub cert: PathBuf,
    #[arg(long)]
    pub key: PathBuf,
    /// Messages to submit.
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Messages per request: above 1, they go to `/api/v1/messages/batch`.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// HTTP/2 instead of HTTP/1.1, with `--streams` requests in flight per connection.
    #[arg(long)]
    pub http2: bool,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, default_value_t = 16)]
    pub streams: usize,
    /// Offered rate in messages per second (open loop); 0 = as fast as possible (closed loop).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// The store's database, to wait for commits and check for loss and duplicates.
    #[arg(long, env = "MB_MYSQL_URL", hide_env_values = true)]
    pub mysql_url: String,
    /// The store's metrics endpoint (host:port): its count of stored messages shows the
    /// progress of the commits without scanning the table.
    #[arg(long, env = "MB_STORE_METRICS_LISTEN")]
    pub store_metrics: String,
    /// Services to measure, as NAME=PID (peak RSS and CPU seconds from /proc).
    #[arg(long = "pid", value_parser = parse_pid)]
    pub pids: Vec<(String, u32)>,
    /// Give up waiting for commits after this many seconds without progress.
    #[arg(long, default_value_t = 60)]
    pub stall_timeout: u64,
    /// Raw Redis XADD ceiling measured by redis-benchmark (msg/s), to print ratios against.
    #[arg(long)]
    pub redis_ceiling: Option<f64>,
    /// Also measure the raw MariaDB ceiling: multi-row inserts of this many rows like ours.
    #[arg(long, default_value_t = 0)]
    pub mysql_ceiling_rows: usize,
    /// Burst mode: these (stopped) deliver processes get SIGCONT only after the last message
    /// was submitted, so ingest is measured alone and the drain rate of the backlog after it.
    #[arg(long = "resume-after-submit")]
    pub resume_after_submit: Vec<u32>,
    /// Write a CSV with one row per interval: accepted rate, submit and accept→row latency,
    /// current RSS and CPU % of each `--pid` process (`ops/soak` plots it).
    #[arg(long)]
    pub timeline: Option<PathBuf>,
    /// Seconds per `--timeline` interval.
    #[arg(long, default_value_t = 10.0, requires = "timeline")]
    pub timeline_every: f64,
    /// No progress bars (for logs).
    #[arg(long)]
    pub quiet: bool,
}

fn parse_pid(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = s.split_once('=').ok_or("expected NAME=PID")?;
    Ok((
        name.to_owned(),
        pid.parse().map_err(|_| "PID must be a number")?,
    ))
}

/// mimalloc: the glibc allocator was ~10% of CPU under load (many small, short-lived buffers).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mb_shared::tls::install_crypto_provider();
    let args = Args::parse();
    anyhow::ensure!(
        args.connections > 0 && args.messages > 0,
        "--messages and --connections must be positive"
    );
    let cpu_before = report::sample_processes(&args.pids);
    let timeline = match &args.timeline {
        Some(path) => {
            let every = Duration::try_from_secs_f64(args.timeline_every)?;
            Some(timeline::Timeline::start(path, &args.pids, every)?)
        }
        None => None,
    };
    // A wrong address is named now, not after the whole submit phase.
    verify::stored_by_store(&args.store_metrics)
        .await
        .map_err(|e| anyhow::anyhow!("--store-metrics {}: {e}", args.store_metrics))?;
    let submitted = load::run(&args, timeline.as_ref().map(timeline::Timeline::live)).await?;
    let timeline = match timeline {
        Some(t) => Some(t.stop().await?),
        None => None,
    };
    let drain_started = std::time::SystemTime::now();
    for pid in &args.resume_after_submit {
        std::process::Command::new("kill")
            .arg("-CONT")
            .arg(pid.to_string())
            .status()?;
    }
    let drain_started = (!args.resume_after_submit.is_empty()).then_some(drain_started);
    let want = submitted.accepted_ids.len() as u64;
    verify::wait_for_commits(&args, want, Duration::from_secs(args.stall_timeout)).await?;
    // CPU is read before the rows are: reading a million rows back is the benchmark's work,
    // not the broker's.
    let processes = report::sample_processes(&args.pids);
    let committed = verify::check_rows(&args, &submitted, drain_started).await?;
    if let Some(t) = &timeline {
        t.write_csv(&committed.queued)?;
    }
    let mysql_ceiling = if args.mysql_ceiling_rows > 0 {
        Some(verify::mysql_ceiling(&args.mysql_url, args.mysql_ceiling_rows).await?)
    } else {
        None
    };
    let r = report::Report::new(
        &args,
        &submitted,
        &committed,
        &cpu_before,
        &processes,
        mysql_ceiling,
    );
    r.print_table();
    println!("{}", r.json());
    anyhow::ensure!(
        committed.lost == 0 && committed.duplicates == 0,
        "messages were lost or duplicated"
    );
    Ok(())
}
