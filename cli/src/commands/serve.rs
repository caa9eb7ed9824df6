use tokio::net::TcpListener;

use crate::{
    app::Ctx,
    commands::worker::wait_for_signal,
    exit::{Code, Exit, Result},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (default: api.listen, 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<String>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let addr = args.listen.unwrap_or_else(|| ctx.config.api.listen.clone());
    let listener = TcpListener::bind(&addr).await.map_err(|e| {
        Exit::usage(format!(
            "cannot listen on {addr}: {e}; choose another --listen address"
        ))
    })?;
    ferry_api::serve(ctx.config.clone(), listener, wait_for_signal()).await?;
    Ok(Code::Ok)
}
