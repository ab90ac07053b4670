use super::*;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

#[test]
fn handshake_and_open_match_borg_bytes() {
    // 01-init: a 1.2.4 client's negotiate, byte for byte (our version only differs)
    let client = Value::Map(vec![(
        Value::from("client_version"),
        version_value(&version_tuple("1.2.4")),
    )]);
    assert_eq!(
        encode_legacy_request(1, "negotiate", &[client]),
        hex("94 01 01 a9 6e 65 67 6f 74 69 61 74 65 91 81 ae 63 6c 69 65 6e 74 5f 76 65 72 73 69 6f 6e 94 01 02 04 ff")
    );
    let open = encode_request(
        2,
        "open",
        &[
            ("path", Arg::Raw(b"/./repo")),
            ("create", true.into()),
            ("lock_wait", Value::from(1).into()),
            ("lock", true.into()),
            ("exclusive", true.into()),
            ("append_only", false.into()),
            ("make_parent_dirs", false.into()),
        ],
    );
    assert_eq!(
        open,
        hex("83 a1 69 02 a1 6d a4 6f 70 65 6e a1 61 87 a4 70 61 74 68 a7 2f 2e 2f 72 65 70 6f a6 63 72 65 61 74 65 c3 a9 6c 6f 63 6b 5f 77 61 69 74 01 a4 6c 6f 63 6b c3 a9 65 78 63 6c 75 73 69 76 65 c3 ab 61 70 70 65 6e 64 5f 6f 6e 6c 79 c2 b0 6d 61 6b 65 5f 70 61 72 65 6e 74 5f 64 69 72 73 c2")
    );
    // the server's legacy reply and its dict reply to open
    let reply = encode_result(
        Form::Legacy,
        &Value::from(1),
        &Value::Map(vec![(
            Value::from("server_version"),
            version_value(&version_tuple("1.2.4")),
        )]),
    );
    assert_eq!(
        reply,
        hex("94 01 01 c0 81 ae 73 65 72 76 65 72 5f 76 65 72 73 69 6f 6e 94 01 02 04 ff")
    );
    let id = [0x2au8; 32];
    let reply = encode_raw_result(Form::Dict, &Value::from(2), &id);
    assert_eq!(&reply[..9], &hex("82 a1 69 02 a1 72 da 00 20")[..]);
    let parsed = parse_reply(decode_one(&reply, Limits::CLIENT).unwrap()).unwrap();
    assert_eq!(parsed.msgid, 2);
    assert_eq!(parsed.outcome.unwrap().as_bytes(), Some(&id[..]));
}

#[test]
fn versions() {
    assert_eq!(version_tuple("1.2.4"), [1, 2, 4, -1]);
    assert_eq!(version_tuple("1.2.0a8"), [1, 2, 0, -4, 8]);
    assert_eq!(version_tuple("1.1.0b3"), [1, 1, 0, -3, 3]);
    assert_eq!(version_tuple("2.0.0rc1"), [2, 0, 0, -2, 1]);
    assert!(version_tuple("1.1.0b3") < version_tuple("1.1.0"));
    assert!(version_tuple("1.2.0a4") < version_tuple("1.2.4"));
}

#[test]
fn stream_yields_objects_split_anywhere() {
    let a = encode_request(3, "get", &[("id", Arg::Raw(&[7u8; 32]))]);
    let b = encode_request(
        4,
        "put",
        &[
            ("id", Arg::Raw(&[1u8; 32])),
            ("data", Arg::Raw(&vec![9u8; 70_000])),
        ],
    );
    let stream = [a.clone(), b.clone()].concat();
    let mut r = FrameReader::new(Limits::SERVER);
    let mut got = Vec::new();
    for byte in &stream {
        r.feed(std::slice::from_ref(byte));
        while let Some(v) = r.next_value().unwrap() {
            got.push(parse_request(v).unwrap());
        }
    }
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].method, b"get");
    assert_eq!(got[1].named[1].1.as_bytes().unwrap().len(), 70_000);
    assert!(r.pending().is_empty());
}

#[test]
fn str8_and_bin_are_accepted_ext_is_not() {
    // {"i": 1, "m": "get", "a": {"id": str8 / bin8 of 2 bytes}}
    for marker in [0xd9u8, 0xc4] {
        let mut m = hex("83 a1 69 01 a1 6d a3 67 65 74 a1 61 81 a2 69 64");
        m.extend([marker, 2, 0xaa, 0xbb]);
        let req = parse_request(decode_one(&m, Limits::SERVER).unwrap()).unwrap();
        assert_eq!(req.named[0].1.as_bytes(), Some(&[0xaa, 0xbb][..]));
    }
    assert!(decode_one(&hex("d4 01 00"), Limits::SERVER).is_err());
    assert!(decode_one(&hex("c7 01 05 00"), Limits::SERVER).is_err());
    assert!(decode_one(&hex("c1"), Limits::SERVER).is_err());
}

#[test]
fn limits_are_checked_before_allocating() {
    let mut r = FrameReader::new(Limits::SERVER);
    // a 4 GiB string header: refused at once, not awaited
    r.feed(&hex("db ff ff ff ff 00"));
    assert!(r.next_value().is_err());
    // an array claiming 4 billion elements
    assert!(decode_one(&hex("dd ff ff ff ff"), Limits::SERVER).is_err());
    // a map of 65535 entries
    assert!(decode_one(&hex("de ff ff"), Limits::SERVER).is_err());
    // nesting deeper than allowed
    let deep = vec![0x91u8; 100];
    let mut r = FrameReader::new(Limits::SERVER);
    r.feed(&deep);
    assert!(r.next_value().is_err());
    // a truncated object is simply incomplete
    let mut r = FrameReader::new(Limits::SERVER);
    r.feed(&hex("db 00 00 10 00 61 62"));
    assert!(r.next_value().unwrap().is_none());
}

#[test]
fn error_replies_have_borg_shape() {
    let ex = RemoteException {
        class: "DoesNotExist".into(),
        args: vec!["/x/r".into()],
        full: vec!["Traceback (most recent call last):\n".into()],
        short: vec!["Repository /x/r does not exist.".into()],
        trace: false,
        sysinfo: String::new(),
        old_server: false,
    };
    let bytes = encode_error(Form::Dict, &Value::from(2), &ex);
    let v = decode_one(&bytes, Limits::CLIENT).unwrap();
    let keys: Vec<&[u8]> = v
        .as_entries()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_bytes().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            &b"i"[..],
            b"exception_class",
            b"exception_args",
            b"exception_full",
            b"exception_short",
            b"exception_trace",
            b"sysinfo"
        ]
    );
    assert!(!bytes
        .iter()
        .any(|&b| (0xc4..=0xc6).contains(&b) || b == 0xd9));
    let back = parse_reply(v).unwrap();
    assert_eq!(back.outcome.unwrap_err(), ex);
    let legacy = encode_error(Form::Legacy, &Value::from(5), &ex);
    let back = parse_reply(decode_one(&legacy, Limits::CLIENT).unwrap()).unwrap();
    let err = back.outcome.unwrap_err();
    assert_eq!((back.msgid, err.class.as_str()), (5, "DoesNotExist"));
    assert!(err.old_server);
}

#[test]
fn unexpected_data_is_shown_as_text_or_hex() {
    let e = unexpected_from_server(b"hello-banner\n");
    assert_eq!(
        e.message,
        "Got unexpected RPC data format from server:\nhello-banner\n"
    );
    let e = unexpected_from_server(&[0xff; 20]);
    assert!(
        e.message.ends_with("FF FF FF FF\nFF FF FF FF"),
        "{}",
        e.message
    );
}
