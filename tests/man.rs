//! The man pages and shell completion scripts under `man/`.
//!
//! `man/gunicornd.1` and `man/gunicornctl.1` are generated from the clap
//! definitions (`gunicornd::config::command()`, `gunicornctl::cli::command()`)
//! with clap_mangen, followed by the sections written below (signals, hooks,
//! exit status, files, environment). `man/completions/` holds gunicornd's
//! completion scripts (gunicornctl prints its own: `gunicornctl completions
//! SHELL`). All of them are checked in so that packagers need no build step;
//! the tests fail when a checked-in file differs from what the code generates
//! now, and
//!
//! ```text
//! UPDATE_MAN=1 cargo test -p gunicornd --test man
//! ```
//!
//! rewrites them. `man/gunicornd.toml.5` is written by hand; a test checks it
//! against the keys `gunicornd --print-config` prints. Every page goes
//! through `mandoc -T lint -W warning` when mandoc is installed (required
//! when `CI` is set).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use clap::ArgAction;
use clap_complete::{Generator, Shell};
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;
use gunicornd_protocol::paths::{DEFAULT_NAME, XDG_SOCKET_NAME};

/// The version the pages describe and its release date, printed in every
/// page's footer. A fixed date keeps the pages reproducible (they do not
/// change from one day to the next); set both when the version changes.
const RELEASE: (&str, &str) = ("0.1.0", "2026-11-22");
const MANUAL: &str = "gunicornd Manual";
const UPDATE_HINT: &str = "UPDATE_MAN=1 cargo test -p gunicornd --test man";

fn source() -> String {
    format!("gunicornd {}", RELEASE.0)
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------
// Rendering helpers

/// `roff` rendered without the apostrophe preamble that every `Roff` and
/// clap_mangen render starts with: a page carries it once, before `.TH`.
fn without_preamble(rendered: String) -> String {
    let preamble = Roff::new().render();
    match rendered.strip_prefix(&preamble) {
        Some(body) => body.to_owned(),
        None => panic!("rendered roff does not start with roff's preamble:\n{rendered}"),
    }
}

/// One part of a page rendered by clap_mangen (`Man::render_*_section`).
/// The `.TH` line (with clap_mangen's preamble, which `man_part` strips).
fn title(man: &Man) -> String {
    let mut buf = Vec::new();
    man.render_title(&mut buf).expect("render to memory");
    String::from_utf8(buf).expect("UTF-8")
}

fn man_part(man: &Man, render: fn(&Man, &mut dyn std::io::Write) -> std::io::Result<()>) -> String {
    let mut buf = Vec::new();
    render(man, &mut buf).expect("rendering to memory cannot fail");
    let text = without_preamble(String::from_utf8(buf).expect("clap_mangen writes UTF-8"));
    // An argument without help text leaves an empty text line (a blank line
    // in roff, i.e. vertical space), which mandoc flags when a `.br` follows
    // (the possible values). It is never wanted in a `.TP` body.
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| format!("{line}\n"))
        .collect()
}

/// A section of our own: a heading, paragraphs and `.TP` items.
struct Section {
    roff: Roff,
    /// Whether the next paragraph must be separated from what precedes it.
    needs_break: bool,
}

impl Section {
    fn new(heading: &str) -> Self {
        let mut roff = Roff::new();
        roff.control("SH", [heading]);
        Section {
            roff,
            needs_break: false,
        }
    }

    /// More paragraphs for the section that precedes (one clap_mangen
    /// rendered).
    fn continued() -> Self {
        Section {
            roff: Roff::new(),
            needs_break: true,
        }
    }

    fn subheading(mut self, heading: &str) -> Self {
        self.roff.control("SS", [heading]);
        self.needs_break = false;
        self
    }

    fn para(mut self, text: &str) -> Self {
        if self.needs_break {
            self.roff.control("PP", []);
        }
        self.roff.text([roman(text)]);
        self.needs_break = true;
        self
    }

