#!/usr/bin/env bash
# bench/run.sh - side-by-side benchmark of driftwatch-agent against AIDE.
#
# Usage:
#   bench/run.sh              the suite: a copy of this machine's /usr, a copy
#                             of /etc, and the generated text-heavy corpus
#                             (make_corpus.py --text), one after the other,
#                             each with its own results under BENCH_DIR/NAME;
#                             then BENCH_DIR/suite.md with all of them
#   bench/run.sh --tree DIR   benchmark one existing directory (e.g. a copy of
#                             /usr); no corpus is generated
#   bench/run.sh --corpus     benchmark the random-bytes corpus (~105,000
#                             files, ~3.6 GiB in BENCH_DIR/corpus)
#   bench/run.sh --text-corpus  the same layout with source-like text files
#   bench/run.sh --help       print this help
#
# The suite copies /usr and /etc (cp -a, into BENCH_DIR/trees; reused when
# there) rather than measuring the live directories, which change under a
# running system and would make AIDE and us report drift. A copy of /usr
# needs its size in free disk (df -h) and, for warm-cache figures, memory.
#
# Environment:
#   BENCH_DIR       where everything is written (default: bench/out, which
#                   is git-ignored): corpus, AIDE config and databases, our
#                   database, logs, runs.tsv and results.md
#   BENCH_SCALE     corpus size factor (default 1; 0.02 for a quick run)
#   BENCH_SEED      corpus seed (default 1); same scale+seed = same bytes
#   BENCH_RUNS      runs of each measured command (default 3); the run with
#                   the median wall time is reported, with its CPU and RSS
#   AIDE_RUNS       runs of AIDE's init and check (default BENCH_RUNS):
#                   AIDE takes about a minute per run on /usr
#   BENCH_TREES     the suite's trees (default "usr etc text")
#   DRIFTWATCH_BIN  benchmark this binary instead of building
#                   target/release/driftwatch-agent with cargo
#   OURS_ARGS       extra arguments for our `baseline init` (e.g.
#                   "--snapshot-budget 32M")
#
# One run does, in order:
#   1. builds driftwatch-agent (release), unless DRIFTWATCH_BIN is set;
#   2. installs aide, GNU time and b3sum from Debian if missing (needs root);
#   3. generates the deterministic corpus (bench/make_corpus.py), unless it
#      exists already with the same parameters, or --tree is given;
#   4. warms the page cache (the targets are for a warm cache);
#   5. measures, BENCH_RUNS times each, with /usr/bin/time:
#        ceiling "hash":      b3sum --num-threads 1 over every regular file,
#                             $(nproc) processes in parallel
#        ceiling "stat walk": find -printf with all metadata
#        AIDE init / check:   one hash (sha256), comparable attributes,
#                             num_workers = $(nproc)
#        ours init / check:   driftwatch-agent baseline init / check
#   6. prints a table and writes it as Markdown to BENCH_DIR/results.md,
#      with both databases' sizes and what our init kept as snapshots.
#
# Exit status: 0 on success; non-zero if any tool fails or if our check
# reports drift on the unchanged tree (AIDE reporting changes on it is only
# a warning: AIDE's exit codes 1-7 mean "changes", not "error").

set -euo pipefail

# ---------------------------------------------------------------- setup --

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd -- "$SCRIPT_DIR/.." && pwd)

OUT=${BENCH_DIR:-$SCRIPT_DIR/out}
SCALE=${BENCH_SCALE:-1}
SEED=${BENCH_SEED:-1}
RUNS=${BENCH_RUNS:-3}
AIDE_RUNS=${AIDE_RUNS:-$RUNS}
NPROC=$(nproc)
SUITE=1         # no --tree or corpus option: the suite of trees
TEXT=0          # the corpus is make_corpus.py --text
read -r -a OURS_EXTRA <<<"${OURS_ARGS:-}"

TREE=""          # the directory benchmarked
TREE_KIND=""     # "corpus" or "tree"
BIN=""           # our binary

# Tools write the files below; all of them live in OUT.
AIDE_CONF=""
AIDE_DB=""
AIDE_DB_NEW=""
DW_DB=""
LOGS=""
RUNS_TSV=""
RESULTS_MD=""

