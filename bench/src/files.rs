//! `ferry-bench files`: `ferry files migrate` of mixed small and 20 MiB objects from moto to a
//! private s3s-fs, against `rclone copy` with the same number of transfers, in the same run,
//! alternating rounds (best of each); peak memory of ferry's worker and of rclone. Then one
//! large object (1 GiB by default) from one s3s-fs to another, to show memory stays bounded.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use bytes::Bytes;
use ferry_tests::{
    moto,
    s3::{ACCESS_KEY, S3Server, SECRET_KEY},
};
use futures::StreamExt;
use object_store::{Attribute, Attributes};
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Objects in all.
    #[arg(long, default_value_t = 300)]
    objects: usize,
    /// How many of them are large.
    #[arg(long, default_value_t = 5)]
    large: usize,
    #[arg(long, default_value_t = 20)]
    large_mib: usize,
    /// Concurrent transfers, for ferry (`files.transfers`) and rclone (`--transfers`).
    #[arg(long, default_value_t = 4)]
    transfers: usize,
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// More `[files]` settings for ferry, e.g. "multipart_threshold_mib = 32".
    #[arg(long, default_value = "")]
    files_toml: String,
    /// Size of the single large object copied last; 0 skips it.
    #[arg(long, default_value_t = 1024)]
    big_mib: usize,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/ferry"
    )]
    database_url: String,
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

/// One timed copy: seconds, the copier's peak RSS in KiB, the copier's CPU seconds, and the
/// CPU seconds every process on the machine spent meanwhile (servers included).
struct Measured {
    secs: f64,
    peak_kb: u64,
    cpu: f64,
    machine_cpu: f64,
}

impl Measured {
    /// How the round went, for the log: the machine's share shows when the servers, not the
    /// copier, set the pace.
    fn describe(&self, bytes: u64) -> String {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        format!(
            "{:.2} s, {:.0} MB/s, peak RSS {} MB, own CPU {:.2} s, machine CPU {:.2} s ({:.0}% of {cores} cores)",
            self.secs,
            bytes as f64 / 1e6 / self.secs,
            self.peak_kb / 1024,
            self.cpu,
            self.machine_cpu,
            100.0 * self.machine_cpu / (self.secs * cores),
        )
    }

    fn json(&self, bytes: u64) -> serde_json::Value {
        json!({
            "seconds": self.secs,
            "mb_per_s": bytes as f64 / 1e6 / self.secs,
            "peak_rss_mb": self.peak_kb / 1024,
            "cpu_s": self.cpu,
            "machine_cpu_s": self.machine_cpu,
        })
    }
}

/// Linux reports CPU time in /proc in USER_HZ ticks, which is 100 on every architecture's ABI.
const USER_HZ: f64 = 100.0;

