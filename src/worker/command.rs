//! The `command` worker kind: each worker is a program of the user's
//! (`gunicornd -k command -- PROGRAM ARGS`), exec'd by the master's fork
//! through [`crate::exec::spawn`]. Nothing of gunicornd runs in it: it
//! serves on the listeners it inherits and tells the master how it is
//! doing through sd_notify (ARCHITECTURE.md, "Command workers").
//!
//! What the program gets:
//! - the listeners at fds 3, 4, ... in the order of the binds, as they are
//!   in the master: non-blocking (`O_NONBLOCK` is shared by every process
//!   holding them, see `crate::listeners`);
//! - stdout and stderr: one pipe the master reads (`arbiter/output.rs`);
//!   stdin: the master's;
//! - the master's environment, then `--env`, then (replacing any of the
//!   same names) [`WorkerEnv::vars`]: `LISTEN_FDS`, `LISTEN_PID` (its own
//!   pid), `LISTEN_FDNAMES`, `GUNICORN_FD`, `NOTIFY_SOCKET`,
//!   `WATCHDOG_USEC` (with a timeout), `GUNICORND_WORKER_AGE`,
//!   `GUNICORND_MASTER_PID`;
//! - `--user` and `--group` as a forked worker takes them: the user's own
//!   supplementary groups (looked up here, once per configuration, since
//!   the child cannot read the group database), then the group, then the
//!   user; any failure is the exec's failure;
//! - SIGTERM when the master dies (the parent-death signal), as a forked
//!   worker.

use std::ffi::{CString, OsString};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{Gid, Pid, Uid, User};

use crate::config::Settings;
use crate::exec::{Credentials, ExecSpec};

/// Variables the master sets for every command worker; the same names from
/// the master's own environment (systemd's, an earlier hand-over's) are not
/// passed on.
pub const WORKER_VARS: [&str; 9] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "GUNICORN_FD",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "GUNICORND_WORKER_AGE",
    "GUNICORND_MASTER_PID",
];

/// What every worker of one configuration runs, and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The file exec'd (resolved when the configuration was loaded).
    pub path: PathBuf,
    /// argv, `argv[0]` as given.
    pub args: Vec<OsString>,
    /// `--user`/`--group`, resolved; `None` keeps the master's.
    pub credentials: Option<Credentials>,
    /// `--env` pairs, added to the master's environment.
    pub raw_env: Vec<(String, String)>,
}

impl Program {
    /// The program the settings ask for; `Err` says why it cannot run
    /// (no program, a user without a group).
    pub fn from_settings(settings: &Settings) -> Result<Program, String> {
        let path = settings
            .program
            .clone()
            .ok_or("-k command needs a program to run (after --, or command = [...])")?;
        Ok(Program {
            path,
            args: settings.command.iter().map(OsString::from).collect(),
            credentials: credentials(settings.user, settings.group)?,
            raw_env: settings.raw_env.clone(),
        })
    }

    /// `node server.js`, for the log.
    pub fn describe(&self) -> String {
        let words: Vec<String> = std::iter::once(self.path.display().to_string())
            .chain(
                self.args
                    .iter()
                    .skip(1)
                    .map(|a| a.to_string_lossy().into_owned()),
            )
            .collect();
        words.join(" ")
    }

    /// The exec of one worker: `env` says which one, `base` is the
    /// master's environment, `output` the write end of its output pipe.
    pub fn exec_spec(
        &self,
        env: &WorkerEnv<'_>,
        base: impl IntoIterator<Item = (OsString, OsString)>,
        output: RawFd,
    ) -> ExecSpec {
        let ours: Vec<(OsString, OsString)> = env.vars();
        let replaced = |name: &OsString| {
            WORKER_VARS.iter().any(|v| name == v)
                || self.raw_env.iter().any(|(k, _)| name == k.as_str())
        };
        let mut vars: Vec<(OsString, OsString)> =
            base.into_iter().filter(|(k, _)| !replaced(k)).collect();
        vars.extend(
            self.raw_env
                .iter()
                .filter(|(k, _)| !WORKER_VARS.contains(&k.as_str()))
                .map(|(k, v)| (k.into(), v.into())),
        );
        vars.extend(ours);
        ExecSpec {
            program: self.path.clone(),
            args: self.args.clone(),
            env: vars,
            cwd: None,
            fds: env.listeners.to_vec(),
            pid_var: Some("LISTEN_PID".into()),
            pre_exec: None,
            stdout: Some(output),
            stderr: Some(output),
            credentials: self.credentials.clone(),
            parent_death_signal: Some(nix::sys::signal::Signal::SIGTERM),
        }
    }
}