# Median results per label, filled by summarize.
declare -A WALL=() CPU=() RSS=() WMIN=() WMAX=()

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
    printf 'ERROR: %s\n' "$*" >&2
    exit 1
}

usage() {
    # The header comment above is the help text.
    sed -n '2,/^$/{s/^# \{0,1\}//;s/^#$//;p}' "${BASH_SOURCE[0]}"
}

parse_args() {
    while (($#)); do
        case $1 in
            -h | --help)
                usage
                exit 0
                ;;
            --corpus)
                SUITE=0
                shift
                ;;
            --text-corpus)
                SUITE=0 TEXT=1
                shift
                ;;
            --tree)
                SUITE=0
                (($# >= 2)) || die "--tree needs a directory"
                [[ -d $2 ]] || die "--tree $2: not a directory"
                TREE=$(cd -- "$2" && pwd -P)
                TREE_KIND=tree
                shift 2
                ;;
            --tree=*)
                SUITE=0
                local dir=${1#--tree=}
                [[ -d $dir ]] || die "--tree $dir: not a directory"
                TREE=$(cd -- "$dir" && pwd -P)
                TREE_KIND=tree
                shift
                ;;
            *) die "unknown argument: $1 (see --help)" ;;
        esac
    done
    [[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer, got '$RUNS'"
    [[ $AIDE_RUNS =~ ^[1-9][0-9]*$ ]] || die "AIDE_RUNS must be a positive integer, got '$AIDE_RUNS'"
    [[ $SEED =~ ^[0-9]+$ ]] || die "BENCH_SEED must be a non-negative integer, got '$SEED'"
    [[ $SCALE =~ ^[0-9]*\.?[0-9]+$ ]] || die "BENCH_SCALE must be a positive number, got '$SCALE'"
}

# All outputs go under OUT; it must not be inside the benchmarked tree,
# or our databases would show up as drift in the tree they describe.
setup_out() {
    mkdir -p "$OUT"
    OUT=$(cd -- "$OUT" && pwd -P)
    # AIDE's config syntax treats spaces and '@' specially; keep paths plain
    # rather than half-escape them.
    if [[ $OUT =~ [[:space:]@\\] ]]; then
        die "BENCH_DIR must not contain spaces, '@' or '\\': $OUT"
    fi
    AIDE_CONF=$OUT/aide.conf
    AIDE_DB=$OUT/aide.db
    AIDE_DB_NEW=$OUT/aide.db.new
    DW_DB=$OUT/dw.db
    LOGS=$OUT/logs
    RUNS_TSV=$OUT/runs.tsv
    RESULTS_MD=$OUT/results.md
    rm -rf "$LOGS"
    mkdir -p "$LOGS"
}

# ---------------------------------------------------------------- tools --

# Install a Debian package if the given command is missing. apt-get update
# runs at most once, and only when apt does not know the package yet
# (a fresh machine has empty package lists).
APT_UPDATED=0
apt_has_candidate() {
    local cand
    cand=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
    [[ -n $cand && $cand != "(none)" ]]
}
apt_install() {
    local pkg=$1
    ((EUID == 0)) || die "package '$pkg' is missing; run as root or install it: apt-get install $pkg"
    if ! apt_has_candidate "$pkg" && ((APT_UPDATED == 0)); then
        log "apt-get update"
        apt-get update -qq >&2
        APT_UPDATED=1
    fi
    apt_has_candidate "$pkg" || return 1
    log "apt-get install $pkg"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >&2
}

ensure_tools() {
    command -v python3 >/dev/null || apt_install python3 || die "cannot install python3"
    # GNU time (not the shell keyword) gives user/sys CPU and peak RSS.
    [[ -x /usr/bin/time ]] || apt_install time || die "cannot install GNU time"
    command -v aide >/dev/null || apt_install aide || die "cannot install aide"
    if ! command -v b3sum >/dev/null; then
        # Debian ships b3sum (bookworm: 1.2.0); fall back to crates.io.
        if ! apt_install b3sum; then
            log "Debian has no b3sum package; cargo install b3sum --locked"
            cargo install b3sum --locked >&2 || die "cannot install b3sum"
            PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
        fi
    fi
    # Every measured command must run the same way each time: fail now
    # rather than in the middle of the measurements.
    /usr/bin/time -f '%e' true 2>/dev/null || die "/usr/bin/time is not GNU time"
}

build_ours() {
    if [[ -n ${DRIFTWATCH_BIN:-} ]]; then
        BIN=$DRIFTWATCH_BIN
        log "using DRIFTWATCH_BIN=$BIN (not building)"
    else
        log "cargo build --release -p driftwatch-agent"
        (cd -- "$REPO" && cargo build --release -p driftwatch-agent) >&2 ||
            die "cargo build failed"
        BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/driftwatch-agent
    fi
    [[ -x $BIN ]] || die "our binary is not executable: $BIN"
}

# ----------------------------------------------------------------- tree --

prepare_tree() {
    if [[ $TREE_KIND == tree ]]; then
        log "benchmarking existing tree $TREE"
    else
        TREE_KIND=corpus
        if ((TEXT)); then
            TREE=$OUT/text-corpus
            python3 "$SCRIPT_DIR/make_corpus.py" --text "$TREE" "$SCALE" "$SEED" ||
                die "corpus generation failed"
        else
            TREE=$OUT/corpus
            python3 "$SCRIPT_DIR/make_corpus.py" "$TREE" "$SCALE" "$SEED" ||
                die "corpus generation failed"
        fi
    fi
    if [[ $TREE =~ [[:space:]@\\] ]]; then
        die "the tree path must not contain spaces, '@' or '\\': $TREE"
    fi
    local tree_prefix=${TREE%/}/ # "/" stays "/"
    case $OUT/ in
        "$tree_prefix"*) die "BENCH_DIR ($OUT) is inside the benchmarked tree; choose another BENCH_DIR" ;;
    esac
    # Tools may differ on crossing mount points (AIDE and find do, our
    # walker may stay on one filesystem): say so rather than silently
    # compare different sets of files.
    if awk -v t="$TREE/" 'index($5 "/", t) == 1 && $5 "/" != t {found = 1} END {exit !found}' \
        /proc/self/mountinfo; then
        warn "$TREE contains mount points; tools may walk different sets of files"
    fi
}

# Counts from one find pass: regular files, directories, symlinks, bytes.
TREE_FILES=0 TREE_DIRS=0 TREE_LINKS=0 TREE_OTHER=0 TREE_BYTES=0
describe_tree() {
    read -r TREE_FILES TREE_DIRS TREE_LINKS TREE_OTHER TREE_BYTES < <(
        find "$TREE" -printf '%y %s\n' | awk '
            $1 == "f" { f++; b += $2; next }
            $1 == "d" { d++; next }
            $1 == "l" { l++; next }
            { o++ }
            END { printf "%d %d %d %d %.0f\n", f, d, l, o, b }'
    )
    log "tree: $TREE_FILES files, $TREE_DIRS dirs, $TREE_LINKS symlinks, $TREE_OTHER other, $TREE_BYTES bytes"
}

# Targets are for a warm cache: read every file once, and walk the tree once
# for the dentry/inode caches. Warn if the tree cannot stay cached.
warm_cache() {
    local avail_kib
    avail_kib=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
    if ((TREE_BYTES / 1024 > avail_kib * 7 / 10)); then
        warn "tree ($((TREE_BYTES >> 20)) MiB) is near or above available memory" \
            "($((avail_kib >> 10)) MiB): results will not be warm-cache"
    fi
    log "warming the page cache"
    find "$TREE" -printf '' >/dev/null
    find "$TREE" -type f -print0 | xargs -0r -P "$NPROC" -n 256 cat >/dev/null ||
        warn "some files could not be read while warming the cache"
}

# ----------------------------------------------------------------- AIDE --

# AIDE rules are regular expressions: escape the tree path, and anchor it so
# a sibling like TREE2 or TREE.old does not match.
aide_regex() {
    printf '%s' "$1" | sed 's/[][\.*^$+?(){}|]/\\&/g'
}

write_aide_conf() {
    cat >"$AIDE_CONF" <<EOF
# Written by bench/run.sh for one benchmark run; regenerated every run.
database_in=file:$AIDE_DB
database_out=file:$AIDE_DB_NEW
# Plain database: compression would charge AIDE for work ours does not do.
gzip_dbout=false
# AIDE hashes its own database after writing it; by default with every
# hash it has (about a dozen). One hash, like every other measurement here.
database_attrs=sha256
# Threads for attribute and hash work, like ours (all cores).
num_workers=$NPROC
report_url=stdout

# What driftwatch records per entry: file type, mode, owner, group, size,
# link count, inode, symlink target, mtime, ctime, extended attributes (all
# namespaces, so ACLs and file capabilities too) and one content hash.
# AIDE's separate acl/selinux/caps/e2fsattrs attributes would read the same
# xattrs again (or use extra ioctls), so they are left out.
Bench = ftype+p+u+g+s+n+i+l+m+c+xattrs+sha256

$(aide_regex "$TREE")(/|\$) Bench
EOF
}

# ----------------------------------------------------------- measuring --

# Called before each run of a measured command (not timed).
prep_none() { :; }
prep_aide_init() { rm -f "$AIDE_DB_NEW"; }
# Our init refuses to overwrite a database: remove it, its key, SQLite side
# files and temporary files a crashed run may have left next to it.
prep_ours_init() { rm -f "$DW_DB" "$DW_DB.key" "$DW_DB-wal" "$DW_DB-shm" "$DW_DB".new-*; }

# Called after each run with: label, exit code, log file. Dies on failure.
show_log_tail() {
    printf -- '--- last lines of %s ---\n' "$1" >&2
    tail -n 20 "$1" >&2 || true
}
accept_zero() {
    (($2 == 0)) && return
    show_log_tail "$3"
    die "$1 failed with exit code $2 (log: $3)"
}
# AIDE --check exits 1*added + 2*removed + 4*changed (0-7); 14 and up are
# errors. Changes on an untouched tree mean the tree itself moved (e.g. a
# live system directory): report them, but only errors stop the run.
accept_aide_check() {
    (($2 == 0)) && return
    if (($2 <= 7)); then
        warn "AIDE reported changes (exit $2) on the unchanged tree; see $3"
        return
    fi
    show_log_tail "$3"
    die "$1 failed with exit code $2 (log: $3)"
}
# Ours: 0 = no drift, 1 = drift, anything else = error. Nothing changed
# since init, so drift is a bug: fail loudly.
accept_ours_check() {
    (($2 == 0)) && return
    show_log_tail "$3"
    if (($2 == 1)); then
        die "$1 reported DRIFT on an unchanged tree (exit 1); this is a bug (log: $3)"
    fi
    die "$1 failed with exit code $2 (log: $3)"
}

# measure LABEL PREP ACCEPT -- COMMAND...
# Runs COMMAND RUNS times under GNU time, output to logs/LABEL.N.log, and
# appends "label run wall user sys maxrss_kib exit" to runs.tsv. Wall time
# comes from EPOCHREALTIME (microseconds; GNU time only has 10 ms).
measure() {
    local label=$1 prep=$2 accept=$3
    shift 4
    local i rc t0 t1 wall user sys rss timef logf runs=$RUNS
    [[ $label == aide_* ]] && runs=$AIDE_RUNS
    for ((i = 1; i <= runs; i++)); do
        "$prep"
        timef=$LOGS/$label.$i.time
        logf=$LOGS/$label.$i.log
        rc=0
        t0=$EPOCHREALTIME
        /usr/bin/time -f '%U %S %M' -o "$timef" -- "$@" >"$logf" 2>&1 || rc=$?
        t1=$EPOCHREALTIME
        "$accept" "$label" "$rc" "$logf"
        # GNU time writes "Command exited with non-zero status N" first
        # when rc != 0; the numbers are on the last line.
        read -r user sys rss < <(tail -n 1 "$timef")
        wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
        printf '%s\t%d\t%s\t%s\t%s\t%s\t%d\n' \
            "$label" "$i" "$wall" "$user" "$sys" "$rss" "$rc" >>"$RUNS_TSV"
        log "$(printf '%-13s run %d/%d: wall %7.3f s  cpu %7.2f s  rss %7d KiB' \
            "$label" "$i" "$runs" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}')" "$rss")"
    done
}

