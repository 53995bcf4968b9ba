//! Replays the fuzzers' corpora (fuzz/corpus/) through the functions they fuzz, on every
//! build: libFuzzer needs a nightly feature set CI does not use, but what it found must keep
//! passing. The same properties as the fuzz targets are checked.

use std::path::{Path, PathBuf};

use ipfailover::arp::{self, Arp};
use ipfailover::control::{answer_line, parse_answer, Request};
use ipfailover::nd::Advert;
use ipfailover::settings::{Role, Settings};
use ipfailover::wire::{decode, encode, Key, Message, ReplayGuard};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = ipfailover_e2e::repo().join("fuzz/corpus").join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| {
            let p = e.path();
            let data = std::fs::read(&p).expect("corpus file");
            (p, data)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "empty corpus {}", dir.display());
    out
}

#[test]
fn decode_corpus() {
    let key = Key::new(b"0123456789abcdef0123456789abcdef".to_vec());
    let mut decoded = 0;
    for (path, data) in corpus("decode") {
        for k in [None, Some(&key)] {
            if let Ok(Message::Ipfo {
                datagram,
                authenticated,
            }) = decode(&data, k)
            {
                decoded += 1;
                assert_eq!(authenticated, k.is_some(), "{}", path.display());
                let mut guard = ReplayGuard::new();
                let _ = guard.check(&datagram);
                assert!(
                    guard.check(&datagram).is_err(),
                    "{}: a second check is not a replay",
                    path.display()
                );
                let again = encode(&datagram, k);
                match decode(&again, k) {
                    Ok(Message::Ipfo { datagram: d2, .. }) => {
                        assert_eq!(d2, datagram, "{}", path.display())
                    }
                    other => panic!("{}: re-encoded does not decode: {other:?}", path.display()),
                }
            }
        }
    }
    assert!(
        decoded > 0,
        "no corpus file decodes: the corpus lost its seeds"
    );
}

fn settings_corpus(target: &str, parse: impl Fn(&str, Role) -> Option<Settings>) {
    let mut parsed = 0;
    for (path, data) in corpus(target) {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        for role in [Role::Failoverd, Role::Heartbeatd, Role::Ctl] {
            if let Some(s) = parse(text, role) {
                parsed += 1;
                let rendered = s.render();
                let back = Settings::from_hostconfig(&rendered, Path::new("fuzz"), role)
                    .unwrap_or_else(|e| {
                        panic!(
                            "{}: render() does not parse back: {e}\n{rendered}",
                            path.display()
                        )
                    });
                let (mut a, mut b) = (s.clone(), back);
                a.warnings.clear();
                b.warnings.clear();
                a.source = b.source.clone();
                assert_eq!(a, b, "{}: render() changed the settings", path.display());
            }
        }
    }
    assert!(
        parsed > 0,
        "no {target} corpus file parses: the corpus lost its seeds"
    );
}

#[test]
fn hostconfig_corpus() {
    settings_corpus("hostconfig", |t, r| {
        Settings::from_hostconfig(t, Path::new("fuzz"), r).ok()
    });
}

#[test]
fn toml_corpus() {
    settings_corpus("toml", |t, r| {
        Settings::from_toml(t, Path::new("fuzz.toml"), r).ok()
    });
}

#[test]
fn arp_corpus() {
    let mut decoded = 0;
    for (path, data) in corpus("arp") {
        match Arp::decode(&data) {
            Some(a) => {
                decoded += 1;
                assert_eq!(&a.encode()[..], &data[..arp::LEN], "{}", path.display());
                assert_eq!(
                    arp::sender(&data),
                    Some((a.sender_mac, a.sender_ip)),
                    "{}",
                    path.display()
                );
            }
            None => assert_eq!(arp::sender(&data), None, "{}", path.display()),
        }
    }
    assert!(
        decoded > 0,
        "no arp corpus file decodes: the corpus lost its seeds"
    );
}

#[test]
fn nd_corpus() {
    let mut decoded = 0;
    for (path, data) in corpus("nd") {
        if let Some(a) = Advert::decode(&data) {
            decoded += 1;
            assert_eq!(&a.target.octets()[..], &data[8..24], "{}", path.display());
            assert_eq!(Advert::decode(&a.encode()), Some(a), "{}", path.display());
        }
    }
    assert!(
        decoded > 0,
        "no nd corpus file decodes: the corpus lost its seeds"
    );
}

#[test]
fn control_corpus() {
    let (mut requests, mut answers) = (0, 0);
    for (path, data) in corpus("control") {
        let Ok(line) = std::str::from_utf8(&data) else {
            continue;
        };
        if let Ok(r) = Request::parse(line) {
            requests += 1;
            assert_eq!(Request::parse(&r.to_line()), Ok(r), "{}", path.display());
        }
        if let Ok(a) = parse_answer(line) {
            answers += 1;
            assert_eq!(parse_answer(&answer_line(&a)), Ok(a), "{}", path.display());
        }
    }
    assert!(
        requests > 0 && answers > 0,
        "the control corpus lost its seeds ({requests} requests, {answers} answers parse)"
    );
}
