use tokio_util::sync::CancellationToken;

use crate::{
    app::Ctx,
    exit::{Code, Result},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Queues to consume (comma-separated); default: every queue.
    #[arg(long, value_delimiter = ',')]
    queues: Vec<String>,
    /// Jobs run at once on every queue (default: `[queues.NAME] concurrency`, else
    /// worker.concurrency, else 512 on the default queue and 64 on the others).
    #[arg(long)]
    concurrency: Option<usize>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stop requested: no new jobs; running jobs finish or checkpoint");
        signal.cancel();
    });
    let options = ferry_worker::Options {
        queues: args.queues,
        concurrency: args.concurrency,
    };
    ferry_worker::run(ctx.config.clone(), options, shutdown).await?;
    Ok(Code::Ok)
}

/// SIGTERM or Ctrl-C.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
