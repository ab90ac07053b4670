#!/usr/bin/env bash
# Remote-repository benchmark: rborg create and extract to a local repository and to an
# ssh:// repository behind a simulated wide-area link, and the remote/local time ratios.
#
# usage: benches/compare-remote.sh [--corpus DIR | --scale S] [--delay MS] [--runs N]
#                                  [--workdir DIR] [--keep]
#
# The corpus is DIR, or the deterministic one of benches/make-corpus.py (scale 0.15, about
# 200 MB). The link: BORG_RSH is a stand-in for ssh (written to the work dir) that runs
# `rborg serve` locally, like sshd would, and relays its stdin and stdout through a python3
# relay that holds every piece of data back --delay MS (default 20) in each direction, so
# a round trip costs 2×MS. Only latency is added; bandwidth is whatever the relay manages
# (several hundred MB/s). (tc netem on lo would need CAP_NET_ADMIN and a real sshd; the
# relay works anywhere.) Each run uses fresh repositories and caches (repokey-blake2, lz4);
# the best of --runs N (default 1) is reported. Target: remote create within 1.5× of local.
# Each round also times the create of an empty directory: what a connection costs whatever
# the data (start-up, the handshake and commit round trips). The create throughput
# (corpus size over create time minus that cost) is printed beside the times; on a small
# corpus the fixed cost dominates the time ratio, on the full one (--scale 1) it does not.
# Needs: python3, bash 5 (EPOCHREALTIME), awk.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"

corpus="" scale=0.15 delay=20 runs=1 workdir="" keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --corpus) corpus="$(cd "$2" && pwd)"; shift 2 ;;
        --scale) scale="$2"; shift 2 ;;
        --delay) delay="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --workdir) workdir="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
own_workdir=0
if [ -z "$workdir" ]; then
    workdir="$(mktemp -d "${TMPDIR:-/tmp}/rborg-remote-bench.XXXXXX")"
    own_workdir=1
fi
mkdir -p "$workdir"
workdir="$(cd "$workdir" && pwd)"
# a --workdir given is kept (only the runs' repositories go); a temporary one unless --keep
cleanup() {
    rm -rf "$workdir/run" "$workdir/round"
    [ "$own_workdir" = 1 ] && [ "$keep" = 0 ] && rm -rf "$workdir"
    return 0
}
trap cleanup EXIT

(cd "$root" && cargo build --release --quiet)
rborg="$root/target/release/rborg"
export BORG_PASSPHRASE=bench BORG_DISPLAY_PASSPHRASE=no

if [ -z "$corpus" ]; then
    corpus="$workdir/corpus"
    if [ ! -d "$corpus" ]; then
        echo "creating corpus (scale $scale) ..."
        python3 "$here/make-corpus.py" "$corpus" --scale "$scale" >/dev/null
    fi
fi
size=$(du -sb "$corpus" | cut -f1)
echo "corpus: $((size / 1000000)) MB, $(find "$corpus" -type f | wc -l) files; $(nproc) cores; link delay ${delay} ms each way"

# the ssh stand-in: drop ssh's options and the host, run the command under sh (as sshd
# does), relay stdin/stdout through delaying queues, pass stderr through
# (the interpreter itself in the #! line: a version manager's shim would add its own start-up
# time to every connection)
python="$(python3 -c 'import sys; print(sys.executable)')"
{ echo "#!$python"; cat <<'PY'; } > "$workdir/delay-ssh"
import fcntl, os, queue, subprocess, sys, threading, time
args = sys.argv[1:]
while args and args[0].startswith('-'):
    args = args[2:] if args[0] in ('-p', '-i', '-o', '-l', '-F') else args[1:]
