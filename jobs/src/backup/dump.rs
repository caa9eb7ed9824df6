//! One streaming pass: `pg_dump -Fc -Z0` → zstd (multi-threaded) → optional age → upload
//! parts. No temporary file; memory is bounded by the part size and the parts in flight.

use std::{
    io::{self, BufReader, Write},
    os::fd::OwnedFd,
    path::PathBuf,
};

use bytes::Bytes;
use ferry_record::{Lease, Progress};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::{io::AsyncReadExt, sync::mpsc};

use super::postgres::Database;
use crate::{JobError, store::Upload};

/// S3 wants parts of at least 5 MiB and allows 10,000 of them. Parts start at 5 MiB (memory
/// is a few parts) and double every 2,000 parts, so an object can reach 300 GiB.
fn part_size(parts_sent: usize) -> usize {
    (5 << 20) << (parts_sent / 2000).min(10)
}
/// Parts buffered between the compressor and the uploader.
const PARTS_IN_FLIGHT: usize = 1;
/// zstd's multi-threaded jobs default to 4x the window (8 MiB at level 3) per worker, for
/// input and output each; 2 MiB jobs cost a fraction of the memory and almost no ratio.
const ZSTD_JOB_SIZE: u32 = 2 << 20;

pub struct Compression {
    pub level: i32,
    pub threads: u32,
    pub recipient: Option<age::x25519::Recipient>,
}

/// What was written: the object's size and sha256 (of the bytes as stored).
pub struct Written {
    pub bytes: u64,
    pub sha256: String,
}

/// Where progress goes after each part: the run's checkpoint, unchanged, with the progress
/// `progress` makes of the bytes uploaded so far.
pub struct Report<'a, C, F> {
    pub lease: &'a Lease,
    pub checkpoint: &'a C,
    pub progress: F,
}

/// Runs `pg_dump` on `db` at `snapshot` and uploads the compressed stream. On error the caller
/// aborts the upload.
pub async fn dump<C: Serialize + Sync, F: Fn(u64) -> Progress + Sync>(
    pg_dump: &PathBuf,
    db: &Database,
    snapshot: &str,
    compression: Compression,
    upload: &mut Upload,
    report: Report<'_, C, F>,
) -> Result<Written, JobError> {
    let mut child = db
        .command(pg_dump)
        .args(["--format=custom", "--compress=0"])
        .arg(format!("--snapshot={snapshot}"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| JobError::permanent_from(format!("cannot start {}", pg_dump.display()), e))?;
    let stdout: OwnedFd = child
        .stdout
        .take()
        .expect("stdout is piped")
        .into_owned_fd()
        .map_err(|e| JobError::retryable_from("pg_dump output", e))?;
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    let (tx, mut rx) = mpsc::channel::<Bytes>(PARTS_IN_FLIGHT);
    let compress = tokio::task::spawn_blocking(move || {
        compress(
            std::fs::File::from(stdout),
            PartWriter::new(tx),
            compression,
        )
    });

    let mut uploaded = 0u64;
    let mut failed: Option<JobError> = None;
    while let Some(part) = rx.recv().await {
        let len = part.len() as u64;
        if let Err(e) = upload.put(part).await {
            failed = Some(e.into());
            break;
        }
        uploaded += len;
        let progress = (report.progress)(uploaded);
        if let Err(e) = report.lease.save(report.checkpoint, progress).await {
            failed = Some(e.into());
            break;
        }
    }
    // Closing the channel stops the compressor, whose closed input then stops pg_dump.
    drop(rx);
    if failed.is_some() {
        let _ = child.kill().await;
    }
    let compressed = compress
        .await
        .map_err(|e| JobError::retryable_from("compressor panicked", e))?;
    let status = child
        .wait()
        .await
        .map_err(|e| JobError::retryable_from("waiting for pg_dump", e))?;
    if let Some(e) = failed {
        return Err(e);
    }
    if !status.success() {
        let text = stderr.await.unwrap_or_default();
        return Err(JobError::retryable(format!(
            "pg_dump of {:?} failed ({status}): {}",
            db.name,
            text.trim()
        )));
    }
    compressed.map_err(|e| JobError::retryable_from("compressing the dump", e))
}

fn compress(input: std::fs::File, out: PartWriter, c: Compression) -> io::Result<Written> {
    let threads = match c.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        n => n,
    };
    let input = BufReader::with_capacity(1 << 20, input);
    let out = match c.recipient {
        None => zstd_into(input, out, c.level, threads)?,
        Some(recipient) => {
            let encryptor =
                age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                    .map_err(io::Error::other)?;
            zstd_into(input, encryptor.wrap_output(out)?, c.level, threads)?.finish()?
        }
    };
    out.finish()
}

fn zstd_into<R: io::BufRead, W: Write>(
    mut input: R,
    out: W,
    level: i32,
    threads: u32,
) -> io::Result<W> {
    let mut encoder = zstd::Encoder::new(out, level)?;
    encoder.include_checksum(true)?;
    if threads > 1 {
        encoder.multithread(threads)?;
        encoder.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))?;
    }
    io::copy(&mut input, &mut encoder)?;
    encoder.finish()
}

/// Cuts the object into parts for the uploader, hashing every byte on the way.
struct PartWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
    /// The size of the part being filled.
    limit: usize,
    parts: usize,
    hasher: Sha256,
    bytes: u64,
}

impl PartWriter {
    fn new(tx: mpsc::Sender<Bytes>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(part_size(0)),
            limit: part_size(0),
            parts: 0,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        self.parts += 1;
        self.limit = part_size(self.parts);
        let part = std::mem::replace(&mut self.buf, Vec::with_capacity(self.limit));
        self.tx
            .blocking_send(Bytes::from(part))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    fn finish(mut self) -> io::Result<Written> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(Written {
            bytes: self.bytes,
            sha256: format!("{:x}", self.hasher.finalize()),
        })
    }
}

impl Write for PartWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(self.limit - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.hasher.update(&data[..n]);
        self.bytes += n as u64;
        if self.buf.len() == self.limit {
            self.send()?;
        }
        Ok(n)
    }

    /// Parts go out whole; the last one in `finish`.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