/// What tells one worker from another in its environment.
#[derive(Debug, Clone)]
pub struct WorkerEnv<'a> {
    pub age: u64,
    pub master_pid: Pid,
    /// The listeners' fds in the master, in order.
    pub listeners: &'a [RawFd],
    /// Their `LISTEN_FDNAMES` names, in the same order.
    pub names: &'a [String],
    pub notify_socket: &'a Path,
    /// `--timeout`, announced as `WATCHDOG_USEC`; `None` with no timeout.
    pub watchdog: Option<Duration>,
}

impl WorkerEnv<'_> {
    /// The variables of [`WORKER_VARS`] this worker gets (`LISTEN_PID` is
    /// set by the exec, to the program's own pid).
    pub fn vars(&self) -> Vec<(OsString, OsString)> {
        let count = self.listeners.len();
        let fds: Vec<String> = (3..3 + count).map(|fd| fd.to_string()).collect();
        let var = |k: &str, v: String| (OsString::from(k), OsString::from(v));
        let mut vars = vec![
            var("LISTEN_FDS", count.to_string()),
            var("LISTEN_FDNAMES", self.names.join(":")),
            var("GUNICORN_FD", fds.join(",")),
            (
                "NOTIFY_SOCKET".into(),
                self.notify_socket.as_os_str().to_owned(),
            ),
        ];
        if let Some(timeout) = self.watchdog {
            vars.push(var("WATCHDOG_USEC", timeout.as_micros().to_string()));
        }
        vars.push(var("GUNICORND_WORKER_AGE", self.age.to_string()));
        vars.push(var("GUNICORND_MASTER_PID", self.master_pid.to_string()));
        vars
    }
}

/// A listener's name in `LISTEN_FDNAMES` when systemd gave it none: its
/// address, made a valid systemd name (printable ASCII without `:`, at most
/// 255 bytes): `127.0.0.1_8000`, `[__1]_8000`, `unix_/run/app.sock`.
pub fn listener_name(address: &str) -> String {
    address
        .chars()
        .map(|c| match c {
            ':' => '_',
            c if c.is_ascii_graphic() => c,
            _ => '_',
        })
        .take(255)
        .collect()
}

