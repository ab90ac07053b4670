# Sourced by the compare-* scripts: builds rborg, sets the borg environment and makes sure
# $workdir holds the benchmark corpus and real borg's backup of it (repokey-blake2, lz4).
# Needs: here, root, workdir, scale. Sets: rborg, corpus, repo.
(cd "$root" && cargo build --release --quiet)
rborg="$root/target/release/rborg"

export BORG_PASSPHRASE=bench BORG_BASE_DIR="$workdir/base" BORG_DISPLAY_PASSPHRASE=no
corpus="$workdir/corpus" repo="$workdir/repo"
if [ ! -d "$corpus" ]; then
    echo "creating corpus (scale $scale) ..."
    python3 "$here/make-corpus.py" "$corpus" --scale "$scale" >/dev/null
fi
if [ ! -d "$repo" ]; then
    echo "backing up with real borg (repokey-blake2, lz4) ..."
    borg init -e repokey-blake2 "$repo"
    (cd "$workdir" && borg create -C lz4 "$repo::corpus" corpus)
fi
