#!/usr/bin/env python3
"""Measurements for bench/retention.sh (log retention and compression). Reuses the /proc,
results-file and cleanup helpers of measure.py; results are merged into a JSON file and `report`
turns them into the markdown tables. Every wait is bounded by a deadline.

Subcommands:
  burst     1,000,000 lines of 101 bytes (`seq -f %0100.0f 1 1000000`, 101 MB) written as fast
            as seq goes, under each retention: the old defaults (10M x 3, plain), the defaults
            (20M x 10, compressed), the default sizes uncompressed. Lines kept (in order, each
            once), files, disk once compressed, times, CPU of the daemon and of its pm3-gzip
            thread (which compresses, and closes the large files the daemon removes).
  compress  a service log (timestamps, levels, request lines, ids, JSON; generated from a fixed
            seed) of 2 x 20 MiB + a little, written through pm3 under the defaults: two rotated
            files of 20 MiB compressed by the daemon's gzip thread; its CPU time, the wall time
            until both are .gz, bytes before and after. zlib (Python's, C) levels 1 and 6 on the
            same bytes for reference.
  report    print the markdown tables (and write them with --out)
"""

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import time
import uuid
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import measure as m  # noqa: E402  (bench/measure.py: /proc helpers, results file, cleanup)

MIB = 1 << 20
BURST_LINES = 1_000_000
BURST_LINE = 101

RETENTIONS = [
    ("before", "10M × 3, uncompressed (the old defaults)",
     'log_max_size = "10M"\nlog_max_files = 3\nlog_compress = false\n', 3),
    ("after", "20M × 10, compressed (the defaults)", "", 10),
    ("after_plain", "20M × 10, uncompressed (`log_compress = false`)", "log_compress = false\n", 10),
]


# ----------------------------------------------------------------------------- helpers

def pm3(a, *args, check=True):
    r = subprocess.run([a.pm3, *args], env=m.pm3_env(a.home), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=a.timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"pm3 {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def wait(desc, cond, timeout, poll=0.005):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {desc}")
        time.sleep(poll)


def row(a, name):
    for r in json.loads(pm3(a, "list", "--json")):
        if r["name"] == name:
            return r
    raise RuntimeError(f"{name} is not in `pm3 list`")


