use ferry_queue::JobState;

use crate::{
    app::Ctx,
    exit::{Code, Result},
    output,
};

pub async fn run(ctx: &Ctx) -> Result<Code> {
    let queue = ctx.queue().await?;
    let mut stats = ferry_jobs::manage::stats(&queue, &ctx.registry).await?;
    for (name, q) in stats.queues.iter_mut() {
        q.memory = Some(queue.memory(name).await?);
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
        "state",
        "jobs in Redis",
        "memory",
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
            if q.paused { "paused" } else { "running" }.into(),
            q.memory.map(|m| m.jobs.to_string()).unwrap_or_default(),
            q.memory
                .map(|m| format!("{:.1} MiB", m.bytes as f64 / (1024.0 * 1024.0)))
                .unwrap_or_default(),
        ]);
    }
    println!("{t}");
    if stats.queues.values().any(|q| !q.tenants.is_empty()) {
        let mut t = output::table(&["queue", "tenant", "waiting", "running"]);
        for (name, q) in &stats.queues {
            for l in &q.tenants {
                t.add_row(vec![
                    name.clone(),
                    l.tenant.clone(),
                    l.waiting.to_string(),
                    l.running.to_string(),
                ]);
            }
        }
        println!("{t}");
    }
    Ok(Code::Ok)
}
