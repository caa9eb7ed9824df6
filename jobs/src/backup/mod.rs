//! Backups: `pg_dump` streamed through zstd (and age) into an object store, with a manifest
//! of row counts taken in the dump's own snapshot, test restores, and generational retention.

mod dump;
pub mod manifest;
mod postgres;
pub mod restore;
pub mod retention;

use std::{
    collections::{BTreeMap, BTreeSet, btree_map::Entry},
    time::Duration,
};

use chrono::Utc;
use ferry_config::Config;
use ferry_record::{Progress, RunState};
use serde::{Deserialize, Serialize};
use sqlx::Executor;
use uuid::Uuid;

pub use manifest::Manifest;
pub use postgres::{Database, Tools};
pub use restore::VerifyReport;

use crate::{JobContext, JobError, Kind, ResultExt, Settings, store::Store};

pub const QUEUE: &str = "backup";

/// The store a backup lives in: the one it was written to, as configured then.
pub fn store_of(config: &Config, m: &Manifest) -> Result<Store, JobError> {
    let store = config.store("backup store", &m.store).permanent()?;
    Ok(Store::open(&store)?)
}

/// Dumps and test restores of large databases take hours, and one at a time per worker is
/// what the database server and the disk can bear.
fn long_job() -> Settings {
    Settings {
        queue: QUEUE.into(),
        max_attempts: 3,
        timeout: Duration::from_secs(6 * 3600),
        concurrency: Some(1),
        ..Settings::default()
    }
}

