//! Command-line definitions. [`command`] returns them as a `clap::Command`,
//! which is what man pages and completion scripts are generated from.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use gunicornd_protocol::ScaleTarget;

const AFTER_HELP: &str = "\
Socket path, first match wins:
  -s PATH                        if given
  $XDG_RUNTIME_DIR/gunicornd.ctl if XDG_RUNTIME_DIR is set
  FILE.ctl                       with --pid FILE
  /tmp/gunicornd-<uid>/NAME.ctl  NAME from --name, default gunicornd

Exit status:
  0  done
  1  the command was refused or failed, or --wait timed out
  2  usage error
  3  cannot reach the daemon (or its socket is not one to trust)

gunicornctl sends nothing to a socket that is not owned by root or by its
own user, or whose directory another user could write to.

Python gunicorn >= 25.1 can be driven too (-s to its control socket) for
status, workers, stats, listeners, config, scale, reload, reopen, kill, stop
and upgrade (through signals).";

const UPGRADE_ABOUT: &str = "\
Binary upgrade without downtime: start a new master (the binary on disk now)
on the same listening sockets, wait until all its workers have booted, stop
the old workers and the old master, and confirm that the new master took
over the pidfile and the control socket. Progress is printed as it happens;
--json prints one outcome object instead (status, old_pid, new_pid, seconds,
error).

If anything fails before the old master was asked to exit, the upgrade is
rolled back: the old master gets its workers back (if they were stopped) and
the new master is stopped; the old one serves as before, and the exit status
is 1 with the reason.

gunicornd does it through its control socket (upgrade, stop-workers,
shutdown). Python gunicorn has no upgrade command, so it is driven with the
signals of its documented procedure (USR2, WINCH, TERM to the master; HUP to
the old master and TERM to the new one to roll back); this needs the right to
signal the master (same user, or root) and the same pid namespace.";

/// Control a running gunicornd (or gunicorn >= 25.1) through its control socket.
#[derive(Debug, Parser)]
#[command(name = "gunicornctl", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Cmd,
}

/// Options accepted before or after the subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalOpts {
    /// Control socket of the daemon
    #[arg(short = 's', long = "socket", value_name = "PATH", global = true)]
    pub socket: Option<PathBuf>,
    /// The daemon's pidfile: its socket is FILE.ctl
    #[arg(long = "pid", value_name = "FILE", global = true)]
    pub pidfile: Option<PathBuf>,
    /// The daemon's --name, for the /tmp/gunicornd-<uid>/NAME.ctl default
    #[arg(long, value_name = "NAME", global = true)]
    pub name: Option<String>,
    /// Print JSON instead of text (events: one object per line)
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Cmd {
    /// Master pid, uptime, workers booted/target, generation, listeners
    Status,
    /// Table of workers: pid, age, generation, state, requests, connections
    /// held (idle, busy), heartbeat, RSS
    Workers,
    /// Counters: uptime, workers spawned and killed, reloads
    Stats,
    /// Bound sockets: address, type, fd, scheme (https for TLS)
    Listeners,
    /// The effective configuration
    Config,
    /// Set the number of workers to N, or change it by +N / -N
    Scale {
        /// N, +N or -N (never below 1 worker)
        #[arg(value_name = "N|+N|-N", allow_negative_numbers = true, value_parser = parse_scale)]
        target: ScaleTarget,
        #[command(flatten)]
        wait: WaitOpts,
    },
    /// Graceful reload: start new workers, then retire the old ones (HUP)
    Reload {
        #[command(flatten)]
        wait: WaitOpts,
    },
    /// Reopen log files (USR1)
    Reopen,
    /// Gracefully stop one worker; the master starts a replacement
    Kill {
        /// Worker process id
        #[arg(value_parser = clap::value_parser!(i32).range(1..))]
        pid: i32,
    },
    /// Shut the master down: graceful (TERM), or --quick (INT)
    Stop {
        /// Do not wait for in-flight requests
        #[arg(long)]
        quick: bool,
    },
    /// Stop all workers but keep the master and its sockets (WINCH)
    StopWorkers,
    /// Binary upgrade without downtime: start a new master on the same
    /// sockets, wait until it serves, retire the old one; roll back on failure
    #[command(long_about = UPGRADE_ABOUT)]
    Upgrade {
        /// Give up after this long and roll back (seconds, or e.g. 2m); a
        /// rollback may take up to 30 s more
        #[arg(long, value_name = "DURATION", default_value = "120", value_parser = parse_duration)]
        timeout: Duration,
        /// Exec the new binary in the master's own process (same pid), not
        /// in a new master, whatever the server's upgrade_mode says; waits
        /// until the new image's workers have booted
        #[arg(long)]
        in_place: bool,
    },
    /// Print events (workers booting and exiting, reloads, scaling) as they happen
    Events,
    /// Send any control command, e.g. raw "show all" or raw worker add 2
    Raw {
        /// The command and its arguments (options must come before it)
        #[arg(value_name = "COMMAND", required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Print a shell completion script
    Completions {
        #[arg(value_name = "SHELL")]
        shell: Shell,
    },
}

/// `--wait` and its `--timeout`.
#[derive(Debug, Clone, Copy, Args)]
pub struct WaitOpts {
    /// Block until the change is complete and report the outcome
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (seconds, or e.g. 2m)
    #[arg(long, value_name = "DURATION", default_value = "60", value_parser = parse_duration)]
    pub timeout: Duration,
}

fn parse_scale(s: &str) -> Result<ScaleTarget, String> {
    s.parse()
}

/// Plain seconds (`90`, `1.5`) or a humantime duration (`2m`, `1m30s`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("not a valid number of seconds: '{s}'"));
    }
    humantime::parse_duration(s).map_err(|e| format!("expected seconds or a duration like 2m: {e}"))
}

