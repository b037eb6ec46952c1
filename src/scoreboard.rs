//! The scoreboard: a shared-memory table with one slot per worker, written by
//! the worker and read by the master.
//!
//! gunicorn's heartbeat (`gunicorn/workers/workertmp.py`) touches a temporary
//! file with `utime` every loop pass, which blocks when that file sits on a
//! slow disk and, because the file starts with a wall-clock mtime that the
//! master compares with the monotonic clock, never times out a worker that
//! hangs while booting. Here the master maps the table (`MAP_SHARED`) before
//! forking, stamps a slot with the spawn time, and the worker stores the
//! monotonic clock into it: no system call per heartbeat, and a boot hang
//! times out like any other hang. `CLOCK_MONOTONIC` is system-wide, so the
//! master and the workers compare the same clock.
//!
//! The table lives in a memfd (with `--worker-tmp-dir DIR`, an unlinked file
//! in DIR, for hosts that want it on a given tmpfs) whose descriptor the
//! master keeps: an in-place upgrade hands it to the new image across
//! `execve` (src/arbiter/in_place.rs), which maps the same table again and
//! so goes on watching the heartbeats of the workers it adopts.
//!
//! Each slot has a memory page of its own, and a forked worker unmaps every
//! page but its own slot's before it runs ([`Scoreboard::confine`]) and
//! closes the master's descriptor of the table (it is one of
//! `Arbiter::master_fds`), so a worker cannot map it again and cannot write
//! another worker's heartbeat or booted flag, only its own. (A worker that
//! runs as the master's own user could still open the descriptor through
//! `/proc/<master>/fd`, but such a worker can signal the master anyway;
//! with `--user` it cannot.)

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, FdFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

/// Most workers one master can run at once.
pub const CAPACITY: usize = 16384;

/// One worker's shared state. Only the owning worker writes `heartbeat_ns`,
/// `booted` and `requests`; only the master writes `pid` (when it hands the
/// slot out and when it frees it) and `served_elsewhere`.
#[repr(C, align(64))]
pub struct Slot {
    pid: AtomicU32,
    booted: AtomicU32,
    heartbeat_ns: AtomicU64,
    requests: AtomicU64,
    /// Set by the master before it stops the worker when another master's
    /// workers accept on the same sockets (a binary upgrade): the worker
    /// then need not drain the listen queue before it exits.
    served_elsewhere: AtomicU32,
    /// Connections the worker holds (idle, reading, or being served), and
    /// of those the ones whose request is in the app: `gunicornctl
    /// workers`' idle/busy counts. Written by the worker only.
    connections: AtomicU32,
    in_flight: AtomicU32,
}

/// The shared table. Created once by the master; inherited by every worker.
pub struct Scoreboard {
    base: NonNull<u8>,
    /// Bytes from one slot to the next: a whole number of pages.
    stride: usize,
    free: Vec<usize>,
    /// The memory the table is in (close-on-exec but for the exec of an
    /// in-place upgrade).
    backing: OwnedFd,
}

/// Nanoseconds on `CLOCK_MONOTONIC`.
pub fn monotonic_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

impl Scoreboard {
    /// Create and map the table: in a memfd, or (with `dir`) in an unlinked
    /// file there.
    pub fn new(dir: Option<&Path>) -> Result<Self, String> {
        let stride = slot_stride();
        let len = (CAPACITY * stride) as u64;
        let file = match dir {
            None => {
                let fd = memfd_create(
                    "gunicornd-scoreboard",
                    MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
                )
                .map_err(|e| format!("cannot create the worker scoreboard: {e}"))?;
                let file = File::from(fd);
                file.set_len(len)
                    .map_err(|e| format!("cannot size the worker scoreboard: {e}"))?;
                // Its size is fixed from here on: a mapped file that shrank
                // would kill the master with SIGBUS.
                let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
                fcntl(&file, FcntlArg::F_ADD_SEALS(seals))
                    .map_err(|e| format!("cannot seal the worker scoreboard: {e}"))?;
                file
            }
            Some(dir) => {
                let file = tempfile::tempfile_in(dir).map_err(|e| {
                    format!("cannot create the heartbeat file in {}: {e}", dir.display())
                })?;
                file.set_len(len).map_err(|e| {
                    format!("cannot size the heartbeat file in {}: {e}", dir.display())
                })?;
                file
            }
        };
        Self::map(file.into(), stride, (0..CAPACITY).rev().collect())
    }

    /// The new image of an in-place upgrade: map the table the previous
    /// image left at `fd`, whose slots were `stride` bytes apart. Every slot
    /// is free until [`Scoreboard::claim`]ed for an adopted worker.
    pub fn inherit(fd: OwnedFd, stride: usize) -> Result<Self, String> {
        if stride != slot_stride() {
            return Err(format!(
                "its slots are {stride} bytes apart, this binary's {}",
                slot_stride()
            ));
        }
        let size = nix::sys::stat::fstat(fd.as_fd())
            .map_err(|e| format!("cannot stat it: {e}"))?
            .st_size;
        if size != (CAPACITY * stride) as i64 {
            return Err(format!("it holds {size} bytes, not {} slots", CAPACITY));
        }
        fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
            .map_err(|e| format!("cannot make it close-on-exec: {e}"))?;
        Self::map(fd, stride, (0..CAPACITY).rev().collect())
    }

