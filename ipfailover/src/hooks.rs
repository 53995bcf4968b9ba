//! Which hook files run for an event, in what order, and which are refused: the rules of
//! hooks-template/README.md ("Which files run", "Permissions"),
//! decided on a listing of the directory so they are tested without a file system.

use crate::failover::HookPhase;

/// What kind of directory entry a file is (after following symlinks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// Anything else (socket, fifo, device, dangling link).
    Other,
}

/// One entry of a hook directory, as the OS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file name, as bytes: ordering is byte-wise.
    pub name: Vec<u8>,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
}

/// The outcome of looking at a directory for one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// The hooks to run, in order.
    pub run: Vec<Vec<u8>>,
    /// Files of the event's prefix that are not run, with why (logged as warnings).
    pub skipped: Vec<(Vec<u8>, String)>,
    /// Hooks refused for unsafe ownership or permissions (logged and mailed).
    pub refused: Vec<(Vec<u8>, String)>,
}

/// Why a hook directory may not be used, if it may not.
pub fn check_dir(mode: u32, uid: u32, daemon_uid: u32) -> Result<(), String> {
    unsafe_reason(mode, uid, daemon_uid).map_or(Ok(()), Err)
}

fn unsafe_reason(mode: u32, uid: u32, daemon_uid: u32) -> Option<String> {
    if uid != daemon_uid {
        Some(format!(
            "owned by uid {uid}, not by the daemon's uid {daemon_uid}"
        ))
    } else if mode & 0o022 != 0 {
        Some(format!(
            "writable by {} (mode {:04o})",
            if mode & 0o020 != 0 && mode & 0o002 != 0 {
                "group and others"
            } else if mode & 0o020 != 0 {
                "group"
            } else {
                "others"
            },
            mode & 0o7777
        ))
    } else {
        None
    }
}

/// Applies the rules: every regular executable file whose name starts with the event's
/// prefix, one at a time, in byte-wise order of name; names starting with `.` or ending in
/// `~` silently skipped; non-executable or non-regular files skipped with a warning; files
/// owned by another user or writable by group or others refused.
pub fn select(phase: HookPhase, entries: &[Entry], daemon_uid: u32) -> Selection {
    let prefix = phase.as_str().as_bytes();
    let mut sel = Selection::default();
    let mut candidates: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.name.starts_with(prefix))
        .filter(|e| !e.name.starts_with(b".") && !e.name.ends_with(b"~"))
        .collect();
    candidates.sort_by(|a, b| a.name.cmp(&b.name));
    for e in candidates {
        if e.kind != EntryKind::File {
            sel.skipped
                .push((e.name.clone(), "not a regular file".to_string()));
        } else if e.mode & 0o100 == 0 {
            sel.skipped
                .push((e.name.clone(), "not executable by its owner".to_string()));
        } else if let Some(why) = unsafe_reason(e.mode, e.uid, daemon_uid) {
            sel.refused.push((e.name.clone(), why));
        } else {
            sel.run.push(e.name.clone());
        }
    }
    sel
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, mode: u32) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            kind: EntryKind::File,
            mode,
            uid: 0,
        }
    }

    fn names(v: &[Vec<u8>]) -> Vec<String> {
        v.iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    #[test]
    fn runs_executables_of_the_prefix_in_byte_order() {
        let entries = vec![
            file("PreAcq-2", 0o755),
            file("PreAcq-10", 0o700),
            file("PreAcq-1", 0o755),
            file("PreAcq", 0o755),
            file("PostAcq-1", 0o755),
            file("preacq-lower", 0o755),
            file("PreAcqZ", 0o755),
            file("PreAcq-a", 0o755),
            file("PreAcq-B", 0o755),
        ];
        let sel = select(HookPhase::PreAcq, &entries, 0);
        assert_eq!(
            names(&sel.run),
            [
                "PreAcq",
                "PreAcq-1",
                "PreAcq-10",
                "PreAcq-2",
                "PreAcq-B",
                "PreAcq-a",
                "PreAcqZ"
            ]
        );
        assert!(sel.skipped.is_empty() && sel.refused.is_empty());
    }

    #[test]
    fn hidden_and_backup_files_are_skipped_silently() {
        let entries = vec![
            file(".PreRel-1", 0o755),
            file("PreRel-1~", 0o755),
            file("PreRel-1", 0o755),
        ];
        let sel = select(HookPhase::PreRel, &entries, 0);
        assert_eq!(names(&sel.run), ["PreRel-1"]);
        assert!(sel.skipped.is_empty());
    }

    #[test]
    fn non_executables_and_directories_are_skipped_with_a_warning() {
        let mut dir = file("PostRel-d", 0o755);
        dir.kind = EntryKind::Dir;
        let entries = vec![file("PostRel-1", 0o644), dir, file("PostRel-2", 0o755)];
        let sel = select(HookPhase::PostRel, &entries, 0);
        assert_eq!(names(&sel.run), ["PostRel-2"]);
        let skipped: Vec<String> = sel
            .skipped
            .iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect();
        assert_eq!(skipped, ["PostRel-1", "PostRel-d"]);
    }

    #[test]
    fn unsafe_hooks_are_refused() {
        let mut other = file("Test-b", 0o755);
        other.uid = 1000;
        let entries = vec![
            file("Test", 0o777),
            other,
            file("Test-c", 0o775),
            file("Test-d", 0o750),
        ];
        let sel = select(HookPhase::Test, &entries, 0);
        assert_eq!(names(&sel.run), ["Test-d"]);
        let refused: Vec<(String, String)> = sel
            .refused
            .iter()
            .map(|(n, why)| (String::from_utf8_lossy(n).into_owned(), why.clone()))
            .collect();
        assert_eq!(refused[0].0, "Test");
        assert!(refused[0].1.contains("group and others"), "{refused:?}");
        assert!(refused[1].1.contains("uid 1000"), "{refused:?}");
        assert!(refused[2].1.contains("writable by group"), "{refused:?}");
    }

    #[test]
    fn directory_rules() {
        assert!(check_dir(0o755, 0, 0).is_ok());
        assert!(check_dir(0o700, 501, 501).is_ok());
        assert!(check_dir(0o757, 0, 0).unwrap_err().contains("others"));
        assert!(check_dir(0o755, 501, 0).unwrap_err().contains("uid 501"));
    }
}
