use tokio_util::sync::CancellationToken;

use crate::{
    app::Ctx,
    exit::{Code, Result},
};

pub async fn run(ctx: &Ctx) -> Result<Code> {
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        super::worker::wait_for_signal().await;
        tracing::info!("stop requested: the scheduler stops after the fires in hand");
        signal.cancel();
    });
    ferry_scheduler::run(ctx.config.clone(), shutdown).await?;
    Ok(Code::Ok)
}
