//! The services a benchmark talks to, as command-line arguments shared by every module that
//! runs ferry workers (flattened into each module's own arguments).

#[derive(Debug, Clone, clap::Args)]
pub struct Services {
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/ferry"
    )]
    pub database_url: String,
}