/// `--user`/`--group` as the program takes them: the same rules as a
/// forked worker's (`worker::drop_privileges`), resolved now.
fn credentials(user: Option<u32>, group: Option<u32>) -> Result<Option<Credentials>, String> {
    let group = group.map(Gid::from_raw);
    let Some(uid) = user
        .map(Uid::from_raw)
        .filter(|&uid| uid != Uid::effective())
    else {
        return Ok(group
            .filter(|&gid| gid != Gid::effective())
            .map(|gid| Credentials {
                groups: Uid::effective().is_root().then(|| vec![gid.as_raw()]),
                gid: Some(gid.as_raw()),
                uid: None,
            }));
    };
    let account = User::from_uid(uid)
        .map_err(|e| format!("cannot look up user {uid} in the user database: {e}"))?;
    let gid = match (group, &account) {
        (Some(gid), _) => gid,
        (None, Some(account)) => account.gid,
        (None, None) => {
            return Err(format!(
                "cannot switch to user {uid}: it has no entry in the user database, so it has \
                 no primary group; set --group"
            ))
        }
    };
    let groups = match &account {
        Some(account) => {
            let name = CString::new(account.name.as_bytes())
                .map_err(|_| format!("user name {:?} holds a NUL byte", account.name))?;
            nix::unistd::getgrouplist(&name, gid)
                .map_err(|e| {
                    format!(
                        "cannot list the supplementary groups of user {}: {e}",
                        account.name
                    )
                })?
                .into_iter()
                .map(Gid::as_raw)
                .collect()
        }
        None => vec![gid.as_raw()],
    };
    Ok(Some(Credentials {
        groups: Some(groups),
        gid: Some(gid.as_raw()),
        uid: Some(uid.as_raw()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program() -> Program {
        Program {
            path: "/usr/bin/node".into(),
            args: vec!["node".into(), "server.js".into()],
            credentials: None,
            raw_env: vec![
                ("APP_MODE".into(), "prod".into()),
                ("PATH".into(), "/opt".into()),
            ],
        }
    }

    #[test]
    fn the_environment_is_the_masters_then_env_then_ours() {
        let names = ["web".to_string(), "admin".to_string()];
        let env = WorkerEnv {
            age: 7,
            master_pid: Pid::from_raw(42),
            listeners: &[9, 12],
            names: &names,
            notify_socket: Path::new("/tmp/n/notify"),
            watchdog: Some(Duration::from_secs(30)),
        };
        let base = [
            ("HOME", "/root"),
            ("PATH", "/usr/bin"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("WATCHDOG_USEC", "1"),
            ("LISTEN_FDNAMES", "x"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let spec = program().exec_spec(&env, base, 5);
        let vars: Vec<(String, String)> = spec
            .env
            .iter()
            .map(|(k, v)| (k.to_string_lossy().into(), v.to_string_lossy().into()))
            .collect();
        let expected = [
            ("HOME", "/root"),
            ("APP_MODE", "prod"),
            ("PATH", "/opt"),
            ("LISTEN_FDS", "2"),
            ("LISTEN_FDNAMES", "web:admin"),
            ("GUNICORN_FD", "3,4"),
            ("NOTIFY_SOCKET", "/tmp/n/notify"),
            ("WATCHDOG_USEC", "30000000"),
            ("GUNICORND_WORKER_AGE", "7"),
            ("GUNICORND_MASTER_PID", "42"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(vars, expected);
        assert_eq!(spec.fds, [9, 12]);
        assert_eq!(
            spec.pid_var.as_deref(),
            Some(std::ffi::OsStr::new("LISTEN_PID"))
        );
        assert_eq!((spec.stdout, spec.stderr), (Some(5), Some(5)));
        assert_eq!(spec.args, ["node", "server.js"]);

        // Without a timeout there is no watchdog to announce.
        let env = WorkerEnv {
            watchdog: None,
            ..env
        };
        let spec = program().exec_spec(&env, [], 5);
        assert!(!spec.env.iter().any(|(k, _)| k == "WATCHDOG_USEC"));
    }

    #[test]
    fn listener_names_are_valid_systemd_names() {
        assert_eq!(listener_name("127.0.0.1:8000"), "127.0.0.1_8000");
        assert_eq!(listener_name("[::1]:80"), "[__1]_80");
        assert_eq!(listener_name("unix:/run/a b.sock"), "unix_/run/a_b.sock");
        assert_eq!(listener_name(&"x".repeat(300)).len(), 255);
    }

    #[test]
    fn the_same_user_and_group_need_no_switch() {
        let (uid, gid) = (Uid::effective().as_raw(), Gid::effective().as_raw());
        assert_eq!(credentials(Some(uid), None), Ok(None));
        assert_eq!(credentials(None, Some(gid)), Ok(None));
        assert_eq!(credentials(None, None), Ok(None));
        if Uid::effective().is_root() {
            let c = credentials(Some(65534), None).unwrap().unwrap();
            assert_eq!(c.uid, Some(65534));
            assert!(c.groups.is_some_and(|g| g.contains(&c.gid.unwrap())));
            assert_eq!(
                credentials(None, Some(4242)),
                Ok(Some(Credentials {
                    groups: Some(vec![4242]),
                    gid: Some(4242),
                    uid: None
                }))
            );
        }
    }
}