    /// Tagged items: the term in bold, then its description.
    fn items<T: AsRef<str>, D: AsRef<str>>(mut self, items: &[(T, D)]) -> Self {
        for (term, description) in items {
            self.roff.control("TP", []);
            self.roff.text([bold(term.as_ref())]);
            self.roff.text([roman(description.as_ref())]);
        }
        self.needs_break = true;
        self
    }

    fn render(&self) -> String {
        without_preamble(self.roff.render())
    }
}

fn man_with_footer(cmd: clap::Command, title: &str) -> Man {
    Man::new(cmd)
        .title(title)
        .section("1")
        .date(RELEASE.1)
        .source(source())
        .manual(MANUAL)
}

// ---------------------------------------------------------------------------
// gunicornd(1)

/// What each signal does to the master, in gunicorn's order. Every signal
/// in `gunicornd::arbiter::MASTER_SIGNALS` must be here (a test checks).
const SIGNALS: &[(&str, &str)] = &[
    (
        "HUP",
        "Reload. The configuration is loaded again (command line, GUNICORN_CMD_ARGS, config \
         file), log files are reopened and a new generation of workers is started; the old \
         workers are retired one by one as new ones finish booting, so capacity never dips. The \
         number of workers set at run time (TTIN, TTOU, gunicornctl scale) is kept unless the \
         workers setting itself changed. If the new configuration is invalid, or its workers \
         fail to boot or to load the app, the error is logged and the old generation keeps \
         serving.",
    ),
    (
        "TERM",
        "Graceful stop. The listeners are closed and every worker gets TERM once; workers finish \
         the request in flight and exit. Workers still running after --graceful-timeout seconds \
         are killed with SIGKILL.",
    ),
    (
        "INT, QUIT",
        "Quick stop. Workers get QUIT and exit at once; any still running 2 seconds later are \
         killed. Sent during a graceful stop, INT or QUIT shortens it the same way.",
    ),
    (
        "TTIN",
        "One more worker. There is no upper bound besides the 16384 workers one master can run.",
    ),
    (
        "TTOU",
        "One worker fewer, never fewer than one. The oldest worker is stopped gracefully.",
    ),
    (
        "USR1",
        "Reopen the log files (after log rotation) in the master and in every worker.",
    ),
    (
        "USR2",
        "Binary upgrade: start a new master from the same binary path, with the same arguments, \
         on the same sockets (GUNICORN_FD). It writes PIDFILE.2 and serves beside this one; it \
         takes over (pidfile, control socket path, systemd MAINPID) when this master exits. \
         Refused while one runs. See --upgrade-timeout.",
    ),
    (
        "WINCH",
        "In daemon mode (-D), or while a new master started by USR2 runs: stop all workers \
         gracefully and keep the master and its listeners; TTIN or HUP starts workers again. \
         Otherwise it is ignored without -D, since a terminal sends it on every resize.",
    ),
    (
        "CHLD",
        "Collect exited workers (and hook processes) and start replacements. Workers that die \
         before they have booted are restarted one at a time, after a delay that doubles from \
         100 ms up to 10 s, instead of in a tight loop.",
    ),
];

