//! Everything the master can be asked to do, whatever asked it: a signal, a
//! control-socket command, systemd. One value, one handler (DESIGN).

use nix::sys::signal::Signal;

/// A change to the worker count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    To(usize),
    By(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// HUP: reload the configuration and roll the workers over.
    Reload,
    /// TERM (graceful) or INT/QUIT (quick).
    Stop { graceful: bool },
    /// TTIN / TTOU / `scale`.
    Scale(Scale),
    /// USR1: reopen log files here and in every worker.
    ReopenLogs,
    /// WINCH: stop all workers, keep the master (daemon mode).
    StopWorkers,
    /// USR2: binary upgrade.
    Upgrade,
    /// SIGCHLD: reap exited children.
    Reap,
}

impl Command {
    /// The command a signal to the master stands for (reference §1.4).
    pub fn from_signal(sig: Signal) -> Option<Command> {
        Some(match sig {
            Signal::SIGHUP => Command::Reload,
            Signal::SIGTERM => Command::Stop { graceful: true },
            Signal::SIGINT | Signal::SIGQUIT => Command::Stop { graceful: false },
            Signal::SIGTTIN => Command::Scale(Scale::By(1)),
            Signal::SIGTTOU => Command::Scale(Scale::By(-1)),
            Signal::SIGUSR1 => Command::ReopenLogs,
            Signal::SIGUSR2 => Command::Upgrade,
            Signal::SIGWINCH => Command::StopWorkers,
            Signal::SIGCHLD => Command::Reap,
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
