//! What an in-place upgrade hands from the old image to the new one across
//! `execve` (src/arbiter/in_place.rs): the state, as JSON in a memfd named
//! by [`STATE_VAR`], and the descriptors kept open for it.

use std::io::{Read, Seek, Write};
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use serde::{Deserialize, Serialize};

use super::in_place::STATE_VERSION;
use super::plan::Counters;
use crate::fd::FileId;

/// Names the fd of the state in the new image's environment.
pub const STATE_VAR: &str = "GUNICORND_STATE_FD";
/// Names the control socket's listener in the new image's environment, as
/// `FD` or `FD:DEV:INO` (the socket file's identity, see `FileId`): apart
/// from the state, so that a new image that cannot read the state still
/// serves on it.
pub const CONTROL_VAR: &str = "GUNICORND_CONTROL_FD";
/// Names the worker scoreboard in the new image's environment, as
/// `FD:STRIDE` (see `Scoreboard::inherit`): apart from the state too, so
/// that a new image that cannot read the state still closes it.
pub const SCOREBOARD_VAR: &str = "GUNICORND_SCOREBOARD_FD";
/// Tests only: the state version the new image reads, instead of
/// [`STATE_VERSION`] (a new binary that does not understand the state).
pub const VERSION_OVERRIDE_VAR: &str = "GUNICORND_STATE_VERSION_OVERRIDE";

/// The state of the old image. Only `version` is read before the version
/// check, so that a state of another version is recognised as such.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedState {
    pub version: u32,
    /// The master's pid: the same process, checked by the new image.
    pub master_pid: i32,
    /// The running workers: still the new image's children.
    pub workers: Vec<HandedWorker>,
    /// The worker target (what TTIN/TTOU/scale made of it) and the
    /// configuration's `workers`, as a reload compares them.
    pub target: usize,
    pub configured: usize,
    /// The newest generation; the new image's is the next.
    pub generation: u64,
    /// A reload in progress: the generation that serves until the newest
    /// one has booted, and its target.
    pub fallback: Option<HandedFallback>,
    pub counters: Counters,
    /// The listening sockets' fds, kept open across the exec, in order.
    pub listener_fds: Vec<RawFd>,
    /// When the exec happened (seconds since the epoch).
    pub execed_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedWorker {
    pub pid: i32,
    pub age: u64,
    pub generation: u64,
    pub booted: bool,
    /// Its scoreboard slot, where its heartbeat goes on.
    pub slot: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedFallback {
    pub generation: u64,
    pub target: usize,
}

/// The part of the state every version has.
#[derive(Deserialize)]
struct Versioned {
    version: u32,
}

/// Why the new image could not take the state over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// Another format: only the pids it names can still be recovered.
    Version { found: u32, pids: Vec<i32> },
    /// The scoreboard could not be mapped again: the workers are known,
    /// but their heartbeats cannot be watched.
    Scoreboard { why: String, pids: Vec<i32> },
    /// Not a state at all (or unreadable).
    Broken(String),
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::Version { found, .. } => write!(
                f,
                "the state is version {found}, this binary reads {}",
                understood_version()
            ),
            Unreadable::Scoreboard { why, .. } => {
                write!(f, "the worker scoreboard cannot be taken over: {why}")
            }
            Unreadable::Broken(why) => f.write_str(why),
        }
    }
}

impl Unreadable {
    /// The inherited workers it still names, to be retired.
    pub fn pids(&self) -> &[i32] {
        match self {
            Unreadable::Version { pids, .. } | Unreadable::Scoreboard { pids, .. } => pids,
            Unreadable::Broken(_) => &[],
        }
    }
}

/// The state version this binary reads ([`VERSION_OVERRIDE_VAR`] aside).
pub fn understood_version() -> u32 {
    std::env::var(VERSION_OVERRIDE_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(STATE_VERSION)
}

/// Writes `state` to a fresh memfd (close-on-exec until it is kept), read
/// from its start.
pub fn write_state(state: &HandedState) -> Result<OwnedFd, String> {
    let fd = memfd_create("gunicornd-state", MFdFlags::MFD_CLOEXEC)
        .map_err(|e| format!("cannot create the state memfd: {e}"))?;
    let mut file = std::fs::File::from(fd);
    let json = serde_json::to_vec(state).map_err(|e| format!("cannot encode the state: {e}"))?;
    file.write_all(&json)
        .and_then(|()| file.rewind())
        .map_err(|e| format!("cannot write the state: {e}"))?;
    Ok(file.into())
}

/// Reads the state the old image left at `fd` (which is closed).
pub fn read_state(fd: OwnedFd) -> Result<HandedState, Unreadable> {
    let mut text = Vec::new();
    std::fs::File::from(fd)
        .read_to_end(&mut text)
        .map_err(|e| Unreadable::Broken(format!("cannot read the state: {e}")))?;
    let versioned: Versioned = serde_json::from_slice(&text)
        .map_err(|e| Unreadable::Broken(format!("the state is not valid: {e}")))?;
    if versioned.version != understood_version() {
        return Err(Unreadable::Version {
            found: versioned.version,
            pids: pids_in(&text),
        });
    }
    serde_json::from_slice(&text)
        .map_err(|e| Unreadable::Broken(format!("the state is not valid: {e}")))
}

/// The worker pids of a state of any version: `workers[].pid`, which
/// every version is to keep, so that a new image can still retire them.
fn pids_in(text: &[u8]) -> Vec<i32> {
    let value: serde_json::Value = serde_json::from_slice(text).unwrap_or_default();
    value["workers"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .filter_map(|w| w["pid"].as_i64())
                .filter_map(|p| i32::try_from(p).ok())
                .filter(|&p| p > 0)
                .collect()
        })
        .unwrap_or_default()
}

