//! Processes as `/proc` shows them: who is whose child, who is alive, what
//! a process is doing (pending signals, sleeping in the app), which
//! credentials and files it has.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

/// One process seen in /proc: pid, parent, state letter (`Z` for a zombie,
/// `T` when stopped) and command name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    pub comm: String,
}

/// What `/proc/PID/stat` says about `pid`, if it exists.
pub fn proc_info(pid: i32) -> Option<ProcInfo> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything: the
    // fields after the last ")" are state, ppid, ...
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        state,
        comm,
    })
}

/// Every process in /proc (zombies included).
pub fn all_processes() -> Vec<ProcInfo> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter_map(proc_info)
        .collect()
}

/// All children of `ppid`, zombies included.
pub fn all_children_of(ppid: i32) -> Vec<ProcInfo> {
    all_processes()
        .into_iter()
        .filter(|p| p.ppid == ppid)
        .collect()
}

/// Live (non-zombie) children of `ppid`.
pub fn children_of(ppid: i32) -> BTreeSet<i32> {
    all_children_of(ppid)
        .into_iter()
        .filter(|p| p.state != 'Z')
        .map(|p| p.pid)
        .collect()
}

/// The process exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    proc_info(pid).is_some_and(|p| p.state != 'Z')
}

/// Bitmask of signals pending for `pid`, for the whole process (`ShdPnd`)
/// or its main thread (`SigPnd`); bit `n - 1` is signal `n`.
pub fn pending_signals(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    mask("ShdPnd:") | mask("SigPnd:")
}

/// True while `pid` is inside a sleep system call (the debug app's
/// `?sleep=`): a fact that says a request is in flight in that worker.
pub fn sleeping_in_app(pid: i32) -> bool {
    let sc = fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    let nr = sc.split_whitespace().next().unwrap_or("");
    // x86_64: nanosleep = 35, clock_nanosleep = 230; aarch64: 101 and 115.
    matches!(nr, "35" | "230" | "101" | "115")
}

/// The ids a process runs with, from `/proc/PID/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Real, effective, saved and file-system uid.
    pub uids: Vec<u32>,
    /// Real, effective, saved and file-system gid.
    pub gids: Vec<u32>,
    /// The supplementary groups.
    pub groups: BTreeSet<u32>,
}

/// What `/proc/PID/status` says `pid` runs as, if it exists.
pub fn credentials(pid: i32) -> Option<Credentials> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let ids = |key: &str| -> Option<Vec<u32>> {
        let line = status.lines().find_map(|l| l.strip_prefix(key))?;
        line.split_whitespace().map(|n| n.parse().ok()).collect()
    };
    Some(Credentials {
        uids: ids("Uid:")?,
        gids: ids("Gid:")?,
        groups: ids("Groups:")?.into_iter().collect(),
    })
}

/// What the open descriptors of `pid` name (`/proc/PID/fd/*` links): file
/// paths, or `socket:[N]`, `pipe:[N]`, ...
pub fn open_files(pid: i32) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .collect()
}