def gzip_thread_ns(dpid):
    """On-CPU ns of the daemon's compression thread (0 before its first job)."""
    total = 0
    for tid in os.listdir(f"/proc/{dpid}/task"):
        try:
            with open(f"/proc/{dpid}/task/{tid}/comm") as f:
                if f.read().strip() != "pm3-gzip":
                    continue
            with open(f"/proc/{dpid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def log_files(a, name):
    """(current path, {k: (path, compressed)}) of `name`'s stdout log."""
    base = os.path.join(a.home, "logs", f"{name}-out.log")
    rotated = {}
    for k in range(1, 1001):
        if os.path.exists(f"{base}.{k}"):
            rotated[k] = (f"{base}.{k}", False)
        elif os.path.exists(f"{base}.{k}.gz"):
            rotated[k] = (f"{base}.{k}.gz", True)
        else:
            break
    return base, rotated


def settled(a, name, compress):
    """True once no compression of `name` is under way and, with `compress`, no rotated file is
    plain."""
    base, rotated = log_files(a, name)
    tmp = os.path.join(os.path.dirname(base), f".{os.path.basename(base)}.gz.tmp")
    return not os.path.exists(tmp) and (not compress or all(gz for _, gz in rotated.values()))


def read_all(path, compressed):
    opener = gzip.open if compressed else open
    with opener(path, "rb") as f:
        return f.read()


def disk_bytes(a, name):
    base, rotated = log_files(a, name)
    return os.path.getsize(base) + sum(os.path.getsize(p) for p, _ in rotated.values())


def run_and_wait(a, name, cfg_text, compress=True):
    cfg = os.path.join(a.dir, f"{name}.toml")
    with open(cfg, "w") as f:
        f.write(cfg_text)
    dpid = m.daemon_pid(a.home)
    cpu0, gz0 = m.schedstat_ns(dpid)[0], gzip_thread_ns(dpid)
    t0 = time.perf_counter_ns()
    pm3(a, "-c", cfg, "start", name)
    wait(f"{name} to exit", lambda: row(a, name)["status"] == "stopped", a.timeout, poll=0.01)
    t1 = time.perf_counter_ns()
    if row(a, name).get("exit_code") != 0:
        raise RuntimeError(f"{name}: exit code {row(a, name).get('exit_code')}")
    wait(f"the rotated files of {name} to be compressed", lambda: settled(a, name, compress), a.timeout, poll=0.002)
    t2 = time.perf_counter_ns()
    cpu1, gz1 = m.schedstat_ns(dpid)[0], gzip_thread_ns(dpid)
    os.unlink(cfg)
    return {"written_ms": (t1 - t0) / 1e6, "settled_ms": (t2 - t0) / 1e6,
            "daemon_cpu_ms": (cpu1 - cpu0) / 1e6, "gzip_cpu_ms": (gz1 - gz0) / 1e6}


def remove_logs(a, name):
    pm3(a, "flush", name)
    for stream in ("out", "err"):
        try:
            os.unlink(os.path.join(a.home, "logs", f"{name}-{stream}.log"))
        except FileNotFoundError:
            pass


# ----------------------------------------------------------------------------- burst

def cmd_burst(a):
    res = {}
    for key, label, extra, max_files in RETENTIONS:
        name = f"burst_{key}"
        cfg = f'[{name}]\ncommand = "seq -f %0100.0f 1 {BURST_LINES}"\nrestart = "never"\n{extra}'
        t = run_and_wait(a, name, cfg, compress="log_compress = false" not in extra)
        base, rotated = log_files(a, name)
        if len(rotated) > max_files:
            raise RuntimeError(f"{name}: {len(rotated)} rotated files, more than {max_files}")
        data = b"".join(read_all(p, gz) for k, (p, gz) in sorted(rotated.items(), reverse=True))
        data += read_all(base, False)
        lines = data.split(b"\n")
        if lines[-1] != b"":
            raise RuntimeError(f"{name}: the log does not end with a whole line")
        nums = [int(line) for line in lines[:-1]]
        bad = [i for i in range(1, len(nums)) if nums[i] != nums[i - 1] + 1]
        if bad or any(len(line) != BURST_LINE - 1 for line in lines[:-1]):
            raise RuntimeError(f"{name}: lines out of order, doubled or damaged (first at {bad[:1]})")
        if nums and nums[-1] != BURST_LINES:
            raise RuntimeError(f"{name}: the last line kept is {nums[-1]}, not {BURST_LINES}")
        t.update(label=label, kept=len(nums), first=nums[0] if nums else None, files=len(rotated),
                 compressed=sum(1 for _, gz in rotated.values() if gz), disk=disk_bytes(a, name))
        print(f"  {label}: {len(nums)} of {BURST_LINES} lines kept ({100 * len(nums) / BURST_LINES:.1f} %), "
              f"{len(rotated)} rotated files, {t['disk'] / MIB:.1f} MiB on disk, written in "
              f"{t['written_ms']:.0f} ms, compressed after {t['settled_ms']:.0f} ms, "
              f"gzip thread {t['gzip_cpu_ms']:.0f} ms CPU", flush=True)
        res[f"burst_{key}"] = t
        remove_logs(a, name)
    m.merge_results(a.results, res)


# ----------------------------------------------------------------------------- compress

def service_log(path, size):
    """Lines as services write them: ISO timestamps, levels, request lines with ids and
    latencies, JSON records, free text; from a fixed seed, so every run writes the same bytes."""
    rnd = random.Random(42)
    paths = ["/api/v1/users/{}", "/api/v1/orders/{}/items", "/health", "/api/v1/search?q={}&page={}",
             "/static/app.{}.js", "/api/v1/sessions/{}", "/metrics"]
    words = ("alpha beta gamma delta epsilon timeout retry cache miss hit upstream connect reset "
             "user order item payment invoice").split()
    levels = ["INFO"] * 8 + ["DEBUG"] * 4 + ["WARN"] * 2 + ["ERROR"]
    t = 1764536043.0
    written = 0
    with open(path, "w") as out:
        buf = []
        while written < size:
            t += rnd.random() * 0.002
            s = int(t)
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + ".%03dZ" % int((t - s) * 1000)
            lvl = rnd.choice(levels)
            k = rnd.random()
            if k < 0.55:
                p = rnd.choice(paths).format(rnd.randint(1, 99999), rnd.randint(1, 20))
                line = "%s %-5s http: %s %s %d %.1fms ip=10.%d.%d.%d req=%s" % (
                    ts, lvl, rnd.choice(["GET", "GET", "POST", "PUT"]), p,
                    rnd.choice([200, 200, 200, 201, 204, 304, 404, 500]), rnd.expovariate(1 / 20),
                    rnd.randint(0, 255), rnd.randint(0, 255), rnd.randint(0, 255),
                    uuid.UUID(int=rnd.getrandbits(128)))
            elif k < 0.85:
                line = ('{"ts":"%s","level":"%s","msg":"%s %s","user_id":%d,"duration_ms":%d,'
                        '"trace":"%016x"}') % (ts, lvl.lower(), rnd.choice(words), rnd.choice(words),
                                               rnd.randint(1, 10 ** 6), rnd.randint(0, 5000),
                                               rnd.getrandbits(64))
            else:
                line = "%s %-5s worker[%d]: %s" % (ts, lvl, rnd.randint(1, 16),
                                                   " ".join(rnd.choice(words) for _ in range(rnd.randint(3, 12))))
            line += "\n"
            buf.append(line)
            written += len(line)
            if len(buf) >= 10000:
                out.write("".join(buf))
                buf = []
        out.write("".join(buf))


def cmd_compress(a):
    src = os.path.join(a.dir, "service.log")
    service_log(src, 2 * 20 * MIB + MIB)
    name = "service"
    t = run_and_wait(a, name, f'[{name}]\ncommand = "cat {src}"\nrestart = "never"\n')
    base, rotated = log_files(a, name)
    if len(rotated) != 2 or not all(gz for _, gz in rotated.values()):
        raise RuntimeError(f"{name}: expected 2 compressed rotated files, got {rotated}")
    plain = sum(len(read_all(p, True)) for p, _ in rotated.values())
    packed = sum(os.path.getsize(p) for p, _ in rotated.values())
    with open(src, "rb") as f:
        whole = f.read()
    if b"".join(read_all(p, gz) for k, (p, gz) in sorted(rotated.items(), reverse=True)) + \
            read_all(base, False) != whole:
        raise RuntimeError(f"{name}: the logs do not hold exactly what was written")
    res = {"compress": dict(t, plain=plain, packed=packed, files=len(rotated))}
    # Reference: C zlib (Python's) on the first rotated file's bytes, gzip framing aside.
    one = read_all(rotated[1][0], True)
    for level in (1, 6):
        c0 = time.process_time_ns()
        n = len(zlib.compress(one, level))
        res[f"zlib{level}"] = {"cpu_ms": (time.process_time_ns() - c0) / 1e6, "plain": len(one), "packed": n}
    print(f"  {plain / MIB:.1f} MiB rotated -> {packed / MIB:.1f} MiB gzipped "
          f"({100 * (1 - packed / plain):.1f} % saved), gzip thread {t['gzip_cpu_ms']:.0f} ms CPU, "
          f"compressed {t['settled_ms'] - t['written_ms']:.0f} ms after the writer's exit was seen", flush=True)
    remove_logs(a, name)
    os.unlink(src)
    m.merge_results(a.results, res)


# ----------------------------------------------------------------------------- report

def cmd_report(a):
    r = m.load_results(a.results)
    out = ["### Burst: 1,000,000 lines of 101 bytes (101 MB), as fast as `seq` writes them", "",
           "| retention | lines kept | rotated files | on disk after | exit seen after | compressed after "
           "| daemon CPU | of which its pm3-gzip thread |",
           "|---|---|---|---|---|---|---|---|"]
    for key, label, _, _ in RETENTIONS:
        b = r.get(f"burst_{key}")
        if not b:
            continue
        settled = f"{b['settled_ms']:.0f} ms" if b["compressed"] else "–"
        out.append(f"| {label} | {b['kept']:,} ({100 * b['kept'] / BURST_LINES:.1f} %) | {b['files']} "
                   f"({b['compressed']} .gz) | {b['disk'] / MIB:.1f} MiB | {b['written_ms']:.0f} ms "
                   f"| {settled} | {b['daemon_cpu_ms']:.0f} ms | {b['gzip_cpu_ms']:.0f} ms |")
    c = r.get("compress")
    if c:
        mb = c["plain"] / 1e6
        out += ["", "### Compression of a service log (2 rotated files of 20 MiB, gzip level 1)", "",
                "| what | bytes in | bytes out | saved | CPU | CPU per MB | MB/s of one core |",
                "|---|---|---|---|---|---|---|",
                f"| pm3's gzip thread (flate2, miniz_oxide, level 1) | {c['plain']:,} | {c['packed']:,} "
                f"| {100 * (1 - c['packed'] / c['plain']):.1f} % | {c['gzip_cpu_ms']:.0f} ms "
                f"| {c['gzip_cpu_ms'] / mb:.1f} ms | {mb / (c['gzip_cpu_ms'] / 1e3):.0f} |"]
        for level in (1, 6):
            z = r.get(f"zlib{level}")
            if z:
                zmb = z["plain"] / 1e6
                out.append(f"| for reference: C zlib level {level}, first file | {z['plain']:,} | {z['packed']:,} "
                           f"| {100 * (1 - z['packed'] / z['plain']):.1f} % | {z['cpu_ms']:.0f} ms "
                           f"| {z['cpu_ms'] / zmb:.1f} ms | {zmb / (z['cpu_ms'] / 1e3):.0f} |")
    text = "\n".join(out) + "\n"
    if a.header:
        text = a.header + "\n\n" + text
    if r.get("machine"):
        text += f"\nMachine: {r['machine']}.\n"
    m.emit(text, a.out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="sub", required=True)
    for name, fn in (("burst", cmd_burst), ("compress", cmd_compress)):
        s = sub.add_parser(name)
        s.add_argument("--results", required=True)
        s.add_argument("--pm3", required=True)
        s.add_argument("--home", required=True)
        s.add_argument("--dir", required=True)
        s.add_argument("--timeout", type=float, default=120)
        s.set_defaults(fn=fn)
    s = sub.add_parser("report")
    s.add_argument("--results", required=True)
    s.add_argument("--out")
    s.add_argument("--header")
    s.set_defaults(fn=cmd_report)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
