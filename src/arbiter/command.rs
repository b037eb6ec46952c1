//! Everything the master can be asked to do, whatever asked it: a signal or
//! a control-socket request. One value, one handler (`Arbiter::command`);
//! the two ways in differ only in who gets the [`super::Outcome`].

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::control::protocol::{ScaleTarget, UpgradeMode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// HUP: reload the configuration and roll the workers over.
    Reload,
    /// TERM (graceful) or INT/QUIT (quick).
    Stop { graceful: bool },
    /// TTIN / TTOU / `scale` / `worker add|remove`.
    Scale(ScaleTarget),
    /// USR1: reopen log files here and in every worker.
    ReopenLogs,
    /// WINCH: stop all workers, keep the master (daemon mode).
    StopWorkers,
    /// `worker kill PID`: retire one worker.
    KillWorker(Pid),
    /// USR2 / `upgrade [MODE]`: binary upgrade; no mode: the
    /// `upgrade_mode` setting's.
    Upgrade(Option<UpgradeMode>),
}

impl Command {
    /// The command a signal to the master stands for (gunicorn's signal
    /// table). SIGCHLD is no command: the loop reaps on every pass.
    pub fn from_signal(sig: Signal) -> Option<Command> {
        Some(match sig {
            Signal::SIGHUP => Command::Reload,
            Signal::SIGTERM => Command::Stop { graceful: true },
            Signal::SIGINT | Signal::SIGQUIT => Command::Stop { graceful: false },
            Signal::SIGTTIN => Command::Scale(ScaleTarget::Up(1)),
            Signal::SIGTTOU => Command::Scale(ScaleTarget::Down(1)),
            Signal::SIGUSR1 => Command::ReopenLogs,
            Signal::SIGUSR2 => Command::Upgrade(None),
            Signal::SIGWINCH => Command::StopWorkers,
            _ => return None,
        })
    }
}

/// The signals the master handles.
pub const MASTER_SIGNALS: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCHLD,
];
