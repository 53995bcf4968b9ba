//! The rules the source keeps (docs/design.md), checked on the files themselves: `unsafe`
//! only in ipfailover-os, at most eight blocks, each with its SAFETY comment; every other
//! crate forbids it; no file access in the core; citations of the project's own docs only.

use std::fs;
use std::path::{Path, PathBuf};

use ipfailover_e2e::repo;

/// The most `unsafe` blocks the workspace may hold.
const MAX_UNSAFE: usize = 8;

/// Every `.rs` file below `dir` (no `target`, no hidden directories).
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" || name == "corpus" {
            continue;
        }
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The workspace's crates (and the fuzz targets): every directory of the repository with a
/// Cargo.toml.
fn crate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(repo())
        .expect("the repository")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// The code of a line: without its string literals and its `//` comment.
fn code(line: &str) -> String {
    let mut out = String::new();
    let (mut in_string, mut escaped) = (false, false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => escaped = false,
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '/' if chars.peek() == Some(&'/') => break,
            c => out.push(c),
        }
    }
    out
}

/// Whether a line of code opens an unsafe block, function, impl or trait.
fn opens_unsafe(code: &str) -> bool {
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '{'))
        .filter(|w| !w.is_empty())
        .collect();
    words.windows(2).any(|w| {
        w[0] == "unsafe" && (w[1].starts_with('{') || ["fn", "impl", "trait"].contains(&w[1]))
    })
}

#[test]
fn the_scan_reads_code_not_strings_or_comments() {
    assert!(opens_unsafe(&code("    let x = unsafe { f() };")));
    assert!(opens_unsafe(&code("    unsafe {")));
    assert!(opens_unsafe(&code("pub unsafe fn f() {}")));
    assert!(!opens_unsafe(&code("    let d = hook_dir(\"unsafe {\");")));
    assert!(!opens_unsafe(&code("    // unsafe { in a comment")));
    assert!(!opens_unsafe(&code("#![forbid(unsafe_code)]")));
    assert_eq!(code("a \"b \\\" // c\" d // e"), "a  d ");
}

#[test]
fn unsafe_is_rare_and_explained() {
    let mut found = Vec::new();
    for dir in crate_dirs() {
        for file in rust_files(&dir) {
            let text = fs::read_to_string(&file).expect("source");
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                if !opens_unsafe(&code(line)) {
                    continue;
                }
                let shown = format!(
                    "{}:{}",
                    file.strip_prefix(repo()).unwrap_or(&file).display(),
                    i + 1
                );
                // The SAFETY comment opens the comment block just above the statement.
                let start = lines[..i]
                    .iter()
                    .rposition(|l| !l.trim_start().starts_with("//"))
                    .map_or(0, |p| p + 1);
                let explained = lines[start..i]
                    .iter()
                    .any(|l| l.trim_start().starts_with("// SAFETY: "));
                assert!(
                    explained,
                    "{shown}: unsafe without a `// SAFETY: ` comment above"
                );
                assert!(
                    shown.starts_with("ipfailover-os/"),
                    "{shown}: unsafe outside ipfailover-os"
                );
                found.push(shown);
            }
        }
    }
    assert!(
        found.len() <= MAX_UNSAFE,
        "{} unsafe blocks, at most {MAX_UNSAFE}: {found:#?}",
        found.len()
    );
    assert!(
        !found.is_empty(),
        "the scan found nothing: is it reading the files?"
    );
}

#[test]
fn every_crate_but_the_os_adapters_forbids_unsafe() {
    let mut roots = 0;
    for dir in crate_dirs() {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.as_deref() == Some("ipfailover-os") || name.as_deref() == Some("fuzz") {
            continue;
        }
        let mut files: Vec<PathBuf> = ["src/lib.rs", "src/main.rs"]
            .iter()
            .map(|f| dir.join(f))
            .filter(|p| p.is_file())
            .collect();
        files.extend(rust_files(&dir.join("src/bin")));
        for f in files {
            let text = fs::read_to_string(&f).expect("source");
            assert!(
                text.lines().any(|l| l == "#![forbid(unsafe_code)]"),
                "{} does not forbid unsafe code",
                f.display()
            );
            roots += 1;
        }
    }
    assert!(roots >= 10, "only {roots} crate roots found");
    let os = fs::read_to_string(repo().join("ipfailover-os/src/lib.rs")).expect("lib.rs");
    assert!(os.lines().any(|l| l == "#![deny(unsafe_code)]"));
    let cargo = fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    assert!(cargo.lines().any(|l| l == "unsafe_code = \"deny\""));
}

#[test]
fn the_core_touches_no_file() {
    for file in rust_files(&repo().join("ipfailover/src")) {
        let text = fs::read_to_string(&file).expect("source");
        for (i, line) in text.lines().enumerate() {
            let c = code(line);
            for banned in ["std::fs", "File::", "OpenOptions", "std::os::unix::fs"] {
                assert!(
                    !c.contains(banned),
                    "{}:{}: {banned} in the core",
                    file.display(),
                    i + 1
                );
            }
        }
    }
}
#[test]
fn only_the_projects_own_docs_are_cited() {
    let mut files = Vec::new();
    for dir in crate_dirs() {
        files.extend(rust_files(&dir));
    }
    for doc in ["docs", "."] {
        for e in fs::read_dir(repo().join(doc)).expect("docs").flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "md") {
                files.push(p);
            }
        }
    }
    let spec = ["SPEC", " §"].concat();
    let shared = ["/work", "/shared"].concat();
    for file in files {
        let text = fs::read_to_string(&file).expect("file");
        for (i, line) in text.lines().enumerate() {
            assert!(
                !line.contains(&spec) && !line.contains(&shared),
                "{}:{}: cites a document outside the repository: {line}",
                file.display(),
                i + 1
            );
        }
    }
}