/// The whole command-line definition, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("gunicornctl").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after_the_subcommand() {
        for args in [
            &["-s", "/x.ctl", "--json", "status"][..],
            &["status", "-s", "/x.ctl", "--json"][..],
            &["--json", "status", "--socket=/x.ctl"][..],
        ] {
            let cli = parse(args).unwrap();
            assert_eq!(
                cli.global.socket.as_deref(),
                Some(std::path::Path::new("/x.ctl")),
                "{args:?}"
            );
            assert!(cli.global.json);
        }
        let cli = parse(&["workers", "--pid", "/run/a.pid", "--name", "a"]).unwrap();
        assert_eq!(
            cli.global.pidfile.as_deref(),
            Some(std::path::Path::new("/run/a.pid"))
        );
        assert_eq!(cli.global.name.as_deref(), Some("a"));
    }

    #[test]
    fn scale_takes_relative_targets() {
        for (arg, want) in [
            ("3", ScaleTarget::To(3)),
            ("+2", ScaleTarget::Up(2)),
            ("-2", ScaleTarget::Down(2)),
        ] {
            match parse(&["scale", arg]).unwrap().command {
                Cmd::Scale { target, wait } => {
                    assert_eq!(target, want);
                    assert!(!wait.wait);
                }
                other => panic!("{other:?}"),
            }
        }
        match parse(&["scale", "-1", "--wait", "--timeout", "2m"])
            .unwrap()
            .command
        {
            Cmd::Scale { wait, .. } => {
                assert_eq!((wait.wait, wait.timeout), (true, Duration::from_secs(120)))
            }
            other => panic!("{other:?}"),
        }
        let err = parse(&["scale", "abc"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("expected N, +N or -N"), "{err}");
    }

    #[test]
    fn usage_errors() {
        for args in [
            &["kill", "0"][..],
            &["kill", "x"],
            &["frob"],
            &[],
            &["raw"],
            &["reload", "--timeout", "soon"],
        ] {
            assert_eq!(parse(args).unwrap_err().exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn raw_keeps_every_word() {
        match parse(&["--json", "raw", "worker", "add", "-2"])
            .unwrap()
            .command
        {
            Cmd::Raw { command } => assert_eq!(command, ["worker", "add", "-2"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn upgrade_timeout_defaults_to_two_minutes() {
        match parse(&["upgrade"]).unwrap().command {
            Cmd::Upgrade { timeout, .. } => assert_eq!(timeout, Duration::from_secs(120)),
            other => panic!("{other:?}"),
        }
        match parse(&["upgrade", "--timeout", "1.5", "--json"])
            .unwrap()
            .command
        {
            Cmd::Upgrade { timeout, .. } => assert_eq!(timeout, Duration::from_millis(1500)),
            other => panic!("{other:?}"),
        }
        match parse(&["upgrade", "--in-place"]).unwrap().command {
            Cmd::Upgrade { in_place, .. } => assert!(in_place),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(&["upgrade", "--wait"]).unwrap_err().exit_code(),
            2,
            "upgrade always waits"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("-1").is_err());
    }
}
