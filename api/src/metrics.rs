//! `GET /metrics`: Prometheus text format. Figures are read from Redis and Postgres on each
//! scrape, because workers are other processes: they leave counters and histogram buckets
//! in Redis (`queue/lua/prelude.lua`), in the scripts that change a job's state.

use std::collections::BTreeMap;

use axum::{
    extract::State,
    http::{StatusCode, header::CONTENT_TYPE},
    response::IntoResponse,
};
use ferry_queue::{BUCKETS_MS, Histogram, KindMetrics, QueueStats};
use ferry_record::RunRow;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{ApiError, AppState};

/// Waiting entries looked at per queue to find each kind's oldest waiting job.
const OLDEST_SCAN: usize = 1000;

/// One scrape's figures.
#[derive(Debug)]
struct Snapshot {
    queues: Vec<QueueFigures>,
    running: Vec<RunRow>,
    /// In-app rows whose realtime publish was missed.
    realtime_missed: i64,
}

#[derive(Debug)]
struct QueueFigures {
    name: String,
    stats: QueueStats,
    kinds: BTreeMap<String, KindMetrics>,
    oldest_ms: BTreeMap<String, i64>,
}

type Labels = Vec<(&'static str, String)>;

fn labels(queue: &str, kind: &str) -> Labels {
    vec![("queue", queue.to_owned()), ("kind", kind.to_owned())]
}

/// Counters: (metric name without `_total`, help, field the Lua scripts count).
const COUNTERS: [(&str, &str, &str); 4] = [
    (
        "ferry_jobs_failed",
        "Attempts that failed (retried or dead).",
        "failed",
    ),
    ("ferry_jobs_dead", "Jobs that failed for good.", "dead"),
    (
        "ferry_job_retries",
        "Retries scheduled after a failed attempt.",
        "retrying",
    ),
    (
        "ferry_jobs_rate_delayed",
        "Jobs held back by a rate limit ([kinds.NAME] rate or [limits]) before starting.",
        "rate_delayed",
    ),
];

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut gauge = |name: &str, help: &str, rows: Vec<(Labels, f64)>| {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, value) in rows {
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
            Ok::<(), std::fmt::Error>(())
        };
        let state_count = |q: &QueueFigures, kind: &str, state: &str| {
            q.stats
                .by_kind
                .get(kind)
                .and_then(|s| s.get(state))
                .copied()
                .unwrap_or(0) as f64
        };
        gauge(
            "ferry_queue_depth",
            "Jobs due and waiting for a worker.",
            self.each_kind(|q, kind| state_count(q, kind, "queued")),
        )?;
        let mut by_state = Vec::new();
        for q in &self.queues {
            for kind in q.stats.by_kind.keys() {
                for state in ["queued", "scheduled", "running", "retrying"] {
                    let mut l = labels(&q.name, kind);
                    l.push(("state", state.to_owned()));
                    by_state.push((l, state_count(q, kind, state)));
                }
            }
        }
        gauge("ferry_jobs", "Jobs not yet finished, by state.", by_state)?;
        let mut oldest = Vec::new();
        for q in &self.queues {
            for (kind, ms) in &q.oldest_ms {
                oldest.push((labels(&q.name, kind), *ms as f64 / 1000.0));
            }
        }
        gauge(
            "ferry_queue_oldest_job_age_seconds",
            "Age of the oldest job waiting for a worker (among the first 1000 waiting).",
            oldest,
        )?;
        let mut tenants = (Vec::new(), Vec::new());
        for q in &self.queues {
            for t in &q.stats.tenants {
                let l: Labels = vec![("queue", q.name.clone()), ("tenant", t.tenant.clone())];
                tenants.0.push((l.clone(), t.waiting as f64));
                tenants.1.push((l, t.running as f64));
            }
        }
        gauge(
            "ferry_tenant_waiting_jobs",
            "Jobs of a tenant not yet started: the busiest [tenants] top by name, the rest as \"other\".",
            tenants.0,
        )?;
        gauge(
            "ferry_tenant_running_jobs",
            "Jobs of a tenant running: the busiest [tenants] top by name, the rest as \"other\".",
            tenants.1,
        )?;
        gauge(
            "ferry_queue_paused",
            "1 while the queue is paused (no worker starts its jobs).",
            self.queues
                .iter()
                .map(|q| {
                    (
                        vec![("queue", q.name.clone())],
                        f64::from(u8::from(q.stats.paused)),
                    )
                })
                .collect(),
        )?;
        gauge(
            "ferry_workers",
            "Worker processes heartbeating on the queue.",
            self.queues
                .iter()
                .map(|q| (vec![("queue", q.name.clone())], q.stats.workers as f64))
                .collect(),
        )?;
        let mut runs = (Vec::new(), Vec::new(), Vec::new());
        for r in &self.running {
            let l: Labels = vec![("run", r.id.to_string()), ("kind", r.kind.clone())];
            runs.0.push((l.clone(), r.done as f64));
            if let Some(total) = r.total {
                runs.1.push((l.clone(), total as f64));
                if total > 0 {
                    runs.2.push((l, (r.done as f64 / total as f64).min(1.0)));
                }
            }
        }
        gauge(
            "ferry_run_done_units",
            "Units done by a running long job.",
            runs.0,
        )?;
        gauge(
            "ferry_run_total_units",
            "Units a running long job has in all.",
            runs.1,
        )?;
        gauge(
            "ferry_run_progress_ratio",
            "Share of a running long job done (0 to 1).",
            runs.2,
        )?;

        counter(
            &mut encoder,
            "ferry_notify_realtime_missed",
            "In-app notifications written whose realtime publish (Redis or pg_notify) failed.",
            vec![(Labels::new(), self.realtime_missed)],
        )?;
        let started = self.each_kind_metrics(|m| m.wait.count() as i64);
        counter(
            &mut encoder,
            "ferry_jobs_started",
            "Attempts started.",
            started,
        )?;
        let succeeded = self.each_kind(|q, kind| state_count(q, kind, "succeeded"));
        counter(
            &mut encoder,
            "ferry_jobs_succeeded",
            "Jobs that succeeded.",
            succeeded.into_iter().map(|(l, v)| (l, v as i64)).collect(),
        )?;
        for (name, help, field) in COUNTERS {
            let rows = self.each_kind_metrics(|m| m.counters.get(field).copied().unwrap_or(0));
            counter(&mut encoder, name, help, rows)?;
        }
        let recovered = self.each_kind(|q, kind| state_count(q, kind, "recovered"));
        counter(
            &mut encoder,
            "ferry_jobs_recovered",
            "Jobs re-queued after their worker stopped heartbeating.",
            recovered.into_iter().map(|(l, v)| (l, v as i64)).collect(),
        )?;
        for (name, help, pick) in [
            (
                "ferry_job_duration_seconds",
                "Run time of attempts.",
                (|m: &KindMetrics| &m.duration) as fn(&KindMetrics) -> &Histogram,
            ),
            (
                "ferry_job_enqueue_to_start_seconds",
                "From a job being due (enqueued, or its scheduled or retry time) to its start.",
                |m: &KindMetrics| &m.wait,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for q in &self.queues {
                for (kind, m) in &q.kinds {
                    let h = pick(m);
                    if h.buckets.is_empty() {
                        continue;
                    }
                    let buckets: Vec<(f64, u64)> = BUCKETS_MS
                        .iter()
                        .map(|ms| *ms as f64 / 1000.0)
                        .chain([f64::INFINITY])
                        .zip(h.buckets.iter().copied())
                        .collect();
                    let l = labels(&q.name, kind);
                    family.encode_family(&l)?.encode_histogram::<NoLabelSet>(
                        h.sum_us as f64 / 1e6,
                        h.count(),
                        &buckets,
                        None,
                    )?;
                }
            }
        }
        Ok(())
    }
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: Vec<(Labels, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        ConstCounter::new(value.max(0) as u64).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Snapshot {
    /// One row per (queue, kind) the queue's state counts know.
    fn each_kind(&self, value: impl Fn(&QueueFigures, &str) -> f64) -> Vec<(Labels, f64)> {
        self.queues
            .iter()
            .flat_map(|q| {
                q.stats
                    .by_kind
                    .keys()
                    .map(|kind| (labels(&q.name, kind), value(q, kind)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn each_kind_metrics(&self, value: impl Fn(&KindMetrics) -> i64) -> Vec<(Labels, i64)> {
        self.queues
            .iter()
            .flat_map(|q| {
                q.kinds
                    .iter()
                    .map(|(kind, m)| (labels(&q.name, kind), value(m)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

async fn snapshot(state: &AppState) -> Result<Snapshot, ApiError> {
    let mut queues = Vec::new();
    for name in state.registry().queues() {
        let queue = state.queue();
        queues.push(QueueFigures {
            stats: queue.stats(&name).await?,
            kinds: queue.metrics(&name).await?,
            oldest_ms: queue.oldest_waiting(&name, OLDEST_SCAN).await?,
            name,
        });
    }
    let running = state.record().runs(Some("running"), 200).await?;
    let realtime_missed = state.record().realtime_missed().await?;
    Ok(Snapshot {
        queues,
        running,
        realtime_missed,
    })
}

pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot(&state).await?));
    registry.register_collector(Box::new(crate::metrics_unattended::snapshot(&state).await?));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        )
    })?;
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    ))
}
