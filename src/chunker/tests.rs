use std::io::{self, Read};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::*;

/// The test input stream of repository-format.md §10.1.
fn splitmix64(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn fixtures_dir() -> Option<PathBuf> {
    crate::testutil::fixtures_dir()
}

/// A reader returning 1..=7 bytes per call.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.step = self.step % 7 + 1;
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn stream_lengths<R: Read>(chunker: &mut Chunker, reader: R) -> Vec<usize> {
    chunker.chunkify(reader).map(|c| c.unwrap().len()).collect()
}

fn stream_bytes<R: Read>(chunker: &mut Chunker, reader: R) -> Vec<u8> {
    chunker
        .chunkify(reader)
        .flat_map(|c| c.unwrap().into_bytes())
        .collect()
}

#[test]
fn splitmix_stream_matches_spec() {
    let s = splitmix64(0, 20 << 20);
    assert_eq!(hex::encode(&s[..16]), "afcd1d7b39a820e2f465b9a16a9e786e");
    assert_eq!(
        hex::encode(Sha256::digest(&s)),
        "4f502ed8929c282ca58ecfdd5c56e5b188ba6d5b9af5be0bb45832e44969d773"
    );
    assert_eq!(hex::encode(splitmix64(1, 8)), "c15c0289ec2d0a91");
}

#[test]
fn table_and_seed() {
    assert_eq!(
        &buzhash::TABLE_BASE[..3],
        &[0xe7f831ec, 0xf4026465, 0xafb50cae]
    );
    assert_eq!(buzhash::TABLE_BASE[255], 0x71893f7b);
    assert_eq!(seed_from_chunk_seed(-2023406815), 0x87654321);
    assert_eq!(buzhash::table(0x87654321)[0], 0xe7f831ec ^ 0x87654321);
}

#[test]
fn buzhash_values() {
    let s = splitmix64(0, 4096);
    assert_eq!(buzhash(&s[..4095], 0), 1160180675);
    assert_eq!(buzhash(&s[..4095], 0x12345678), 1279056127);
    assert_eq!(buzhash(&s[..32], 0), 3919717983);
    assert_eq!(buzhash(&[], 0), 0);
    let rolled = buzhash_update(1160180675, s[0], s[4095], 4095, 0);
    assert_eq!(rolled, 3619011093);
    assert_eq!(buzhash(&s[1..4096], 0), 3619011093);
    let h = buzhash::Hasher::new(7, 4095);
    assert_eq!(
        h.roll(h.hash(&s[..4095]), s[0], s[4095]),
        h.hash(&s[1..4096])
    );
}

#[test]
fn default_params_vectors_from_spec() {
    let s = splitmix64(0, 20 << 20);
    let mut c = Chunker::new(&CHUNKER_PARAMS, 0);
    assert_eq!(
        c.chunk_lengths(&s),
        [
            3004462, 1146436, 1243419, 1588467, 979908, 844709, 2166199, 1117217, 1632268, 5032890,
            1862493, 353052
        ]
    );
    let mut c = Chunker::new(&CHUNKER_PARAMS, 0x12345678);
    let expected = [2985737, 5435505, 8388608, 4161670];
    assert_eq!(c.chunk_lengths(&s), expected);
    // the streaming chunker over a plain reader cuts the same (incl. the max-size chunk)
    assert_eq!(stream_lengths(&mut c, &s[..]), expected);
    assert_eq!(stream_bytes(&mut c, &s[..]), s);
}

#[test]
fn fixture_vectors() {
    let Some(dir) = fixtures_dir() else { return };
    let text = std::fs::read_to_string(dir.join("expected/chunker-vectors.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let stream = &v["stream"];
    assert_eq!(stream["generator"], "splitmix64");
    let full = splitmix64(
        stream["seed"].as_u64().unwrap(),
        stream["length"].as_u64().unwrap() as usize,
    );
    assert_eq!(
        hex::encode(Sha256::digest(&full)),
        stream["sha256"].as_str().unwrap()
    );
    for b in v["buzhash"].as_array().unwrap() {
        let seed = b["seed"].as_i64().unwrap() as u32;
        let input = b["input"].as_str().unwrap();
        let value = b["value"].as_u64().unwrap() as u32;
        let got = match input {
            "stream[0:4095]" => buzhash(&full[..4095], seed),
            "stream[0:32]" => buzhash(&full[..32], seed),
            _ => {
                assert!(input.starts_with("rolling"), "{input}");
                buzhash_update(
                    buzhash(&full[..4095], seed),
                    full[0],
                    full[4095],
                    4095,
                    seed,
                )
            }
        };
        assert_eq!(got, value, "{input}");
    }
    for vec in v["buzhash_vectors"].as_array().unwrap() {
        let params = ChunkerParams::Buzhash {
            min_exp: vec["min_exp"].as_u64().unwrap() as u32,
            max_exp: vec["max_exp"].as_u64().unwrap() as u32,
            mask_bits: vec["mask_bits"].as_u64().unwrap() as u32,
            window: vec["window"].as_u64().unwrap() as u32,
        };
        let seed = seed_from_chunk_seed(vec["seed"].as_i64().unwrap());
        let data = &full[..vec["input_len"].as_u64().unwrap() as usize];
        let expected: Vec<usize> = vec["chunk_lengths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap() as usize)
            .collect();
        let mut c = Chunker::new(&params, seed);
        assert_eq!(c.chunk_lengths(data), expected, "{}", vec["name"]);
        assert_eq!(
            stream_lengths(&mut c, data),
            expected,
            "{} (stream)",
            vec["name"]
        );
    }
    for vec in v["fixed_vectors"].as_array().unwrap() {
        let params = ChunkerParams::Fixed {
            block: vec["block_size"].as_u64().unwrap() as u32,
            header: vec["header_size"].as_u64().unwrap() as u32,
        };
        let data = &full[..vec["input_len"].as_u64().unwrap() as usize];
        let expected: Vec<usize> = vec["chunk_lengths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap() as usize)
            .collect();
        let mut c = Chunker::new(&params, 0);
        assert_eq!(c.chunk_lengths(data), expected, "{}", vec["name"]);
        assert_eq!(stream_lengths(&mut c, Trickle { data, step: 0 }), expected);
    }
}

#[test]
fn trickling_reader_gives_same_boundaries() {
    let data = splitmix64(3, 1 << 20);
    let params = ChunkerParams::parse("buzhash,10,16,12,4095").unwrap();
    let mut c = Chunker::new(&params, seed_from_chunk_seed(-2023406815));
    let whole = c.chunk_lengths(&data);
    assert!(whole.len() > 100);
    assert_eq!(
        stream_lengths(
            &mut c,
            Trickle {
                data: &data,
                step: 0
            }
        ),
        whole
    );
    // the same chunker instance is reusable, and content is preserved
    assert_eq!(
        stream_bytes(
            &mut c,
            Trickle {
                data: &data,
                step: 3
            }
        ),
        data
    );
    // max-size cuts with short reads: a zero-heavy input never meets the mask
    let mut zeros_then_data = vec![0u8; 300_000];
    zeros_then_data.extend_from_slice(&data[..100_000]);
    let whole = c.chunk_lengths(&zeros_then_data);
    assert_eq!(whole[0], 1 << 16);
    assert_eq!(
        stream_lengths(
            &mut c,
            Trickle {
                data: &zeros_then_data,
                step: 0
            }
        ),
        whole
    );
    let first = c.chunkify(&zeros_then_data[..]).next().unwrap().unwrap();
    assert_eq!(first, Chunk::Zeros(1 << 16));
}

#[test]
fn small_and_empty_inputs() {
    let mut c = Chunker::new(&CHUNKER_PARAMS, 0);
    assert!(c.chunkify(io::empty()).next().is_none());
    assert!(c.chunk_lengths(&[]).is_empty());
    let data = splitmix64(9, 1000);
    let chunks: Vec<Chunk> = c.chunkify(&data[..]).map(|r| r.unwrap()).collect();
    assert_eq!(chunks, vec![Chunk::Data(data.clone())]);
    // exactly MIN + window bytes is still too short for a cut
    let min = 1usize << 10;
    let params = ChunkerParams::parse("10,16,12,4095").unwrap();
    let data = splitmix64(9, min + 4095);
    assert_eq!(chunk_lengths(&params, 0, &data), vec![min + 4095]);
    let mut f = Chunker::new(
        &ChunkerParams::Fixed {
            block: 4096,
            header: 0,
        },
        0,
    );
    assert!(f.chunkify(io::empty()).next().is_none());
}

#[test]
fn fixed_chunker_cuts_header_and_blocks() {
    let data = splitmix64(1, 20480);
    let mut c = Chunker::new(&ChunkerParams::parse("fixed,4096,1000").unwrap(), 0);
    assert_eq!(
        c.chunk_lengths(&data[..20000]),
        [1000, 4096, 4096, 4096, 4096, 2616]
    );
    // a header larger than the block is itself cut into blocks (borg's range map)
    let mut c = Chunker::new(&ChunkerParams::parse("fixed,4096,10000").unwrap(), 0);
    assert_eq!(c.chunk_lengths(&data), [4096, 4096, 1808, 4096, 4096, 2288]);
    let mut c = Chunker::new(&ChunkerParams::parse("fixed,4096").unwrap(), 0);
    assert_eq!(c.chunk_lengths(&data[..8192]), [4096, 4096]);
    let zeros = vec![0u8; 5000];
    let chunks: Vec<Chunk> = c.chunkify(&zeros[..]).map(|r| r.unwrap()).collect();
    assert_eq!(chunks, [Chunk::Zeros(4096), Chunk::Zeros(904)]);
}

#[test]
fn fixed_chunker_sparse_file() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = 1 << 20; // larger than any file system's hole granularity
    let data = splitmix64(5, block);
    file.write_all(&data).unwrap();
    file.seek(SeekFrom::Start(3 * block as u64)).unwrap();
    file.write_all(&data).unwrap();
    file.set_len(5 * block as u64).unwrap();
    drop(file);
    let mut file = std::fs::File::open(&path).unwrap();
    let mut c = Chunker::new(
        &ChunkerParams::Fixed {
            block: block as u32,
            header: 0,
        },
        0,
    );
    let chunks: Vec<Chunk> = c
        .chunkify_file(&mut file, true)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let lens: Vec<usize> = chunks.iter().map(Chunk::len).collect();
    assert_eq!(lens, vec![block; 5]);
    assert_eq!(chunks[0], Chunk::Data(data.clone()));
    assert_eq!(chunks[3], Chunk::Data(data.clone()));
    let map = sparse_map(&file, 0).unwrap();
    if map.len() > 1 {
        assert_eq!(chunks[1], Chunk::Hole(block));
        assert_eq!(chunks[4], Chunk::Hole(block));
    } else {
        eprintln!("file system reports no holes; sparse path checked as plain data");
        assert_eq!(chunks[1], Chunk::Zeros(block));
    }
    // without --sparse the holes are read as zeros
    let chunks: Vec<Chunk> = c
        .chunkify_file(&mut file, false)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(chunks[1], Chunk::Zeros(block));
    assert_eq!(chunks.len(), 5);
}

#[test]
fn params_parse_like_borg() {
    let p = |s| ChunkerParams::parse(s);
    let err = |s| ChunkerParams::parse(s).unwrap_err().message;
    assert_eq!(p("default").unwrap(), CHUNKER_PARAMS);
    assert_eq!(p(" Default ").unwrap(), CHUNKER_PARAMS);
    assert_eq!(p("buzhash,19,23,21,4095").unwrap(), CHUNKER_PARAMS);
    assert_eq!(p("19,23,21,4095").unwrap(), CHUNKER_PARAMS);
    assert_eq!(p("BUZHASH,19, 23,21,4_095").unwrap(), CHUNKER_PARAMS);
    assert_eq!(p("buzhash,15,19,17,4095").unwrap(), ITEMS_CHUNKER_PARAMS);
    assert_eq!(
        p("fixed,4096").unwrap(),
        ChunkerParams::Fixed {
            block: 4096,
            header: 0
        }
    );
    assert_eq!(
        p("fixed,4096,1000").unwrap(),
        ChunkerParams::Fixed {
            block: 4096,
            header: 1000
        }
    );
    assert_eq!(err("fixed,63"), "block_size must not be less than 64 Bytes");
    assert_eq!(
        err("fixed,20971480"),
        "block_size and header_size must not exceed MAX_DATA_SIZE [20971479]"
    );
    assert_eq!(
        err("fixed,4096,20971480"),
        "block_size and header_size must not exceed MAX_DATA_SIZE [20971479]"
    );
    assert_eq!(
        err("buzhash,19,23,24,4095"),
        "required: chunk_min <= chunk_mask <= chunk_max"
    );
    assert_eq!(
        err("buzhash,5,23,21,4095"),
        "min. chunk size exponent must not be less than 6 (2^6 = 64B min. chunk size)"
    );
    assert_eq!(
        err("buzhash,19,24,21,4095"),
        "max. chunk size exponent must not be more than 23 (2^23 = 8MiB max. chunk size)"
    );
    assert_eq!(
        err("buzhash,19,23,21,4096"),
        "window_size must be an uneven (odd) number"
    );
    assert_eq!(
        err("buzhash,19,23,21"),
        "invalid ChunkerParams value: 'buzhash,19,23,21'"
    );
    assert_eq!(
        err("buzhash,x,23,21,4095"),
        "invalid ChunkerParams value: 'buzhash,x,23,21,4095'"
    );
    assert_eq!(
        err("fixed,1,2,3"),
        "invalid ChunkerParams value: 'fixed,1,2,3'"
    );
    assert_eq!(err("fixed"), "invalid chunker params");
    assert_eq!(err("foo,1,2,3,4"), "invalid chunker params");
    assert_eq!(err(""), "invalid chunker params");
    assert_eq!(err("buzhash,6,7,6,65"), "too small max_size");
    assert_eq!(
        p("buzhash,6,8,6,63").unwrap().to_string(),
        "buzhash,6,8,6,63"
    );
    assert_eq!(CHUNKER_PARAMS.to_string(), "buzhash,19,23,21,4095");
    assert_eq!(p("fixed,4096").unwrap().to_string(), "fixed,4096,0");
    assert_eq!(CHUNKER_PARAMS.py_repr(), "('buzhash', 19, 23, 21, 4095)");
}

#[test]
fn params_stored_form() {
    let packed = crate::msgpack::pack(&CHUNKER_PARAMS.to_value());
    assert_eq!(hex::encode(&packed), "95a762757a68617368131715cd0fff");
    let fixed = ChunkerParams::Fixed {
        block: 4096,
        header: 0,
    };
    assert_eq!(
        hex::encode(crate::msgpack::pack(&fixed.to_value())),
        "93a56669786564cd100000"
    );
    for p in [CHUNKER_PARAMS, ITEMS_CHUNKER_PARAMS, fixed] {
        let back = crate::msgpack::unpack(&crate::msgpack::pack(&p.to_value())).unwrap();
        assert_eq!(ChunkerParams::from_value(&back).unwrap(), p);
    }
    let legacy = Value::Array(vec![19.into(), 23.into(), 21.into(), 4095.into()]);
    assert_eq!(ChunkerParams::from_value(&legacy).unwrap(), CHUNKER_PARAMS);
    assert!(ChunkerParams::from_value(&Value::from(3)).is_err());
    assert_eq!(
        CHUNKER_PARAMS.to_json(),
        serde_json::json!(["buzhash", 19, 23, 21, 4095])
    );
}
