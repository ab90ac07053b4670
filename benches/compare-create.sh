#!/usr/bin/env bash
# Backup benchmark, rborg against real borg, on the same corpus in one run.
#
# usage: benches/compare-create.sh [--scale S] [--runs N] [--workdir DIR] [--keep] [--settle S]
#
# Builds the deterministic corpus (benches/make-corpus.py, about 1.3 GB at scale 1). Then, N
# times and alternating, each tool makes a fresh repository (repokey-blake2) and backs the
# corpus up twice with lz4: an initial backup and an unchanged re-run (files cache hit). Prints
# the best and median times of both steps, the peak RSS, and the speed ratios. Each tool has
# its own cache dir, wiped before every run. Before each timed initial backup the corpus is
# read once, so both tools start with it in the page cache (borg drops the pages of the files
# it reads, so whichever tool ran after it would otherwise read from disk), and the machine is
# left to settle (--settle S seconds, default 10) after the previous run's writes.
# Needs: borg (1.2.x), python3, /usr/bin/time.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"

scale=1.0 runs=3 workdir="" keep=0 settle=10
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) scale="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --workdir) workdir="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        --settle) settle="$2"; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ -n "$workdir" ] || workdir="$(mktemp -d "${TMPDIR:-/tmp}/rborg-bench.XXXXXX")"
mkdir -p "$workdir"
cleanup() {
    rm -rf "$workdir/create-borg" "$workdir/create-rborg"
    [ "$keep" = 1 ] || rm -rf "$workdir"
}
trap cleanup EXIT

command -v borg >/dev/null || { echo "real borg is required on PATH" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "GNU time (/usr/bin/time) is required" >&2; exit 1; }
(cd "$root" && cargo build --release --quiet)
rborg="$root/target/release/rborg"

export BORG_PASSPHRASE=bench BORG_DISPLAY_PASSPHRASE=no BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
corpus="$workdir/corpus"
if [ ! -d "$corpus" ]; then
    echo "creating corpus (scale $scale) ..."
    python3 "$here/make-corpus.py" "$corpus" --scale "$scale" >/dev/null
fi
size=$(du -sb "$corpus" | cut -f1)
echo "corpus: $((size / 1000000)) MB, $(find "$corpus" -type f | wc -l) files; $(nproc) cores"

# one_round TOOL -> prints "initial_s initial_rss_kb rerun_s rerun_rss_kb"
one_round() {
    local tool="$1" name; name="$(basename "$1")"
    local dir="$workdir/create-$name"
    rm -rf "$dir"; mkdir -p "$dir"
    export BORG_BASE_DIR="$dir/base"
    "$tool" init -e repokey-blake2 "$dir/repo" >/dev/null 2>&1
    find "$corpus" -type f -print0 | xargs -0 cat >/dev/null
    sync
    sleep "$settle"
    (cd "$workdir" && /usr/bin/time -f "%e %M" -o "$dir/t1" "$tool" create -C lz4 "$dir/repo::a1" corpus)
    (cd "$workdir" && /usr/bin/time -f "%e %M" -o "$dir/t2" "$tool" create -C lz4 "$dir/repo::a2" corpus)
    echo "$(cat "$dir/t1") $(cat "$dir/t2")"
}

b_init=() b_rerun=() r_init=() r_rerun=() b_rss=0 r_rss=0
for i in $(seq 1 "$runs"); do
    read -r t1 m1 t2 m2 < <(one_round "$(command -v borg)")
    b_init+=("$t1"); b_rerun+=("$t2"); for m in $m1 $m2; do [ "$m" -gt "$b_rss" ] && b_rss=$m; done
    read -r t1 m1 t2 m2 < <(one_round "$rborg")
    r_init+=("$t1"); r_rerun+=("$t2"); for m in $m1 $m2; do [ "$m" -gt "$r_rss" ] && r_rss=$m; done
    echo "run $i: initial borg ${b_init[-1]} s, rborg ${r_init[-1]} s; unchanged re-run borg ${b_rerun[-1]} s, rborg ${r_rerun[-1]} s"
done

python3 - "$b_rss" "$r_rss" "${b_init[*]}" "${r_init[*]}" "${b_rerun[*]}" "${r_rerun[*]}" <<'PY'
import statistics, sys
brss, rrss = int(sys.argv[1]), int(sys.argv[2])
bi, ri, bu, ru = ([float(x) for x in a.split()] for a in sys.argv[3:7])
def line(what, b, r):
    print(f"{what:<22} borg best {min(b):6.2f} s (median {statistics.median(b):6.2f})   "
          f"rborg best {min(r):6.2f} s (median {statistics.median(r):6.2f})   "
          f"speed-up {min(b) / min(r):5.2f}x (median {statistics.median(b) / statistics.median(r):5.2f}x)")
line("initial backup", bi, ri)
line("unchanged re-run", bu, ru)
print(f"peak RSS: borg {brss / 1024:.1f} MiB, rborg {rrss / 1024:.1f} MiB")
PY
