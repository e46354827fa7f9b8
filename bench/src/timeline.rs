//! `--timeline FILE`: how a long run behaved over time, one CSV row per `--timeline-every`
//! interval, for `ops/soak` and its plot (`ops/plot-soak`).
//!
//! Averages over a whole run hide a leak or a slow drift; a soak is judged on the shape of the
//! curves instead. While messages are submitted, a sampler task wakes every interval and
//! records the accepted rate, the submit latency of that interval (the connection tasks record
//! into a shared histogram that the sampler swaps out, so each row covers only its own
//! interval), and the current RSS (VmRSS, not the peak) and CPU % of every `--pid` process.
//! Accept→row latency is only known once the rows are committed, so it is added at the end,
//! each row grouped by when its message was queued relative to the start of the run.
//!
//! Recording costs one uncontended mutex and two atomic adds per request, and only when
//! `--timeline` is given.

use crate::report::{self, ProcSample, TICK_HZ};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Submit latencies up to a minute, like the run's own histogram.
const SUBMIT_MAX_US: u64 = 60_000_000;
/// Accept→row latencies up to an hour (a stalled store shows as a spike, not an error).
const E2E_MAX_US: u64 = 3_600_000_000;
/// A last, partial interval shorter than this (or than half an interval) is folded into the row
/// before it: its few requests would make a rate and a p99 of their own that mean nothing.
const MIN_TAIL: Duration = Duration::from_secs(1);

/// What the connection tasks record into during the current interval.
pub struct Live {
    submit_us: Mutex<Histogram<u64>>,
    accepted: AtomicU64,
    failed: AtomicU64,
}

impl Live {
    /// One answered request: its latency, and how many of its messages were accepted and how
    /// many refused or failed.
    pub fn record(&self, latency_us: u64, accepted: usize, failed: usize) {
        self.submit_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .saturating_record(latency_us.max(1));
        self.add(accepted, failed);
    }

    /// Messages that got no answer at all (a broken connection): counted, no latency.
    pub fn add(&self, accepted: usize, failed: usize) {
        self.accepted.fetch_add(accepted as u64, Ordering::Relaxed);
        self.failed.fetch_add(failed as u64, Ordering::Relaxed);
    }
}

/// One interval as sampled during the run.
struct Sample {
    /// Seconds from the start of the run to the end of this interval.
    end_s: f64,
    length_s: f64,
    accepted: u64,
    failed: u64,
    /// Submit latency p50, p99 and max in µs; `None` when nothing was answered.
    submit_us: Option<[u64; 3]>,
    /// Per `--pid`, in order: current RSS in KiB and CPU % over the interval.
    processes: Vec<(u64, f64)>,
}

/// The running sampler; `stop` it when the submitting is over.
pub struct Timeline {
    live: Arc<Live>,
    stop: oneshot::Sender<()>,
    sampler: JoinHandle<anyhow::Result<Vec<Sample>>>,
    path: PathBuf,
    every: Duration,
    started_wall: SystemTime,
    names: Vec<String>,
}

/// The sampled intervals, waiting for the accept→row latencies before they are written.
pub struct Recorded {
    samples: Vec<Sample>,
    path: PathBuf,
    every: Duration,
    started_wall: SystemTime,
    names: Vec<String>,
}