# Median run per label (by wall time; the lower median for even RUNS), and
# the spread of wall times.
summarize() {
    local label wall cpu rss wmin wmax
    while read -r label wall cpu rss wmin wmax; do
        WALL[$label]=$wall CPU[$label]=$cpu RSS[$label]=$rss
        WMIN[$label]=$wmin WMAX[$label]=$wmax
    done < <(tail -n +2 "$RUNS_TSV" | sort -t $'\t' -k1,1 -k3,3g | awk -F '\t' '
        { n[$1]++; w[$1, n[$1]] = $3; c[$1, n[$1]] = $4 + $5; r[$1, n[$1]] = $6 }
        END {
            for (l in n) {
                m = int((n[l] + 1) / 2)
                printf "%s %.3f %.2f %.0f %.3f %.3f\n", l, w[l, m], c[l, m], r[l, m], w[l, 1], w[l, n[l]]
            }
        }')
}

run_all() {
    printf 'label\trun\twall_s\tuser_s\tsys_s\tmaxrss_kib\texit\n' >"$RUNS_TSV"

    log "ceiling: b3sum over all regular files ($NPROC processes, 1 thread each)"
    # shellcheck disable=SC2016 # $1/$2 expand in the inner bash, on purpose
    measure hash_ceiling prep_none accept_zero -- bash -c \
        'find "$1" -type f -print0 | xargs -0r -P "$2" -n 500 b3sum --num-threads 1 >/dev/null' \
        _ "$TREE" "$NPROC"

    log "ceiling: stat walk (find -printf, all metadata)"
    # shellcheck disable=SC2016 # the format is for find, not the shell
    measure stat_ceiling prep_none accept_zero -- bash -c \
        'find "$1" -printf "%p %s %m %U %G %i %D %n %T@ %C@ %y %l\n" >/dev/null' _ "$TREE"

    log "AIDE init"
    write_aide_conf
    measure aide_init prep_aide_init accept_zero -- aide --config="$AIDE_CONF" --init
    mv -f "$AIDE_DB_NEW" "$AIDE_DB"

    log "AIDE check"
    measure aide_check prep_none accept_aide_check -- aide --config="$AIDE_CONF" --check

    log "ours: baseline init"
    measure ours_init prep_ours_init accept_zero -- \
        "$BIN" baseline init --path "$TREE" --db "$DW_DB" "${OURS_EXTRA[@]}"

    log "ours: check"
    measure ours_check prep_none accept_ours_check -- \
        "$BIN" check --path "$TREE" --db "$DW_DB"

    summarize
}

# -------------------------------------------------------------- report --

# fmt_ratio A B: A/B with two decimals, or n/a.
fmt_ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }
fmt_mib() { awk -v k="$1" 'BEGIN {printf "%.0f", k / 1024}'; }
fmt_gib() { awk -v b="$1" 'BEGIN {printf "%.2f", b / 1073741824}'; }
# 1234567 -> 1,234,567 (printf's %'d depends on the locale).
fmt_int() { sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<<"$1"; }

