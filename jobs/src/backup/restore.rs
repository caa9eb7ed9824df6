//! The way back: download → check sha256 → decrypt → decompress → `pg_restore`, in one
//! stream. `verify` restores into a scratch database and compares row counts with the
//! manifest; `restore` does the same into a database the operator names.

use std::{
    collections::BTreeMap,
    io::{self, Read},
    os::fd::OwnedFd,
};

use bytes::Bytes;
use ferry_config::Config;
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Executor;
use tokio::{io::AsyncReadExt, sync::mpsc};

use super::{
    manifest::Manifest,
    postgres::{self, Database, Tools},
};
use crate::{JobError, chain, store::Store};

/// The age identities that decrypt backups, from `FERRY_AGE_IDENTITY` or
/// `backup.identity_file`.
fn identities(config: &Config, m: &Manifest) -> Result<Vec<age::x25519::Identity>, JobError> {
    let recipient = m.encrypted_to.as_deref().unwrap_or_default();
    let text = match (&config.backup.identity, &config.backup.identity_file) {
        (Some(secret), _) => secret.expose().to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
            JobError::permanent_from(
                format!("cannot read backup.identity_file {}", path.display()),
                e,
            )
        })?,
        (None, None) => {
            return Err(JobError::permanent(format!(
                "backup {} is encrypted to {recipient}; give the matching age identity in \
                 backup.identity_file or FERRY_AGE_IDENTITY",
                m.id
            )));
        }
    };
    let ids: Vec<age::x25519::Identity> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.parse().ok())
        .collect();
    if ids.is_empty() {
        return Err(JobError::permanent(
            "the age identity (backup.identity_file or FERRY_AGE_IDENTITY) holds no \
             AGE-SECRET-KEY-1... line",
        ));
    }
    Ok(ids)
}

/// Streams backup `m` into `target` with `pg_restore`. Fails if the object is not the one
/// the manifest describes, byte for byte.
pub async fn restore_into(
    config: &Config,
    store: &Store,
    tools: &Tools,
    m: &Manifest,
    target: &Database,
) -> Result<(), JobError> {
    let identities = match m.encrypted_to {
        Some(_) => Some(identities(config, m)?),
        None => None,
    };
    let mut stream = store.get(&m.object_key).await?;
    let mut child = target
        .command(&tools.pg_restore)
        .args(["--no-owner", "--no-privileges", "--exit-on-error"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            JobError::permanent_from(format!("cannot start {}", tools.pg_restore.display()), e)
        })?;
    let stdin: OwnedFd = child
        .stdin
        .take()
        .expect("stdin is piped")
        .into_owned_fd()
        .map_err(|e| JobError::retryable_from("pg_restore input", e))?;
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let unpack = tokio::task::spawn_blocking(move || {
        let mut out = std::fs::File::from(stdin);
        let input = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        unpack(input, identities, &mut out)
    });

    // Hash here, on the way in, so the whole object is checked even when unpacking stops
    // early: a truncated or altered object is named as such, not as a decoding error.
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut forwarding = true;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        if forwarding && tx.send(chunk).await.is_err() {
            forwarding = false;
        }
    }
    drop(tx);
    let unpacked = unpack
        .await
        .map_err(|e| JobError::retryable_from("unpacking panicked", e))?;
    let status = child
        .wait()
        .await
        .map_err(|e| JobError::retryable_from("waiting for pg_restore", e))?;
    let sha256 = format!("{:x}", hasher.finalize());
    if bytes != m.bytes as u64 || sha256 != m.sha256 {
        return Err(JobError::permanent(format!(
            "backup {} does not match its manifest: the object {} is {bytes} bytes with sha256 \
             {sha256}, the manifest recorded {} bytes with sha256 {}; it was truncated or \
             altered, so it cannot be trusted",
            m.id, m.object_key, m.bytes, m.sha256
        )));
    }
    unpacked.map_err(|e| match e {
        Unpack::NoIdentity(detail) => JobError::permanent(format!(
            "cannot decrypt backup {} (encrypted to {}): {detail}; give the matching identity",
            m.id,
            m.encrypted_to.as_deref().unwrap_or_default()
        )),
        Unpack::Io(e) if !status.success() => JobError::permanent(format!(
            "pg_restore into {:?} stopped the stream ({e})",
            target.name
        )),
        Unpack::Io(e) => JobError::permanent_from(format!("cannot unpack backup {}", m.id), e),
    })?;
    if !status.success() {
        let text = stderr.await.unwrap_or_default();
        return Err(JobError::permanent(format!(
            "pg_restore into {:?} failed ({status}): {}",
            target.name,
            text.trim()
        )));
    }
    Ok(())
}

enum Unpack {
    NoIdentity(String),
    Io(io::Error),
}