/// Server hooks: when each runs and what it is told. Every name in
/// `gunicornd::hooks::EVENTS` must be here (a test checks).
const HOOKS: &[(&str, &str)] = &[
    (
        "on_starting",
        "The master is starting, before it binds its sockets.",
    ),
    (
        "when_ready",
        "The sockets are bound, just before the first workers are started. \
         GUNICORND_WORKERS: the configured number of workers.",
    ),
    (
        "pre_fork",
        "Just before a worker is forked. GUNICORND_WORKER_AGE: its age (the spawn counter).",
    ),
    (
        "post_fork",
        "In the master, just after a worker was forked. GUNICORND_WORKER_PID, \
         GUNICORND_WORKER_AGE.",
    ),
    (
        "child_exit",
        "In the master, when an exited worker has been collected. GUNICORND_WORKER_PID, \
         GUNICORND_WORKER_AGE, GUNICORND_WORKER_EXIT: \"exit CODE\" or \"signal NAME\".",
    ),
    (
        "worker_exit",
        "Started by the worker itself as it exits on its own or after TERM (also when it failed \
         to boot); not when it is killed or stopped with QUIT, INT or ABRT. GUNICORND_PID is the \
         master's pid; GUNICORND_WORKER_PID, GUNICORND_WORKER_AGE, GUNICORND_WORKER_EXIT: \
         \"exit CODE\".",
    ),
    (
        "nworkers_changed",
        "The target number of workers changed (TTIN, TTOU, WINCH, gunicornctl scale, a reload). \
         GUNICORND_WORKERS: the new number, GUNICORND_OLD_WORKERS: the previous one.",
    ),
    (
        "on_reload",
        "A reload (HUP) loaded a valid configuration and starts the new generation. \
         GUNICORND_WORKERS: the number of workers it will have.",
    ),
    (
        "on_exit",
        "The master is about to exit, after its workers are gone. GUNICORND_EXIT_STATUS: the \
         status it exits with.",
    ),
    (
        "pre_exec",
        "Binary upgrade (USR2): run to its end by the forked child just before it executes the \
         new master, with the listeners at fd 3 and up not yet visible to it. Its exit status \
         is ignored. GUNICORND_PID: the old master's pid.",
    ),
];

