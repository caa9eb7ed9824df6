# frozen_string_literal: true
#
# Sidekiq baseline benchmark for ferry.
#
# This one file has two roles:
#   ruby bench.rb              -> orchestrator/producer; prints ONE JSON line on stdout
#   sidekiq -r ./bench.rb ...  -> worker process (spawned by the orchestrator)
#
# Env: N (20000), LAT_N (200), LAT_WARMUP (10), CONCURRENCY (5),
#      REDIS_URL (redis://127.0.0.1:6379/13 -- MUST be a dedicated db, it is FLUSHDB'd),
#      SIDEKIQ_LOG_LEVEL (unset = Sidekiq default INFO), BENCH_PIDDIR (directory where the spawned sidekiq pids are written so that
#      run.sh can kill them on any exit), SIDEKIQ_LOG (worker log file).

require "json"
require "sidekiq"
require "sidekiq/api"

# redis-rb 4.8 warns on every Sidekiq 6.4 SADD; silence that noise.
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)

REDIS_URL = ENV["REDIS_URL"] = ENV.fetch("REDIS_URL", "redis://127.0.0.1:6379/13")
K_T0 = "ferrybench:t0"     # worker start (wall ms), set on the :startup event
K_DONE = "ferrybench:done" # counter INCR'd by every no-op job
K_T1 = "ferrybench:t1"     # wall ms when the N-th job finished
K_LAT = "ferrybench:lat"   # list of "i start_ms" pushed by latency jobs

def wall_ms
  Process.clock_gettime(Process::CLOCK_REALTIME, :float_millisecond)
end

class NoopJob
  include Sidekiq::Worker

  TARGET = Integer(ENV.fetch("BENCH_TARGET", "0"))

  def perform(_i)
    # no-op; the INCR only exists so that completion can be detected.
    Sidekiq.redis do |c|
      c.set(K_T1, wall_ms.to_s) if c.incr(K_DONE) == TARGET
    end
  end
end

class LatJob
  include Sidekiq::Worker

  def perform(i)
    t = wall_ms
    Sidekiq.redis { |c| c.rpush(K_LAT, "#{i} #{t}") }
  end
end

Sidekiq.configure_server do |config|
  # Default is Sidekiq's own (INFO: one "start" + one "done" line per job).
  Sidekiq.logger.level = ENV["SIDEKIQ_LOG_LEVEL"] if ENV["SIDEKIQ_LOG_LEVEL"]
  config.on(:startup) do
    Sidekiq.redis { |c| c.set(K_T0, wall_ms.to_s) }
  end
end

