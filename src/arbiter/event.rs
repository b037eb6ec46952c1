//! The inputs of the master. The event loop (`mod.rs`) turns whatever woke
//! it into these values and hands each to `Arbiter::handle`.

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::notify_socket::Notice;
use crate::control::server::Incoming;
use crate::worker::notify::WorkerMsg;

#[derive(Debug)]
pub enum Event {
    /// A signal to the master (one per delivery).
    Signal(Signal),
    /// A request read from a control-socket client.
    Control(Incoming),
    /// A message on the worker channel; `pid` is its sender as the kernel
    /// reported it (SCM_CREDENTIALS), whatever process that is.
    WorkerMessage { pid: Pid, msg: WorkerMsg },
    /// A message on the command workers' `NOTIFY_SOCKET`; `pid` is its
    /// sender as the kernel reported it, whatever process that is.
    WorkerNotice { pid: Pid, notice: Notice },
    /// A child was reaped (a worker, a hook, or an orphan when PID 1).
    ChildExited(WaitStatus),
    /// The loop woke up: deadlines may have passed (heartbeats, stop
    /// grace periods).
    Deadlines,
    /// Every input of this pass is handled: report progress and bring the
    /// worker table to its target (a delayed respawn may be due).
    EndOfPass,
    /// The systemd watchdog is due a ping.
    WatchdogDue,
}