fn gunicornd_page() -> String {
    let cmd = gunicornd::config::command();
    let after_long_help = cmd
        .get_after_long_help()
        .expect("gunicornd's --help has an after-help text")
        .to_string();
    let man = man_with_footer(cmd, "GUNICORND");
    let mut page = String::new();
    page.push_str(&title(&man));
    for part in [
        Man::render_name_section,
        Man::render_synopsis_section,
        Man::render_description_section,
        Man::render_options_section,
    ] {
        page.push_str(&man_part(&man, part));
    }

    let mut configuration = Section::new("CONFIGURATION");
    for paragraph in after_long_help.split("\n\n") {
        configuration = configuration.para(&paragraph.replace('\n', " "));
    }
    configuration = configuration.para(
        "gunicornd.toml(5) describes every key of the config file. A reload (HUP) reads all \
         sources again.",
    );
    page.push_str(&configuration.render());

    page.push_str(
        &Section::new("SIGNALS")
            .para(
                "Every delivery of a signal to the master is queued and handled: ten TTINs add ten \
                 workers even when they arrive while the master is busy. (The kernel \
                 itself merges a signal sent again before the first one was delivered.) A \
                 worker is never sent the same stop signal twice.",
            )
            .items(SIGNALS)
            .para(
                "A worker that has not reported a heartbeat for --timeout seconds, while booting \
                 or while serving, is sent SIGABRT and, 1 second later, SIGKILL (at once if it is stopped: a \
                 stopped process cannot handle SIGABRT). Workers \
                 retiring after --max-requests are replaced first: the new worker boots before \
                 the old one is stopped. Only a SIGKILL that gunicornd did not send itself is \
                 reported as a possible out-of-memory kill.",
            )
            .subheading("Signals to a worker")
            .para(
                "TERM: finish the request in flight, then exit. QUIT, INT: exit at once. USR1: \
                 reopen the log files. ABRT: exit with status 1. HUP, USR2, WINCH, TTIN and TTOU \
                 are ignored (gunicorn's workers die on HUP and USR2). A command worker gets the \
                 same signals for the same reasons: TERM on a graceful stop, QUIT on a quick \
                 one, USR1 to reopen its logs, ABRT on a timeout.",
            )
            .render(),
    );

    page.push_str(
        &Section::new("COMMAND WORKERS")
            .para(
                "With -k command (worker_class = \"command\"), each worker is PROGRAM ARGS, the \
                 words after --, exec'd by the master's fork; no APP is given. It gets the \
                 listeners as fds 3, 4, ... (non-blocking, as every worker holds them), \
                 described by LISTEN_FDS, LISTEN_PID (its own pid), LISTEN_FDNAMES and \
                 GUNICORN_FD, plus NOTIFY_SOCKET, WATCHDOG_USEC (from --timeout), \
                 GUNICORND_WORKER_AGE and GUNICORND_MASTER_PID. Its stdout and stderr go to the \
                 error log line by line under its pid, at INFO; the master never waits for \
                 them: past 1000 lines a second, or when the log cannot keep up, lines are \
                 dropped and counted.",
            )
            .para(
                "It speaks sd_notify on NOTIFY_SOCKET, and only its own pid counts: READY=1 \
                 makes it capacity (a reload waits for it), and must come within --timeout; \
                 WATCHDOG=1 is its heartbeat from the first one on; STATUS= shows in \
                 gunicornctl workers; STOPPING=1 says it leaves on its own (its replacement \
                 starts at once); EXTEND_TIMEOUT_USEC= pushes back the deadline that runs. A \
                 worker that says nothing counts as booted after --boot-grace seconds and has \
                 no heartbeat check. One that sends no READY=1 in time failed to boot, as exit \
                 status 3. --max-requests does not apply.",
            )
            .render(),
    );

    page.push_str(
        &Section::new("HOOKS")
            .para(
                "A hook is a shell command run with /bin/sh -c on a server event, set with \
                 --hook NAME=COMMAND or in the [hooks] table of the config file. The master \
                 does not wait for it; a hook that fails is logged. Its standard input is \
                 /dev/null. Every hook gets GUNICORND_EVENT (the hook's name) and GUNICORND_PID \
                 (the master's pid) in its environment, and the variables named below.",
            )
            .items(HOOKS)
            .render(),
    );

    let exit_status = [
        (
            "0".to_owned(),
            "Stopped by TERM, INT or QUIT; or --help, --version, --check-config or \
             --print-config succeeded."
                .to_owned(),
        ),
        (
            gunicornd::config::EXIT_INVALID.to_string(),
            "The configuration is invalid (including an unknown option), or the server could \
             not start (an address in use, a directory that does not exist)."
                .to_owned(),
        ),
        (
            gunicornd::config::EXIT_USAGE.to_string(),
            "No application was given (or, with -k command, no program).".to_owned(),
        ),
        (
            gunicornd_protocol::exit::WORKER_BOOT_ERROR.to_string(),
            "A worker failed to boot (for example it could not switch to --user), or a command \
             worker sent no READY=1 within --timeout."
                .to_owned(),
        ),
        (
            gunicornd_protocol::exit::APP_LOAD_ERROR.to_string(),
            "A worker could not load the application.".to_owned(),
        ),
    ];
    page.push_str(
        &Section::new("EXIT STATUS")
            .items(&exit_status)
            .para(
                "Statuses 3 and 4 end the master only when the running configuration is at \
                 fault; during a reload the previous generation keeps serving instead. With \
                 --halt-on-boot-error=false they end nothing: the worker is started again, \
                 with the crash-loop backoff.",
            )
            .render(),
    );

    let files = [
        (
            format!("./{}", gunicornd::config::defaults::CONFIG_FILE),
            "The config file read when -c is not given, if it exists; see gunicornd.toml(5)."
                .to_owned(),
        ),
        (
            format!("$XDG_RUNTIME_DIR/{XDG_SOCKET_NAME}"),
            "The default control socket when XDG_RUNTIME_DIR is set.".to_owned(),
        ),
        (
            "PIDFILE.ctl".to_owned(),
            "Else, with --pid PIDFILE, the control socket lies beside the pidfile.".to_owned(),
        ),
        (
            "/tmp/gunicornd-UID/NAME.ctl".to_owned(),
            format!(
                "Else this one, NAME being --name (default {DEFAULT_NAME}); the directory is \
                 created with mode 0700 and refused if another user could write to it."
            ),
        ),
    ];
    page.push_str(&Section::new("FILES").items(&files).render());

    page.push_str(
        &Section::new("ENVIRONMENT")
            .items(&[
                (
                    "GUNICORN_CMD_ARGS",
                    "More options in the command line's syntax, split like a shell would; the \
                     command line wins over them.",
                ),
                ("PORT", "Makes the default bind address 0.0.0.0:$PORT."),
                ("WEB_CONCURRENCY", "The default number of workers."),
                (
                    "PATH",
                    "Where a command worker's PROGRAM without a slash is looked up, when the \
                     configuration is loaded.",
                ),
                (
                    "XDG_RUNTIME_DIR",
                    "Where the control socket goes by default (see FILES).",
                ),
                (
                    "GUNICORN_FD",
                    "A comma-separated list of inherited listening sockets to serve on instead of \
                     binding (set by a parent master).",
                ),
                (
                    "LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES",
                    "Sockets passed by systemd socket activation; gunicornd serves on them and \
                     ignores --bind.",
                ),
                (
                    "NOTIFY_SOCKET, WATCHDOG_USEC",
                    "Set by systemd for Type=notify services: gunicornd reports readiness, \
                     reloads, stopping and status, and answers the watchdog.",
                ),
            ])
            .render(),
    );

    page.push_str(
        &Section::new("SEE ALSO")
            .para("gunicornctl(1), gunicornd.toml(5), systemd.service(5), systemd.socket(5)")
            .render(),
    );
    page
}

