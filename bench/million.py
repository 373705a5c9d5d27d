#!/usr/bin/env python3
"""The agent at 10,000, 100,000 and 1,000,000 files (issue 12, point 3).

Driven by bench/million.sh; usage:

  million.py generate DIR FILES     build DIR/tree-FILES (skipped if already complete)
  million.py measure DIR FILES      measure it, append one row to bench/out/million.tsv
  million.py table                  print the table of every row measured
  million.py clean DIR              remove DIR

`generate` writes a /usr-like tree: about 7 files per directory (like /usr: 119k files in
16k directories), depth up to 12, file and directory names of real-looking lengths, sizes
log-normal around 1 KiB (most files small, a few up to 256 KiB), 40% text (source-like
words) and 60% binary (random bytes), 4% symlinks, modes 0644/0755. Deterministic for a
given FILES (seed = FILES). Only the standard library is used.

`measure` runs, on a warm cache:
  - the stat walk ceiling: `find TREE -printf ...` (median of 3);
  - `baseline init` (wall, peak RSS) and `check` with nothing changed (median of 3);
  - the daemon (`run`): time to ready, its inotify watches and unwatched subtrees (the
    kernel's fs.inotify.max_user_watches bound), idle CPU and VmRSS/VmHWM over IDLE
    seconds, and when subtrees are unwatched, the fallback scan's wall time and CPU;
  - write-to-spool latency: WRITES existing files spread over the tree are rewritten one
    at a time (20 ms apart), and each one's `observed_at` is read from the spool.
Environment: AGENT (the release binary), IDLE (default 60), WRITES (default 200),
FALLBACK_SECS (default 30: how often the daemon rescans unwatched subtrees in this run).
"""

import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import datetime

GENERATOR_VERSION = 1
HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "out", "million.tsv")

SYLLABLES = [
    "lib", "py", "gtk", "x", "core", "net", "util", "sys", "conf", "share", "perl", "doc",
    "gnu", "linux", "kernel", "module", "font", "icon", "local", "man", "data", "test",
    "base", "crypt", "ssl", "z", "bz", "xml", "json", "http", "mime", "gi", "dbus", "pam",
]
EXTENSIONS = [
    (".so.1", False), (".so", False), (".a", False), (".gz", False), (".png", False),
    ("", False), ("", False), (".mo", False), (".pyc", False), (".bin", False),
    (".py", True), (".h", True), (".conf", True), (".html", True), (".txt", True),
    (".pm", True), (".rb", True), (".c", True),
]
# Directories of /usr by depth 2..12 (this machine: 16k directories, most at depth 6-8).
DEPTH_WEIGHTS = [254, 1627, 1367, 1529, 2752, 3796, 2980, 1099, 463, 181, 117]
WORDS = (
    "static int return struct const char void if else for while include define endif "
    "import def class self none true false config value option path file error the of "
    "and to in is that with as for this be on not by are from or have an which"
).split()


def name(rng, low, high):
    parts = []
    while sum(map(len, parts)) < rng.randint(low, high):
        parts.append(rng.choice(SYLLABLES))
    text = "".join(parts)
    if rng.random() < 0.3:
        text += f"-{rng.randint(0, 99)}"
    return text


def generate(base, files):
    tree = os.path.join(base, f"tree-{files}")
    marker = tree + ".json"
    params = {"version": GENERATOR_VERSION, "files": files}
    try:
        with open(marker) as f:
            if json.load(f)["params"] == params:
                print(f"{tree}: already generated")
                return
    except (OSError, ValueError, KeyError):
        pass
    partial = tree + ".partial"
    for old in (tree, partial):
        if os.path.exists(old):
            shutil.rmtree(old)
    rng = random.Random(files)
    binary = rng.randbytes(8 << 20)
    text = " ".join(rng.choice(WORDS) + ("\n" if rng.random() < 0.12 else "")
                    for _ in range(1_500_000)).encode()
    top = ["bin", "lib", "share", "include", "libexec", "sbin", "src", "lib64"]
    by_depth = {1: []}  # directories by depth
    for t in top:
        os.makedirs(os.path.join(partial, t))
        by_depth[1].append(os.path.join(partial, t))
    current, used = by_depth[1][0], set()
    start = time.time()
    total_bytes = n_dirs = n_links = 0
    made = []
    i = 0
    while i < files:
        if rng.random() < 1 / 7.3:
            # A new directory, usually near the recent ones (trees grow in bursts).
            # At a depth drawn from /usr's, under one of the recent directories one level up.
            depth = rng.choices(range(2, 13), DEPTH_WEIGHTS)[0]
            while not by_depth.get(depth - 1):
                depth -= 1
            level = by_depth[depth - 1]
            parent = level[-rng.randint(1, min(50, len(level)))]
            path = os.path.join(parent, name(rng, 3, 14))
            if path in used:
                continue
            used.add(path)
            os.mkdir(path)
            by_depth.setdefault(depth, []).append(path)
            current = path
            n_dirs += 1
            continue
        ext, is_text = rng.choice(EXTENSIONS)
        path = os.path.join(current, name(rng, 4, 18) + ext)
        if path in used:
            continue
        used.add(path)
        if made and rng.random() < 0.04:
            os.symlink(os.path.relpath(rng.choice(made[-200:]), current), path)
            n_links += 1
            continue
        size = min(int(rng.lognormvariate(6.9, 1.4)), 256 << 10)  # median ~1 KiB
        source = text if is_text else binary
        offset = rng.randrange(0, len(source) - size)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755 if ext == "" else 0o644)
        os.write(fd, source[offset:offset + size])
        os.close(fd)
        total_bytes += size
        made.append(path)
        if len(made) > 1000:
            del made[:500]
        i += 1
        if i % 100_000 == 0:
            print(f"  {i:,} files, {time.time() - start:.0f} s", flush=True)
    totals = {"files": files, "directories": n_dirs + len(top) + 1, "symlinks": n_links,
              "bytes": total_bytes, "seconds": round(time.time() - start, 1)}
    os.rename(partial, tree)
    with open(marker, "w") as f:
        json.dump({"params": params, "totals": totals}, f)
    print(f"{tree}: {totals}")