/// CPU seconds spent by every process since boot (user, nice, system, irq, softirq, steal).
fn machine_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .map(|cpu| {
            cpu.split_whitespace()
                .skip(1)
                .enumerate()
                .filter(|(i, _)| [0, 1, 2, 5, 6, 7].contains(i))
                .filter_map(|(_, v)| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    ticks as f64 / USER_HZ
}

/// CPU seconds (user and system) a live process has spent.
fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are the 14th and 15th fields, 12th and 13th after the name.
    (tick(11) + tick(12)) as f64 / USER_HZ
}

pub async fn run(args: Args, ferry: PathBuf) {
    let tag = format!("{:08x}", rand::random::<u32>());
    let scratch = std::env::temp_dir().join(format!("ferry-bench-files-{tag}"));
    std::fs::create_dir_all(&scratch).unwrap();
    let bucket = moto::Bucket::create(&format!("bench-files-{tag}"));
    let bytes = fill(&bucket, &args).await;
    eprintln!(
        "source: {} objects, {:.1} MB on moto",
        args.objects,
        bytes as f64 / 1e6
    );
    let dest = S3Server::start("unused");

    let mut rclone_best: Option<Measured> = None;
    let mut ferry_best: Option<Measured> = None;
    for round in 0..args.rounds {
        let target = format!("rclone-{round}");
        std::fs::create_dir_all(dest.dir.join(&target)).unwrap();
        let r = rclone(&bucket.name, &dest, &target, args.transfers, &scratch);
        check_copy(&dest.dir.join(&target), args.objects, bytes);
        eprintln!("round {round}: rclone copy {}", r.describe(bytes));
        let target = format!("ferry-{round}");
        std::fs::create_dir_all(dest.dir.join(&target)).unwrap();
        let stores = format!(
            "{}{}",
            store("src", &bucket.name, &moto::endpoint(), moto::KEY, moto::KEY),
            store("dst", &target, &dest.endpoint(), ACCESS_KEY, SECRET_KEY)
        );
        let f = ferry_migrate(&ferry, &args, &scratch, &format!("{tag}{round}"), &stores);
        crate::queue::cleanup(&args.redis_url, &format!("bfiles{tag}{round}")).await;
        check_copy(&dest.dir.join(&target), args.objects, bytes);
        eprintln!("round {round}: ferry files migrate {}", f.describe(bytes));
        let _ = std::fs::remove_dir_all(dest.dir.join(format!("rclone-{round}")));
        let _ = std::fs::remove_dir_all(dest.dir.join(&target));
        if rclone_best.as_ref().is_none_or(|b| r.secs < b.secs) {
            rclone_best = Some(r);
        }
        if ferry_best.as_ref().is_none_or(|b| f.secs < b.secs) {
            ferry_best = Some(f);
        }
    }
    bucket.remove().await;
    let (r, f) = (rclone_best.unwrap(), ferry_best.unwrap());

    let big = (args.big_mib > 0).then(|| big_object(&ferry, &args, &scratch, &tag));
    crate::queue::cleanup(&args.redis_url, &format!("bfiles{tag}big")).await;

    let mbps = |secs: f64| bytes as f64 / 1e6 / secs;
    println!(
        "{:<40} {:>8} {:>8} {:>9} {:>10}",
        "measure (best round)", "seconds", "MB/s", "peak MB", "vs rclone"
    );
    println!(
        "{:<40} {:>8.2} {:>8.0} {:>9} {:>9.2}x",
        format!("rclone copy --transfers {}", args.transfers),
        r.secs,
        mbps(r.secs),
        r.peak_kb / 1024,
        1.0
    );
    println!(
        "{:<40} {:>8.2} {:>8.0} {:>9} {:>9.2}x",
        format!("ferry files migrate (transfers {})", args.transfers),
        f.secs,
        mbps(f.secs),
        f.peak_kb / 1024,
        r.secs / f.secs
    );
    if let Some(b) = &big {
        println!(
            "{:<40} {:>8.2} {:>8.0} {:>9}",
            format!("ferry, one {} MiB object", args.big_mib),
            b.secs,
            (args.big_mib << 20) as f64 / 1e6 / b.secs,
            b.peak_kb / 1024
        );
    }
    println!(
        "{}",
        json!({
            "objects": args.objects,
            "bytes": bytes,
            "transfers": args.transfers,
            "rclone": r.json(bytes),
            "ferry": f.json(bytes),
            "throughput_ratio": r.secs / f.secs,
            "big": big.map(|b| json!({ "mib": args.big_mib, "seconds": b.secs, "peak_rss_mb": b.peak_kb / 1024 })),
        })
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

fn store(name: &str, bucket: &str, endpoint: &str, key: &str, secret: &str) -> String {
    format!(
        "[stores.{name}]\nurl = \"s3://{bucket}\"\nendpoint = \"{endpoint}\"\n\
         access_key_id = \"{key}\"\nsecret_access_key = \"{secret}\"\n"
    )
}

/// `objects - large` objects of 50-350 kB and `large` of `large_mib`; returns the bytes.
async fn fill(bucket: &moto::Bucket, args: &Args) -> u64 {
    let small = args.objects - args.large;
    let sizes: Vec<usize> = (0..small)
        .map(|i| 50_000 + (i * 7919) % 300_000)
        .chain(std::iter::repeat_n(args.large_mib << 20, args.large))
        .collect();
    let total = sizes.iter().sum::<usize>() as u64;
    let puts = sizes.into_iter().enumerate().map(|(i, len)| async move {
        let mut data = vec![0u8; len];
        rand::fill(&mut data[..]);
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, "application/octet-stream".into());
        bucket
            .put(
                &format!("objects/{i:04}.bin"),
                Bytes::from(data),
                attributes,
                false,
            )
            .await;
    });
    futures::stream::iter(puts)
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
    total
}

/// The copy landed whole: `objects` files of `bytes` in all under `dir`.
fn check_copy(dir: &Path, objects: usize, bytes: u64) {
    let (mut n, mut sum) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
                sum += meta.len();
            }
        }
    }
    assert_eq!(
        (n, sum),
        (objects, bytes),
        "{} holds a different copy",
        dir.display()
    );
}

