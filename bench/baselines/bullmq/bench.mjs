// BullMQ baseline benchmark for ferry.
//
// Prints exactly one JSON line on stdout; all logs go to stderr.
//
//   node bench.mjs            -> orchestrator (producer); forks worker processes
//   node bench.mjs worker ... -> internal: worker child process (IPC with parent)
//
// Env: N (default 20000), LAT_N (default 200), CONCURRENCY (default 100),
//      REDIS_HOST (127.0.0.1), REDIS_PORT (6379), REDIS_DB (0),
//      REMOVE_ON_COMPLETE (default 0 = BullMQ default, keep completed jobs).
//
// All keys live under a unique prefix (ferrybench-bullmq-<pid>-<ts>) and are
// deleted at the end (SCAN MATCH prefix:* + UNLINK). Nothing else is touched.

import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const require = createRequire(import.meta.url);
const BULLMQ_VERSION = require('bullmq/package.json').version;

const N = int(process.env.N, 20000);
const LAT_N = int(process.env.LAT_N, 200);
const LAT_WARMUP = int(process.env.LAT_WARMUP, 10);
const CONCURRENCY = int(process.env.CONCURRENCY, 100);
const REMOVE_ON_COMPLETE = process.env.REMOVE_ON_COMPLETE === '1';
const BATCH = 1000;
const QUEUE = 'noop';
const connection = {
  host: process.env.REDIS_HOST || '127.0.0.1',
  port: int(process.env.REDIS_PORT, 6379),
  db: int(process.env.REDIS_DB, 0),
  maxRetriesPerRequest: null,
};

