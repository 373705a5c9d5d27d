#!/usr/bin/env python3
"""Generate the deterministic benchmark corpus for bench/run.sh.

Usage: make_corpus.py [--text] OUTDIR [SCALE] [SEED]

  --text  source-like text instead of random bytes (see "Text mode")
  OUTDIR  directory to create (it must not exist, or must be a corpus made
          by this script: one with a different SCALE/SEED/mode is replaced)
  SCALE   size factor, default 1.0 (~105,000 regular files, ~3.6 GiB);
          0.02 gives a ~2,100-file, ~75 MiB corpus for a quick run
  SEED    integer seed, default 1

The same (SCALE, SEED, generator version) always gives the same tree: same
paths, same bytes, same modes and mtimes (ctime and inode numbers cannot be
set). At SCALE 1 the tree has:

  * 3,000 directories, depth up to 6, with a skewed number of files each
    (median ~10, the largest few thousand), like /usr or /etc;
  * 104,680 "small" files, 1-64 KiB, log-uniform (most files are small);
  * 320 "big" files, 2-16 MiB, log-uniform (binaries, libraries, images);
  * 500 symlinks to files in the tree (relative targets), not counted as
    files;
  * modes 0644 / 0755 / 0600 / 0444 and mtimes spread over three years.

Content is random bytes (random.Random(SEED).randbytes), so it is unique
per file and incompressible. Only the standard library is used.

Text mode (--text): the same layout, but every small file is source-like
UTF-8 text (lines of identifiers, keywords, literals and comments drawn from
a fixed vocabulary, indented), every one of them a snapshot candidate. It
compresses about 2x with zstd, less than real source (about 4x), so a
snapshot budget holds fewer of these files than of a real tree's; 10% of the small files are copies of an earlier one (vendored or
duplicated sources), as on real trees. Big files stay random bytes.

The corpus is built in OUTDIR.partial and renamed to OUTDIR when complete;
the marker file OUTDIR/.corpus-params.json (deterministic too) records the
parameters and the totals. If OUTDIR already holds a marker with the same
parameters the script does nothing, so re-running the benchmark is cheap.
"""

import json
import math
import os
import random
import shutil
import sys

# Bump when the generated tree changes for the same (scale, seed), so old
# corpora are regenerated instead of silently reused.
GENERATOR_VERSION = 3
MARKER = ".corpus-params.json"

# Totals at scale 1.0, tuned so the tree lands near 105,000 files / 3.6 GiB:
# small files: 104,680 x mean (64-1)/ln(64) KiB ~ 15.1 KiB = ~1.51 GiB;
# big files:       320 x mean (16-2)/ln(8)  MiB ~ 6.73 MiB = ~2.10 GiB.
N_DIRS = 3_000
N_SMALL = 104_680
N_BIG = 320
N_SYMLINKS = 500
MAX_DEPTH = 6
SMALL_MIN, SMALL_MAX = 1 << 10, 64 << 10
BIG_MIN, BIG_MAX = 2 << 20, 16 << 20

# Fixed reference time (2023-11-14T22:13:20Z) so mtimes do not depend on
# when the corpus was generated.
EPOCH = 1_700_000_000
THREE_YEARS = 3 * 365 * 86_400

DIR_WORDS = (
    "bin lib share src include etc conf data cache doc man locale modules "
    "plugins assets static templates vendor tests build dist pkg tools "
    "scripts config fonts icons themes python3 perl5 java node firmware "
    "kernel drivers net sound video crypto security systemd udev apt dpkg"
).split()
FILE_WORDS = (
    "main util core config index module client server handler parser "
    "render common types helpers init setup base data schema model view "
    "logger state cache store queue worker event metrics auth session"
).split()
SMALL_EXTS = (
    ".c .h .py .rs .go .js .json .conf .txt .md .html .css .xml .yaml .pm "
    ".sh .mo .gz .svg .png"
).split()
BIG_EXTS = ".so .bin .a .tar .jar .pack .img .ko".split()

MODES = ((0o644, 85), (0o755, 10), (0o600, 4), (0o444, 1))


def log_uniform(rng, lo, hi):
    """An integer in [lo, hi], log-uniformly distributed (many small)."""
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def scaled(n, scale, minimum=1):
    return max(minimum, round(n * scale))