fn rclone(
    bucket: &str,
    dest: &S3Server,
    target: &str,
    transfers: usize,
    scratch: &Path,
) -> Measured {
    let peak = scratch.join("rclone.rss");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%M %U %S", "-o"])
        .arg(&peak)
        .args(["rclone", "copy", "--transfers"])
        .arg(transfers.to_string())
        .arg(format!("src:{bucket}"))
        .arg(format!("dst:{target}"));
    for (remote, endpoint, key, secret) in [
        ("SRC", moto::endpoint(), moto::KEY, moto::KEY),
        ("DST", dest.endpoint(), ACCESS_KEY, SECRET_KEY),
    ] {
        let var = |k: &str| format!("RCLONE_CONFIG_{remote}_{k}");
        cmd.env(var("TYPE"), "s3")
            .env(var("PROVIDER"), "Other")
            .env(var("ENDPOINT"), endpoint)
            .env(var("ACCESS_KEY_ID"), key)
            .env(var("SECRET_ACCESS_KEY"), secret)
            .env(var("REGION"), "us-east-1");
    }
    // rclone 1.60 fails on AWS_CA_BUNDLE with a custom transport; both endpoints are plain
    // HTTP here.
    cmd.env_remove("AWS_CA_BUNDLE");
    let machine_before = machine_cpu();
    let started = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .status()
        .expect("rclone (apt-get install rclone; bench/run.sh files does)");
    let secs = started.elapsed().as_secs_f64();
    let machine_cpu = machine_cpu() - machine_before;
    assert!(status.success(), "rclone copy failed");
    // The last line: /usr/bin/time writes only that unless rclone was killed.
    let times = std::fs::read_to_string(&peak).unwrap_or_default();
    let fields: Vec<&str> = times
        .trim()
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    Measured {
        secs,
        peak_kb: field(0).unwrap_or(0.0) as u64,
        cpu: field(1).unwrap_or(0.0) + field(2).unwrap_or(0.0),
        machine_cpu,
    }
}

/// Runs one `ferry files migrate --from src --to dst --wait` on a fresh worker.
fn ferry_migrate(ferry: &Path, args: &Args, scratch: &Path, tag: &str, stores: &str) -> Measured {
    let config = scratch.join(format!("ferry-{tag}.toml"));
    let mut file = std::fs::File::create(&config).unwrap();
    write!(
        file,
        "[postgres]\nurl = \"{}\"\nschema = \"bench_files_ferry\"\n[redis]\nurl = \"{}\"\n\
         prefix = \"bfiles{tag}\"\n[files]\ntransfers = {}\n{}\n{stores}",
        args.database_url, args.redis_url, args.transfers, args.files_toml
    )
    .unwrap();
    let cmd = |a: &[&str]| crate::ferry_command(ferry, &config, a);
    assert!(
        cmd(&["migrate"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    let mut worker = cmd(&["worker", "--queues", "files"])
        .stdout(Stdio::null())
        .spawn()
        .expect("worker");
    // Keeps the worker's start-up out of the timing.
    std::thread::sleep(Duration::from_millis(500));
    let worker_before = process_cpu(worker.id());
    let machine_before = machine_cpu();
    let started = Instant::now();
    let out = cmd(&[
        "--json", "files", "migrate", "--from", "src", "--to", "dst", "--wait",
    ])
    .output()
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    let machine_cpu = machine_cpu() - machine_before;
    let cpu = process_cpu(worker.id()) - worker_before;
    let peak_kb = crate::peak_rss_kb(worker.id());
    crate::queue::stop(&mut worker);
    assert!(
        out.status.success(),
        "ferry files migrate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Measured {
        secs,
        peak_kb,
        cpu,
        machine_cpu,
    }
}

/// One `mib` MiB object from one s3s-fs to another: the server's file is written directly.
fn big_object(ferry: &Path, args: &Args, scratch: &Path, tag: &str) -> Measured {
    let src = S3Server::start("big-src");
    let dst = S3Server::start("big-dst");
    let path = src.dir.join("big-src/big.bin");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..args.big_mib {
        rand::fill(&mut block[..]);
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
    drop(file);
    let stores = format!(
        "{}{}",
        store("src", "big-src", &src.endpoint(), ACCESS_KEY, SECRET_KEY),
        store("dst", "big-dst", &dst.endpoint(), ACCESS_KEY, SECRET_KEY)
    );
    let m = ferry_migrate(ferry, args, scratch, &format!("{tag}big"), &stores);
    let copied = std::fs::metadata(dst.dir.join("big-dst/big.bin")).map(|m| m.len());
    assert_eq!(
        copied.ok(),
        Some((args.big_mib as u64) << 20),
        "the big object was not copied whole"
    );
    assert_eq!(
        sha256_file(&path),
        sha256_file(&dst.dir.join("big-dst/big.bin")),
        "the big object's bytes differ"
    );
    eprintln!(
        "one {} MiB object: {:.2} s, worker peak RSS {} MB",
        args.big_mib,
        m.secs,
        m.peak_kb / 1024
    );
    m
}

fn sha256_file(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path).unwrap();
    std::io::copy(&mut file, &mut hasher).unwrap();
    format!("{:x}", hasher.finalize())
}