function int(v, d) {
  const n = Number.parseInt(v ?? '', 10);
  return Number.isFinite(n) && n > 0 ? n : d;
}
const nowMs = () => performance.timeOrigin + performance.now();
const log = (...a) => console.error('[bullmq-bench]', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function percentile(sorted, p) {
  // nearest-rank
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}
const round = (x, d = 3) => Math.round(x * 10 ** d) / 10 ** d;

// ---------------------------------------------------------------- worker child
async function workerMain(mode, prefix, n) {
  const send = (m) => process.send(m);
  let done = 0;
  let t0 = 0;
  const worker = new Worker(
    QUEUE,
    async (job) => {
      if (mode === 'lat') send({ type: 'started', id: job.data.i, t: nowMs() });
      // no-op
    },
    {
      connection,
      prefix,
      concurrency: CONCURRENCY,
      autorun: false,
      ...(REMOVE_ON_COMPLETE ? { removeOnComplete: { count: 0 } } : {}),
    },
  );
  worker.on('error', (e) => log('worker error', e?.message ?? e));
  worker.on('failed', (job, e) => log('job failed', job?.id, e?.message ?? e));
  if (mode === 'tput') {
    worker.on('completed', () => {
      done += 1;
      if (done === n) send({ type: 'done', t0, t1: nowMs(), done });
    });
  }
  process.on('message', async (m) => {
    if (m?.type === 'stop') {
      try {
        await worker.close();
      } catch (e) {
        log('close error', e?.message ?? e);
      }
      process.exit(0);
    }
  });
  await worker.waitUntilReady();
  t0 = nowMs();
  worker.run().catch((e) => {
    log('worker.run failed', e?.message ?? e);
    process.exit(2);
  });
  send({ type: 'ready', t0 });
}

// ---------------------------------------------------------------- orchestrator
const liveWorkers = new Set();
function spawnWorker(mode, prefix, n) {
  const child = fork(fileURLToPath(import.meta.url), ['worker', mode, prefix, String(n)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const waiters = [];
  const messages = [];
  child.on('message', (m) => {
    const w = waiters.findIndex((x) => x.type === m.type);
    if (w >= 0) waiters.splice(w, 1)[0].resolve(m);
    else messages.push(m);
  });
  let exited = false;
  child.on('exit', (code, sig) => {
    exited = true;
    for (const w of waiters.splice(0)) w.reject(new Error(`worker exited (${code ?? sig})`));
  });
  const next = (type, timeoutMs = 60000) =>
    new Promise((resolve, reject) => {
      const i = messages.findIndex((x) => x.type === type);
      if (i >= 0) return resolve(messages.splice(i, 1)[0]);
      if (exited) return reject(new Error('worker already exited'));
      const timer = setTimeout(() => reject(new Error(`timeout waiting for worker '${type}'`)), timeoutMs);
      waiters.push({
        type,
        resolve: (m) => (clearTimeout(timer), resolve(m)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
    });
  const stop = async () => {
    if (exited) return;
    const gone = new Promise((r) => child.once('exit', r));
    try {
      child.send({ type: 'stop' });
    } catch {}
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(t);
  };
  const h = { child, next, stop, kill: () => exited || child.kill('SIGKILL') };
  liveWorkers.add(h);
  child.on('exit', () => liveWorkers.delete(h));
  return h;
}

async function cleanup(redis, prefix) {
  let cursor = '0';
  let deleted = 0;
  do {
    const [c, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = c;
    if (keys.length) deleted += await redis.unlink(...keys);
  } while (cursor !== '0');
  return deleted;
}

async function throughput(prefix) {
  const queue = new Queue(QUEUE, { connection, prefix });
  await queue.waitUntilReady();
  const te = nowMs();
  for (let i = 0; i < N; i += BATCH) {
    const jobs = [];
    for (let j = i; j < Math.min(N, i + BATCH); j++) jobs.push({ name: 'noop', data: { i: j } });
    await queue.addBulk(jobs);
  }
  log(`enqueued ${N} jobs in ${round(nowMs() - te, 1)} ms`);
  const waiting = await queue.getWaitingCount();
  if (waiting !== N) throw new Error(`expected ${N} waiting jobs, found ${waiting}`);

  const spawnAt = nowMs();
  const w = spawnWorker('tput', prefix, N);
  try {
    const ready = await w.next('ready', 30000);
    const done = await w.next('done', 100000);
    const secs = (done.t1 - done.t0) / 1000;
    log(
      `worker: process spawn->ready ${round(ready.t0 - spawnAt, 1)} ms; ` +
        `${N} jobs in ${round(secs, 3)} s (incl. process startup: ${round((done.t1 - spawnAt) / 1000, 3)} s)`,
    );
    const counts = await queue.getJobCounts('completed', 'failed', 'waiting', 'active');
    log('job counts after run', JSON.stringify(counts));
    if (counts.failed) throw new Error(`${counts.failed} jobs failed`);
    return N / secs;
  } finally {
    await w.stop();
    await queue.close();
  }
}

async function latency(prefix) {
  const queue = new Queue(QUEUE, { connection, prefix });
  await queue.waitUntilReady();
  const w = spawnWorker('lat', prefix, 0);
  const lats = [];
  try {
    await w.next('ready', 30000);
    await sleep(300); // let the worker settle into its blocking wait (idle)
    for (let i = 0; i < LAT_WARMUP + LAT_N; i++) {
      const t = nowMs();
      await queue.add('noop', { i });
      const s = await w.next('started', 10000);
      if (s.id !== i) throw new Error(`unexpected job ${s.id}, wanted ${i}`);
      if (i >= LAT_WARMUP) lats.push(s.t - t);
    }
  } finally {
    await w.stop();
    await queue.close();
  }
  lats.sort((a, b) => a - b);
  const p50 = percentile(lats, 50);
  const p99 = percentile(lats, 99);
  log(`latency over ${lats.length} jobs: min ${round(lats[0])} p50 ${round(p50)} p99 ${round(p99)} max ${round(lats.at(-1))} ms`);
  return { p50, p99 };
}

async function main() {
  const prefix = `ferrybench-bullmq-${process.pid}-${Date.now()}`;
  const redis = new IORedis(connection);
  let code = 0;
  for (const [sig, rc] of [['SIGINT', 130], ['SIGTERM', 143]]) {
    process.once(sig, async () => {
      log(`got ${sig}; stopping workers and deleting ${prefix}:* keys`);
      for (const w of liveWorkers) w.kill();
      try {
        await cleanup(redis, prefix);
      } catch (e) {
        log('cleanup failed', e?.message ?? e);
      }
      process.exit(rc);
    });
  }
  try {
    log(`bullmq ${BULLMQ_VERSION}, prefix ${prefix}, N=${N}, LAT_N=${LAT_N}, concurrency=${CONCURRENCY}, removeOnComplete=${REMOVE_ON_COMPLETE}`);
    const jps = await throughput(prefix);
    const deleted = await cleanup(redis, prefix);
    log(`deleted ${deleted} keys after throughput phase`);
    const { p50, p99 } = await latency(prefix);
    process.stdout.write(
      JSON.stringify({
        system: 'bullmq',
        version: BULLMQ_VERSION,
        n: N,
        jobs_per_s: round(jps, 1),
        lat_n: LAT_N,
        p50_ms: round(p50),
        p99_ms: round(p99),
        concurrency: CONCURRENCY,
      }) + '\n',
    );
  } catch (e) {
    log('FAILED:', e?.stack ?? e);
    code = 1;
  } finally {
    try {
      const deleted = await cleanup(redis, prefix);
      log(`cleanup: deleted ${deleted} keys with prefix ${prefix}`);
    } catch (e) {
      log('cleanup failed', e?.message ?? e);
      code = 1;
    }
    redis.disconnect();
  }
  process.exit(code);
}

if (process.argv[2] === 'worker') {
  const [, , , mode, prefix, n] = process.argv;
  process.on('disconnect', () => process.exit(0)); // parent died
  workerMain(mode, prefix, Number(n)).catch((e) => {
    log('worker FAILED:', e?.stack ?? e);
    process.exit(1);
  });
} else {
  main();
}