def build_dirs(rng, n_dirs):
    """Return a list of (relative path, depth); index 0 is the root ('')."""
    dirs = [("", 0)]
    expandable = [0]  # indices of dirs that may get children (depth < max)
    names_used = {}  # parent index -> set of child names
    for _ in range(n_dirs):
        parent = rng.choice(expandable)
        ppath, pdepth = dirs[parent]
        used = names_used.setdefault(parent, set())
        name = rng.choice(DIR_WORDS)
        while name in used:
            name = f"{rng.choice(DIR_WORDS)}-{rng.randrange(1000)}"
        used.add(name)
        path = f"{ppath}/{name}" if ppath else name
        dirs.append((path, pdepth + 1))
        if pdepth + 1 < MAX_DEPTH:
            expandable.append(len(dirs) - 1)
    return dirs


def plan(scale, seed):
    """Decide the whole tree (paths, sizes, modes, mtimes) before writing.

    Planning uses its own Random so the layout does not depend on how the
    content stream is consumed.
    """
    rng = random.Random(f"layout-{seed}")
    dirs = build_dirs(rng, scaled(N_DIRS, scale))
    # Skewed file counts per directory: log-normal weights give a long tail
    # of small directories and a few big ones. At scale 1: median ~10
    # files, 99th percentile ~400, largest ~3,000 (like /usr/bin or
    # /usr/lib/x86_64-linux-gnu), not one directory with a quarter of all
    # files, which would measure per-directory pathologies, not the tools.
    weights = [rng.lognormvariate(0, 1.5) for _ in dirs]
    # Big files cluster in a small set of "lib"/"bin"-like directories.
    big_dirs = rng.sample(range(len(dirs)), max(1, len(dirs) // 20))

    files = []  # (relpath, size, mode, mtime)
    used = set()

    def add(dir_index, words, exts, size):
        base = dirs[dir_index][0]
        while True:
            name = f"{rng.choice(words)}{rng.randrange(100_000)}{rng.choice(exts)}"
            rel = f"{base}/{name}" if base else name
            if rel not in used:
                break
        used.add(rel)
        mode = rng.choices([m for m, _ in MODES], [w for _, w in MODES])[0]
        mtime = EPOCH - rng.randrange(THREE_YEARS)
        files.append((rel, size, mode, mtime))

    n_small = scaled(N_SMALL, scale)
    for d in rng.choices(range(len(dirs)), weights, k=n_small):
        add(d, FILE_WORDS, SMALL_EXTS, log_uniform(rng, SMALL_MIN, SMALL_MAX))
    for _ in range(scaled(N_BIG, scale)):
        add(rng.choice(big_dirs), FILE_WORDS, BIG_EXTS,
            log_uniform(rng, BIG_MIN, BIG_MAX))

    # Symlinks: in a random directory, pointing (relatively) at a file.
    symlinks = []  # (relpath, target)
    for i in range(scaled(N_SYMLINKS, scale, minimum=0)):
        d = rng.randrange(len(dirs))
        target_rel = files[rng.randrange(len(files))][0]
        base = dirs[d][0]
        rel = f"{base}/link{i}" if base else f"link{i}"
        if rel in used:
            continue
        used.add(rel)
        target = os.path.relpath(target_rel, base or ".")
        symlinks.append((rel, target))

    dir_mtimes = [EPOCH - rng.randrange(THREE_YEARS) for _ in dirs]
    return dirs, dir_mtimes, files, symlinks


def params(scale, seed, text=False):
    return {"generator_version": GENERATOR_VERSION, "scale": scale,
            "seed": seed, "text": text}


def read_marker(outdir):
    try:
        with open(os.path.join(outdir, MARKER), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def generate(outdir, scale, seed, text=False):
    dirs, dir_mtimes, files, symlinks = plan(scale, seed)
    content = random.Random(seed)
    partial = outdir + ".partial"
    if os.path.lexists(partial):
        shutil.rmtree(partial)  # leftover of an interrupted run of ours
    os.makedirs(partial)

    for path, _ in dirs[1:]:
        os.mkdir(os.path.join(partial, path))

    total = 0
    written_text = []  # earlier text contents, for the duplicates
    for i, (rel, size, mode, mtime) in enumerate(files):
        path = os.path.join(partial, rel)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            if text and size <= SMALL_MAX:
                if written_text and content.random() < 0.10:
                    data = content.choice(written_text)
                else:
                    data = _source_text(content, size)
                    if len(written_text) < 2000:
                        written_text.append(data)
                _write_all(fd, data)
                size = len(data)
            else:
                _write_random(fd, content, size)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.utime(path, (mtime, mtime))
        total += size
        if (i + 1) % 20_000 == 0:
            print(f"  {i + 1:,}/{len(files):,} files, {total / 2**30:.2f} GiB",
                  file=sys.stderr)

    for rel, target in symlinks:
        path = os.path.join(partial, rel)
        os.symlink(target, path)
        os.utime(path, (EPOCH, EPOCH), follow_symlinks=False)

    marker = dict(params(scale, seed, text), directories=len(dirs),
                  files=len(files), symlinks=len(symlinks), bytes=total)
    with open(os.path.join(partial, MARKER), "w", encoding="utf-8") as f:
        json.dump(marker, f, indent=1, sort_keys=True)
        f.write("\n")
    os.utime(os.path.join(partial, MARKER), (EPOCH, EPOCH))

    # Directory mtimes last (creating entries bumps them), deepest first.
    for (path, _), mtime in sorted(zip(dirs, dir_mtimes),
                                   key=lambda x: -x[0][1]):
        os.utime(os.path.join(partial, path), (mtime, mtime))

    os.rename(partial, outdir)
    return marker


WORDS = (
    "if else for while return fn let mut struct impl match self const static "
    "pub use mod int char void unsigned long def class import from try except "
    "with as yield lambda true false None null new this var function async "
    "await buffer config value result error count index length offset data "
    "node next prev list map key item state handle path name size flags mode"
).split()
PUNCT = ("(", ")", "{", "}", ";", ",", ".", " = ", " == ", " + ", "->", "::",
         "[", "]", ":", " && ", " || ")


def _source_text(rng, size):
    """About `size` bytes of source-like text (bytes, valid UTF-8, no NUL)."""
    lines = []
    total = 0
    depth = 0
    while total < size:
        kind = rng.random()
        if kind < 0.12:
            line = "    " * depth + "// " + " ".join(
                rng.choice(WORDS) for _ in range(rng.randint(3, 10)))
        elif kind < 0.2:
            line = ""
        else:
            parts = []
            for _ in range(rng.randint(2, 9)):
                parts.append(rng.choice(WORDS))
                parts.append(rng.choice(PUNCT))
            if rng.random() < 0.2:
                parts.append(f'"{rng.choice(WORDS)} {rng.randrange(10_000)}"')
            line = "    " * depth + "".join(parts)
        if line.endswith("{"):
            depth = min(depth + 1, 5)
        elif depth and rng.random() < 0.15:
            depth -= 1
        lines.append(line)
        total += len(line) + 1
    return ("\n".join(lines) + "\n").encode()[:size]


def _write_all(fd, data):
    buf = memoryview(data)
    while buf:
        buf = buf[os.write(fd, buf):]


def _write_random(fd, rng, size):
    """Write size random bytes, in 1 MiB chunks to bound memory."""
    left = size
    while left:
        buf = memoryview(rng.randbytes(min(left, 1 << 20)))
        while buf:  # os.write may write less than asked
            buf = buf[os.write(fd, buf):]
        left -= min(left, 1 << 20)


def main(argv):
    text = "--text" in argv[1:]
    argv = [a for a in argv if a != "--text"]
    if len(argv) < 2 or argv[1] in ("-h", "--help") or len(argv) > 4:
        print(__doc__.strip(), file=sys.stderr)
        return 0 if len(argv) >= 2 and argv[1] in ("-h", "--help") else 2
    outdir = os.path.abspath(argv[1])
    scale = float(argv[2]) if len(argv) > 2 else 1.0
    seed = int(argv[3]) if len(argv) > 3 else 1
    if not (0 < scale <= 100):
        print(f"make_corpus.py: scale must be in (0, 100], got {scale}",
              file=sys.stderr)
        return 2

    if os.path.lexists(outdir):
        marker = read_marker(outdir)
        if marker is None:
            # Never delete a directory we did not make.
            print(f"make_corpus.py: {outdir} exists and is not a corpus made "
                  f"by this script (no {MARKER}); remove it or choose another "
                  "directory", file=sys.stderr)
            return 1
        if all(marker.get(k) == v for k, v in params(scale, seed, text).items()):
            print(f"corpus {outdir} is up to date (scale {scale}, seed {seed})",
                  file=sys.stderr)
            return 0
        print(f"corpus {outdir} has other parameters; regenerating",
              file=sys.stderr)
        shutil.rmtree(outdir)

    print(f"generating {'text ' if text else ''}corpus {outdir} (scale {scale}, seed {seed})",
          file=sys.stderr)
    m = generate(outdir, scale, seed, text)
    print(f"corpus done: {m['files']:,} files, {m['symlinks']:,} symlinks, "
          f"{m['directories']:,} directories, {m['bytes']:,} bytes "
          f"({m['bytes'] / 2**30:.2f} GiB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
