//! What a hostile or broken server sends the client: the reply stream (msgpack framing with
//! the client's limits), reply classification, and the rebuilding of remote exceptions into
//! local errors.
//!
//! Input layout: the first byte picks how the stream is cut into reads (0: all at once,
//! n: reads of n bytes); the rest is the server's stdout.
#![no_main]

mod common;

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use rborg::remote::codec::{parse_reply, FrameReader, Limits};
use rborg::remote::exceptions::from_remote;

/// Replies as borg 1.2 servers send them: results, and errors with and without arguments.
fn seeds() -> Vec<(String, Vec<u8>)> {
    use rborg::msgpack::{bytes, pack, sorted_map};
    use rmpv::Value;
    let s = |t: &str| Value::from(t);
    let negotiate = sorted_map(vec![
        (s("i"), Value::from(1)),
        (
            s("r"),
            sorted_map(vec![(
                s("server_version"),
                Value::Array(vec![
                    Value::from(1),
                    Value::from(2),
                    Value::from(4),
                    Value::from(-1),
                ]),
            )]),
        ),
    ]);
    let object = sorted_map(vec![
        (s("i"), Value::from(2)),
        (s("r"), bytes(vec![0xab; 64])),
    ]);
    let error = sorted_map(vec![
        (s("i"), Value::from(3)),
        (s("exception_class"), s("DoesNotExist")),
        (s("exception_args"), Value::Array(vec![s("/repo")])),
        (s("exception_full"), s("Traceback ...")),
        (s("exception_short"), s("Repository /repo does not exist.")),
        (s("sysinfo"), s("Platform: Linux")),
    ]);
    let legacy_error = sorted_map(vec![
        (s("i"), Value::from(4)),
        (s("exception_class"), s("ObjectNotFound")),
    ]);
    let mut stream = pack(&negotiate);
    for v in [&object, &error, &legacy_error] {
        stream.extend(pack(v));
    }
    [0u8, 1, 7, 200]
        .iter()
        .map(|&cut| {
            let mut seed = vec![cut];
            seed.extend_from_slice(&stream);
            (format!("replies-{cut}"), seed)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    static SEEDS: std::sync::Once = std::sync::Once::new();
    SEEDS.call_once(|| common::write_seeds(&seeds()));
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let mut input = common::Chunked::new(stream, cut);
    let mut frames = FrameReader::new(Limits::CLIENT);
    let mut buf = [0u8; 4096];
    loop {
        let n = input.read(&mut buf).unwrap_or(0);
        if n == 0 {
            return;
        }
        frames.feed(&buf[..n]);
        loop {
            match frames.next_value() {
                Ok(Some(v)) => {
                    let Some(reply) = parse_reply(v) else {
                        return;
                    };
                    if let Err(ex) = reply.outcome {
                        let _ = from_remote(&ex, "ssh://fuzz/repo");
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