# One row per operation, as Markdown table cells (also used for the
# terminal, which shows the same table).
op_row() {
    local op=$1 ceiling=$2 a=aide_$1 o=ours_$1
    printf '| %s | %s | %s | %s | %s | %s | %s | **%s×** | %s | %s× |\n' \
        "$op" "${WALL[$a]}" "${CPU[$a]}" "$(fmt_mib "${RSS[$a]}")" \
        "${WALL[$o]}" "${CPU[$o]}" "$(fmt_mib "${RSS[$o]}")" \
        "$(fmt_ratio "${WALL[$a]}" "${WALL[$o]}")" \
        "${WALL[$ceiling]}" "$(fmt_ratio "${WALL[$o]}" "${WALL[$ceiling]}")"
}

ceiling_row() {
    local name=$1 label=$2
    printf '| %s | %s | %s–%s | %s | %s |\n' "$name" "${WALL[$label]}" \
        "${WMIN[$label]}" "${WMAX[$label]}" "${CPU[$label]}" "$(fmt_mib "${RSS[$label]}")"
}

spread_row() {
    local label=$1
    printf '| %s | %s | %s–%s |\n' "$label" "${WALL[$label]}" "${WMIN[$label]}" "${WMAX[$label]}"
}

write_results() {
    local aide_version b3_version ours_version cpu_model fstype tree_desc
    aide_version=$(aide --version 2>&1 | awk 'NR == 1 {print $2; exit}')
    b3_version=$(b3sum --version 2>/dev/null | awk '{print $2}')
    ours_version=$("$BIN" --version 2>/dev/null | head -n 1) || true
    cpu_model=$(awk -F ': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
    fstype=$(findmnt -n -o FSTYPE -T "$TREE" 2>/dev/null) || fstype=$(stat -f -c %T "$TREE")
    if [[ $TREE_KIND == corpus ]]; then
        tree_desc="generated $( ((TEXT)) && printf 'text ')corpus (bench/make_corpus.py$( ((TEXT)) && printf ' --text'), scale $SCALE, seed $SEED)"
    else
        tree_desc="existing tree \`$TREE\`"
    fi

    # shellcheck disable=SC2016 # backquotes are Markdown code spans
    {
        printf '## driftwatch-agent vs AIDE (%s)\n\n' "$(date -u +%Y-%m-%d)"
        printf -- '- tree: %s: %s regular files, %s bytes (%s GiB), %s directories, %s symlinks\n' \
            "$tree_desc" "$(fmt_int "$TREE_FILES")" "$(fmt_int "$TREE_BYTES")" \
            "$(fmt_gib "$TREE_BYTES")" "$(fmt_int "$TREE_DIRS")" "$(fmt_int "$TREE_LINKS")"
        printf -- '- machine: %s cores (nproc) — %s, kernel %s, filesystem %s\n' \
            "$NPROC" "${cpu_model:-unknown CPU}" "$(uname -r)" "$fstype"
        printf -- '- AIDE %s (sha256, `num_workers=%s`), b3sum %s, ours: %s\n' \
            "$aide_version" "$NPROC" "$b3_version" "${ours_version:-$(basename "$BIN")}"
        printf -- '- warm page cache; median of %s run(s) by wall time (CPU = user+sys; RSS = peak of the largest process)\n\n' "$RUNS"

        printf '| operation | AIDE wall s | AIDE CPU s | AIDE RSS MiB | ours wall s | ours CPU s | ours RSS MiB | AIDE / ours | ceiling wall s | ours / ceiling |\n'
        printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
        op_row init hash_ceiling
        op_row check stat_ceiling
        printf '\n'
        printf 'AIDE / ours > 1: ours is faster. Ours / ceiling: 1.00 = as fast as the ceiling.\n'
        printf 'Ceiling for init: b3sum; for check: the stat walk.\n\n'
        local aide_size ours_size
        aide_size=$(stat -c %s "$AIDE_DB")
        ours_size=$(stat -c %s "$DW_DB")
        printf '| database | AIDE bytes | ours bytes | ours / AIDE |\n|---|---:|---:|---:|\n'
        printf '| size after init | %s | %s | %s× |\n\n' "$(fmt_int "$aide_size")" \
            "$(fmt_int "$ours_size")" "$(fmt_ratio "$ours_size" "$aide_size")"
        printf 'Our init said: %s\n\n' "$(grep -h '^snapshots' "$LOGS/ours_init.1.log" | tr '\n' ' ' | sed 's/ *$//')"

        printf '| ceiling | wall s | wall range s | CPU s | RSS MiB |\n'
        printf '|---|---:|---:|---:|---:|\n'
        ceiling_row "hash (for init)" hash_ceiling
        ceiling_row "stat walk (for check)" stat_ceiling
        printf '\n'

        printf '| measurement | median wall s | range s |\n|---|---:|---:|\n'
        local l
        for l in aide_init ours_init aide_check ours_check; do spread_row "$l"; done
        printf '\n'
        printf 'Commands (TREE = the tree above):\n\n'
        printf -- '- hash ceiling: `find TREE -type f -print0 | xargs -0 -P %s -n 500 b3sum --num-threads 1 >/dev/null`\n' "$NPROC"
        printf -- "- stat walk ceiling: \`find TREE -printf '%%p %%s %%m %%U %%G %%i %%D %%n %%T@ %%C@ %%y %%l\\\\n' >/dev/null\`\n"
        printf -- '- AIDE: `aide --config=aide.conf --init` and `--check`, rule `TREE(/|$) Bench` with `Bench = ftype+p+u+g+s+n+i+l+m+c+xattrs+sha256`, `num_workers=%s`, `gzip_dbout=false`\n' "$NPROC"
        printf -- '- ours: `driftwatch-agent baseline init --path TREE --db dw.db%s` and `driftwatch-agent check --path TREE --db dw.db`\n\n' "${OURS_ARGS:+ $OURS_ARGS}"
        printf 'Produced by `bench/run.sh`; every run is in `runs.tsv`.\n'
    } >"$RESULTS_MD"
}

print_results() {
    # Same content as results.md; table blocks are aligned with column(1)
    # when it is there, and the Markdown separator rows are dropped.
    local line table=()
    printf '\n'
    while IFS= read -r line || [[ -n $line ]]; do
        if [[ $line == '|'* ]]; then
            [[ $line == '|---'* ]] || table+=("$line")
            continue
        fi
        flush_table
        printf '%s\n' "$line"
    done <"$RESULTS_MD"
    flush_table
    printf '\nResults written to %s (all runs: %s, logs: %s)\n' "$RESULTS_MD" "$RUNS_TSV" "$LOGS"
}

# Print and empty print_results' pending table lines.
flush_table() {
    ((${#table[@]})) || return 0
    if command -v column >/dev/null; then
        printf '%s\n' "${table[@]}" | sed 's/^| //; s/ |$//; s/\*\*//g' |
            column -t -s '|' -o ' |'
    else
        printf '%s\n' "${table[@]}"
    fi
    table=()
}

# ---------------------------------------------------------------- main --

# The suite: each tree in its own BENCH_DIR/NAME by a run of this script, then
# their results one after the other in BENCH_DIR/suite.md.
run_suite() {
    mkdir -p "$OUT/trees"
    OUT=$(cd -- "$OUT" && pwd -P)
    local name tree args=() status=0
    [[ -n ${DRIFTWATCH_BIN:-} ]] || {
        build_ours
        export DRIFTWATCH_BIN=$BIN
    }
    : >"$OUT/suite.md"
    for name in ${BENCH_TREES:-usr etc text}; do
        case $name in
            usr | etc)
                tree=$OUT/trees/$name
                if [[ ! -e $tree.copied ]]; then
                    log "copying /$name to $tree (cp -a)"
                    rm -rf "$tree"
                    # Unreadable or vanishing files in a live /etc are not fatal.
                    cp -a "/$name" "$tree" || warn "cp -a /$name reported errors"
                    touch "$tree.copied"
                fi
                args=(--tree "$tree")
                ;;
            text) args=(--text-corpus) ;;
            corpus) args=(--corpus) ;;
            *) die "BENCH_TREES: unknown tree '$name' (usr, etc, text, corpus)" ;;
        esac
        log "suite: $name"
        if BENCH_DIR=$OUT/$name "${BASH_SOURCE[0]}" "${args[@]}"; then
            cat "$OUT/$name/results.md" >>"$OUT/suite.md"
            printf '\n' >>"$OUT/suite.md"
        else
            status=1
            warn "suite: $name failed"
        fi
    done
    log "suite results: $OUT/suite.md"
    return "$status"
}

main() {
    parse_args "$@"
    if ((SUITE)); then
        run_suite
        return
    fi
    setup_out
    ensure_tools
    build_ours
    prepare_tree
    describe_tree
    warm_cache
    run_all
    write_results
    print_results
}

main "$@"