// ---------------------------------------------------------------------------
// gunicornctl(1)

/// Whether `arg` is one clap adds to every command (`-h`, `-V`).
fn is_builtin_flag(arg: &clap::Arg) -> bool {
    matches!(
        arg.get_action(),
        ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
    )
}

/// One subcommand: its usage line, what it does, and its own arguments
/// (rendered by clap_mangen, without the global options it inherits).
fn subcommand_entry(sub: &clap::Command) -> String {
    let own: Vec<&clap::Arg> = sub
        .get_arguments()
        .filter(|a| !a.is_global_set() && !is_builtin_flag(a) && !a.is_hide_set())
        .collect();
    let mut usage = vec![bold(sub.get_name())];
    for arg in own.iter().filter(|a| !a.is_positional()) {
        let long = arg
            .get_long()
            .expect("gunicornctl's options all have a long name");
        let value = match arg.get_value_names() {
            Some(names) if arg.get_action().takes_values() => format!(" <{}>", names.join(" ")),
            _ => String::new(),
        };
        usage.push(roman(format!(" [--{long}{value}]")));
    }
    for arg in own.iter().filter(|a| a.is_positional()) {
        let name = arg
            .get_value_names()
            .map(|n| n.join(" "))
            .unwrap_or_else(|| arg.get_id().to_string());
        let many = if arg.get_num_args().is_some_and(|n| n.max_values() > 1) {
            "..."
        } else {
            ""
        };
        let (open, close) = if arg.is_required_set() {
            ("<", ">")
        } else {
            ("[", "]")
        };
        usage.push(roman(format!(" {open}{name}{close}{many}")));
    }
    let mut head = Roff::new();
    head.control("TP", []);
    head.text(usage);
    if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
        head.text([roman(about.to_string())]);
    }
    let mut entry = without_preamble(head.render());

    if own.is_empty() {
        return entry;
    }
    // Hide what is not the subcommand's own, then let clap_mangen render
    // the options as it does for the top level (defaults, possible values).
    let ids: Vec<String> = sub
        .get_arguments()
        .filter(|a| !own.iter().any(|o| o.get_id() == a.get_id()))
        .map(|a| a.get_id().to_string())
        .collect();
    let mut only_own = sub.clone();
    for id in ids {
        only_own = only_own.mut_arg(id, |a| a.hide(true));
    }
    let options = man_part(&Man::new(only_own), Man::render_options_section);
    let options = options
        .strip_prefix(".SH OPTIONS\n")
        .unwrap_or_else(|| panic!("unexpected options rendering:\n{options}"));
    entry.push_str(".RS\n");
    entry.push_str(options);
    entry.push_str(".RE\n");
    entry
}