fn unpack(
    input: ChannelReader,
    identities: Option<Vec<age::x25519::Identity>>,
    out: &mut std::fs::File,
) -> Result<(), Unpack> {
    let copy = |r: &mut dyn Read, out: &mut std::fs::File| -> Result<(), Unpack> {
        let mut decoder = zstd::Decoder::new(r).map_err(Unpack::Io)?;
        io::copy(&mut decoder, out).map_err(Unpack::Io)?;
        Ok(())
    };
    match identities {
        None => copy(&mut { input }, out),
        Some(ids) => {
            let decryptor = age::Decryptor::new(input)
                .map_err(|e| Unpack::NoIdentity(format!("not an age file: {e}")))?;
            let mut reader = decryptor
                .decrypt(ids.iter().map(|i| i as &dyn age::Identity))
                .map_err(|e| Unpack::NoIdentity(e.to_string()))?;
            copy(&mut reader, out)
        }
    }
}

/// Blocking reads over chunks the async side sends.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The outcome of a verify, as stored and shown.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub id: uuid::Uuid,
    pub database: String,
    pub ok: bool,
    pub error: Option<String>,
    /// Tables whose count after restore differs: (manifest, restored).
    pub differences: BTreeMap<String, (Option<i64>, Option<i64>)>,
}

/// Restores backup `m` into a scratch database on the server of `DATABASE_URL`, compares
/// row counts with the manifest, and drops the scratch database.
pub async fn verify(
    config: &Config,
    store: &Store,
    m: &Manifest,
) -> Result<VerifyReport, JobError> {
    let base = Database::configured(config)?.remove(0);
    let scratch = base.with_name(&format!("ferry_verify_{}", m.id.simple()));
    let mut admin = base
        .connect()
        .await
        .map_err(|e| postgres::connect_error(&base, e))?;
    let create = format!("CREATE DATABASE {}", scratch.name);
    // The scratch name is made here from a UUID, never taken from outside.
    admin
        .execute(sqlx::AssertSqlSafe(create))
        .await
        .map_err(|e| JobError::retryable_from(format!("cannot create {}", scratch.name), e))?;
    let result = restore_and_count(config, store, m, &scratch).await;
    let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", scratch.name);
    if let Err(e) = admin.execute(sqlx::AssertSqlSafe(drop)).await {
        tracing::warn!(database = %scratch.name, error = %e, "could not drop the scratch database");
    }
    let mut report = VerifyReport {
        id: m.id,
        database: m.database.clone(),
        ok: false,
        error: None,
        differences: BTreeMap::new(),
    };
    match result {
        Ok(counts) => {
            let names = m.row_counts.keys().chain(counts.keys());
            for name in names {
                let (want, got) = (m.row_counts.get(name).copied(), counts.get(name).copied());
                if want != got {
                    report.differences.insert(name.clone(), (want, got));
                }
            }
            report.ok = report.differences.is_empty();
            if !report.ok {
                report.error = Some(format!(
                    "{} tables differ from the manifest after restore",
                    report.differences.len()
                ));
            }
        }
        Err(JobError::Permanent(e)) => report.error = Some(chain(&e)),
        Err(e) => return Err(e),
    }
    Ok(report)
}

async fn restore_and_count(
    config: &Config,
    store: &Store,
    m: &Manifest,
    into: &Database,
) -> Result<BTreeMap<String, i64>, JobError> {
    restore_into(config, store, &Tools::new(config), m, into).await?;
    let mut conn = into
        .connect()
        .await
        .map_err(|e| postgres::connect_error(into, e))?;
    postgres::row_counts(&mut conn)
        .await
        .map_err(|e| JobError::retryable_from("counting restored rows", e))
}

/// Restores into `target`, creating the database when it does not exist. Refuses a
/// database that already holds tables, so a restore never mixes with other data.
pub async fn restore(
    config: &Config,
    store: &Store,
    m: &Manifest,
    target: Database,
) -> Result<BTreeMap<String, i64>, JobError> {
    let mut conn = match target.connect().await {
        Ok(conn) => conn,
        Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("3D000") => {
            if !ferry_config::is_sql_name(&target.name) {
                return Err(JobError::permanent(format!(
                    "{:?} is not a plain database name; create it first, then restore into it",
                    target.name
                )));
            }
            let admin = target.with_name("postgres");
            let mut c = admin
                .connect()
                .await
                .map_err(|e| postgres::connect_error(&admin, e))?;
            // Checked above to be a plain name.
            c.execute(sqlx::AssertSqlSafe(format!(
                "CREATE DATABASE {}",
                target.name
            )))
            .await
            .map_err(|e| JobError::permanent_from(format!("cannot create {}", target.name), e))?;
            target
                .connect()
                .await
                .map_err(|e| postgres::connect_error(&target, e))?
        }
        Err(e) => return Err(postgres::connect_error(&target, e)),
    };
    let existing = postgres::tables(&mut conn)
        .await
        .map_err(|e| JobError::retryable_from(format!("inspecting {}", target.name), e))?;
    if !existing.is_empty() {
        return Err(JobError::permanent(format!(
            "database {:?} already has {} tables; restore into a new or empty database",
            target.name,
            existing.len()
        )));
    }
    drop(conn);
    restore_and_count(config, store, m, &target).await
}
