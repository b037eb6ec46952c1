//! Worker memory from `/proc`, for servers that do not report it (Python
//! gunicorn). The control socket is a Unix socket, so the workers run on
//! this host; they may be in another pid namespace, hence the parent check.

use std::fs;

/// Resident set size of `pid` in KiB, if `/proc/<pid>` is a child of
/// `parent` as seen from here (otherwise the pid means another process).
pub fn rss_kb_of_child(pid: i32, parent: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let ppid: i32 = field("PPid:")?.parse().ok()?;
    if ppid != parent {
        return None;
    }
    field("VmRSS:")?.strip_suffix("kB")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::{getpid, getppid};

    #[test]
    fn reads_our_own_rss_only_with_the_right_parent() {
        let (me, parent) = (getpid().as_raw(), getppid().as_raw());
        assert!(rss_kb_of_child(me, parent).is_some_and(|kb| kb > 0));
        assert_eq!(rss_kb_of_child(me, parent + 1), None);
        assert_eq!(rss_kb_of_child(i32::MAX, parent), None);
    }
}
