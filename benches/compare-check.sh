#!/usr/bin/env bash
# `check --verify-data` benchmark, rborg against real borg, on the same repository in one run.
#
# usage: benches/compare-check.sh [--scale S] [--runs N] [--workdir DIR] [--keep] [--cold]
#
# Builds the deterministic corpus (benches/make-corpus.py, about 1.3 GB at scale 1), backs it up
# once with real borg (repokey-blake2, lz4 — the repository is borg's own), then runs
# `borg check --verify-data` and `rborg check --verify-data` on it N times each, alternating,
# and prints the best and median wall times, peak RSS and the speed ratio. Both must report
# the repository clean (rc 0).
#
# The segments are read into the page cache before every run (borg drops the pages of the
# segments it has read, so whichever tool ran after it would otherwise read from disk); with
# --cold (root only) the page cache is dropped instead, so both tools read from the disk.
# Needs: borg (1.2.x) on PATH, python3, GNU time (/usr/bin/time).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"

scale=1.0 runs=3 workdir="" keep=0 cold=0
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) scale="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --workdir) workdir="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        --cold) cold=1; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ -n "$workdir" ] || workdir="$(mktemp -d "${TMPDIR:-/tmp}/rborg-bench.XXXXXX")"
mkdir -p "$workdir"
cleanup() { [ "$keep" = 1 ] || rm -rf "$workdir"; }
trap cleanup EXIT

command -v borg >/dev/null || { echo "real borg is required on PATH" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "GNU time (/usr/bin/time) is required" >&2; exit 1; }
if [ "$cold" = 1 ] && [ "$(id -u)" != 0 ]; then
    echo "--cold needs root (to drop the page cache)" >&2; exit 1
fi

. "$here/borg-corpus-repo.sh"
echo "repository: $(du -sm "$repo" | cut -f1) MB; $(nproc) cores; $([ "$cold" = 1 ] && echo cold || echo warm) page cache"

# run_one TOOL -> prints "seconds maxrss_kb"; fails unless the check is clean.
run_one() {
    local tool="$1"
    if [ "$cold" = 1 ]; then
        sync; echo 3 > /proc/sys/vm/drop_caches
    else
        find "$repo/data" -type f -exec cat {} + > /dev/null
    fi
    if ! /usr/bin/time -f "%e %M" -o "$workdir/time.txt" \
            "$tool" check --verify-data "$repo" 2> "$workdir/check.log"; then
        echo "ERROR: $tool check failed:" >&2; cat "$workdir/check.log" >&2; exit 1
    fi
    cat "$workdir/time.txt"
}

borg_times=() rborg_times=() borg_rss=0 rborg_rss=0
for i in $(seq 1 "$runs"); do
    read -r t m < <(run_one borg)
    borg_times+=("$t"); [ "$m" -gt "$borg_rss" ] && borg_rss=$m
    read -r t m < <(run_one "$rborg")
    rborg_times+=("$t"); [ "$m" -gt "$rborg_rss" ] && rborg_rss=$m
    echo "run $i: borg ${borg_times[-1]} s, rborg ${rborg_times[-1]} s"
done

python3 - "$borg_rss" "$rborg_rss" "${borg_times[*]}" "${rborg_times[*]}" <<'PY'
import statistics, sys
brss, rrss = int(sys.argv[1]), int(sys.argv[2])
b = [float(x) for x in sys.argv[3].split()]
r = [float(x) for x in sys.argv[4].split()]
print(f"borg check --verify-data : best {min(b):6.2f} s  median {statistics.median(b):6.2f} s  peak RSS {brss / 1024:6.1f} MiB")
print(f"rborg check --verify-data: best {min(r):6.2f} s  median {statistics.median(r):6.2f} s  peak RSS {rrss / 1024:6.1f} MiB")
print(f"speed-up (borg / rborg, best): {min(b) / min(r):.2f}x  (median: {statistics.median(b) / statistics.median(r):.2f}x)")
PY
