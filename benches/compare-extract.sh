#!/usr/bin/env bash
# Extract benchmark, rborg against real borg, on the same archive in one run.
#
# usage: benches/compare-extract.sh [--scale S] [--runs N] [--workdir DIR] [--keep] [--no-fresh-fs]
#
# Builds the deterministic corpus (benches/make-corpus.py, about 1.3 GB at scale 1), backs it up
# once with real borg (repokey-blake2, lz4 — the archive is borg's own), then extracts that
# archive N times with `borg extract` and N times with `rborg extract`, alternating, and prints
# the best and median wall times, peak RSS and the speed ratio. Both extracts are checked to give
# the same tree. Needs: borg (1.2.x) on PATH, python3, GNU time (/usr/bin/time).
#
# As root (with mkfs.ext4 and loop mounts), every extract goes to a freshly made ext4 file
# system: on a used one, ext4 spends minutes after any large deletion scanning for inodes it may
# reuse, which swamps the measurement. --no-fresh-fs extracts into plain new directories.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"

scale=1.0 runs=3 workdir="" keep=0 fresh_fs=1
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) scale="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --workdir) workdir="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        --no-fresh-fs) fresh_fs=0; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ -n "$workdir" ] || workdir="$(mktemp -d "${TMPDIR:-/tmp}/rborg-bench.XXXXXX")"
mkdir -p "$workdir"
cleanup() {
    mountpoint -q "$workdir/mnt" 2>/dev/null && umount "$workdir/mnt"
    rm -f "$workdir/fs.img"
    [ "$keep" = 1 ] || rm -rf "$workdir"
}
trap cleanup EXIT

command -v borg >/dev/null || { echo "real borg is required on PATH" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "GNU time (/usr/bin/time) is required" >&2; exit 1; }

. "$here/borg-corpus-repo.sh"
size=$(du -sb "$corpus" | cut -f1)
echo "corpus: $((size / 1000000)) MB, $(find "$corpus" -type f | wc -l) files; $(nproc) cores"

if [ "$fresh_fs" = 1 ] && { [ "$(id -u)" != 0 ] || ! command -v mkfs.ext4 >/dev/null; }; then
    echo "note: not root or no mkfs.ext4: extracting into plain directories (--no-fresh-fs)"
    fresh_fs=0
fi

# run_one TOOL OUTDIR -> prints "seconds maxrss_kb". Every run extracts into a new directory
# (on a new file system unless --no-fresh-fs); the tree of run 1 is kept for comparison.
run_one() {
    local tool="$1" out="$2" target="$2"
    if [ "$fresh_fs" = 1 ]; then
        truncate -s $((size * 2 + (1 << 30))) "$workdir/fs.img"
        mkfs.ext4 -q -F "$workdir/fs.img"
        mkdir -p "$workdir/mnt" && mount -o loop "$workdir/fs.img" "$workdir/mnt"
        target="$workdir/mnt/out"
    fi
    mkdir -p "$target"; sync
    (cd "$target" && /usr/bin/time -f "%e %M" -o "$workdir/time.txt" "$tool" extract "$repo::corpus" >/dev/null)
    if [ "$fresh_fs" = 1 ]; then
        if [ ! -e "$out" ]; then cp -a "$target" "$out"; fi
        umount "$workdir/mnt"; rm -f "$workdir/fs.img"
    fi
    cat "$workdir/time.txt"
}

borg_times=() rborg_times=() borg_rss=0 rborg_rss=0
for i in $(seq 1 "$runs"); do
    read -r t m < <(run_one borg "$workdir/out-borg-$((fresh_fs ? 1 : i))")
    borg_times+=("$t"); [ "$m" -gt "$borg_rss" ] && borg_rss=$m
    read -r t m < <(run_one "$rborg" "$workdir/out-rborg-$((fresh_fs ? 1 : i))")
    rborg_times+=("$t"); [ "$m" -gt "$rborg_rss" ] && rborg_rss=$m
    echo "run $i: borg ${borg_times[-1]} s, rborg ${rborg_times[-1]} s"
done

diff -r --no-dereference "$workdir/out-borg-1" "$workdir/out-rborg-1" >/dev/null \
    || { echo "ERROR: the extracted trees differ" >&2; exit 1; }
rm -rf "$workdir"/out-borg-* "$workdir"/out-rborg-*

python3 - "$size" "$borg_rss" "$rborg_rss" "${borg_times[*]}" "${rborg_times[*]}" <<'PY'
import statistics, sys
size, brss, rrss = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
b = [float(x) for x in sys.argv[4].split()]
r = [float(x) for x in sys.argv[5].split()]
print(f"borg extract : best {min(b):6.2f} s  median {statistics.median(b):6.2f} s  "
      f"{size / min(b) / 1e6:7.1f} MB/s  peak RSS {brss / 1024:6.1f} MiB")
print(f"rborg extract: best {min(r):6.2f} s  median {statistics.median(r):6.2f} s  "
      f"{size / min(r) / 1e6:7.1f} MB/s  peak RSS {rrss / 1024:6.1f} MiB")
print(f"speed-up (borg / rborg, best): {min(b) / min(r):.2f}x  (median: {statistics.median(b) / statistics.median(r):.2f}x)")
PY
