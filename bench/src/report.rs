//! The results: a human table, then one JSON line (DESIGN.md §8).

use crate::Args;
use crate::load::Submitted;
use crate::verify::Committed;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Default)]
pub struct ProcSample {
    pub peak_rss_kib: u64,
    pub cpu_ticks: u64,
}

/// Peak RSS (VmHWM) and CPU ticks (utime + stime) of each named process.
pub fn sample_processes(pids: &[(String, u32)]) -> BTreeMap<String, ProcSample> {
    pids.iter()
        .map(|(name, pid)| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let peak_rss_kib = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0);
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command name (which may contain spaces) start after ')'.
            let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = after.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            (
                name.clone(),
                ProcSample {
                    peak_rss_kib,
                    cpu_ticks: ticks(11) + ticks(12),
                },
            )
        })
        .collect()
}

pub struct Report {
    json: serde_json::Value,
    table: Vec<(String, String)>,
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 100.0).round() / 100.0
}

impl Report {
    pub fn new(
        args: &Args,
        s: &Submitted,
        c: &Committed,
        before: &BTreeMap<String, ProcSample>,
        after: &BTreeMap<String, ProcSample>,
        mysql_ceiling: Option<f64>,
    ) -> Self {
        let accepted = s.accepted_ids.len();
        let ingest_rate = accepted as f64 / s.elapsed.as_secs_f64();
        let e2e_rate = c.rows as f64 / c.elapsed.as_secs_f64();
        let tick_hz = 100.0;
        let mut rss = serde_json::Map::new();
        let mut cpu = serde_json::Map::new();
        for (name, a) in after {
            let b = before.get(name).copied().unwrap_or_default();
            rss.insert(
                name.clone(),
                serde_json::json!((a.peak_rss_kib as f64 / 1024.0 * 10.0).round() / 10.0),
            );
            cpu.insert(
                name.clone(),
                serde_json::json!(
                    ((a.cpu_ticks.saturating_sub(b.cpu_ticks)) as f64 / tick_hz * 100.0).round()
                        / 100.0
                ),
            );
        }
        let q = |h: &hdrhistogram::Histogram<u64>, p: f64| ms(h.value_at_quantile(p));
        let json = serde_json::json!({
            "messages": args.messages,
            "connections": args.connections,
            "rate": args.rate,
            "mode": if args.resume_after_submit.is_empty() { "concurrent" } else { "burst" },
            "accepted": accepted,
            "refused": s.refused,
            "errors": s.errors,
            "ingest_msgs_per_s": ingest_rate.round(),
            "submit_p50_ms": q(&s.latency_us, 0.50),
            "submit_p99_ms": q(&s.latency_us, 0.99),
            "submit_p999_ms": q(&s.latency_us, 0.999),
            "e2e_msgs_per_s": e2e_rate.round(),
            "e2e_p50_ms": q(&c.e2e_us, 0.50),
            "e2e_p99_ms": q(&c.e2e_us, 0.99),
            "rss_mib": rss,
            "cpu_s": cpu,
            "lost": c.lost,
            "duplicates": c.duplicates,
            "redis_xadd_ceiling_per_s": args.redis_ceiling,
            "mysql_insert_ceiling_per_s": mysql_ceiling.map(f64::round),
            "ingest_vs_redis_ceiling": args.redis_ceiling.map(|r| (ingest_rate / r * 1000.0).round() / 1000.0),
            "e2e_vs_mysql_ceiling": mysql_ceiling.map(|m| (e2e_rate / m * 1000.0).round() / 1000.0),
        });
        let mut table = vec![
            (
                "messages submitted".into(),
                format!(
                    "{} over {} connections ({})",
                    args.messages,
                    args.connections,
                    if args.rate > 0 {
                        format!("open loop, {} msg/s offered", args.rate)
                    } else {
                        "closed loop, max rate".into()
                    }
                ),
            ),
            (
                "accepted / refused / errors".into(),
                format!("{accepted} / {} / {}", s.refused, s.errors),
            ),
            ("ingest accepted msg/s".into(), format!("{ingest_rate:.0}")),
            (
                "submit latency p50 / p99 / p99.9".into(),
                format!(
                    "{} / {} / {} ms",
                    q(&s.latency_us, 0.5),
                    q(&s.latency_us, 0.99),
                    q(&s.latency_us, 0.999)
                ),
            ),
            (
                if args.resume_after_submit.is_empty() {
                    "end-to-end msg/s (accept → row)"
                } else {
                    "drain msg/s (backlog → rows, burst mode)"
                }
                .into(),
                format!("{e2e_rate:.0}"),
            ),
            (
                "accept → row latency p50 / p99".into(),
                format!("{} / {} ms", q(&c.e2e_us, 0.5), q(&c.e2e_us, 0.99)),
            ),
            (
                "lost / duplicates".into(),
                format!("{} / {}", c.lost, c.duplicates),
            ),
        ];
        for (name, v) in &rss {
            table.push((
                format!("{name}: peak RSS / CPU"),
                format!("{v} MiB / {} s", cpu[name]),
            ));
        }
        if let Some(r) = args.redis_ceiling {
            table.push((
                "raw Redis XADD ceiling".into(),
                format!("{r:.0}/s (ingest is {:.1}% of it)", ingest_rate / r * 100.0),
            ));
        }
        if let Some(m) = mysql_ceiling {
            table.push((
                "raw MariaDB insert ceiling".into(),
                format!("{m:.0} rows/s (e2e is {:.1}% of it)", e2e_rate / m * 100.0),
            ));
        }
        Self { json, table }
    }

    pub fn print_table(&self) {
        let w = self.table.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        println!();
        for (k, v) in &self.table {
            println!("  {k:<w$}  {v}");
        }
        println!();
    }

    pub fn json(&self) -> String {
        self.json.to_string()
    }
}
