//! The dashboard's panels, each rendered on the server from the same library calls the API
//! routes make. A panel that cannot be read shows why instead of failing the page.

use chrono::{DateTime, Utc};
use ferry_jobs::Kind;
use ferry_jobs::manage;
use ferry_queue::{JobFilter, JobState};
use ferry_record::DeadFilter;
use maud::{Markup, html};

use crate::{ApiError, AppState, import, jobs::stats_with_rates, runs, schedules, sync};

pub const NAMES: [&str; 7] = [
    "queues",
    "runs",
    "failed",
    "sync",
    "import",
    "backups",
    "schedules",
];

pub async fn render(state: &AppState, name: &str) -> Markup {
    let result = match name {
        "queues" => queues(state).await,
        "runs" => runs(state).await,
        "failed" => failed(state).await,
        "sync" => sync_panel(state).await,
        "import" => import_panel(state).await,
        "schedules" => schedules_panel(state).await,
        _ => backups(state).await,
    };
    result.unwrap_or_else(|e| {
        html! { h2 { (title(name)) } p.error { (e.message) } }
    })
}

fn title(name: &str) -> &'static str {
    match name {
        "queues" => "Queues",
        "runs" => "Runs",
        "failed" => "Failed jobs",
        "sync" => "Sync to MongoDB",
        "import" => "Import from MongoDB",
        "schedules" => "Schedules",
        _ => "Backups",
    }
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "never".into())
}

fn duration(secs: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

async fn queues(state: &AppState) -> Result<Markup, ApiError> {
    let s = stats_with_rates(state).await?;
    let states = [
        JobState::Queued,
        JobState::Scheduled,
        JobState::Running,
        JobState::Retrying,
        JobState::Succeeded,
        JobState::Dead,
    ];
    Ok(html! {
        h2 { "Queues" }
        table {
            thead { tr { th { "queue" } th { "waiting" } th { "running" } th { "delayed" } th { "oldest waiting" } th { "workers" } th { "state" } } }
            tbody {
                @for (name, q) in &s.stats.queues {
                    tr {
                        td { (name) } td { (q.ready) } td { (q.pending) } td { (q.delayed) }
                        td { (q.oldest_ready_age_ms.map(|ms| format!("{:.1} s", ms as f64 / 1000.0)).unwrap_or_else(|| "-".into())) }
                        td { (q.workers) }
                        td {
                            @if q.paused {
                                "paused " button type="button" data-resume=(name) { "Resume" }
                            } @else {
                                "running " button type="button" data-pause=(name) { "Pause" }
                            }
                        }
                    }
                }
            }
        }
        table #kinds {
            thead { tr { th { "kind" } @for st in states { th { (st.as_str()) } } th { "finished/s" } } }
            tbody {
                @for (kind, counts) in &s.stats.by_kind {
                    @if counts.values().any(|n| *n > 0) {
                        tr data-kind=(kind) {
                            td { (kind) }
                            @for st in states { td { (counts.get(st.as_str()).copied().unwrap_or(0)) } }
                            td { (format!("{:.1}", s.rates.get(kind).copied().unwrap_or(0.0))) }
                        }
                    }
                }
            }
        }
    })
}

async fn runs(state: &AppState) -> Result<Markup, ApiError> {
    // Chunks of a full sync or an import report into their parent's progress; listing them
    // would crowd it out.
    let chunks = [
        ferry_jobs::sync::Chunk::NAME,
        ferry_jobs::import::Chunk::NAME,
    ];
    let runs: Vec<_> = runs::recent(state, None, 100)
        .await?
        .into_iter()
        .filter(|r| !chunks.contains(&r.run.kind.as_str()))
        .take(10)
        .collect();
    Ok(html! {
        h2 { "Runs" }
        @if runs.is_empty() { p { "No long runs yet." } }
        table {
            tbody {
                @for r in &runs {
                    tr.run data-run=(r.run.id) data-kind=(r.run.kind) data-state=(r.run.state) {
                        td { code { (r.run.id) } }
                        td { (r.run.kind) }
                        td.state { (r.run.state) }
                        td {
                            @if let Some(p) = r.percent {
                                progress max="100" value=(format!("{p:.0}")) {}
                                " " span.percent { (format!("{p:.0}%")) }
                            }
                            " " (r.run.done) "/" (r.run.total.map(|t| t.to_string()).unwrap_or_else(|| "?".into()))
                        }
                        td { @if let Some(eta) = r.eta_seconds { "ETA " (duration(eta)) } }
                        td { @if let Some(e) = &r.run.error { span.error { (e) } } }
                    }
                }
            }
        }
    })
}

