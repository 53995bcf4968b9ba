//! Replays the fuzzers' corpora (fuzz/corpus/) through the functions they fuzz, on every
//! build: libFuzzer needs a nightly feature set CI does not use, but what it found must keep
//! passing. The same properties as the fuzz targets are checked.

use std::path::{Path, PathBuf};

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