def timed(argv, **kw):
    """Runs argv; returns (wall seconds, CPU seconds, peak RSS MiB of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, **kw)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss / 1024


def proc_cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_mem(pid):
    mem = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            mem[key] = int(value.split()[0]) / 1024
    return mem


def status(state):
    try:
        with open(os.path.join(state, "status.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def measure(base, files):
    agent = os.environ["AGENT"]
    idle = float(os.environ.get("IDLE", "60"))
    writes = int(os.environ.get("WRITES", "200"))
    fallback_secs = int(os.environ.get("FALLBACK_SECS", "30"))
    tree = os.path.join(base, f"tree-{files}")
    with open(tree + ".json") as f:
        totals = json.load(f)["totals"]
    work = os.path.join(base, f"run-{files}")
    shutil.rmtree(work, ignore_errors=True)
    state = os.path.join(work, "state")
    os.makedirs(state)
    config = os.path.join(work, "agent.toml")
    with open(config, "w") as f:
        f.write(f'state_dir = "{state}"\n[sources]\nenabled = []\n[scan]\ninterval_secs = 0\n'
                f'[watch]\nfallback_scan_secs = {fallback_secs}\n[[rule]]\npath = "{tree}"\n')
    row = {"date": time.strftime("%Y-%m-%d %H:%M"), "files": files,
           "dirs": totals["directories"], "mib": round(totals["bytes"] / 2**20),
           "max_user_watches": int(open("/proc/sys/fs/inotify/max_user_watches").read())}
    row["load"] = round(os.getloadavg()[0], 2)
    null = subprocess.DEVNULL

    print("warming the cache ...", flush=True)
    subprocess.run(["find", tree, "-type", "f", "-exec", "cat", "{}", "+"], stdout=null, check=True)
    walk = [timed(["find", tree, "-printf", "%p %s %m %U %G %i %D %n %T@ %C@ %y %l\\n"],
                  stdout=null)[0] for _ in range(3)]
    row["walk_s"] = round(statistics.median(walk), 3)
    print(f"stat walk: {row['walk_s']} s", flush=True)

    cli = [agent, "--config", config, "--log-level", "warn"]
    wall, cpu, rss = timed(cli + ["baseline", "init", "--quiet"])
    row.update(init_s=round(wall, 2), init_cpu_s=round(cpu, 2), init_rss_mib=round(rss))
    row["baseline_mib"] = round(sum(
        os.path.getsize(os.path.join(state, n)) for n in os.listdir(state)
        if os.path.isfile(os.path.join(state, n))) / 2**20, 1)
    print(f"baseline init: {wall:.2f} s, {rss:.0f} MiB peak", flush=True)
    checks = []
    for _ in range(3):
        # A check finding nothing exits 0; anything else is a failed measurement.
        checks.append(timed(cli + ["check", "--quiet"], stdout=null))
    row["check_s"] = round(statistics.median(c[0] for c in checks), 3)
    row["check_rss_mib"] = round(max(c[2] for c in checks))
    row["check_vs_walk"] = round(row["check_s"] / row["walk_s"], 2)
    print(f"check: {row['check_s']} s ({row['check_vs_walk']}x the stat walk)", flush=True)

    log = open(os.path.join(work, "agent.log"), "w")
    t0 = time.time()
    daemon = subprocess.Popen(cli + ["run"], stderr=log, stdout=null)
    try:
        while True:
            s = status(state)
            if s and s.get("pid") == daemon.pid and s.get("ready"):
                break
            if daemon.poll() is not None or time.time() - t0 > 600:
                sys.exit("the agent did not become ready (see agent.log)")
            time.sleep(0.2)
        row["ready_s"] = round(time.time() - t0, 1)
        row["watches"] = s["watches"]
        row["unwatched"] = len(s["coverage"]["unwatched"])
        row["limit_hit"] = any("inotify watch limit" in u for u in s["coverage"]["unwatched"])
        print(f"ready in {row['ready_s']} s: {row['watches']} watches, "
              f"{row['unwatched']} unwatched subtree(s)", flush=True)
        time.sleep(2)  # start-up work settles
        c0, i0 = proc_cpu(daemon.pid), time.time()
        scans_before = s.get("last_scan")
        time.sleep(idle)
        c1, i1 = proc_cpu(daemon.pid), time.time()
        mem = proc_mem(daemon.pid)
        row["idle_cpu_pct"] = round(100 * (c1 - c0) / (i1 - i0), 3)
        row["idle_rss_mib"] = round(mem["VmRSS"], 1)
        row["hwm_mib"] = round(mem["VmHWM"], 1)
        last = (status(state) or {}).get("last_scan") or {}
        if row["unwatched"] and last.get("kind") == "fallback" and last != scans_before:
            row["fallback_scan_s"] = last["seconds"]
            row["fallback_entries"] = last["entries"]
        print(f"idle {i1 - i0:.0f} s: CPU {row['idle_cpu_pct']}%, RSS {row['idle_rss_mib']} "
              f"MiB, HWM {row['hwm_mib']} MiB", flush=True)

        rng = random.Random(1)
        candidates = []
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames.sort()
            candidates += [os.path.join(dirpath, n) for n in sorted(filenames)
                           if not os.path.islink(os.path.join(dirpath, n))]
        targets = rng.sample(candidates, min(writes, len(candidates)))
        written = {}
        for i, path in enumerate(targets):
            written["file:" + path] = time.time()
            with open(path, "ab") as f:
                f.write(f"write {i}\n".encode())
            time.sleep(0.02)
        spool = os.path.join(state, "spool.db")
        deadline = time.time() + max(120, 2 * fallback_secs + 30)
        seen = {}
        while time.time() < deadline:
            db = sqlite3.connect(f"file:{spool}?mode=ro", uri=True)
            try:
                for (body,) in db.execute("SELECT body FROM events"):
                    e = json.loads(body)
                    if e["subject"] in written and e["subject"] not in seen:
                        seen[e["subject"]] = e
            finally:
                db.close()
            if len(seen) == len(written):
                break
            time.sleep(0.5)

        def at(text):
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

        lat = sorted(at(e["observed_at"]) - written[s] for s, e in seen.items())
        row["writes_seen"] = f"{len(lat)}/{len(written)}"
        if lat:
            row["w2s_median_ms"] = round(1000 * lat[len(lat) // 2])
            row["w2s_p99_ms"] = round(1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))])
        print(f"write-to-spool: {row['writes_seen']} seen, median {row.get('w2s_median_ms')} "
              f"ms, p99 {row.get('w2s_p99_ms')} ms", flush=True)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
    row["commit"] = os.environ.get("COMMIT", "")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "a") as f:
        f.write(json.dumps(row) + "\n")
    shutil.rmtree(work, ignore_errors=True)


COLUMNS = [
    ("files", "files"), ("dirs", "dirs"), ("mib", "MiB"), ("walk_s", "stat walk s"),
    ("init_s", "init s"), ("init_rss_mib", "init RSS MiB"), ("baseline_mib", "state MiB"),
    ("check_s", "check s"), ("check_vs_walk", "check / walk"), ("check_rss_mib", "check RSS MiB"),
    ("ready_s", "daemon ready s"), ("idle_rss_mib", "idle RSS MiB"), ("hwm_mib", "VmHWM MiB"),
    ("idle_cpu_pct", "idle CPU %"), ("watches", "watches"), ("max_user_watches", "watch limit"),
    ("unwatched", "unwatched subtrees"), ("fallback_scan_s", "fallback scan s"),
    ("w2s_median_ms", "write-to-spool median ms"), ("w2s_p99_ms", "p99 ms"),
    ("writes_seen", "writes seen"), ("load", "load"), ("commit", "commit"), ("date", "date"),
]


def table():
    rows = [json.loads(line) for line in open(RESULTS)]
    print("| " + " | ".join(title for _, title in COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows:
        cells = []
        for key, _ in COLUMNS:
            value = row.get(key, "—")
            cells.append(f"{value:,}" if isinstance(value, int) and key != "commit" else str(value))
        print("| " + " | ".join(cells) + " |")


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "generate" and len(sys.argv) == 4:
        generate(sys.argv[2], int(sys.argv[3]))
    elif command == "measure" and len(sys.argv) == 4:
        measure(sys.argv[2], int(sys.argv[3]))
    elif command == "table" and len(sys.argv) == 2:
        table()
    elif command == "clean" and len(sys.argv) == 3:
        shutil.rmtree(sys.argv[2], ignore_errors=True)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