async fn failed(state: &AppState) -> Result<Markup, ApiError> {
    let filter = JobFilter {
        state: Some(JobState::Dead),
        limit: 50,
        ..JobFilter::default()
    };
    let dead = manage::list(state.queue(), state.record(), state.registry(), &filter).await?;
    let retrying = JobFilter {
        state: Some(JobState::Retrying),
        limit: 20,
        ..JobFilter::default()
    };
    let mut rows = manage::list(state.queue(), state.record(), state.registry(), &retrying).await?;
    rows.extend(dead);
    // Jobs re-queued from here, with the state they reached since.
    let retried = state
        .record()
        .dead_jobs(&DeadFilter {
            include_retried: true,
            limit: 30,
            ..DeadFilter::default()
        })
        .await?;
    let queues: Vec<String> = state.registry().queues().into_iter().collect();
    let mut recent = Vec::new();
    for d in retried.iter().filter(|d| d.retried_at.is_some()).take(10) {
        let now = state.queue().find(&queues, d.id).await?;
        let st = now
            .map(|j| j.state.to_string())
            .unwrap_or_else(|| "gone from Redis".into());
        recent.push((d, st));
    }
    Ok(html! {
        h2 { "Failed jobs" }
        form #retry-filter onsubmit="return false" {
            input #filter-kind name="kind" placeholder="kind";
            input #filter-error name="error" placeholder="error contains";
            button #retry-filtered type="button" { "Retry matching dead jobs" }
        }
        @if rows.is_empty() { p { "No failed jobs." } }
        table {
            tbody {
                @for j in &rows {
                    tr.failed data-job=(j.id) data-state=(j.state.as_str()) {
                        td { code { (j.id) } }
                        td { (j.kind) }
                        td.state { (j.state.as_str()) }
                        td { (j.attempts) "/" (j.max_attempts) }
                        td.error { (j.last_error.as_deref().unwrap_or("")) }
                        td { @if j.state == JobState::Dead { button.retry type="button" data-retry=(j.id) { "Retry" } } }
                    }
                }
            }
        }
        @if !recent.is_empty() {
            h3 { "Re-queued" }
            table {
                tbody {
                    @for (d, st) in &recent {
                        tr.retried data-job=(d.id) data-state=(st) {
                            td { code { (d.id) } } td { (d.kind) } td.state { (st) }
                            td { "re-queued " (when(d.retried_at)) }
                        }
                    }
                }
            }
        }
    })
}

async fn sync_panel(state: &AppState) -> Result<Markup, ApiError> {
    let tables = sync::table_status(state).await?;
    let last = tables.iter().filter_map(|t| t.last_sync_at).max();
    Ok(html! {
        h2 { "Sync to MongoDB" }
        p {
            button #sync-full type="button" { "Run full sync" }
            " Last sync: " span #last-sync { (when(last)) }
        }
        table {
            thead { tr { th { "table" } th { "collection" } th { "source rows" } th { "mirror documents" } th { "last sync" } } }
            tbody {
                @for t in &tables {
                    tr data-table=(t.table) class=(if t.source_rows as u64 == t.mirror_documents { "same" } else { "differs" }) {
                        td { (t.table) } td { (t.collection) } td { (t.source_rows) } td { (t.mirror_documents) }
                        td { (when(t.last_sync_at)) }
                    }
                }
            }
        }
    })
}

async fn import_panel(state: &AppState) -> Result<Markup, ApiError> {
    // Without `[import]` there is nothing to count, and MongoDB may not even be configured.
    if state.config().import.collections.is_empty() {
        return Ok(html! {
            h2 { "Import from MongoDB" }
            p { "No collections configured ([[import.collection]] in ferry.toml)." }
        });
    }
    let all = import::collection_status(state).await?;
    Ok(html! {
        h2 { "Import from MongoDB" }
        p { button #import-run type="button" { "Run import" } }
        table {
            thead { tr { th { "collection" } th { "table" } th { "source documents" } th { "imported rows" } th { "rejected" } } }
            tbody {
                @for c in &all {
                    // Balanced: every document is a row or a reject (`ferry import verify`).
                    tr data-collection=(c.collection) class=(if c.balanced() { "balanced" } else { "unbalanced" }) {
                        td { (c.collection) } td { (c.table) }
                        td.source { (c.source) } td.imported { (c.imported) } td.rejected { (c.rejected) }
                    }
                }
            }
        }
        @if all.iter().any(|c| c.rejected > 0) {
            p { "Rejected documents and why: " code { "ferry import rejects" } "." }
        }
    })
}

async fn backups(state: &AppState) -> Result<Markup, ApiError> {
    let all = sync::list_backups(state).await?;
    Ok(html! {
        h2 { "Backups" }
        @if all.is_empty() { p { "No backups yet." } }
        table {
            tbody {
                @for b in all.iter().take(20) {
                    tr {
                        td { code { (b.id) } } td { (b.database) }
                        td { (format!("{:.1} MB", b.bytes as f64 / 1e6)) }
                        td { (when(Some(b.created_at))) }
                        td {
                            @if b.verified() { span.ok { "verified " (when(b.verified_at)) } }
                            @else if let Some(e) = &b.verify_error { span.error { "verify failed: " (e) } }
                            @else { "not verified" }
                        }
                    }
                }
            }
        }
    })
}

async fn schedules_panel(state: &AppState) -> Result<Markup, ApiError> {
    let all = schedules::statuses(state).await?;
    Ok(html! {
        h2 { "Schedules" }
        @if all.is_empty() { p { "No schedules configured ([[schedule]] in ferry.toml)." } }
        table {
            thead { tr { th { "name" } th { "cron" } th { "kind" } th { "state" } th { "next fire" } th { "last fire" } th { "outcome" } th { "missed" } } }
            tbody {
                @for s in &all {
                    tr data-schedule=(s.name) {
                        td { (s.name) } td { code { (s.cron) } " " (s.timezone) } td { (s.kind) }
                        td { @if !s.enabled { "disabled" } @else if s.paused { "paused" } @else { "active" } }
                        td { (when(s.next_fire)) } td { (when(s.last_fire)) }
                        td { (s.last_outcome.as_deref().unwrap_or("-")) } td { (s.missed) }
                    }
                }
            }
        }
    })
}
