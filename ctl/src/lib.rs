//! gunicornctl: the control client for gunicornd (and Python gunicorn
//! ≥ 25.1, whose control socket speaks the same protocol).
//!
//! The binary is a thin `main` around [`main`]; everything lives in this
//! library so that other tools can reuse it. In particular
//! [`cli::command`] returns the full `clap::Command`, from which a man page
//! is generated with `clap_mangen::Man::new(gunicornctl::cli::command())`
//! (and completion scripts with `clap_complete`, as `gunicornctl
//! completions SHELL` does).
//!
//! The wire format is not defined here: it is the `gunicornd-protocol`
//! crate ([`gunicornd_protocol`], in `ctl/protocol/`), which the daemon
//! serves; gunicornctl depends on it alone, not on the server.

pub mod cli;
pub mod client;
mod commands;
pub mod error;
mod events;
pub mod pool;
mod procfs;
pub mod render;
mod trust;
mod upgrade;
mod wait;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use gunicornd_protocol::paths::default_socket_path_from_env;
use gunicornd_protocol::ShowTarget;

use crate::cli::{Cli, Cmd, GlobalOpts};
use crate::commands::Output;
use crate::error::CtlError;

/// Parses the process arguments, runs the subcommand, prints errors as
/// `gunicornctl: ...` and returns the exit status (see [`error`]).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and --version go to stdout with status 0, usage errors
            // to stderr with status 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(error::EXIT_USAGE));
        }
    };
    let stdout = io::stdout();
    match run(&cli, &mut stdout.lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gunicornctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs one parsed command line, writing results to `out`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), CtlError> {
    let path = socket_path(&cli.global);
    let o = &mut Output {
        out,
        json: cli.global.json,
    };
    match &cli.command {
        Cmd::Status => commands::status(&path, o),
        Cmd::Workers => commands::workers(&path, o),
        Cmd::Stats => commands::show(&path, ShowTarget::Stats, o),
        Cmd::Listeners => commands::show(&path, ShowTarget::Listeners, o),
        Cmd::Config => commands::show(&path, ShowTarget::Config, o),
        Cmd::Scale { target, wait } => commands::scale(&path, *target, *wait, o),
        Cmd::Reload { wait } => commands::reload(&path, *wait, o),
        Cmd::Reopen => commands::reopen(&path, o),
        Cmd::Kill { pid } => commands::kill(&path, *pid, o),
        Cmd::Stop { quick } => commands::stop(&path, *quick, o),
        Cmd::StopWorkers => commands::stop_workers(&path, o),
        Cmd::Upgrade { timeout, in_place } => upgrade::upgrade(&path, *timeout, *in_place, o),
        Cmd::Events => events::follow(&path, o),
        Cmd::Raw { command } => commands::raw(&path, command, o),
        Cmd::Completions { shell } => {
            clap_complete::generate(*shell, &mut cli::command(), "gunicornctl", o.out);
            Ok(())
        }
    }
}

/// `-s PATH`, else the daemon's default rules
/// ([`gunicornd_protocol::paths`]) applied to `--pid` and `--name`.
pub fn socket_path(global: &GlobalOpts) -> PathBuf {
    global.socket.clone().unwrap_or_else(|| {
        default_socket_path_from_env(
            global.pidfile.as_deref(),
            global.name.as_deref(),
            nix::unistd::getuid().as_raw(),
        )
    })
}
