//! Command workers' output: each worker's stdout and stderr are one pipe
//! the master reads in its event loop and writes to the error log, line by
//! line, under the worker's pid (`crate::log::worker_output`).
//!
//! A worker must never be able to stall the master through it
//! (ARCHITECTURE.md, "Rules"), however much it writes:
//! - the pipes are non-blocking and each pass reads at most
//!   [`READ_PER_PASS`] bytes from each one; a pipe that had more is read
//!   again in the next pass, which comes at once (`has_pending`), after the
//!   master's own inputs and the control clients;
//! - a line is at most [`LINE_MAX`] bytes; a longer one is logged in pieces
//!   of that size;
//! - the log gets at most [`LINES_PER_SECOND`] lines a second from one
//!   worker (with bursts up to as many), and the writing of output lines
//!   takes at most [`WRITE_BUDGET`] of one pass. Lines past either are read
//!   and dropped, never waited for; the count is logged as a warning once a
//!   second while it happens, and when the worker goes.
//!
//! A pipe is closed when its worker is reaped, after a last bounded read of
//! what the worker left in it; a process the worker started and that still
//! holds the pipe then writes into a closed pipe.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::errno::Errno;
use nix::unistd::Pid;

/// Bytes read from one pipe per pass of the loop.
pub const READ_PER_PASS: usize = 64 * 1024;
/// The longest line written to the log, in bytes.
pub const LINE_MAX: usize = 4096;
/// Lines a second one worker may put in the log (and its burst).
pub const LINES_PER_SECOND: u32 = 1000;
/// The time one pass may spend writing output lines.
pub const WRITE_BUDGET: Duration = Duration::from_millis(5);
/// How often a worker's dropped lines are counted in the log while it
/// keeps losing them.
pub const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// What a reaped worker's pipe is still read for.
const FINAL_READ: usize = 4 * READ_PER_PASS;

/// The first mio token of the pipes (the control socket's clients count up
/// from the bottom, the upgrade channel sits at the top).
const FIRST_TOKEN: usize = 1 << (usize::BITS - 2);

/// Every command worker's output pipe.
#[derive(Debug, Default)]
pub struct WorkerOutput {
    pipes: HashMap<i32, Pipe>,
    tokens: HashMap<Token, i32>,
    next_token: usize,
    /// Workers whose pipe may have more to read.
    pending: BTreeSet<i32>,
}

#[derive(Debug)]
struct Pipe {
    fd: OwnedFd,
    token: Token,
    /// The start of a line whose end has not arrived.
    partial: Vec<u8>,
    /// Lines that may still be written now (refilled at
    /// [`LINES_PER_SECOND`]).
    allowance: f64,
    refilled_at: Instant,
    /// Lines dropped and not yet reported, and when that was last done.
    dropped: u64,
    reported_at: Option<Instant>,
}

/// What one pass may still spend on writing lines.
struct Budget {
    until: Instant,
}

impl Budget {
    fn spent(&self) -> bool {
        Instant::now() >= self.until
    }
}

impl WorkerOutput {
    /// Read worker `pid`'s output from `fd` (the read end of its pipe)
    /// from now on.
    pub fn watch(&mut self, registry: &Registry, pid: Pid, fd: OwnedFd) -> io::Result<()> {
        crate::fd::set_nonblocking(&fd)?;
        let token = Token(FIRST_TOKEN + self.next_token);
        self.next_token += 1;
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        self.tokens.insert(token, pid.as_raw());
        // Output may have come before the registration.
        self.pending.insert(pid.as_raw());
        self.pipes.insert(
            pid.as_raw(),
            Pipe {
                fd,
                token,
                partial: Vec::new(),
                allowance: f64::from(LINES_PER_SECOND),
                refilled_at: Instant::now(),
                dropped: 0,
                reported_at: None,
            },
        );
        Ok(())
    }

    /// Whether `token` is one of the pipes.
    pub fn owns(&self, token: Token) -> bool {
        self.tokens.contains_key(&token)
    }

    /// The pipe of `token` has something to read.
    pub fn readable(&mut self, token: Token) {
        if let Some(&pid) = self.tokens.get(&token) {
            self.pending.insert(pid);
        }
    }