fn gunicornctl_page() -> String {
    let mut cmd = gunicornctl::cli::command();
    cmd.build();
    let man = man_with_footer(cmd.clone(), "GUNICORNCTL");
    let mut page = String::new();
    page.push_str(&title(&man));
    for part in [
        Man::render_name_section,
        Man::render_synopsis_section,
        Man::render_description_section,
    ] {
        page.push_str(&man_part(&man, part));
    }
    page.push_str(
        &Section::continued()
            .para(
                "gunicornctl talks to the control socket of a running gunicornd: it reports on \
                 the master and its workers, and asks for the same changes as the signals do \
                 (reload is HUP, reopen is USR1, stop is TERM or INT, stop-workers is WINCH) \
                 without needing the master's pid. Python gunicorn \
                 25.1 or later speaks the same protocol and can be driven too (-s to its control \
                 socket) for status, workers, stats, listeners, config, scale, reload, reopen, \
                 kill and stop.",
            )
            .render(),
    );
    page.push_str(&man_part(&man, Man::render_options_section));

    let mut commands = Section::new("COMMANDS").render();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        commands.push_str(&subcommand_entry(sub));
    }
    page.push_str(&commands);

    page.push_str(
        &Section::new("SOCKET PATH")
            .para("The control socket is found by the first rule that applies:")
            .items(&[
                ("-s PATH", "if given;".to_owned()),
                (
                    "$XDG_RUNTIME_DIR/gunicornd.ctl",
                    "if XDG_RUNTIME_DIR is set and not empty;".to_owned(),
                ),
                ("FILE.ctl", "with --pid FILE;".to_owned()),
                (
                    "/tmp/gunicornd-UID/NAME.ctl",
                    format!("otherwise, NAME from --name (default {DEFAULT_NAME})."),
                ),
            ])
            .para(
                "These are the rules gunicornd uses to place its socket when --control-socket \
                 is not given, so the same --pid and --name (and environment) find the same \
                 daemon.",
            )
            .para(
                "Before it sends anything, gunicornctl checks that the socket belongs to root or \
                 to the user gunicornctl runs as, and that its directory belongs to one of them \
                 and cannot be written to by anyone else (unless it has the sticky bit, as /tmp \
                 has); a symbolic link must belong to one of them too, and so must its \
                 target's directory. Whoever owns the socket, or can replace it, could pose as \
                 the server. When the check fails, gunicornctl says what it found and exits 3; \
                 to control a server that runs as another user, run gunicornctl as that user \
                 (sudo -u USER gunicornctl ...).",
            )
            .render(),
    );

    use gunicornctl::error::{EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE};
    page.push_str(
        &Section::new("EXIT STATUS")
            .items(&[
                (EXIT_OK.to_string(), "The command did what was asked."),
                (
                    EXIT_FAILED.to_string(),
                    "The daemon refused the command or it failed, or --wait timed out.",
                ),
                (EXIT_USAGE.to_string(), "Usage error."),
                (
                    EXIT_UNREACHABLE.to_string(),
                    "The daemon could not be reached (no socket, nobody listening), or its \
                     socket is not one gunicornctl trusts (see SOCKET PATH).",
                ),
            ])
            .render(),
    );
    page.push_str(
        &Section::new("EXAMPLES")
            .items(&[
                (
                    "gunicornctl status",
                    "Master pid, uptime, workers booted/target.",
                ),
                (
                    "gunicornctl scale +2 --wait",
                    "Two more workers; returns once they have booted.",
                ),
                (
                    "gunicornctl reload --wait --timeout 2m",
                    "Reload and wait until the new generation serves, or fail.",
                ),
                (
                    "gunicornctl --pid /run/gunicornd/gunicornd.pid workers",
                    "The worker table of the gunicornd started with that pidfile.",
                ),
                (
                    "gunicornctl completions bash > /etc/bash_completion.d/gunicornctl",
                    "Install bash completion.",
                ),
            ])
            .render(),
    );
    page.push_str(
        &Section::new("SEE ALSO")
            .para("gunicornd(1), gunicornd.toml(5)")
            .render(),
    );
    page
}