command = ' '.join(args[1:])
delay = float(os.environ.get('DELAY_MS', '20')) / 1000
child = subprocess.Popen(['sh', '-c', command], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

BLOCK, BLOCKS = 1 << 20, 64
F_SETPIPE_SZ = 1031

def relay(src, dst):
    # a bounded pool of reused buffers (at most BLOCKS MiB on the link, like a socket's
    # buffers): a fresh buffer per read would cost more CPU than the copying itself
    for fd in (src, dst):
        try:
            fcntl.fcntl(fd, F_SETPIPE_SZ, BLOCK)
        except OSError:
            pass
    due, free = queue.Queue(), queue.Queue()
    for _ in range(BLOCKS):
        free.put(memoryview(bytearray(BLOCK)))
    def reader():
        while True:
            buf = free.get()
            n = os.readv(src, [buf])
            due.put((time.monotonic() + delay, buf, n))
            if not n:
                return
    threading.Thread(target=reader, daemon=True).start()
    while True:
        at, buf, n = due.get()
        wait = at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if not n:
            os.close(dst)
            return
        view = buf[:n]
        while view:
            view = view[os.write(dst, view):]
        free.put(buf)

up = threading.Thread(target=relay, args=(0, child.stdin.fileno()), daemon=True)
up.start()
try:
    relay(child.stdout.fileno(), 1)
except BrokenPipeError:
    pass
sys.exit(child.wait())
PY
chmod +x "$workdir/delay-ssh"

# timed CMD... : run CMD (its output discarded), print the elapsed seconds
timed() {
    local start=$EPOCHREALTIME
    if ! "$@" >/dev/null 2>"$workdir/run/stderr"; then
        cat "$workdir/run/stderr" >&2
        return 1
    fi
    awk "BEGIN { printf \"%.2f\", $EPOCHREALTIME - $start }"
}

# one_round local|remote -> prints "create_s extract_s empty_create_s"
one_round() {
    local run="$workdir/run" repo c e z
    rm -rf "$run"; mkdir -p "$run/base" "$run/out"
    export BORG_BASE_DIR="$run/base"
    if [ "$1" = local ]; then repo="$run/repo"; else repo="ssh://bench-host$run/repo"; fi
    "$rborg" init -e repokey-blake2 "$repo" >/dev/null 2>&1
    find "$corpus" -type f -print0 | xargs -0 cat >/dev/null
    sync
    c=$(cd "$(dirname "$corpus")" && timed "$rborg" create -C lz4 "$repo::a1" "$(basename "$corpus")")
    e=$(cd "$run/out" && timed "$rborg" extract "$repo::a1")
    mkdir -p "$run/empty"
    z=$(timed "$rborg" create "$repo::empty" "$run/empty")
    echo "$c $e $z"
}

export BORG_RSH="$workdir/delay-ssh" BORG_REMOTE_PATH="$rborg" DELAY_MS="$delay"
lc=() le=() lz=() rc=() re=() rz=()
for i in $(seq 1 "$runs"); do
    one_round local > "$workdir/round"; read -r c e z < "$workdir/round"; lc+=("$c"); le+=("$e"); lz+=("$z")
    one_round remote > "$workdir/round"; read -r c e z < "$workdir/round"; rc+=("$c"); re+=("$e"); rz+=("$z")
    echo "run $i: create local ${lc[-1]} s, remote ${rc[-1]} s; extract local ${le[-1]} s, remote ${re[-1]} s; empty create local ${lz[-1]} s, remote ${rz[-1]} s"
done

python3 - "$size" "${lc[*]}" "${rc[*]}" "${le[*]}" "${re[*]}" "${lz[*]}" "${rz[*]}" <<'PY'
import sys
size = int(sys.argv[1]) / 1e6
lc, rc, le, re_, lz, rz = ([float(x) for x in a.split()] for a in sys.argv[2:8])
for what, l, r in (("create", lc, rc), ("extract", le, re_)):
    print(f"{what:8s} best local {min(l):7.2f} s   remote {min(r):7.2f} s   remote/local {min(r) / min(l):.2f}x")
print(f"per connection (empty create): local {min(lz):.2f} s, remote {min(rz):.2f} s")
lt = size / max(min(lc) - min(lz), 1e-3)
rt = size / max(min(rc) - min(rz), 1e-3)
print(f"create throughput: local {lt:.0f} MB/s, remote {rt:.0f} MB/s   local/remote {lt / rt:.2f}x")
PY