# ------------------------------------------------------------------ orchestrator
if $PROGRAM_NAME == __FILE__
  N = Integer(ENV.fetch("N", "20000"))
  LAT_N = Integer(ENV.fetch("LAT_N", "200"))
  LAT_WARMUP = Integer(ENV.fetch("LAT_WARMUP", "10"))
  CONCURRENCY = Integer(ENV.fetch("CONCURRENCY", "5"))
  BATCH = 1000
  PIDDIR = ENV["BENCH_PIDDIR"]
  LOG = ENV.fetch("SIDEKIQ_LOG", "/tmp/ferry-sidekiq-bench-#{Process.pid}.log")

  def log(msg)
    warn "[sidekiq-bench] #{msg}"
  end

  def redis
    @redis ||= Redis.new(url: REDIS_URL)
  end

  def flush_bench_db!
    db = redis.connection[:db]
    raise "refusing to FLUSHDB redis db #{db.inspect}: the bench must use db 13" unless db == 13

    redis.flushdb
  end

  def percentile(sorted, p)
    sorted[[[(p / 100.0 * sorted.size).ceil - 1, 0].max, sorted.size - 1].min]
  end

  def spawn_worker(target)
    env = { "REDIS_URL" => REDIS_URL, "BENCH_TARGET" => target.to_s }
    pid = Process.spawn(env, "sidekiq", "-r", File.expand_path(__FILE__), "-c", CONCURRENCY.to_s,
                        "-q", "default", "-t", "5",
                        in: File::NULL, out: [LOG, "a"], err: [LOG, "a"], chdir: __dir__)
    File.write(File.join(PIDDIR, "sidekiq.#{pid}.pid"), pid.to_s) if PIDDIR
    pid
  end

  def stop_worker(pid)
    return unless pid

    begin
      Process.kill("TERM", pid)
    rescue Errno::ESRCH
      nil
    end
    deadline = wall_ms + 10_000
    loop do
      break if Process.waitpid(pid, Process::WNOHANG)
      if wall_ms > deadline
        log "worker #{pid} did not stop on TERM; KILL"
        Process.kill("KILL", pid)
        Process.waitpid(pid)
        break
      end
      sleep 0.02
    end
  rescue Errno::ECHILD, Errno::ESRCH
    nil
  ensure
    File.delete(File.join(PIDDIR, "sidekiq.#{pid}.pid")) if PIDDIR && pid && File.exist?(File.join(PIDDIR, "sidekiq.#{pid}.pid"))
  end

  def check_alive!(pid)
    return unless Process.waitpid(pid, Process::WNOHANG)

    raise "sidekiq worker exited early (status #{$?.exitstatus.inspect}); see #{LOG}"
  end

  def wait_for(pid, timeout_ms, what)
    deadline = wall_ms + timeout_ms
    loop do
      v = yield
      return v if v
      check_alive!(pid)
      raise "timeout waiting for #{what}" if wall_ms > deadline

      sleep 0.005
    end
  end

  def throughput
    flush_bench_db!
    te = wall_ms
    (0...N).each_slice(BATCH) do |slice|
      Sidekiq::Client.push_bulk("class" => NoopJob, "queue" => "default", "args" => slice.map { |i| [i] })
    end
    log format("enqueued %d jobs in %.1f ms", N, wall_ms - te)
    size = Sidekiq::Queue.new("default").size
    raise "expected #{N} queued jobs, found #{size}" unless size == N

    spawn_at = wall_ms
    pid = spawn_worker(N)
    begin
      t0 = wait_for(pid, 30_000, "worker startup") { redis.get(K_T0) }.to_f
      t1 = wait_for(pid, 100_000, "#{N} jobs done") { redis.get(K_T1) }.to_f
      secs = (t1 - t0) / 1000.0
      log format("worker: spawn->startup %.1f ms; %d jobs in %.3f s (incl. process boot: %.3f s)",
                 t0 - spawn_at, N, secs, (t1 - spawn_at) / 1000.0)
      done = redis.get(K_DONE).to_i
      raise "done counter #{done} != #{N}" unless done == N

      N / secs
    ensure
      stop_worker(pid)
    end
  end

  def latency
    flush_bench_db!
    pid = spawn_worker(0)
    lats = []
    begin
      wait_for(pid, 30_000, "worker startup") { redis.get(K_T0) }
      sleep 0.5 # let all processor threads settle into BRPOP (idle worker)
      (LAT_WARMUP + LAT_N).times do |i|
        t = wall_ms
        LatJob.perform_async(i)
        _, v = redis.blpop(K_LAT, timeout: 10)
        raise "job #{i} did not start within 10 s" unless v

        id, start = v.split(" ")
        raise "unexpected job #{id}, wanted #{i}" unless id.to_i == i

        lats << start.to_f - t if i >= LAT_WARMUP
      end
    ensure
      stop_worker(pid)
    end
    lats.sort!
    p50 = percentile(lats, 50)
    p99 = percentile(lats, 99)
    log format("latency over %d jobs: min %.3f p50 %.3f p99 %.3f max %.3f ms", lats.size, lats.first, p50, p99, lats.last)
    [p50, p99]
  end

  status = 0
  begin
    log "sidekiq #{Sidekiq::VERSION} (redis gem #{Redis::VERSION}, #{RUBY_DESCRIPTION}); " \
        "REDIS_URL=#{REDIS_URL} N=#{N} LAT_N=#{LAT_N} concurrency=#{CONCURRENCY}; worker log #{LOG}"
    jps = throughput
    p50, p99 = latency
    $stdout.puts JSON.generate(
      system: "sidekiq", version: Sidekiq::VERSION, n: N, jobs_per_s: jps.round(1),
      lat_n: LAT_N, p50_ms: p50.round(3), p99_ms: p99.round(3), concurrency: CONCURRENCY
    )
    $stdout.flush
  rescue StandardError, Interrupt => e
    log "FAILED: #{e.class}: #{e.message}"
    log "worker log tail:\n#{File.readlines(LOG).last(20).join}" if File.exist?(LOG)
    status = 1
  ensure
    begin
      flush_bench_db!
    rescue StandardError => e
      log "cleanup failed: #{e.message}"
      status = 1
    end
  end
  exit status
end
