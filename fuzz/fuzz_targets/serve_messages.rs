//! Arbitrary bytes on `rborg serve`'s stdin: the msgpack stream (FrameReader), request
//! classification (parse_request) and the handling of every RPC method, against scratch
//! repositories in a temporary directory only (the server is restricted to it).
//!
//! Input layout: the first byte picks how the stream is cut into reads (0: all at once,
//! n: reads of n bytes, so frames arrive split at arbitrary points); the rest is the stream.
//! Requests name repositories as `/./work/…`; `/./work/repo` is a small committed
//! repository, reset before every input that could open one.
#![no_main]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rborg::remote::{RepositoryServer, ServeOptions};
use rborg::repository::local::OpenOptions;
use rborg::repository::{LocalRepository, Repository};

/// The scratch root (the process's working directory), holding `template/` and `work/`.
fn scratch() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = common::make_scratch("serve");
        make_template(&root.join("template"));
        root
    })
}

/// A repository with one committed object, copied to `work/repo` before each run.
fn make_template(path: &Path) {
    LocalRepository::create(path, false, 0, false).expect("create template");
    let opts = OpenOptions {
        exclusive: true,
        ..OpenOptions::default()
    };
    let repo = LocalRepository::open_with(path, &opts).expect("open template");
    repo.put(&[7u8; 32], b"fuzz object").expect("put");
    repo.commit(true, 0.1, false).expect("commit");
    repo.close();
}

fn reset_work(root: &Path) {
    let work = root.join("work");
    let _ = std::fs::remove_dir_all(&work);
    common::copy_dir(&root.join("template"), &work.join("repo"));
}

fuzz_target!(|data: &[u8]| {
    let root = scratch();
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    // only a request naming the method `open` can touch the repositories
    if stream.windows(4).any(|w| w == b"open") {
        reset_work(root);
    }
    let opts = ServeOptions {
        restrict_to_paths: vec![root.join("work")],
        ..ServeOptions::default()
    };
    let mut server = RepositoryServer::new(opts);
    server.json_logging = false;
    let input = common::Chunked::new(stream, cut);
    let mut output = Vec::new();
    let _ = server.serve(input, &mut output);
});
