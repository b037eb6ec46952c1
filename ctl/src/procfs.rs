//! Processes as `/proc` shows them, for what a server does not report:
//! worker memory (Python gunicorn), and the process tree of a binary upgrade
//! driven by signals (gunicorn's new master is a child of the old one).
//!
//! The control socket is a Unix socket, so the server runs on this host; it
//! may be in another pid namespace, hence the parent checks: a pid read from
//! a server is only used once `/proc` confirms it is the process meant.

use std::fs;

/// The `Name:\tvalue` fields of `/proc/<pid>/status`.
struct Status(String);

impl Status {
    fn read(pid: i32) -> Option<Status> {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .map(Status)
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.0.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(str::trim)
        })
    }

    fn ppid(&self) -> Option<i32> {
        self.field("PPid")?.parse().ok()
    }

    /// Zombies have exited; only their exit status is left to collect.
    fn is_zombie(&self) -> bool {
        self.field("State").is_some_and(|s| s.starts_with('Z'))
    }
}

/// Resident set size of `pid` in KiB, if `/proc/<pid>` is a child of
/// `parent` as seen from here (otherwise the pid means another process).
pub fn rss_kb_of_child(pid: i32, parent: i32) -> Option<u64> {
    let status = Status::read(pid)?;
    if status.ppid()? != parent {
        return None;
    }
    status
        .field("VmRSS")?
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// Whether `pid` exists and has not exited (a zombie has).
pub fn is_running(pid: i32) -> bool {
    Status::read(pid).is_some_and(|s| !s.is_zombie())
}

/// The parent of a running `pid`.
pub fn parent_of(pid: i32) -> Option<i32> {
    Status::read(pid).filter(|s| !s.is_zombie())?.ppid()
}

/// The real uid `pid` runs as.
pub fn uid_of(pid: i32) -> Option<u32> {
    let status = Status::read(pid)?;
    status.field("Uid")?.split_whitespace().next()?.parse().ok()
}

/// Running children of `parent`, in pid order.
pub fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&pid| parent_of(pid) == Some(parent))
        .collect();
    pids.sort_unstable();
    pids
}

/// The value of `name` in the environment `pid` was started (exec'd) with.
/// That is what `/proc/<pid>/environ` holds: later `setenv`/`unsetenv`
/// calls of the process do not show, and a forked child shows its parent's.
pub fn environ_var(pid: i32, name: &str) -> Option<String> {
    let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|&b| b == 0).find_map(|entry| {
        let value = entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(value).into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::{getpid, getppid, getuid};

    #[test]
    fn reads_our_own_rss_only_with_the_right_parent() {
        let (me, parent) = (getpid().as_raw(), getppid().as_raw());
        assert!(rss_kb_of_child(me, parent).is_some_and(|kb| kb > 0));
        assert_eq!(rss_kb_of_child(me, parent + 1), None);
        assert_eq!(rss_kb_of_child(i32::MAX, parent), None);
    }

    #[test]
    fn process_tree_facts_about_ourselves() {
        let (me, parent) = (getpid().as_raw(), getppid().as_raw());
        assert!(is_running(me));
        assert!(!is_running(i32::MAX));
        assert_eq!(parent_of(me), Some(parent));
        assert!(children_of(parent).contains(&me));
        assert_eq!(uid_of(me), Some(getuid().as_raw()));
    }

    #[test]
    fn reads_the_environment_a_child_was_started_with() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("GUNICORNCTL_PROCFS_TEST", "42=x")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // The exec may not have happened yet: until then the child shows
        // our environment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let value = loop {
            if let Some(v) = environ_var(pid, "GUNICORNCTL_PROCFS_TEST") {
                break Some(v);
            }
            if std::time::Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(environ_var(pid, "GUNICORNCTL_PROCFS_"), None);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(value.as_deref(), Some("42=x"));
        assert!(!is_running(pid));
    }
}
