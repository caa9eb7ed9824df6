use std::collections::BTreeMap;

use ferry_queue::{JobState, QueueStats};
use serde::Serialize;

use crate::{
    app::Ctx,
    exit::{Code, Result},
    output,
};

#[derive(Debug, Serialize)]
struct Stats {
    /// kind → state → count, every state present.
    by_kind: BTreeMap<String, BTreeMap<String, i64>>,
    /// Jobs re-queued after their worker died, by kind.
    recovered: BTreeMap<String, i64>,
    queues: BTreeMap<String, QueueStats>,
}

pub async fn run(ctx: &Ctx) -> Result<Code> {
    let queue = ctx.queue().await?;
    let mut stats = Stats {
        by_kind: BTreeMap::new(),
        recovered: BTreeMap::new(),
        queues: BTreeMap::new(),
    };
    for kind in ctx.registry.names() {
        let states = JobState::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), 0))
            .collect();
        stats.by_kind.insert(kind.to_owned(), states);
    }
    for name in ctx.queues() {
        let mut q = queue.stats(&name).await?;
        for (kind, states) in std::mem::take(&mut q.by_kind) {
            let row = stats.by_kind.entry(kind.clone()).or_default();
            for (state, count) in states {
                if state == "recovered" {
                    *stats.recovered.entry(kind.clone()).or_default() += count;
                } else {
                    *row.entry(state).or_default() += count;
                }
            }
        }
        stats.queues.insert(name, q);
    }
    if ctx.json {
        output::json(&stats);
        return Ok(Code::Ok);
    }
    let mut header = vec!["kind"];
    header.extend(JobState::ALL.iter().map(|s| s.as_str()));
    let mut t = output::table(&header);
    for (kind, states) in &stats.by_kind {
        let mut row = vec![kind.clone()];
        row.extend(
            JobState::ALL
                .iter()
                .map(|s| states.get(s.as_str()).copied().unwrap_or(0).to_string()),
        );
        t.add_row(row);
    }
    println!("{t}");
    let mut t = output::table(&[
        "queue",
        "ready",
        "running",
        "delayed",
        "oldest ready",
        "workers",
    ]);
    for (name, q) in &stats.queues {
        t.add_row(vec![
            name.clone(),
            q.ready.to_string(),
            q.pending.to_string(),
            q.delayed.to_string(),
            q.oldest_ready_age_ms
                .map(|ms| format!("{:.1}s", ms as f64 / 1000.0))
                .unwrap_or_else(|| "-".into()),
            q.workers.to_string(),
        ]);
    }
    println!("{t}");
    Ok(Code::Ok)
}