    fn map(backing: OwnedFd, stride: usize, free: Vec<usize>) -> Result<Self, String> {
        let len = std::num::NonZeroUsize::new(CAPACITY * stride).expect("non-zero size");
        let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
        // SAFETY: maps a table only this master names (a memfd or an
        // unlinked file), of the size it was given; the mapping lives as
        // long as the process.
        let ptr = unsafe {
            mmap(
                None,
                len,
                prot,
                MapFlags::MAP_SHARED | MapFlags::MAP_NORESERVE,
                &backing,
                0,
            )
        }
        .map_err(|e| format!("cannot map the worker scoreboard: {e}"))?;
        Ok(Scoreboard {
            base: ptr.cast(),
            stride,
            free,
            backing,
        })
    }

    /// The table's descriptor: kept open across an in-place upgrade's exec,
    /// closed in every forked worker.
    pub fn backing_fd(&self) -> RawFd {
        self.backing.as_raw_fd()
    }

    /// Bytes from one slot to the next (the new image of an in-place
    /// upgrade checks it reads the same layout).
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The new image of an in-place upgrade: slot `idx` belongs to an
    /// adopted worker (as it is, heartbeat and all). False if `idx` is out
    /// of range or taken already.
    pub fn claim(&mut self, idx: usize) -> bool {
        match self.free.iter().position(|&i| i == idx) {
            Some(at) => {
                self.free.remove(at);
                true
            }
            None => false,
        }
    }

    /// Take a free slot for a worker about to be forked, stamped with "now"
    /// as its first heartbeat (so a hang during boot times out).
    pub fn allocate(&mut self) -> Option<usize> {
        let idx = self.free.pop()?;
        let slot = self.slot(idx);
        slot.pid.store(0, Ordering::Relaxed);
        slot.booted.store(0, Ordering::Relaxed);
        slot.requests.store(0, Ordering::Relaxed);
        slot.served_elsewhere.store(0, Ordering::Relaxed);
        slot.set_connections(0, 0);
        slot.heartbeat_ns.store(monotonic_ns(), Ordering::Release);
        Some(idx)
    }

    /// Record the pid of the worker in slot `idx` (master side, after fork).
    pub fn set_pid(&self, idx: usize, pid: u32) {
        self.slot(idx).pid.store(pid, Ordering::Release);
    }

    /// Give a reaped worker's slot back.
    pub fn release(&mut self, idx: usize) {
        self.slot(idx).pid.store(0, Ordering::Release);
        self.free.push(idx);
    }

    pub fn slot(&self, idx: usize) -> &Slot {
        assert!(idx < CAPACITY);
        // SAFETY: idx is in bounds of the mapping, which lives as long as self,
        // and each slot starts a page (aligned for Slot); all fields are
        // atomics, so shared access across processes is sound.
        unsafe { &*self.base.as_ptr().add(idx * self.stride).cast::<Slot>() }
    }

    /// In a freshly forked worker, before it runs: unmap every slot but
    /// `idx` (its own), so that this process can no longer touch another
    /// worker's. Any later access to another slot is a fault, so only the
    /// worker's own slot may be used from here on.
    pub fn confine(&self, idx: usize) -> Result<(), String> {
        assert!(idx < CAPACITY);
        let unmap = |from: usize, slots: usize| {
            if slots == 0 {
                return Ok(());
            }
            // SAFETY: the range lies inside our mapping and starts on a page
            // boundary; no reference into it is used again (see above).
            unsafe {
                munmap(
                    self.base.add(from * self.stride).cast(),
                    slots * self.stride,
                )
            }
            .map_err(|e| format!("cannot unmap the other workers' scoreboard slots: {e}"))
        };
        unmap(0, idx)?;
        unmap(idx + 1, CAPACITY - idx - 1)
    }
}

/// Bytes between slots: the page size (or a multiple of it, were a slot
/// ever bigger), so that each slot can be unmapped on its own.
fn slot_stride() -> usize {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| usize::try_from(p).ok())
        .filter(|&p| p > 0)
        .unwrap_or(4096);
    std::mem::size_of::<Slot>().div_ceil(page) * page
}

impl Slot {
    /// Worker: "I am alive" (one relaxed store, no system call but the vDSO clock).
    pub fn beat(&self) {
        self.heartbeat_ns.store(monotonic_ns(), Ordering::Release);
    }

    pub fn mark_booted(&self) {
        self.booted.store(1, Ordering::Release);
        self.beat();
    }

