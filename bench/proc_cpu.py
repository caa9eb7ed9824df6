#!/usr/bin/env python3
"""CPU seconds per process group while a command runs, from /proc/PID/stat (utime + stime)
before and after it.

Groups: moto (moto_server), s3s-fs, postgres (every server process; backends that ended
meanwhile through the postmaster's reaped-children times), copier (`ferry` and `rclone`
processes already running, such as a worker, plus the command itself and its children), all
(the whole machine, /proc/stat) and wall.

    bench/proc_cpu.py COMMAND [ARGS...]
    e.g. bench/proc_cpu.py ferry files migrate --from src:bench --to dst:copy --wait
         bench/proc_cpu.py rclone copy src:bench dst:copy --transfers 4
"""
import os, resource, subprocess, sys, time  # noqa: E401

HZ = os.sysconf('SC_CLK_TCK')
GROUPS = ('moto', 's3s-fs', 'postgres', 'copier')


def group_of(argv):
    line = ' '.join(argv)
    if 'moto_server' in line:
        return 'moto'
    if 's3s-fs' in line:
        return 's3s-fs'
    name = os.path.basename(argv[0]) if argv else ''
    if name == 'postgres' or line.startswith('postgres:'):
        return 'postgres'
    if name in ('ferry', 'rclone'):
        return 'copier'
    return None


def processes():
    """{pid: (group, ticks)} of the processes in a group."""
    out = {}
    for pid in os.listdir('/proc'):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                argv = [a.decode(errors='replace') for a in f.read().split(b'\0') if a]
            with open(f'/proc/{pid}/stat') as f:
                fields = f.read().rsplit(') ', 1)[1].split()
        except OSError:
            continue
        group = group_of(argv)
        if group is None:
            continue
        ticks = int(fields[11]) + int(fields[12])
        if group == 'postgres' and not argv[0].startswith('postgres:'):
            ticks += int(fields[13]) + int(fields[14])   # the postmaster: reaped backends
        out[pid] = (group, ticks)
    return out


def machine():
    with open('/proc/stat') as f:
        cpu = f.readline().split()[1:]
    return sum(int(x) for x in cpu[:3] + cpu[4:7])      # all but idle (and iowait)


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    before, m0, t0 = processes(), machine(), time.monotonic()
    status = subprocess.run(sys.argv[1:], stdout=sys.stderr).returncode
    m1, t1, after = machine(), time.monotonic(), processes()
    spent = dict.fromkeys(GROUPS, 0.0)
    for pid, (group, ticks) in after.items():
        start = before[pid][1] if pid in before and before[pid][0] == group else 0
        spent[group] += (ticks - start) / HZ
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent['copier'] += children.ru_utime + children.ru_stime
    print(', '.join(f'{g} {spent[g]:.2f} s' for g in GROUPS)
          + f', all {(m1 - m0) / HZ:.2f} s, wall {t1 - t0:.2f} s')
    return status


if __name__ == '__main__':
    sys.exit(main())