    /// Some pipe may have more to read than the last pass took.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// When a count of dropped lines is due in the log.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pipes
            .values()
            .filter(|p| p.dropped > 0)
            .map(|p| {
                p.reported_at
                    .map_or_else(Instant::now, |t| t + DROP_REPORT_INTERVAL)
            })
            .min()
    }

    /// One pass: read what the pipes that may hold something have, within
    /// the bounds of the module documentation, and log it.
    pub fn service(&mut self, now: Instant) {
        let budget = Budget {
            until: now + WRITE_BUDGET,
        };
        let pending: Vec<i32> = std::mem::take(&mut self.pending).into_iter().collect();
        for pid in pending {
            let Some(pipe) = self.pipes.get_mut(&pid) else {
                continue;
            };
            if pipe.read(pid, READ_PER_PASS, &budget, now) == Read::More {
                self.pending.insert(pid);
            }
        }
        for (&pid, pipe) in &mut self.pipes {
            pipe.report_drops(pid, now, false);
        }
    }

    /// Worker `pid` was reaped: log what it left in its pipe, and what it
    /// lost, and close the pipe.
    pub fn forget(&mut self, registry: &Registry, pid: Pid) {
        let Some(mut pipe) = self.pipes.remove(&pid.as_raw()) else {
            return;
        };
        self.tokens.remove(&pipe.token);
        self.pending.remove(&pid.as_raw());
        let now = Instant::now();
        let budget = Budget {
            until: now + WRITE_BUDGET,
        };
        pipe.read(pid.as_raw(), FINAL_READ, &budget, now);
        if !pipe.partial.is_empty() {
            let rest = std::mem::take(&mut pipe.partial);
            pipe.log_line(pid.as_raw(), &rest, &budget, now);
        }
        pipe.report_drops(pid.as_raw(), now, true);
        let _ = registry.deregister(&mut SourceFd(&pipe.fd.as_raw_fd()));
    }

    /// The read ends, which a forked worker must not keep.
    pub fn fds(&self) -> Vec<RawFd> {
        self.pipes.values().map(|p| p.fd.as_raw_fd()).collect()
    }
}

/// Whether a pipe may hold more than was read.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    More,
    Drained,
}

impl Pipe {
    /// Read up to `limit` bytes and log the complete lines among them.
    fn read(&mut self, pid: i32, limit: usize, budget: &Budget, now: Instant) -> Read {
        let mut buf = [0u8; 16 * 1024];
        let mut total = 0;
        while total < limit {
            let want = buf.len().min(limit - total);
            match nix::unistd::read(&self.fd, &mut buf[..want]) {
                Ok(0) => return Read::Drained,
                Ok(n) => {
                    total += n;
                    self.take(pid, &buf[..n], budget, now);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Read::Drained,
                Err(e) => {
                    tracing::debug!("Cannot read the output of worker {pid}: {e}");
                    return Read::Drained;
                }
            }
        }
        Read::More
    }

    /// Split what arrived into lines (of at most [`LINE_MAX`] bytes) and
    /// log the complete ones; keep the start of an unfinished one.
    fn take(&mut self, pid: i32, mut bytes: &[u8], budget: &Budget, now: Instant) {
        while !bytes.is_empty() {
            let room = LINE_MAX - self.partial.len();
            match bytes.iter().take(room).position(|&b| b == b'\n') {
                Some(end) => {
                    let line = if self.partial.is_empty() {
                        self.log_line(pid, &bytes[..end], budget, now);
                        None
                    } else {
                        self.partial.extend_from_slice(&bytes[..end]);
                        Some(std::mem::take(&mut self.partial))
                    };
                    if let Some(line) = line {
                        self.log_line(pid, &line, budget, now);
                    }
                    bytes = &bytes[end + 1..];
                }
                None if bytes.len() >= room => {
                    // A full line's worth without a newline: that piece is
                    // a line of its own.
                    self.partial.extend_from_slice(&bytes[..room]);
                    let line = std::mem::take(&mut self.partial);
                    self.log_line(pid, &line, budget, now);
                    bytes = &bytes[room..];
                }
                None => {
                    self.partial.extend_from_slice(bytes);
                    bytes = &[];
                }
            }
        }
    }

    /// Log one line, or count it as dropped when this worker's allowance or
    /// the pass's budget is spent.
    fn log_line(&mut self, pid: i32, line: &[u8], budget: &Budget, now: Instant) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        let most = f64::from(LINES_PER_SECOND);
        self.allowance = (self.allowance + elapsed * most).min(most);
        self.refilled_at = now;
        if self.allowance < 1.0 || budget.spent() || !crate::log::error_log_ready() {
            self.dropped += 1;
            return;
        }
        self.allowance -= 1.0;
        crate::log::worker_output(pid as u32, &String::from_utf8_lossy(line));
    }

