use std::io::Cursor;

use super::*;
use crate::remote::codec::{
    decode_one, encode_legacy_request, encode_request, parse_reply, Arg, RemoteException,
};

/// Run a session on `input`; the replies, in order, and the session's end.
fn session(server: &mut RepositoryServer, input: &[u8]) -> (Vec<Value>, Result<()>) {
    let mut out = Vec::new();
    let r = server.serve(Cursor::new(input.to_vec()), &mut out);
    let mut frames = FrameReader::new(Limits::CLIENT);
    frames.feed(&out);
    let mut replies = Vec::new();
    while let Ok(Some(v)) = frames.next_value() {
        replies.push(v);
    }
    (replies, r)
}

fn server(opts: ServeOptions) -> RepositoryServer {
    let mut s = RepositoryServer::new(opts);
    s.json_logging = false;
    s
}

fn error_class(reply: &Value) -> Option<RemoteException> {
    parse_reply(reply.clone()).and_then(|r| r.outcome.err())
}

fn negotiate() -> Vec<u8> {
    let data = Value::Map(vec![(
        Value::from("client_version"),
        version_value(&[1, 2, 4, -1]),
    )]);
    encode_legacy_request(1, "negotiate", &[data])
}

fn open(msgid: u64, path: &Path, create: bool) -> Vec<u8> {
    encode_request(
        msgid,
        "open",
        &[
            ("path", Arg::Raw(path.as_os_str().as_bytes())),
            ("create", create.into()),
            ("lock_wait", Value::from(1).into()),
            ("lock", true.into()),
            ("exclusive", true.into()),
            ("append_only", false.into()),
            ("make_parent_dirs", false.into()),
        ],
    )
}

#[test]
fn a_write_cycle_in_one_pipelined_session() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let id = [5u8; 32];
    let input = [
        negotiate(),
        open(2, &repo, true),
        encode_request(
            3,
            "put",
            &[("id", Arg::Raw(&id)), ("data", Arg::Raw(b"value"))],
        ),
        encode_request(
            4,
            "commit",
            &[("save_space", false.into()), ("compact", false.into())],
        ),
        encode_request(5, "get", &[("id", Arg::Raw(&id))]),
        encode_request(6, "__len__", &[]),
        encode_request(
            7,
            "list",
            &[
                ("limit", Value::from(10).into()),
                ("marker", Value::Nil.into()),
            ],
        ),
        encode_request(
            8,
            "list",
            &[("limit", Value::from(10).into()), ("marker", Arg::Raw(&id))],
        ),
        encode_request(9, "get_free_nonce", &[]),
        encode_request(
            10,
            "commit_nonce_reservation",
            &[
                ("next_unreserved", Value::from(64).into()),
                ("start_nonce", Value::Nil.into()),
            ],
        ),
        encode_request(
            11,
            "commit_nonce_reservation",
            &[
                ("next_unreserved", Value::from(99).into()),
                ("start_nonce", Value::from(1).into()),
            ],
        ),
        encode_request(12, "delete", &[("id", Arg::Raw(&[6u8; 32]))]),
        encode_request(13, "load_key", &[]),
    ]
    .concat();
    let mut s = server(ServeOptions::default());
    let (replies, end) = session(&mut s, &input);
    assert!(end.is_ok());
    assert_eq!(replies.len(), 13);
    // legacy negotiate → legacy reply
    assert_eq!(replies[0].as_list().unwrap()[1].as_uint(), Some(1));
    assert_eq!(s.client_version, Some(vec![1, 2, 4, -1]));
    let result = |i: usize| parse_reply(replies[i].clone()).unwrap();
    for (i, reply) in replies.iter().enumerate().skip(1) {
        assert_eq!(parse_reply(reply.clone()).unwrap().msgid, i as u64 + 1);
    }
    assert_eq!(result(1).outcome.unwrap().as_bytes().unwrap().len(), 32);
    assert_eq!(result(4).outcome.unwrap().as_bytes(), Some(&b"value"[..]));
    assert_eq!(result(5).outcome.unwrap().as_uint(), Some(1));
    assert_eq!(result(6).outcome.unwrap().as_list().unwrap().len(), 1);
    assert_eq!(result(7).outcome.unwrap().as_list().unwrap().len(), 0);
    assert!(result(8).outcome.unwrap().is_nil());
    assert!(result(9).outcome.unwrap().is_nil());
    assert_eq!(result(10).outcome.unwrap_err().class, "Exception");
    assert_eq!(result(11).outcome.unwrap_err().class, "ObjectNotFound");
    assert_eq!(result(12).outcome.unwrap().as_bytes(), Some(&b""[..]));
}

