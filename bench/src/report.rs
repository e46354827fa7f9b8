//! The results: a human table, then one JSON line (DESIGN.md §8).

use crate::Args;
use crate::load::Submitted;
use crate::verify::Committed;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Default)]
pub struct ProcSample {
    pub peak_rss_kib: u64,
    /// Current RSS, for the timeline (`--timeline`).
    pub rss_kib: u64,
    pub cpu_ticks: u64,
}

/// Peak RSS (VmHWM), current RSS (VmRSS) and CPU ticks (utime + stime) of each named process.
pub fn sample_processes(pids: &[(String, u32)]) -> BTreeMap<String, ProcSample> {
    pids.iter()
        .map(|(name, pid)| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let kib = |field: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(field))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    .unwrap_or(0)
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command name (which may contain spaces) start after ')'.
            let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = after.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            (
                name.clone(),
                ProcSample {
                    peak_rss_kib: kib("VmHWM:"),
                    rss_kib: kib("VmRSS:"),
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

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux).
pub const TICK_HZ: f64 = 100.0;

/// What a run measured, before it is written out.
struct Figures<'a> {
    args: &'a Args,
    submitted: &'a Submitted,
    committed: &'a Committed,
    accepted: usize,
    ingest_rate: f64,
    e2e_rate: f64,
    /// Per process: peak RSS in MiB, CPU seconds used during the run.
    processes: BTreeMap<String, (f64, f64)>,
    mysql_ceiling: Option<f64>,
}

impl Figures<'_> {
    fn submit_ms(&self, q: f64) -> f64 {
        ms(self.submitted.latency_us.value_at_quantile(q))
    }

    fn e2e_ms(&self, q: f64) -> f64 {
        ms(self.committed.e2e_us.value_at_quantile(q))
    }

    /// CPU microseconds a process spent per accepted message.
    fn cpu_us_per_msg(&self, cpu_s: f64) -> f64 {
        round(cpu_s * 1e6 / self.accepted.max(1) as f64, 1)
    }

    fn json(&self) -> serde_json::Value {
        let (a, s, c) = (self.args, self.submitted, self.committed);
        let rss: serde_json::Map<_, _> = self
            .processes
            .iter()
            .map(|(n, (rss, _))| (n.clone(), serde_json::json!(rss)))
            .collect();
        let cpu: serde_json::Map<_, _> = self
            .processes
            .iter()
            .map(|(n, (_, cpu))| (n.clone(), serde_json::json!(cpu)))
            .collect();
        let per_msg: serde_json::Map<_, _> = self
            .processes
            .iter()
            .map(|(n, (_, cpu))| (n.clone(), serde_json::json!(self.cpu_us_per_msg(*cpu))))
            .collect();
        serde_json::json!({
            "messages": a.messages,
            "connections": a.connections,
            "batch": a.batch,
            "http": if a.http2 { "2" } else { "1.1" },
            "streams_per_connection": if a.http2 { a.streams } else { 1 },
            "rate": a.rate,
            "mode": if a.resume_after_submit.is_empty() { "concurrent" } else { "burst" },
            "accepted": self.accepted,
            "refused": s.refused,
            "errors": s.errors,
            "ingest_msgs_per_s": self.ingest_rate.round(),
            "submit_p50_ms": self.submit_ms(0.50),
            "submit_p99_ms": self.submit_ms(0.99),
            "submit_p999_ms": self.submit_ms(0.999),
            "e2e_msgs_per_s": self.e2e_rate.round(),
            "e2e_p50_ms": self.e2e_ms(0.50),
            "e2e_p99_ms": self.e2e_ms(0.99),
            "rss_mib": rss,
            "cpu_s": cpu,
            "cpu_us_per_msg": per_msg,
            "lost": c.lost,
            "duplicates": c.duplicates,
            "redis_xadd_ceiling_per_s": a.redis_ceiling,
            "mysql_insert_ceiling_per_s": self.mysql_ceiling.map(f64::round),
            "ingest_vs_redis_ceiling": a.redis_ceiling.map(|r| round(self.ingest_rate / r, 3)),
            "e2e_vs_mysql_ceiling": self.mysql_ceiling.map(|m| round(self.e2e_rate / m, 3)),
        })
    }

    fn table(&self) -> Vec<(String, String)> {
        let (a, s, c) = (self.args, self.submitted, self.committed);
        let offered = if a.rate > 0 {
            format!("open loop, {} msg/s offered", a.rate)
        } else {
            "closed loop, max rate".into()
        };
        let e2e_label = if a.resume_after_submit.is_empty() {
            "end-to-end msg/s (accept → row)"
        } else {
            "drain msg/s (backlog → rows, burst mode)"
        };
        let mut t: Vec<(String, String)> = vec![
            (
                "messages submitted".into(),
                format!(
                    "{} over {} {} connections{}{} ({offered})",
                    a.messages,
                    a.connections,
                    if a.http2 { "HTTP/2" } else { "HTTP/1.1" },
                    if a.http2 {
                        format!(" × {} streams", a.streams)
                    } else {
                        String::new()
                    },
                    if a.batch > 1 {
                        format!(", {} per batch", a.batch)
                    } else {
                        String::new()
                    },
                ),
            ),
            (
                "accepted / refused / errors".into(),
                format!("{} / {} / {}", self.accepted, s.refused, s.errors),
            ),
            (
                "ingest accepted msg/s".into(),
                format!("{:.0}", self.ingest_rate),
            ),
            (
                "submit latency p50 / p99 / p99.9".into(),
                format!(
                    "{} / {} / {} ms",
                    self.submit_ms(0.5),
                    self.submit_ms(0.99),
                    self.submit_ms(0.999)
                ),
            ),
            (e2e_label.into(), format!("{:.0}", self.e2e_rate)),
            (
                "accept → row latency p50 / p99".into(),
                format!("{} / {} ms", self.e2e_ms(0.5), self.e2e_ms(0.99)),
            ),
            (
                "lost / duplicates".into(),
                format!("{} / {}", c.lost, c.duplicates),
            ),
        ];
        for (name, (rss, cpu)) in &self.processes {
            t.push((
                format!("{name}: peak RSS / CPU"),
                format!(
                    "{rss} MiB / {cpu} s ({} µs per message)",
                    self.cpu_us_per_msg(*cpu)
                ),
            ));
        }
        if let Some(r) = a.redis_ceiling {
            t.push((
                "raw Redis XADD ceiling".into(),
                format!(
                    "{r:.0}/s (ingest is {:.1}% of it)",
                    self.ingest_rate / r * 100.0
                ),
            ));
        }
        if let Some(m) = self.mysql_ceiling {
            t.push((
                "raw MariaDB insert ceiling".into(),
                format!(
                    "{m:.0} rows/s (e2e is {:.1}% of it)",
                    self.e2e_rate / m * 100.0
                ),
            ));
        }
        t
    }
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
        let processes = after
            .iter()
            .map(|(name, a)| {
                let b = before.get(name).copied().unwrap_or_default();
                let cpu = a.cpu_ticks.saturating_sub(b.cpu_ticks) as f64 / TICK_HZ;
                let rss = a.peak_rss_kib as f64 / 1024.0;
                (name.clone(), (round(rss, 1), round(cpu, 2)))
            })
            .collect();
        let f = Figures {
            args,
            submitted: s,
            committed: c,
            accepted: s.accepted_ids.len(),
            ingest_rate: s.accepted_ids.len() as f64 / s.elapsed.as_secs_f64(),
            e2e_rate: c.rows as f64 / c.elapsed.as_secs_f64(),
            processes,
            mysql_ceiling,
        };
        Self {
            json: f.json(),
            table: f.table(),
        }
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