// ---------------------------------------------------------------------------
// Completions

fn gunicornd_completion(shell: Shell) -> (String, String) {
    let mut buf = Vec::new();
    clap_complete::generate(
        shell,
        &mut gunicornd::config::command(),
        "gunicornd",
        &mut buf,
    );
    (
        format!("man/completions/{}", shell.file_name("gunicornd")),
        String::from_utf8(buf).expect("completion scripts are UTF-8"),
    )
}

/// Every generated file: path relative to the repository, contents.
fn generated_files() -> Vec<(String, String)> {
    let mut files = vec![
        ("man/gunicornd.1".to_owned(), gunicornd_page()),
        ("man/gunicornctl.1".to_owned(), gunicornctl_page()),
    ];
    files.extend([Shell::Bash, Shell::Zsh, Shell::Fish].map(gunicornd_completion));
    files
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn release_matches_the_crate_version() {
    assert_eq!(
        RELEASE.0,
        env!("CARGO_PKG_VERSION"),
        "the version changed: set RELEASE in {} to the new version and its release date, then \
         run `{UPDATE_HINT}`",
        file!()
    );
}

#[test]
fn checked_in_files_are_up_to_date() {
    let root = repo_root();
    let update = std::env::var_os("UPDATE_MAN").is_some_and(|v| !v.is_empty() && v != "0");
    let mut stale = Vec::new();
    for (relative, text) in generated_files() {
        let path = root.join(&relative);
        if fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
            continue;
        }
        if update {
            fs::create_dir_all(path.parent().expect("a file in a directory")).unwrap();
            fs::write(&path, &text).unwrap_or_else(|e| panic!("cannot write {relative}: {e}"));
            eprintln!("updated {relative}");
        } else {
            stale.push(relative);
        }
    }
    assert!(
        stale.is_empty(),
        "out of date (the clap definitions or the text in {} changed): {}\nrun `{UPDATE_HINT}` \
         to regenerate them, and commit the result",
        file!(),
        stale.join(", ")
    );
}

/// Runs `mandoc -T lint -W warning` on `text` saved as `name`, or says why
/// it could not (`None`: mandoc is missing and we are not under CI).
fn mandoc_lint(name: &str, text: &str) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    fs::write(&path, text).unwrap();
    let output = match Command::new("mandoc")
        .args(["-T", "lint", "-W", "warning"])
        .arg(&path)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("CI").is_none(),
                "mandoc is required under CI (apt-get install -y mandoc)"
            );
            eprintln!("SKIPPED: mandoc is not installed (apt-get install -y mandoc)");
            return None;
        }
        Err(e) => panic!("cannot run mandoc: {e}"),
    };
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .replace(&format!("{}/", dir.path().display()), "");
    Some(if output.status.success() && report.trim().is_empty() {
        String::new()
    } else {
        format!("{name} (mandoc exit {:?}):\n{report}", output.status.code())
    })
}