#[test]
fn refusals_are_error_replies_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let input = [
        negotiate(),
        encode_request(2, "get", &[("id", Arg::Raw(&[0u8; 32]))]),
        encode_request(3, "close", &[]),
        encode_request(4, "inject_exception", &[("kind", Arg::Raw(b"divide"))]),
        open(5, &dir.path().join("missing"), false),
        open(6, &dir.path().join("r"), true),
        encode_request(7, "get", &[]),
        encode_request(8, "get", &[("id", Arg::Raw(b"short"))]),
        encode_request(9, "list", &[("marker", Arg::Raw(b"no such id"))]),
        encode_request(10, "scan", &[("limit", Value::from(0).into())]),
        encode_request(11, "__len__", &[("unknown_arg", true.into())]),
        encode_legacy_request(12, "get", &[Value::from(1), Value::from(2)]),
    ]
    .concat();
    let mut s = server(ServeOptions::default());
    let (replies, end) = session(&mut s, &input);
    assert!(end.is_ok());
    let classes: Vec<Option<String>> = replies
        .iter()
        .skip(1)
        .map(|r| error_class(r).map(|e| e.class))
        .collect();
    let expect = |c: &str| Some(c.to_string());
    assert_eq!(
        classes,
        [
            expect("AttributeError"),
            expect("InvalidRPCMethod"),
            expect("InvalidRPCMethod"),
            expect("DoesNotExist"),
            None,
            expect("TypeError"),
            expect("TypeError"),
            expect("KeyError"),
            expect("ValueError"),
            None,
            expect("TypeError"),
        ]
    );
    let missing = error_class(&replies[4]).unwrap();
    assert_eq!(
        missing.args,
        [realpath(&dir.path().join("missing")).display().to_string()]
    );
    assert!(!missing.trace);
}

#[test]
fn undecodable_or_foreign_input_ends_the_session_cleanly() {
    for input in [
        vec![0xc1],
        vec![0xd4, 0x01, 0x00],
        vec![0x05],
        vec![0x93, 0x01, 0x02, 0x03],
        encode_request(1, "get", &[])
            .into_iter()
            .chain([0xdb, 0xff, 0xff, 0xff, 0xff])
            .collect(),
        vec![0x81, 0xa1, 0x6d, 0x05],
    ] {
        let mut s = server(ServeOptions::default());
        let (_, end) = session(&mut s, &input);
        let e = end.unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnexpectedRPCDataFormatFromClient);
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    // deterministic pseudo-random streams and every truncation/bit flip of a real session
    let dir = tempfile::tempdir().unwrap();
    let good = [
        negotiate(),
        open(2, &dir.path().join("r"), true),
        encode_request(
            3,
            "put",
            &[("id", Arg::Raw(&[1u8; 32])), ("data", Arg::Raw(b"x"))],
        ),
        encode_request(4, "list", &[("limit", Value::from(5).into())]),
    ]
    .concat();
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..200 {
        let mut input = good.clone();
        match round % 3 {
            0 => input.truncate(next() as usize % good.len()),
            1 => {
                let i = next() as usize % input.len();
                input[i] ^= 1 << (next() % 8);
            }
            _ => input = (0..next() % 64).map(|_| next() as u8).collect(),
        }
        let _ = std::fs::remove_dir_all(dir.path().join("r"));
        let mut s = server(ServeOptions::default());
        let _ = session(&mut s, &input);
    }
}

#[test]
fn extreme_float_arguments_are_not_fatal() {
    // found by fuzzing: a lock_wait too large for a Duration crashed the server
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("r");
    let open_waiting = |msgid: u64, wait: f64| {
        encode_request(
            msgid,
            "open",
            &[
                ("path", Arg::Raw(repo.as_os_str().as_bytes())),
                ("create", (msgid == 2).into()),
                ("lock_wait", Value::F64(wait).into()),
                ("lock", true.into()),
                ("exclusive", true.into()),
            ],
        )
    };
    let check = |msgid: u64, max_duration: f64| {
        encode_request(
            msgid,
            "check",
            &[
                ("repair", false.into()),
                ("max_duration", Value::F64(max_duration).into()),
            ],
        )
    };
    let input = [
        negotiate(),
        open_waiting(2, 1e300),
        check(3, f64::INFINITY),
        open_waiting(4, f64::NAN),
        check(5, f64::NAN),
        open_waiting(6, -1.0),
        open_waiting(7, f64::INFINITY),
        check(8, 1e300),
    ]
    .concat();
    let mut s = server(ServeOptions::default());
    let (replies, end) = session(&mut s, &input);
    assert!(end.is_ok());
    assert_eq!(replies.len(), 8);
    for reply in &replies[1..] {
        let outcome = parse_reply(reply.clone()).unwrap().outcome;
        assert!(outcome.is_ok(), "{outcome:?}");
    }
}