    /// Log how many lines were dropped, once per [`DROP_REPORT_INTERVAL`]
    /// (or now, when `last`).
    fn report_drops(&mut self, pid: i32, now: Instant, last: bool) {
        if self.dropped == 0 {
            return;
        }
        if !last
            && self
                .reported_at
                .is_some_and(|t| now < t + DROP_REPORT_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            "Dropped {} lines of output from worker (pid:{pid}): it wrote more than {} lines a \
             second, or faster than the error log took them",
            self.dropped,
            LINES_PER_SECOND
        );
        self.dropped = 0;
        self.reported_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::OFlag;

    fn pipe_pair() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap()
    }

    fn pipe(fd: OwnedFd) -> Pipe {
        Pipe {
            fd,
            token: Token(FIRST_TOKEN),
            partial: Vec::new(),
            allowance: f64::from(LINES_PER_SECOND),
            refilled_at: Instant::now(),
            dropped: 0,
            reported_at: None,
        }
    }

    fn budget() -> Budget {
        Budget {
            until: Instant::now() + Duration::from_secs(60),
        }
    }

    #[test]
    fn lines_are_split_and_an_unfinished_one_is_kept() {
        let (read, _write) = pipe_pair();
        let mut p = pipe(read);
        let now = Instant::now();
        p.take(1, b"one\ntw", &budget(), now);
        assert_eq!(p.partial, b"tw");
        p.take(1, b"o\r\nthree\n", &budget(), now);
        assert!(p.partial.is_empty());
        // A line longer than LINE_MAX comes out in pieces.
        let long = vec![b'x'; LINE_MAX * 2 + 10];
        p.take(1, &long, &budget(), now);
        assert_eq!(p.partial.len(), 10);
        assert_eq!(p.dropped, 0);
    }

    #[test]
    fn past_the_allowance_or_the_budget_lines_are_dropped_and_counted() {
        let (read, _write) = pipe_pair();
        let mut p = pipe(read);
        let now = Instant::now();
        let many = "x\n".repeat(LINES_PER_SECOND as usize + 50);
        p.take(1, many.as_bytes(), &budget(), now);
        assert_eq!(p.dropped, 50);
        // A second later the allowance is back.
        let later = now + Duration::from_secs(1);
        p.take(1, b"y\n", &budget(), later);
        assert_eq!(p.dropped, 50);
        p.report_drops(1, later, false);
        assert_eq!((p.dropped, p.reported_at), (0, Some(later)));
        // A pass whose budget is spent drops what is left.
        let spent = Budget {
            until: Instant::now(),
        };
        p.take(1, b"z\n", &spent, later);
        assert_eq!(p.dropped, 1);
        // Not reported again within the interval, unless the worker goes.
        p.report_drops(1, later, false);
        assert_eq!(p.dropped, 1);
        p.report_drops(1, later, true);
        assert_eq!(p.dropped, 0);
    }

    #[test]
    fn a_pass_reads_a_bounded_amount() {
        let (read, write) = pipe_pair();
        let _ = nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
        let mut p = pipe(read);
        let chunk = vec![b'a'; 1000];
        let mut written = 0;
        while written < READ_PER_PASS * 2 {
            match nix::unistd::write(&write, &chunk) {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        assert!(written > READ_PER_PASS, "the pipe holds {written} bytes");
        assert_eq!(
            p.read(1, READ_PER_PASS, &budget(), Instant::now()),
            Read::More
        );
        assert_eq!(
            p.read(1, usize::MAX, &budget(), Instant::now()),
            Read::Drained
        );
        drop(write);
        assert_eq!(
            p.read(1, READ_PER_PASS, &budget(), Instant::now()),
            Read::Drained
        );
    }
}