/// `backup.run`: every configured database (or those named), each its own checkpointed step.
pub struct Run;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunArgs {
    /// A subset of the configured databases; empty means all.
    #[serde(default)]
    pub databases: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RunCheckpoint {
    /// Databases whose backup is in the manifest.
    done: Vec<String>,
    /// An object being written and not yet in the manifest: a retry removes what is left of
    /// it, so the store holds no backup the manifest does not know.
    open_upload: Option<OpenUpload>,
    bytes: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct OpenUpload {
    key: String,
    /// The S3 multipart upload, once started.
    #[serde(default)]
    id: Option<String>,
}

impl Kind for Run {
    const NAME: &'static str = "backup.run";
    type Args = RunArgs;

    fn defaults() -> Settings {
        long_job()
    }

    async fn run(&self, args: RunArgs, ctx: JobContext) -> Result<(), JobError> {
        let config = ctx.deps.config.clone();
        let databases = selected(&config, &args.databases)?;
        let store = Store::open(
            &config
                .store("backup.target", &config.backup.target)
                .permanent()?,
        )?;
        let recipient = match &config.backup.encrypt_to {
            Some(key) => Some(key.parse::<age::x25519::Recipient>().map_err(|e| {
                JobError::permanent(format!("backup.encrypt_to is not an age public key: {e}"))
            })?),
            None => None,
        };
        let lease = ctx.open_run().await?;
        let mut cp: RunCheckpoint = lease.checkpoint()?.unwrap_or_default();
        let progress = |cp: &RunCheckpoint, current: i64| Progress {
            done: cp.done.len() as i64,
            total: Some(databases.len() as i64),
            bytes_done: cp.bytes + current,
            bytes_total: None,
        };
        let pool = ctx.deps.record.pool();
        if let Some(open) = cp.open_upload.take() {
            if !manifest::records(pool, ctx.id, &open.key).await? {
                store.discard(&open.key, open.id.as_deref()).await?;
                tracing::info!(key = %open.key, "removed what an earlier attempt left unrecorded");
            }
            lease.save(&cp, progress(&cp, 0)).await?;
        }
        for db in &databases {
            if cp.done.contains(&db.name) {
                continue;
            }
            // An earlier attempt recorded it, then died before its checkpoint said so.
            if let Some(m) = manifest::of_job(pool, ctx.id, &db.name).await? {
                cp.bytes += m.bytes;
                cp.done.push(db.name.clone());
                lease.save(&cp, progress(&cp, 0)).await?;
                continue;
            }
            if let Some(stop) = ctx.should_stop() {
                return Err(stop);
            }
            let started = Utc::now();
            let clock = std::time::Instant::now();
            let key = object_key(&db.name, started, recipient.is_some());
            cp.open_upload = Some(OpenUpload {
                key: key.clone(),
                id: None,
            });
            lease.save(&cp, progress(&cp, 0)).await?;
            let mut upload = store.begin_upload(&key).await?;
            if let Some(id) = upload.id() {
                cp.open_upload = Some(OpenUpload {
                    key: key.clone(),
                    id: Some(id.to_owned()),
                });
                lease.save(&cp, progress(&cp, 0)).await?;
            }
            let compression = dump::Compression {
                level: config.backup.level,
                threads: config.backup.threads,
                recipient: recipient.clone(),
            };
            let report = dump::Report {
                lease: &lease,
                checkpoint: &cp,
                progress: |bytes| progress(&cp, bytes as i64),
            };
            let result = snapshot_dump(&config, db, compression, &mut upload, report).await;
            let (written, counts, server_version, pg_dump_version) = match result {
                Ok(done) => done,
                Err(e) => {
                    if upload.abort().await {
                        cp.open_upload = None;
                        lease.save(&cp, progress(&cp, 0)).await?;
                    }
                    if matches!(e, JobError::Permanent(_)) {
                        lease.finish(RunState::Failed, Some(&e.to_string())).await?;
                    }
                    return Err(e);
                }
            };
            upload.complete().await?;
            let elapsed = clock.elapsed();
            let recorded = manifest::insert(
                pool,
                &Manifest {
                    id: Uuid::now_v7(),
                    job_id: ctx.id,
                    database: db.name.clone(),
                    store: config.backup.target.clone(),
                    object_key: key.clone(),
                    bytes: written.bytes as i64,
                    sha256: written.sha256,
                    compression: format!("zstd-{}", config.backup.level),
                    encrypted_to: config.backup.encrypt_to.clone(),
                    server_version,
                    pg_dump_version,
                    started_at: started,
                    created_at: Utc::now(),
                    duration_ms: elapsed.as_millis() as i64,
                    row_counts: sqlx::types::Json(counts),
                    verified_at: None,
                    verify_error: None,
                    deleted_at: None,
                },
            )
            .await?;
            if !recorded {
                // An attempt running beside this one recorded its own object first.
                store.discard(&key, None).await?;
            }
            tracing::info!(
                database = %db.name,
                bytes = written.bytes,
                seconds = elapsed.as_secs_f64(),
                mib_per_s = written.bytes as f64 / (1 << 20) as f64 / elapsed.as_secs_f64().max(1e-3),
                "backup written"
            );
            cp.open_upload = None;
            cp.bytes += written.bytes as i64;
            cp.done.push(db.name.clone());
            lease.save(&cp, progress(&cp, 0)).await?;
        }
        lease.finish(RunState::Succeeded, None).await?;
        Ok(())
    }
}

pub fn selected(config: &Config, names: &[String]) -> Result<Vec<Database>, JobError> {
    let all = Database::configured(config)?;
    if names.is_empty() {
        return Ok(all);
    }
    names
        .iter()
        .map(|n| {
            all.iter().find(|d| &d.name == n).cloned().ok_or_else(|| {
                JobError::permanent(format!(
                    "database {n:?} is not configured for backups; configured: {} \
                     (backup.databases)",
                    all.iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        })
        .collect()
}

fn object_key(database: &str, at: chrono::DateTime<Utc>, encrypted: bool) -> String {
    format!(
        "{database}/{}/{database}-{}.dump.zst{}",
        at.format("%Y/%m/%d"),
        at.format("%Y%m%dT%H%M%S%.3fZ"),
        if encrypted { ".age" } else { "" }
    )
}

/// Exports a snapshot, dumps at it and counts rows in it, so the manifest's counts describe
/// exactly the dumped data.
async fn snapshot_dump(
    config: &Config,
    db: &Database,
    compression: dump::Compression,
    upload: &mut crate::store::Upload,
    report: dump::Report<'_, impl Serialize + Sync, impl Fn(u64) -> Progress + Sync>,
) -> Result<
    (
        dump::Written,
        std::collections::BTreeMap<String, i64>,
        String,
        String,
    ),
    JobError,
> {
    let tools = Tools::new(config);
    let mut conn = db
        .connect()
        .await
        .map_err(|e| postgres::connect_error(db, e))?;
    // pg_dump would stop at the first such table, and the manifest's counts would cover only
    // the rows the policies show: refuse before dumping, naming them all.
    let tables: Vec<String> = postgres::tables(&mut conn)
        .await
        .retryable()?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    if let Some(hidden) = crate::row_security::hidden(&mut conn, &tables)
        .await
        .retryable()?
    {
        tracing::error!(database = %db.name, "{hidden}");
        return Err(JobError::permanent(format!(
            "cannot back up {:?}: {hidden}",
            db.name
        )));
    }
    let (server_version, major) = postgres::server_version(&mut conn).await.retryable()?;
    let pg_dump_version = Tools::check(&tools.pg_dump, major).await?;
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .retryable()?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut conn)
        .await
        .retryable()?;
    // The dump imports the snapshot as it starts; counting runs beside it in the same one.
    let (written, counts) = tokio::join!(
        dump::dump(&tools.pg_dump, db, &snapshot, compression, upload, report),
        postgres::row_counts(&mut conn)
    );
    let counts = counts
        .map_err(|e| JobError::retryable_from(format!("counting rows of {:?}", db.name), e))?;
    let written = written?;
    let _ = conn.execute("COMMIT").await;
    Ok((written, counts, server_version, pg_dump_version))
}

/// `backup.verify`: test-restores a backup (by id, or the newest of each database).
pub struct Verify;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyArgs {
    #[serde(default)]
    pub id: Option<Uuid>,
}

impl Kind for Verify {
    const NAME: &'static str = "backup.verify";
    type Args = VerifyArgs;

    fn defaults() -> Settings {
        long_job()
    }

    async fn run(&self, args: VerifyArgs, ctx: JobContext) -> Result<(), JobError> {
        let pool = ctx.deps.record.pool();
        let targets = match args.id {
            Some(id) => vec![manifest::get(pool, id).await?],
            None => {
                let mut seen = BTreeSet::new();
                manifest::list(pool, None)
                    .await?
                    .into_iter()
                    .filter(|m| seen.insert(m.database.clone()))
                    .collect()
            }
        };
        let mut failures = Vec::new();
        for m in &targets {
            let report = verify(&ctx.deps.config, pool, m).await?;
            if let Some(e) = report.error {
                failures.push(format!("{} ({}): {e}", m.id, m.database));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(JobError::permanent(format!(
                "backup verify failed: {}",
                failures.join("; ")
            )))
        }
    }
}

/// Verifies one backup and records the outcome in the manifest.
pub async fn verify(
    config: &Config,
    pool: &sqlx::PgPool,
    m: &Manifest,
) -> Result<VerifyReport, JobError> {
    let store = store_of(config, m)?;
    let report = restore::verify(config, &store, m).await?;
    manifest::record_verify(pool, m.id, report.error.as_deref()).await?;
    tracing::info!(backup = %m.id, ok = report.ok, "backup verified");
    Ok(report)
}

/// `backup.prune`: deletes backups outside the retention generations.
pub struct Prune;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneArgs {
    #[serde(default)]
    pub dry_run: bool,
}

impl Kind for Prune {
    const NAME: &'static str = "backup.prune";
    type Args = PruneArgs;

    fn defaults() -> Settings {
        Settings {
            queue: QUEUE.into(),
            max_attempts: 3,
            concurrency: Some(1),
            ..Settings::default()
        }
    }

    async fn run(&self, args: PruneArgs, ctx: JobContext) -> Result<(), JobError> {
        prune(&ctx.deps.config, ctx.deps.record.pool(), args.dry_run).await?;
        Ok(())
    }
}

/// What a prune kept and deleted (or would delete, on a dry run).
#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub kept: Vec<Uuid>,
    pub deleted: Vec<Manifest>,
}

pub async fn prune(
    config: &Config,
    pool: &sqlx::PgPool,
    dry_run: bool,
) -> Result<PruneReport, JobError> {
    let all = manifest::list(pool, None).await?;
    let databases: BTreeSet<&str> = all.iter().map(|m| m.database.as_str()).collect();
    let mut report = PruneReport::default();
    // One client per store, not per deleted object.
    let mut stores: BTreeMap<&str, Store> = BTreeMap::new();
    for database in databases {
        let mine: Vec<&Manifest> = all.iter().filter(|m| m.database == database).collect();
        let candidates: Vec<retention::Candidate> = mine
            .iter()
            .map(|m| retention::Candidate {
                id: m.id,
                created_at: m.created_at,
                verified: m.verified(),
            })
            .collect();
        let keep = retention::keep(&candidates, config.backup.retention);
        for m in mine {
            if keep.contains(&m.id) {
                report.kept.push(m.id);
                continue;
            }
            if !dry_run {
                let store = match stores.entry(m.store.as_str()) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => e.insert(store_of(config, m)?),
                };
                store.delete(&m.object_key).await?;
                manifest::mark_deleted(pool, m.id).await?;
                tracing::info!(backup = %m.id, key = %m.object_key, "backup pruned");
            }
            report.deleted.push(m.clone());
        }
    }
    Ok(report)
}