#[test]
fn pages_pass_mandoc_lint() {
    let root = repo_root();
    let mut pages: Vec<(String, String)> = generated_files()
        .into_iter()
        .filter(|(path, _)| path.ends_with(".1"))
        .collect();
    let config_page = "man/gunicornd.toml.5";
    pages.push((
        config_page.to_owned(),
        fs::read_to_string(root.join(config_page)).unwrap(),
    ));
    let mut problems = Vec::new();
    for (path, text) in &pages {
        let name = Path::new(path).file_name().unwrap().to_str().unwrap();
        match mandoc_lint(name, text) {
            None => return,
            Some(report) if report.is_empty() => {}
            Some(report) => problems.push(report),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn gunicornd_page_covers_every_signal_and_hook() {
    let documented: BTreeSet<String> = SIGNALS
        .iter()
        .flat_map(|(names, _)| names.split(", "))
        .map(|n| format!("SIG{n}"))
        .collect();
    let handled: BTreeSet<String> = gunicornd::arbiter::MASTER_SIGNALS
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    assert_eq!(
        documented, handled,
        "SIGNALS must describe exactly the master's signals"
    );

    let documented: BTreeSet<&str> = HOOKS.iter().map(|(name, _)| *name).collect();
    let fired: BTreeSet<&str> = gunicornd::hooks::EVENTS.iter().copied().collect();
    assert_eq!(
        documented, fired,
        "HOOKS must describe exactly the hooks gunicornd runs"
    );
}

/// The top-level keys (and `[tables]`) of `gunicornd --print-config`,
/// including the ones printed as `# KEY is not set`.
fn printed_config_keys() -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_gunicornd"))
        .arg("--print-config")
        .current_dir(dir.path())
        .env_clear()
        .output()
        .expect("run gunicornd --print-config");
    assert!(
        output.status.success(),
        "gunicornd --print-config failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let mut keys = BTreeSet::new();
    for line in text.lines() {
        if let Some((key, _)) = line.split_once(" = ") {
            keys.insert(key.to_owned());
        } else if let Some(key) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
        {
            keys.insert(key.to_owned());
        } else if line.starts_with('[') {
            keys.insert(line.to_owned());
        }
    }
    assert!(keys.len() > 20, "too few keys found in:\n{text}");
    keys
}

/// The names gunicornd.toml(5) documents as items: `.TP` then `.B NAME`.
fn documented_config_names(page: &str) -> BTreeSet<String> {
    let lines: Vec<&str> = page.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0] == ".TP")
        .filter_map(|w| w[1].strip_prefix(".B "))
        .map(|name| name.trim_matches('"').to_owned())
        .collect()
}

#[test]
fn config_page_documents_every_printed_key() {
    let page = fs::read_to_string(repo_root().join("man/gunicornd.toml.5")).unwrap();
    let documented = documented_config_names(&page);
    let (tables, printed): (BTreeSet<String>, BTreeSet<String>) = printed_config_keys()
        .into_iter()
        .partition(|k| k.starts_with('['));
    for table in &tables {
        assert!(
            page.lines().any(|l| l == format!(".B {table}")),
            "man/gunicornd.toml.5 does not describe the {table} table"
        );
    }
    let missing: Vec<_> = printed.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "man/gunicornd.toml.5 does not document {missing:?} (printed by gunicornd --print-config)"
    );
    for hook in gunicornd::hooks::EVENTS {
        assert!(
            documented.contains(*hook),
            "man/gunicornd.toml.5 does not document the hook {hook}"
        );
    }
    // Besides the printed keys and the hooks, only the accepted synonyms of
    // three keys may appear.
    let extra = ["env", "name", "preload"];
    let unknown: Vec<_> = documented
        .iter()
        .filter(|name| {
            !printed.contains(*name)
                && !gunicornd::hooks::EVENTS.contains(&name.as_str())
                && !extra.contains(&name.as_str())
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "man/gunicornd.toml.5 documents {unknown:?}, which gunicornd does not know"
    );
}

#[test]
fn config_page_footer_matches_the_release() {
    let page = fs::read_to_string(repo_root().join("man/gunicornd.toml.5")).unwrap();
    let title = page
        .lines()
        .find(|l| l.starts_with(".TH "))
        .expect("a .TH line");
    assert_eq!(
        title,
        format!(
            ".TH GUNICORND.TOML 5 {} \"{}\" \"{MANUAL}\"",
            RELEASE.1,
            source()
        ),
        "update the .TH line of man/gunicornd.toml.5"
    );
}