impl Timeline {
    /// Starts the clock and the sampler. Call it just before the submitting starts. The file is
    /// created now, so a path that cannot be written fails before a long run, not after it.
    pub fn start(path: &Path, pids: &[(String, u32)], every: Duration) -> anyhow::Result<Self> {
        anyhow::ensure!(
            every >= Duration::from_millis(100),
            "--timeline-every must be at least 0.1 s"
        );
        std::fs::File::create(path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        let live = Arc::new(Live {
            submit_us: Mutex::new(Histogram::new_with_bounds(1, SUBMIT_MAX_US, 3)?),
            accepted: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let (stop, stopped) = oneshot::channel();
        let (started, started_wall) = (Instant::now(), SystemTime::now());
        let sampler = tokio::spawn(sample(live.clone(), pids.to_vec(), started, every, stopped));
        Ok(Self {
            live,
            stop,
            sampler,
            path: path.to_owned(),
            every,
            started_wall,
            names: pids.iter().map(|(n, _)| n.clone()).collect(),
        })
    }

    /// The handle the connection tasks record into.
    pub fn live(&self) -> Arc<Live> {
        self.live.clone()
    }

    /// Takes a last (partial) sample and stops the sampler.
    pub async fn stop(self) -> anyhow::Result<Recorded> {
        // The sampler may already have ended with an error; `sampler.await` reports it.
        let _ = self.stop.send(());
        Ok(Recorded {
            samples: self.sampler.await??,
            path: self.path,
            every: self.every,
            started_wall: self.started_wall,
            names: self.names,
        })
    }
}

/// The sampler: wakes at start + k × every, or once more when told to stop.
async fn sample(
    live: Arc<Live>,
    pids: Vec<(String, u32)>,
    started: Instant,
    every: Duration,
    mut stopped: oneshot::Receiver<()>,
) -> anyhow::Result<Vec<Sample>> {
    let mut samples: Vec<Sample> = Vec::new();
    let mut spare = Histogram::new_with_bounds(1, SUBMIT_MAX_US, 3)?;
    let mut before = report::sample_processes(&pids);
    let mut last = started;
    for k in 1u32.. {
        let stopping = tokio::select! {
            () = tokio::time::sleep_until((started + every * k).into()) => false,
            _ = &mut stopped => true,
        };
        let now = Instant::now();
        std::mem::swap(
            &mut *live
                .submit_us
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            &mut spare,
        );
        let accepted = live.accepted.swap(0, Ordering::Relaxed);
        let failed = live.failed.swap(0, Ordering::Relaxed);
        let after = report::sample_processes(&pids);
        let length = now - last;
        let short_tail = stopping && length < MIN_TAIL.min(every / 2);
        match samples.last_mut() {
            Some(prev) if short_tail => {
                // Counted, so the rows add up to the run; its latencies are left to the run's
                // own histogram.
                prev.accepted += accepted;
                prev.failed += failed;
                prev.length_s += length.as_secs_f64();
                prev.end_s = (now - started).as_secs_f64();
            }
            _ => samples.push(Sample {
                end_s: (now - started).as_secs_f64(),
                length_s: length.as_secs_f64(),
                accepted,
                failed,
                submit_us: (!spare.is_empty()).then(|| {
                    [
                        spare.value_at_quantile(0.5),
                        spare.value_at_quantile(0.99),
                        spare.max(),
                    ]
                }),
                processes: cpu_and_rss(&pids, &before, &after, length),
            }),
        }
        spare.reset();
        if stopping {
            break;
        }
        (before, last) = (after, now);
    }
    Ok(samples)
}

/// Current RSS and CPU % over `length` of each process, in `pids` order.
fn cpu_and_rss(
    pids: &[(String, u32)],
    before: &BTreeMap<String, ProcSample>,
    after: &BTreeMap<String, ProcSample>,
    length: Duration,
) -> Vec<(u64, f64)> {
    pids.iter()
        .map(|(name, _)| {
            let a = after.get(name).copied().unwrap_or_default();
            let b = before.get(name).copied().unwrap_or_default();
            let cpu_s = a.cpu_ticks.saturating_sub(b.cpu_ticks) as f64 / TICK_HZ;
            (a.rss_kib, cpu_s / length.as_secs_f64().max(1e-3) * 100.0)
        })
        .collect()
}

impl Recorded {
    /// Writes the CSV; `queued` is (queued_at in Unix ms, accept→row µs) of every row.
    pub fn write_csv(&self, queued: &[(i64, u64)]) -> anyhow::Result<()> {
        let e2e = self.e2e_by_interval(queued)?;
        std::fs::write(&self.path, self.csv(&e2e))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", self.path.display()))
    }

    /// One accept→row histogram per sample: a row belongs to the interval its message was
    /// queued in (clamped to the first and last, for clock skew and the final partial one).
    fn e2e_by_interval(&self, queued: &[(i64, u64)]) -> anyhow::Result<Vec<Histogram<u64>>> {
        let n = self.samples.len();
        let mut out = vec![Histogram::new_with_bounds(1, E2E_MAX_US, 3)?; n];
        if n == 0 {
            return Ok(out);
        }
        let start_ms = self.started_wall.duration_since(UNIX_EPOCH)?.as_millis() as i64;
        let every_ms = (self.every.as_millis() as i64).max(1);
        for &(queued_ms, us) in queued {
            let i = ((queued_ms - start_ms).max(0) / every_ms).min(n as i64 - 1) as usize;
            out[i].saturating_record(us.max(1));
        }
        Ok(out)
    }

    fn csv(&self, e2e: &[Histogram<u64>]) -> String {
        let mut s = String::from(
            "t_s,interval_s,accepted,accepted_per_s,failed,submit_p50_ms,submit_p99_ms,\
             submit_max_ms,e2e_rows,e2e_p50_ms,e2e_p99_ms",
        );
        for name in &self.names {
            let _ = write!(s, ",{name}_rss_mib,{name}_cpu_pct");
        }
        s.push('\n');
        let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
        for (x, e) in self.samples.iter().zip(e2e) {
            let submit = x
                .submit_us
                .map_or_else(|| ",,".to_owned(), |v| v.map(ms).join(","));
            let e2e_cells = if e.is_empty() {
                ",".to_owned()
            } else {
                format!(
                    "{},{}",
                    ms(e.value_at_quantile(0.5)),
                    ms(e.value_at_quantile(0.99))
                )
            };
            let _ = write!(
                s,
                "{:.1},{:.2},{},{:.0},{},{submit},{},{e2e_cells}",
                x.end_s,
                x.length_s,
                x.accepted,
                x.accepted as f64 / x.length_s.max(1e-3),
                x.failed,
                e.len(),
            );
            for (rss_kib, cpu_pct) in &x.processes {
                let _ = write!(s, ",{:.1},{cpu_pct:.1}", *rss_kib as f64 / 1024.0);
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(samples: usize) -> Recorded {
        Recorded {
            samples: (1..=samples)
                .map(|k| Sample {
                    end_s: k as f64 * 10.0,
                    length_s: 10.0,
                    accepted: 20_000,
                    failed: 0,
                    submit_us: Some([1_500, 4_000, 9_000]),
                    processes: vec![(20 * 1024, 12.5)],
                })
                .collect(),
            path: PathBuf::new(),
            every: Duration::from_secs(10),
            started_wall: UNIX_EPOCH + Duration::from_secs(1_000),
            names: vec!["ingest".into()],
        }
    }

    #[test]
    fn rows_are_grouped_by_the_interval_their_message_was_queued_in() {
        let r = recorded(3);
        let queued = [
            (1_000_000 - 50, 7),    // a little before the start: the first interval
            (1_000_000 + 9_999, 8), // the end of the first
            (1_010_000, 9),         // the start of the second
            (1_095_000, 10),        // after the last: clamped into it
        ];
        let e2e = r.e2e_by_interval(&queued).expect("histograms");
        let counts: Vec<u64> = e2e.iter().map(Histogram::len).collect();
        assert_eq!(counts, [2, 1, 1]);
        assert_eq!(e2e[2].max(), 10);
    }

    #[test]
    fn csv_has_a_header_and_one_row_per_interval_with_blanks_for_no_data() {
        let mut r = recorded(2);
        r.samples[1].submit_us = None;
        let csv = r.csv(
            &r.e2e_by_interval(&[(1_000_500, 2_500)])
                .expect("histograms"),
        );
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "t_s,interval_s,accepted,accepted_per_s,failed,submit_p50_ms,submit_p99_ms,\
             submit_max_ms,e2e_rows,e2e_p50_ms,e2e_p99_ms,ingest_rss_mib,ingest_cpu_pct"
        );
        assert_eq!(
            lines[1],
            "10.0,10.00,20000,2000,0,1.50,4.00,9.00,1,2.50,2.50,20.0,12.5"
        );
        assert_eq!(lines[2], "20.0,10.00,20000,2000,0,,,,0,,,20.0,12.5");
        assert_eq!(lines.len(), 3);
    }
}
