//! The TOML reader: no input may panic, and settings that parse read back equal from their
//! hostconfig rendering.
#![no_main]

use std::path::Path;

use ipfailover::settings::{Role, Settings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for role in [Role::Failoverd, Role::Heartbeatd, Role::Ctl] {
        if let Ok(s) = Settings::from_toml(text, Path::new("fuzz.toml"), role) {
            let rendered = s.render();
            let back = Settings::from_hostconfig(&rendered, Path::new("fuzz.toml"), role)
                .unwrap_or_else(|e| panic!("render() does not parse back: {e}\n{rendered}"));
            let (mut a, mut b) = (s.clone(), back);
            a.warnings.clear();
            b.warnings.clear();
            assert_eq!(a, b, "render() changed the settings:\n{rendered}");
        }
    }
});