    pub fn count_request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn booted(&self) -> bool {
        self.booted.load(Ordering::Acquire) != 0
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Master: the listen queue is served by another master's workers.
    pub fn mark_served_elsewhere(&self) {
        self.served_elsewhere.store(1, Ordering::Release);
    }

    /// Worker, stopping: must it serve what is queued on the listeners?
    pub fn queue_served_elsewhere(&self) -> bool {
        self.served_elsewhere.load(Ordering::Acquire) != 0
    }

    /// Worker: how many connections it holds, and how many of those have a
    /// request in the app.
    pub fn set_connections(&self, held: usize, in_flight: usize) {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.connections.store(clamp(held), Ordering::Relaxed);
        self.in_flight.store(clamp(in_flight), Ordering::Relaxed);
    }

    /// Connections held and requests in flight, as last set.
    pub fn connections(&self) -> (u32, u32) {
        (
            self.connections.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed),
        )
    }

    /// How long since the worker last reported.
    pub fn silence(&self) -> Duration {
        let last = self.heartbeat_ns.load(Ordering::Acquire);
        Duration::from_nanos(monotonic_ns().saturating_sub(last))
    }
}

// The mapping is deliberately never unmapped: it lives for the whole process
// (master or worker), and unmapping in a worker would not free anything.

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_shared_with_a_forked_child() {
        let mut board = Scoreboard::new(None).unwrap();
        let idx = board.allocate().unwrap();
        // SAFETY: the child only touches the shared slot and exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                board.slot(idx).mark_booted();
                board.slot(idx).count_request();
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).unwrap();
            }
        }
        assert!(board.slot(idx).booted());
        assert_eq!(board.slot(idx).requests(), 1);
        assert!(board.slot(idx).silence() < Duration::from_secs(5));
        board.release(idx);
        let again = board.allocate().unwrap();
        assert!(!board.slot(again).booted(), "a reused slot starts clean");
    }

    /// What the new image of an in-place upgrade maps from the descriptor
    /// is the same table: the heartbeats and counters written into it so
    /// far, and writes through either mapping seen by the other.
    #[test]
    fn an_inherited_table_is_the_same_memory() {
        let mut board = Scoreboard::new(None).unwrap();
        let idx = board.allocate().unwrap();
        board.set_pid(idx, 4242);
        board.slot(idx).mark_booted();
        board.slot(idx).count_request();
        let fd = board.backing.try_clone().unwrap();
        let mut again = Scoreboard::inherit(fd, board.stride()).unwrap();
        assert!(again.claim(idx));
        assert!(!again.claim(idx), "a slot is claimed once");
        assert!(!again.claim(CAPACITY), "out of range");
        assert!(again.slot(idx).booted());
        assert_eq!(again.slot(idx).requests(), 1);
        board.slot(idx).count_request();
        assert_eq!(again.slot(idx).requests(), 2);
        assert_ne!(
            again.allocate(),
            Some(idx),
            "a claimed slot is not handed out"
        );
        let wrong = Scoreboard::inherit(board.backing.try_clone().unwrap(), board.stride() * 2);
        assert!(wrong.is_err());
        // Sealed: nothing can shrink the table under the master.
        let file = File::from(board.backing.try_clone().unwrap());
        assert!(file.set_len(4096).is_err());
    }

    /// A confined worker reaches its own slot and faults on any other.
    #[test]
    fn a_confined_child_cannot_touch_another_slot() {
        let mut board = Scoreboard::new(None).unwrap();
        let own = board.allocate().unwrap();
        let other = board.allocate().unwrap();
        let run = |touch: usize| {
            // SAFETY: the child only unmaps, touches one slot and exits.
            match unsafe { nix::unistd::fork() }.unwrap() {
                nix::unistd::ForkResult::Child => {
                    if board.confine(own).is_err() {
                        unsafe { libc::_exit(2) };
                    }
                    board.slot(touch).beat();
                    unsafe { libc::_exit(0) };
                }
                nix::unistd::ForkResult::Parent { child } => {
                    nix::sys::wait::waitpid(child, None).unwrap()
                }
            }
        };
        assert!(matches!(run(own), nix::sys::wait::WaitStatus::Exited(_, 0)));
        assert!(
            matches!(
                run(other),
                nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGSEGV, _)
            ),
            "writing another worker's slot must fault"
        );
        // The edges: the first and the last slot.
        for idx in [0, CAPACITY - 1] {
            // SAFETY: as above.
            match unsafe { nix::unistd::fork() }.unwrap() {
                nix::unistd::ForkResult::Child => {
                    let code = if board.confine(idx).is_ok() { 0 } else { 2 };
                    board.slot(idx).beat();
                    unsafe { libc::_exit(code) };
                }
                nix::unistd::ForkResult::Parent { child } => assert_eq!(
                    nix::sys::wait::waitpid(child, None).unwrap(),
                    nix::sys::wait::WaitStatus::Exited(child, 0)
                ),
            }
        }
    }

    #[test]
    fn file_backed_board_in_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut board = Scoreboard::new(Some(dir.path())).unwrap();
        let idx = board.allocate().unwrap();
        board.slot(idx).beat();
        assert!(board.slot(idx).silence() < Duration::from_secs(1));
        assert!(Scoreboard::new(Some(Path::new("/nonexistent/dir"))).is_err());
    }
}
