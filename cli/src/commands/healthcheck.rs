//! `ferry healthcheck api|worker|scheduler`: is this container's ferry healthy, as the rest
//! of ferry sees it? For Docker's HEALTHCHECK and Kubernetes exec probes, so the image needs
//! no shell tools. Exit 0 healthy, 1 unhealthy, 2 misused.
//!
//! - api: `GET /healthz` on this host's `api.listen` port answers 200.
//! - worker: a worker of this host heartbeated into a queue's `workers` set within
//!   `worker.reclaim_after` — the signal other workers use to decide it is dead.
//! - scheduler: the configuration loads, Postgres (schema `ferry` migrated) and Redis answer.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    app::Ctx,
    exit::{Code, Exit, Result},
};

/// Each check answers within this, below the probes' own 10 s timeouts.
const LIMIT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The role to check; default FERRY_ROLE (as the image's HEALTHCHECK runs it).
    #[arg(env = "FERRY_ROLE", value_parser = ["api", "worker", "scheduler"])]
    role: String,
    /// api: the port `ferry serve` listens on; default the port of api.listen.
    #[arg(long, env = "FERRY_HEALTH_PORT")]
    port: Option<u16>,
    /// worker: the queue to look in; default every queue the worker consumes.
    #[arg(long, env = "FERRY_HEALTH_QUEUE")]
    queue: Option<String>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let check = async {
        match args.role.as_str() {
            "api" => api(ctx, args.port).await,
            "worker" => worker(ctx, args.queue).await,
            _ => scheduler(ctx).await,
        }
    };
    let verdict = tokio::time::timeout(LIMIT, check)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer within {}",
                humantime::format_duration(LIMIT)
            ))
        });
    match verdict {
        Ok(()) => Ok(Code::Ok),
        Err(why) => Err(Exit::failed(format!("healthcheck {}: {why}", args.role))),
    }
}

async fn api(ctx: &Ctx, port: Option<u16>) -> std::result::Result<(), String> {
    let port = match port {
        Some(port) => port,
        None => ctx
            .config
            .api
            .listen
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .ok_or("api.listen has no port; pass --port")?,
    };
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("nothing answers on port {port} ({e})"))?;
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|e| format!("no HTTP answer on port {port} ({e})"))?;
    let status = String::from_utf8_lossy(&head[9..12]).into_owned();
    if status == "200" {
        Ok(())
    } else {
        Err(format!("GET /healthz answered {status} (want 200)"))
    }
}

async fn worker(ctx: &Ctx, queue: Option<String>) -> std::result::Result<(), String> {
    let q = ctx.queue().await.map_err(|e| e.message)?;
    let queues: Vec<String> = match queue {
        Some(queue) => vec![queue],
        None if !ctx.config.worker.queues.is_empty() => ctx.config.worker.queues.clone(),
        None => ctx.registry.queues().into_iter().collect(),
    };
    let host = format!("{}-", ferry_worker::host());
    let within = ctx.config.worker.reclaim_after;
    for queue in &queues {
        let live = q
            .live_workers(queue, within)
            .await
            .map_err(|e| e.to_string())?;
        if live.iter().any(|id| id.starts_with(&host)) {
            return Ok(());
        }
    }
    Err(format!(
        "no heartbeat from a worker on {} within {} in queues {}",
        host.trim_end_matches('-'),
        humantime::format_duration(within),
        queues.join(", ")
    ))
}

async fn scheduler(ctx: &Ctx) -> std::result::Result<(), String> {
    ctx.record().await.map_err(|e| e.message)?;
    ctx.queue().await.map_err(|e| e.message)?;
    Ok(())
}
