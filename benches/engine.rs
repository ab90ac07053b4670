//! Micro-benchmarks of the engine's hot paths: chunking, object decryption (authenticate,
//! decrypt, decompress, id check) and compression. Run with `cargo bench --bench engine`;
//! `benches/compare-extract.sh` compares whole commands with real borg.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use rborg::chunker::{chunk_lengths, ChunkerParams};
use rborg::compress::CompressionSpec;
use rborg::crypto::{Key, KeyType};

/// Deterministic, incompressible test data (SplitMix64).
fn data(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut state = 0u64;
    while out.len() < len {
        state = state.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn chunking(c: &mut Criterion) {
    let input = data(16 << 20);
    let mut g = c.benchmark_group("chunker");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("buzhash default params", |b| {
        b.iter(|| chunk_lengths(&ChunkerParams::default(), 0, &input))
    });
    g.finish();
}

fn decrypting(c: &mut Criterion) {
    let plain = data(2 << 20);
    let mut g = c.benchmark_group("decrypt 2 MiB object");
    g.throughput(Throughput::Bytes(plain.len() as u64));
    for kt in [KeyType::RepoKeyBlake2, KeyType::RepoKey, KeyType::None] {
        let key = Key::generate(kt, [1; 32]);
        let compressed = CompressionSpec::Lz4.compress(&plain);
        let stored = key.encrypt(&compressed, 0);
        let id = key.id_hash(&plain);
        g.bench_with_input(
            BenchmarkId::from_parameter(kt.mode_name()),
            &stored,
            |b, stored| {
                let mut out = Vec::new();
                b.iter(|| key.decrypt_into(Some(&id), stored, &mut out).unwrap())
            },
        );
    }
    g.finish();
}

fn compressing(c: &mut Criterion) {
    let mut text = Vec::new();
    while text.len() < (2 << 20) {
        text.extend_from_slice(b"the quick brown fox jumps over the lazy borg repository ");
    }
    let mut g = c.benchmark_group("compress 2 MiB text");
    g.throughput(Throughput::Bytes(text.len() as u64));
    for spec in ["lz4", "zstd,3", "zlib,6"] {
        let spec = CompressionSpec::parse(spec).unwrap();
        g.bench_function(spec.to_string(), |b| b.iter(|| spec.compress(&text)));
    }
    g.finish();
}

criterion_group!(benches, chunking, decrypting, compressing);
criterion_main!(benches);