#[test]
fn restrictions_resolve_dotdot_and_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let base = realpath(dir.path());
    let allowed = base.join("allowed");
    std::fs::create_dir_all(allowed.join("sub")).unwrap();
    std::fs::create_dir_all(base.join("outside")).unwrap();
    std::os::unix::fs::symlink(base.join("outside"), allowed.join("escape")).unwrap();
    let paths = ServeOptions {
        restrict_to_paths: vec![allowed.clone()],
        ..Default::default()
    };
    let ok = |p: PathBuf, o: &ServeOptions| {
        check_restrictions(&resolve_path(p.as_os_str().as_bytes()), o)
    };
    assert!(ok(allowed.join("sub/repo"), &paths).is_ok());
    assert!(ok(allowed.clone(), &paths).is_ok());
    let e = ok(allowed.join("escape/repo"), &paths).unwrap_err();
    assert_eq!(e.kind, ErrorKind::PathNotAllowed);
    assert_eq!(
        e.message,
        format!(
            "Repository path not allowed: {}",
            base.join("outside/repo").display()
        )
    );
    assert!(ok(allowed.join("../outside"), &paths).is_err());
    assert!(ok(base.join("allowedX"), &paths).is_err());
    let repos = ServeOptions {
        restrict_to_repositories: vec![allowed.join("sub/new")],
        ..Default::default()
    };
    assert!(ok(allowed.join("sub/new"), &repos).is_ok());
    assert!(ok(allowed.join("sub/new/"), &repos).is_ok());
    assert!(ok(allowed.join("sub/new/deeper"), &repos).is_err());
    assert!(ok(allowed.join("sub"), &repos).is_err());
}

#[test]
fn path_forms_resolve_as_borg_does() {
    let cwd = realpath(&std::env::current_dir().unwrap());
    assert_eq!(resolve_path(b"/./x/y"), cwd.join("x/y"));
    assert_eq!(resolve_path(b"x/../z"), cwd.join("z"));
    let base = realpath(&crate::paths::base_dir());
    assert_eq!(resolve_path(b"/~/r"), base.join("r"));
    assert_eq!(resolve_path(b"~/r"), base.join("r"));
    assert_eq!(resolve_path(b"/abs/../r"), PathBuf::from("/r"));
    assert_eq!(
        resolve_path(b"~nosuchuser-xyz/r"),
        cwd.join("~nosuchuser-xyz/r")
    );
}

#[test]
fn append_only_server_refuses_destroy_and_repair_but_not_init() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("r");
    let opts = ServeOptions {
        append_only: true,
        ..Default::default()
    };
    let (replies, _) = session(
        &mut server(opts.clone()),
        &[negotiate(), open(2, &repo, true)].concat(),
    );
    assert!(error_class(&replies[1]).is_none());
    let config = std::fs::read_to_string(repo.join("config")).unwrap();
    assert!(config.contains("append_only = 0"), "{config}");
    let input = [
        negotiate(),
        open(2, &repo, false),
        encode_request(3, "check", &[("repair", true.into())]),
        encode_request(4, "destroy", &[]),
        encode_request(5, "__len__", &[]),
    ]
    .concat();
    let (replies, _) = session(&mut server(opts), &input);
    for i in [2, 3] {
        let e = error_class(&replies[i]).unwrap();
        assert_eq!(e.class, "ValueError");
        assert!(
            e.args[0].ends_with("is in append-only mode"),
            "{:?}",
            e.args
        );
    }
    assert!(error_class(&replies[4]).is_none());
    assert!(repo.join("config").exists());
}

#[test]
fn dict_negotiate_gets_a_dict_reply_and_legacy_int_gets_2() {
    let dict = encode_request(
        1,
        "negotiate",
        &[(
            "client_data",
            Value::Map(vec![(
                Value::from("client_version"),
                version_value(&[1, 4, 5, -1]),
            )])
            .into(),
        )],
    );
    let (replies, _) = session(&mut server(ServeOptions::default()), &dict);
    let r = parse_reply(replies[0].clone()).unwrap();
    assert!(replies[0].as_entries().is_some());
    assert!(r.outcome.unwrap().get("server_version").is_some());
    let legacy = encode_legacy_request(1, "negotiate", &[Value::from(2)]);
    let (replies, _) = session(&mut server(ServeOptions::default()), &legacy);
    assert_eq!(
        decode_one(&crate::msgpack::pack(&replies[0]), Limits::CLIENT)
            .unwrap()
            .as_list()
            .unwrap()[3]
            .as_uint(),
        Some(2)
    );
}
