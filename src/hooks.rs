//! Server hooks as shell commands (gunicorn's hooks are Python callables).
//!
//! A hook runs `/bin/sh -c COMMAND` with the event's facts in `GUNICORND_*`
//! environment variables. The master never waits for one: it starts the
//! process and goes on; the exit is collected with the other children and a
//! failure is logged, nothing more. (`spawn` itself returns once the
//! child has exec'd `/bin/sh`: a fork and an exec, never the hook's run.)

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sys::wait::WaitStatus;

/// The hook names gunicornd fires.
pub const EVENTS: &[&str] = &[
    "on_starting",
    "when_ready",
    "on_reload",
    "pre_fork",
    "post_fork",
    "child_exit",
    "worker_exit",
    "nworkers_changed",
    "on_exit",
    "pre_exec",
];

/// Configured hook commands and the hook processes still running.
#[derive(Debug, Default)]
pub struct Hooks {
    commands: BTreeMap<String, String>,
    running: HashMap<i32, &'static str>,
}

impl Hooks {
    pub fn new(commands: &BTreeMap<String, String>) -> Self {
        Hooks {
            commands: commands.clone(),
            running: HashMap::new(),
        }
    }

    /// Replace the commands (reload); hooks already running go on.
    pub fn set_commands(&mut self, commands: &BTreeMap<String, String>) {
        self.commands = commands.clone();
    }

    /// Start the hook for `event`, if one is configured. `GUNICORND_PID`
    /// (the master's pid) is always set.
    pub fn fire(&mut self, event: &'static str, vars: &[(&str, String)]) {
        if !self.commands.contains_key(event) {
            return;
        }
        let mut all = vec![("GUNICORND_PID", std::process::id().to_string())];
        all.extend(vars.iter().cloned());
        if let Some(pid) = spawn(&self.commands, event, &all) {
            self.running.insert(pid, event);
        }
    }

    /// The hook for `event` as a command for a process about to exec
    /// (`pre_exec`: run by the forked child of a binary upgrade just before
    /// it execs the new binary, so it cannot be spawned from here). Its
    /// environment is the master's plus the hook variables.
    pub fn command_for(
        &self,
        event: &'static str,
        vars: &[(&str, String)],
    ) -> Option<crate::exec::PreExec> {
        let command = self.commands.get(event)?;
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let mut set = |k: &str, v: String| {
            env.retain(|(name, _)| name != k);
            env.push((OsString::from(k), OsString::from(v)));
        };
        set("GUNICORND_EVENT", event.to_string());
        set("GUNICORND_PID", std::process::id().to_string());
        for (k, v) in vars {
            set(k, v.clone());
        }
        Some(crate::exec::PreExec {
            program: PathBuf::from("/bin/sh"),
            args: vec!["sh".into(), "-c".into(), command.into()],
            env,
        })
    }

    /// If `status` belongs to a hook process, log how it ended and say so.
    pub fn reaped(&mut self, status: &WaitStatus) -> bool {
        let Some(pid) = status.pid() else {
            return false;
        };
        let Some(event) = self.running.remove(&pid.as_raw()) else {
            return false;
        };
        match status {
            WaitStatus::Exited(_, 0) => tracing::debug!("Hook {event} (pid:{pid}) finished"),
            WaitStatus::Exited(_, code) => {
                tracing::error!("Hook {event} (pid:{pid}) failed with exit code {code}")
            }
            WaitStatus::Signaled(_, sig, _) => {
                tracing::error!("Hook {event} (pid:{pid}) was killed by {sig}")
            }
            _ => {}
        }
        true
    }
}

/// Start the hook for `event` without tracking it (used in workers, whose
/// `worker_exit` hook outlives them). Returns the hook's pid.
pub fn spawn(
    commands: &BTreeMap<String, String>,
    event: &str,
    vars: &[(&str, String)],
) -> Option<i32> {
    let command = commands.get(event)?;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .env("GUNICORND_EVENT", event);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    match cmd.spawn() {
        Ok(child) => {
            tracing::debug!("Hook {event} started (pid:{})", child.id());
            // The child is reaped by the master's waitpid(-1) loop (or by
            // init once a worker has exited); dropping `Child` does not wait.
            Some(child.id() as i32)
        }
        Err(e) => {
            tracing::error!("Hook {event} could not start `{command}`: {e}");
            None
        }
    }
}