/// The state fd the environment names, taken over (the variable is
/// removed, so nothing started later inherits it).
pub fn state_from_env() -> Option<Result<OwnedFd, Unreadable>> {
    let value = std::env::var(STATE_VAR).ok()?;
    std::env::remove_var(STATE_VAR);
    let fd = match value.parse::<RawFd>() {
        Ok(fd) if fd > 2 && fcntl_ok(fd) => fd,
        _ => {
            return Some(Err(Unreadable::Broken(format!(
                "{STATE_VAR}={value} names no open descriptor"
            ))))
        }
    };
    // SAFETY: the old image left this fd open for us alone, and nothing in
    // this process has taken it yet (the variable is read once).
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = crate::fd::set_cloexec(&fd);
    Some(Ok(fd))
}

/// The control socket listener the environment names, taken over.
pub fn control_from_env() -> Option<(std::os::unix::net::UnixListener, Option<FileId>)> {
    let value = std::env::var(CONTROL_VAR).ok()?;
    std::env::remove_var(CONTROL_VAR);
    let (fd, file) = match value.split_once(':') {
        Some((fd, id)) => (fd, FileId::parse(id)),
        None => (value.as_str(), None),
    };
    let fd: RawFd = fd.parse().ok().filter(|&fd| fd > 2 && fcntl_ok(fd))?;
    // SAFETY: the old image left this fd open for us alone, and the
    // variable is read once.
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    Some((listener, file))
}

/// The worker scoreboard's descriptor and slot stride the environment
/// names, taken over (close-on-exec again).
pub fn scoreboard_from_env() -> Option<(OwnedFd, usize)> {
    let value = std::env::var(SCOREBOARD_VAR).ok()?;
    std::env::remove_var(SCOREBOARD_VAR);
    let (fd, stride) = value.split_once(':')?;
    let fd: RawFd = fd.parse().ok().filter(|&fd| fd > 2 && fcntl_ok(fd))?;
    // SAFETY: the old image left this fd open for us alone, and the
    // variable is read once.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = crate::fd::set_cloexec(&fd);
    Some((fd, stride.parse().ok()?))
}

fn fcntl_ok(fd: RawFd) -> bool {
    // SAFETY: only borrowed for the flag check; an invalid fd fails it.
    fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, FcntlArg::F_GETFD).is_ok()
}

/// Descriptors whose close-on-exec flag was cleared for an exec: [`Kept::restore`]
/// sets it back when the exec failed.
pub struct Kept(Vec<RawFd>);

/// Clears close-on-exec on exactly `fds`, and sets it on every other
/// descriptor above stderr, so that nothing else crosses the exec.
pub fn keep_across_exec(fds: &[RawFd]) -> Result<Kept, String> {
    for fd in open_fds() {
        if fd > 2 && !fds.contains(&fd) {
            // SAFETY: borrowed for one fcntl; the fd is open (just listed)
            // or the call fails harmlessly.
            let _ = crate::fd::set_cloexec(unsafe { BorrowedFd::borrow_raw(fd) });
        }
    }
    let mut kept = Kept(Vec::new());
    for &fd in fds {
        // SAFETY: as above.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Err(e) = fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::empty())) {
            kept.restore();
            return Err(format!("cannot keep fd {fd} open across the exec: {e}"));
        }
        kept.0.push(fd);
    }
    Ok(kept)
}

impl Kept {
    pub fn restore(&mut self) {
        for fd in self.0.drain(..) {
            // SAFETY: a descriptor this process still holds (the exec failed).
            let _ = crate::fd::set_cloexec(unsafe { BorrowedFd::borrow_raw(fd) });
        }
    }
}

/// This process's open descriptors, from `/proc/self/fd`.
fn open_fds() -> Vec<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, AsRawFd};

    use super::*;

    /// Whether `fd` crosses an exec.
    fn crosses_exec(fd: impl AsFd) -> bool {
        let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFD).unwrap();
        !FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC)
    }

    fn state(version: u32) -> HandedState {
        HandedState {
            version,
            master_pid: 42,
            workers: vec![HandedWorker {
                pid: 7,
                age: 3,
                generation: 2,
                booted: true,
                slot: 0,
            }],
            target: 1,
            configured: 1,
            generation: 2,
            fallback: Some(HandedFallback {
                generation: 1,
                target: 2,
            }),
            counters: Counters {
                spawned: 3,
                killed: 1,
                reloads: 1,
            },
            listener_fds: vec![5, 6],
            execed_at: 1_700_000_000,
        }
    }

    #[test]
    fn a_state_reads_back_from_its_memfd() {
        let fd = write_state(&state(STATE_VERSION)).unwrap();
        assert!(!crosses_exec(&fd), "close-on-exec until kept");
        assert_eq!(read_state(fd), Ok(state(STATE_VERSION)));
    }

    #[test]
    fn a_state_of_another_version_still_names_its_pids() {
        let fd = write_state(&state(STATE_VERSION + 1)).unwrap();
        assert_eq!(
            read_state(fd),
            Err(Unreadable::Version {
                found: STATE_VERSION + 1,
                pids: vec![7]
            })
        );
    }

    #[test]
    fn keeping_fds_clears_close_on_exec_on_those_alone_and_restores_it() {
        let a = write_state(&state(1)).unwrap();
        let b = write_state(&state(1)).unwrap();
        let mut kept = keep_across_exec(&[a.as_raw_fd()]).unwrap();
        assert!(crosses_exec(&a));
        assert!(!crosses_exec(&b));
        kept.restore();
        assert!(!crosses_exec(&a));
    }
}
