#!/usr/bin/env bash
# Memory of create and extract on very many small files: peak RSS and time of rborg (and
# with --borg, of real borg on the same tree) backing up and restoring N small files.
#
# usage: benches/memory-many-files.sh [--files N] [--borg] [--workdir DIR] [--keep]
#
# The tree: N files (default 1 000 000) of 20-400 bytes in directories of 1000, made
# deterministically by python3. Repositories are repokey-blake2 with lz4, fresh caches.
# Peak RSS comes from GNU time (%M). Needs: python3, /usr/bin/time, borg for --borg.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"

files=1000000 with_borg=0 workdir="" keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --files) files="$2"; shift 2 ;;
        --borg) with_borg=1; shift ;;
        --workdir) workdir="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
own_workdir=0
if [ -z "$workdir" ]; then
    workdir="$(mktemp -d "${TMPDIR:-/tmp}/rborg-many-files.XXXXXX")"
    own_workdir=1
fi
mkdir -p "$workdir"
workdir="$(cd "$workdir" && pwd)"
cleanup() {
    rm -rf "$workdir/run"
    [ "$own_workdir" = 1 ] && [ "$keep" = 0 ] && rm -rf "$workdir"
    return 0
}
trap cleanup EXIT

(cd "$root" && cargo build --release --quiet)
rborg="$root/target/release/rborg"
export BORG_PASSPHRASE=bench BORG_DISPLAY_PASSPHRASE=no

tree="$workdir/tree-$files"
if [ ! -d "$tree" ]; then
    echo "creating $files files ..."
    python3 - "$tree" "$files" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(1)
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d)
    with open(os.path.join(d, "f%04d" % (i % 1000)), "wb") as f:
        f.write(rng.randbytes(rng.randint(20, 400)))
PY
fi
echo "tree: $files files, $(du -sh "$tree" | cut -f1) on disk; $(nproc) cores"

# measure NAME DIR CMD... : run CMD in DIR, print "NAME: S s, peak RSS M MiB"
measure() {
    local name="$1" dir="$2"
    shift 2
    (cd "$dir" && /usr/bin/time -f "%e %M" -o "$workdir/run/time" "$@" >/dev/null 2>"$workdir/run/stderr") || {
        cat "$workdir/run/stderr" >&2
        return 1
    }
    read -r secs kib < "$workdir/run/time"
    printf "%-16s %8.1f s   peak RSS %6.1f MiB\n" "$name" "$secs" "$(awk "BEGIN { print $kib / 1024 }")"
}

one_tool() {
    local tool="$1" prog="$2" run="$workdir/run"
    rm -rf "$run"; mkdir -p "$run/base" "$run/out"
    export BORG_BASE_DIR="$run/base"
    "$prog" init -e repokey-blake2 "$run/repo" >/dev/null 2>&1
    measure "$tool create" "$(dirname "$tree")" "$prog" create -C lz4 "$run/repo::a" "$(basename "$tree")"
    measure "$tool extract" "$run/out" "$prog" extract "$run/repo::a"
    local n
    n=$(find "$run/out" -type f | wc -l)
    [ "$n" = "$files" ] || { echo "$tool extracted $n files, expected $files" >&2; return 1; }
}

one_tool rborg "$rborg"
if [ "$with_borg" = 1 ]; then
    one_tool borg "$(command -v borg)"
fi
