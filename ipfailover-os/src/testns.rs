//! Network namespaces for the tests of this crate and of those built on it (the `testns`
//! feature; TESTING.md): each made with a name unique to the test run, set up with `ip -n NS ...`,
//! entered only by threads the test spawns, and deleted when the guard drops, pass or fail.

use std::fs::File;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A network namespace `ipfo-os-<pid>-<n>`, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace; panics, saying what the tests need, if that fails.
    // Not a Default: making a namespace is an act with a cost, not a value.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Netns {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ipfo-os-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        match Command::new("ip").args(["netns", "add", &name]).output() {
            Ok(out) if out.status.success() => Netns { name },
            Ok(out) => panic!(
                "cannot create network namespace {name} ({}): these tests need root and iproute2",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => {
                panic!("cannot run `ip netns add {name}` ({e}): these tests need root and iproute2")
            }
        }
    }

    /// Its name under /run/netns.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS...` (arguments split on white space) and returns its output;
    /// panics if it fails.
    pub fn ip(&self, args: &str) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.name])
            .args(args.split_whitespace())
            .output()
            .unwrap_or_else(|e| panic!("cannot run `ip -n {} {args}`: {e}", self.name));
        assert!(
            out.status.success(),
            "`ip -n {} {args}` failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `f` in a new thread that has entered this namespace, and returns its result
    /// (a panic in `f` panics here). Sockets, ioctls and interface lookups in `f` act on the
    /// namespace; the calling thread stays where it was.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        let ns = File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| {
                // A network namespace's descriptor: it moves only this thread.
                if let Err(e) = nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET) {
                    panic!("setns({path}): {}", std::io::Error::from(e));
                }
                f()
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        match Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "cannot delete network namespace {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("cannot delete network namespace {}: {e}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_entered_and_deleted() {
        let ns = Netns::new();
        let name = ns.name.clone();
        ns.ip("link add vA type veth peer name vB");
        let index = ns.enter(|| crate::interfaces::iface_index("vB").expect("vB in the namespace"));
        assert!(index > 0);
        let locals = ns.enter(|| crate::interfaces::local_addrs().expect("addresses"));
        assert!(locals.is_empty(), "nothing is up yet: {locals:?}");
        drop(ns);
        assert!(
            !std::path::Path::new(&format!("/run/netns/{name}")).exists(),
            "{name} was not deleted"
        );
    }
}
