//! The command grammar: gunicornc's commands plus gunicornd's own.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::message::Request;
use crate::words::split_words;

/// Everything the control socket understands, parsed and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlCommand {
    /// `show all|workers|stats|config|listeners|dirty`
    Show(ShowTarget),
    /// `worker add [N]`: raise the target by N (default 1).
    WorkerAdd(u32),
    /// `worker remove [N]`: lower the target by N (default 1, floor 1).
    WorkerRemove(u32),
    /// `worker kill PID`: gracefully stop one worker (it is replaced).
    WorkerKill(i32),
    /// `reload`: the same as SIGHUP.
    Reload,
    /// `reopen`: reopen log files, the same as SIGUSR1.
    Reopen,
    /// `shutdown [graceful|quick]`: SIGTERM / SIGINT.
    Shutdown(ShutdownMode),
    /// `help`
    Help,
    /// `scale N|+N|-N` (gunicornd only).
    Scale(ScaleTarget),
    /// `stop-workers`: stop all workers, keep the master (SIGWINCH).
    StopWorkers,
    /// `upgrade [fork|in-place]`: binary upgrade, the same as SIGUSR2. No
    /// mode: the server's `upgrade_mode` setting decides.
    Upgrade(Option<UpgradeMode>),
    /// `ping`: liveness check.
    Ping,
    /// `version`: server name, version and protocol version.
    Version,
    /// `events`: turn the connection into an event stream.
    Events,
}

/// The `show` targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowTarget {
    All,
    Workers,
    Stats,
    Config,
    Listeners,
    /// gunicorn's dirty-worker pool. gunicornd has none and answers with
    /// gunicorn's "not running" shape, so gunicornc prints something sane.
    Dirty,
}

impl ShowTarget {
    const ALL: [ShowTarget; 6] = [
        ShowTarget::All,
        ShowTarget::Workers,
        ShowTarget::Stats,
        ShowTarget::Config,
        ShowTarget::Listeners,
        ShowTarget::Dirty,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ShowTarget::All => "all",
            ShowTarget::Workers => "workers",
            ShowTarget::Stats => "stats",
            ShowTarget::Config => "config",
            ShowTarget::Listeners => "listeners",
            ShowTarget::Dirty => "dirty",
        }
    }
}

/// How to stop the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShutdownMode {
    /// SIGTERM: let in-flight requests finish up to `graceful_timeout`.
    #[default]
    Graceful,
    /// SIGINT: stop now.
    Quick,
}

impl fmt::Display for ShutdownMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShutdownMode::Graceful => "graceful",
            ShutdownMode::Quick => "quick",
        })
    }
}

/// How a binary upgrade replaces the master: `fork` starts a new master
/// that takes over (gunicorn's USR2), `in-place` execs the new binary in the
/// same process, so the pid stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeMode {
    #[default]
    Fork,
    InPlace,
}

impl UpgradeMode {
    /// The accepted names, as `upgrade_mode` and the `upgrade` command take them.
    pub const NAMES: [&'static str; 2] = ["fork", "in-place"];

    pub fn as_str(self) -> &'static str {
        match self {
            UpgradeMode::Fork => "fork",
            UpgradeMode::InPlace => "in-place",
        }
    }

    pub fn from_name(name: &str) -> Option<UpgradeMode> {
        match name {
            "fork" => Some(UpgradeMode::Fork),
            "in-place" => Some(UpgradeMode::InPlace),
            _ => None,
        }
    }
}

impl fmt::Display for UpgradeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The argument of `scale`: an absolute count or a relative change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleTarget {
    /// `N`
    To(u32),
    /// `+N`
    Up(u32),
    /// `-N`
    Down(u32),
}

impl ScaleTarget {
    /// The new target given the current one: the one place the floor of 1
    /// is kept. Never below 1, like gunicorn's `worker remove` and TTOU
    /// (stopping every worker is `stop-workers`); and a scale-down never
    /// raises the target (at 0, after `stop-workers`, it stays 0).
    pub fn apply(self, current: usize) -> usize {
        match self {
            ScaleTarget::To(n) => (n as usize).max(1),
            ScaleTarget::Up(n) => current.saturating_add(n as usize).max(1),
            ScaleTarget::Down(_) if current <= 1 => current,
            ScaleTarget::Down(n) => current.saturating_sub(n as usize).max(1),
        }
    }
}

impl FromStr for ScaleTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<ScaleTarget, String> {
        let (make, digits): (fn(u32) -> ScaleTarget, &str) = match s.as_bytes().first() {
            Some(b'+') => (ScaleTarget::Up, &s[1..]),
            Some(b'-') => (ScaleTarget::Down, &s[1..]),
            _ => (ScaleTarget::To, s),
        };
        let n = parse_positive(digits)
            .ok_or_else(|| format!("expected N, +N or -N with N a positive integer, got '{s}'"))?;
        Ok(make(n))
    }
}

impl fmt::Display for ScaleTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScaleTarget::To(n) => write!(f, "{n}"),
            ScaleTarget::Up(n) => write!(f, "+{n}"),
            ScaleTarget::Down(n) => write!(f, "-{n}"),
        }
    }
}

/// Digits only (no sign, no spaces), at least 1, fits in a u32.
fn parse_positive(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&n| n >= 1)
}

/// The words after the command keyword, consumed left to right; knows the
/// command's name so every error message can start with it.
struct Words<'a> {
    name: &'static str,
    rest: std::slice::Iter<'a, String>,
}

impl<'a> Words<'a> {
    fn next(&mut self) -> Option<&'a str> {
        self.rest.next().map(String::as_str)
    }

    fn required(&mut self, what: &str) -> Result<&'a str, String> {
        self.next()
            .ok_or_else(|| format!("{}: missing {what}", self.name))
    }

    fn count(&mut self) -> Result<u32, String> {
        match self.next() {
            None => Ok(1),
            Some(w) => parse_positive(w.strip_prefix('+').unwrap_or(w))
                .ok_or_else(|| format!("{}: expected a positive integer, got '{w}'", self.name)),
        }
    }

    /// Ends parsing: leftovers are an error rather than silently ignored
    /// (gunicorn ignores them, which hides typos like `shutdown quick now`).
    fn done<T>(mut self, command: T) -> Result<T, String> {
        match self.next() {
            None => Ok(command),
            Some(extra) => Err(format!("{}: unexpected argument '{extra}'", self.name)),
        }
    }
}

const SHOW_TARGETS: &str = "all, workers, stats, config, listeners or dirty";

impl ControlCommand {
    /// Parses a request: the command string is split like a POSIX shell
    /// would ([`split_words`], as gunicorn does with `shlex.split`) and the
    /// args are appended.
    /// Errors name the problem and go back to the client verbatim.
    pub fn parse(req: &Request) -> Result<ControlCommand, String> {
        let mut words = split_words(&req.command).ok_or_else(|| {
            format!(
                "cannot split {:?}: unbalanced quotes or a trailing backslash",
                req.command
            )
        })?;
        words.extend(req.args.iter().map(ToString::to_string));
        ControlCommand::parse_words(&words)
    }

    /// Parses already-split words. Keywords are case-insensitive, as in
    /// gunicorn.
    fn parse_words(words: &[String]) -> Result<ControlCommand, String> {
        let Some((first, rest)) = words.split_first() else {
            return Err("empty command; try 'help'".to_string());
        };
        let keyword = first.to_ascii_lowercase();
        let words = |name| Words {
            name,
            rest: rest.iter(),
        };
        match keyword.as_str() {
            "show" => parse_show(words("show")),
            "worker" => parse_worker(rest),
            "dirty" => {
                Err("dirty: gunicornd has no dirty workers (a Python gunicorn feature)".to_string())
            }
            "shutdown" => {
                let mut w = words("shutdown");
                let mode = match w.next().map(str::to_ascii_lowercase).as_deref() {
                    None | Some("graceful") => ShutdownMode::Graceful,
                    Some("quick") => ShutdownMode::Quick,
                    Some(other) => {
                        return Err(format!(
                            "shutdown: unknown mode '{other}'; expected graceful or quick"
                        ))
                    }
                };
                w.done(ControlCommand::Shutdown(mode))
            }
            "scale" => {
                let mut w = words("scale");
                let target = w.required("the target; expected N, +N or -N")?;
                let target = target.parse().map_err(|e| format!("scale: {e}"))?;
                w.done(ControlCommand::Scale(target))
            }
            "reload" => words("reload").done(ControlCommand::Reload),
            "reopen" => words("reopen").done(ControlCommand::Reopen),
            "help" => words("help").done(ControlCommand::Help),
            "stop-workers" => words("stop-workers").done(ControlCommand::StopWorkers),
            "upgrade" => {
                let mut w = words("upgrade");
                let mode = match w.next().map(str::to_ascii_lowercase) {
                    None => None,
                    Some(name) => Some(UpgradeMode::from_name(&name).ok_or_else(|| {
                        format!(
                            "upgrade: unknown mode '{name}'; expected {}",
                            UpgradeMode::NAMES.join(" or ")
                        )
                    })?),
                };
                w.done(ControlCommand::Upgrade(mode))
            }
            "ping" => words("ping").done(ControlCommand::Ping),
            "version" => words("version").done(ControlCommand::Version),
            "events" => words("events").done(ControlCommand::Events),
            _ => Err(format!("unknown command '{first}'; try 'help'")),
        }
    }

    /// The command's name as used in error messages and `help`
    /// (`"worker add"`, `"show stats"`, `"scale"`).
    pub fn name(&self) -> &'static str {
        match self {
            ControlCommand::Show(ShowTarget::All) => "show all",
            ControlCommand::Show(ShowTarget::Workers) => "show workers",
            ControlCommand::Show(ShowTarget::Stats) => "show stats",
            ControlCommand::Show(ShowTarget::Config) => "show config",
            ControlCommand::Show(ShowTarget::Listeners) => "show listeners",
            ControlCommand::Show(ShowTarget::Dirty) => "show dirty",
            ControlCommand::WorkerAdd(_) => "worker add",
            ControlCommand::WorkerRemove(_) => "worker remove",
            ControlCommand::WorkerKill(_) => "worker kill",
            ControlCommand::Reload => "reload",
            ControlCommand::Reopen => "reopen",
            ControlCommand::Shutdown(_) => "shutdown",
            ControlCommand::Help => "help",
            ControlCommand::Scale(_) => "scale",
            ControlCommand::StopWorkers => "stop-workers",
            ControlCommand::Upgrade(_) => "upgrade",
            ControlCommand::Ping => "ping",
            ControlCommand::Version => "version",
            ControlCommand::Events => "events",
        }
    }

    /// Whether the command only reads state, so that sending it twice is
    /// harmless (clients may retry it; servers need not audit it).
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            ControlCommand::Show(_)
                | ControlCommand::Help
                | ControlCommand::Ping
                | ControlCommand::Version
        )
    }

    /// Whether Python gunicorn's control socket understands this command too.
    pub fn is_gunicorn_command(&self) -> bool {
        matches!(
            self,
            ControlCommand::Show(_)
                | ControlCommand::WorkerAdd(_)
                | ControlCommand::WorkerRemove(_)
                | ControlCommand::WorkerKill(_)
                | ControlCommand::Reload
                | ControlCommand::Reopen
                | ControlCommand::Shutdown(_)
                | ControlCommand::Help
        )
    }
}

fn parse_show(mut w: Words<'_>) -> Result<ControlCommand, String> {
    let target = w.required(&format!("target; expected {SHOW_TARGETS}"))?;
    let lower = target.to_ascii_lowercase();
    let target = ShowTarget::ALL
        .into_iter()
        .find(|t| t.as_str() == lower)
        .ok_or_else(|| format!("show: unknown target '{target}'; expected {SHOW_TARGETS}"))?;
    w.done(ControlCommand::Show(target))
}

fn parse_worker(rest: &[String]) -> Result<ControlCommand, String> {
    let Some((action, rest)) = rest.split_first() else {
        return Err("worker: missing action; expected add, remove or kill".to_string());
    };
    let words = |name| Words {
        name,
        rest: rest.iter(),
    };
    match action.to_ascii_lowercase().as_str() {
        "add" => {
            let mut w = words("worker add");
            let n = w.count()?;
            w.done(ControlCommand::WorkerAdd(n))
        }
        "remove" => {
            let mut w = words("worker remove");
            let n = w.count()?;
            w.done(ControlCommand::WorkerRemove(n))
        }
        "kill" => {
            let mut w = words("worker kill");
            let pid = w.required("PID")?;
            let pid = pid
                .parse::<i32>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("worker kill: expected a process id, got '{pid}'"))?;
            w.done(ControlCommand::WorkerKill(pid))
        }
        _ => Err(format!(
            "worker: unknown action '{action}'; expected add, remove or kill"
        )),
    }
}

/// The canonical command text, what clients put in `Request::command`.
impl fmt::Display for ControlCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        match self {
            ControlCommand::WorkerAdd(n) | ControlCommand::WorkerRemove(n) => {
                write!(f, "{name} {n}")
            }
            ControlCommand::WorkerKill(pid) => write!(f, "{name} {pid}"),
            ControlCommand::Shutdown(mode) => write!(f, "{name} {mode}"),
            ControlCommand::Scale(target) => write!(f, "{name} {target}"),
            ControlCommand::Upgrade(Some(mode)) => write!(f, "{name} {mode}"),
            _ => f.write_str(name),
        }
    }
}

/// Parses command text the way the master does (`"worker add 2"`).
impl FromStr for ControlCommand {
    type Err = String;

    fn from_str(s: &str) -> Result<ControlCommand, String> {
        ControlCommand::parse(&Request::new(0, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Arg;

    fn parse(s: &str) -> Result<ControlCommand, String> {
        s.parse()
    }

    #[test]
    fn every_command_parses() {
        use ControlCommand as C;
        let cases = [
            ("show all", C::Show(ShowTarget::All)),
            ("show workers", C::Show(ShowTarget::Workers)),
            ("show stats", C::Show(ShowTarget::Stats)),
            ("show config", C::Show(ShowTarget::Config)),
            ("show listeners", C::Show(ShowTarget::Listeners)),
            ("show dirty", C::Show(ShowTarget::Dirty)),
            ("worker add", C::WorkerAdd(1)),
            ("worker add 3", C::WorkerAdd(3)),
            ("worker add +3", C::WorkerAdd(3)),
            ("worker remove", C::WorkerRemove(1)),
            ("worker remove 2", C::WorkerRemove(2)),
            ("worker kill 1234", C::WorkerKill(1234)),
            ("reload", C::Reload),
            ("reopen", C::Reopen),
            ("shutdown", C::Shutdown(ShutdownMode::Graceful)),
            ("shutdown graceful", C::Shutdown(ShutdownMode::Graceful)),
            ("shutdown quick", C::Shutdown(ShutdownMode::Quick)),
            ("help", C::Help),
            ("scale 4", C::Scale(ScaleTarget::To(4))),
            ("scale +2", C::Scale(ScaleTarget::Up(2))),
            ("scale -2", C::Scale(ScaleTarget::Down(2))),
            ("stop-workers", C::StopWorkers),
            ("upgrade", C::Upgrade(None)),
            ("upgrade fork", C::Upgrade(Some(UpgradeMode::Fork))),
            ("upgrade In-Place", C::Upgrade(Some(UpgradeMode::InPlace))),
            ("ping", C::Ping),
            ("version", C::Version),
            ("events", C::Events),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn keywords_are_case_insensitive_and_whitespace_tolerant() {
        assert_eq!(
            parse("  SHOW   Workers "),
            Ok(ControlCommand::Show(ShowTarget::Workers))
        );
        assert_eq!(parse("Worker ADD 2"), Ok(ControlCommand::WorkerAdd(2)));
        assert_eq!(
            parse("shutdown QUICK"),
            Ok(ControlCommand::Shutdown(ShutdownMode::Quick))
        );
    }

    #[test]
    fn args_are_appended_to_the_split_command() {
        let req = Request {
            id: 1,
            command: "worker add".into(),
            args: vec![Arg::Int(2)],
        };
        assert_eq!(
            ControlCommand::parse(&req),
            Ok(ControlCommand::WorkerAdd(2))
        );
        let req = Request {
            id: 1,
            command: "worker".into(),
            args: vec!["kill".into(), Arg::Int(77)],
        };
        assert_eq!(
            ControlCommand::parse(&req),
            Ok(ControlCommand::WorkerKill(77))
        );
        let req = Request {
            id: 1,
            command: "scale".into(),
            args: vec![Arg::Int(-3)],
        };
        assert_eq!(
            ControlCommand::parse(&req),
            Ok(ControlCommand::Scale(ScaleTarget::Down(3)))
        );
        let req = Request {
            id: 1,
            command: "'show' \"stats\"".into(),
            args: vec![],
        };
        assert_eq!(
            ControlCommand::parse(&req),
            Ok(ControlCommand::Show(ShowTarget::Stats))
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("", "empty command; try 'help'"),
            ("   ", "empty command; try 'help'"),
            ("frobnicate", "unknown command 'frobnicate'; try 'help'"),
            ("show 'workers", "cannot split \"show 'workers\": unbalanced quotes or a trailing backslash"),
            ("show", "show: missing target; expected all, workers, stats, config, listeners or dirty"),
            ("show pids", "show: unknown target 'pids'; expected all, workers, stats, config, listeners or dirty"),
            ("show workers now", "show: unexpected argument 'now'"),
            ("worker", "worker: missing action; expected add, remove or kill"),
            ("worker spawn", "worker: unknown action 'spawn'; expected add, remove or kill"),
            ("worker add abc", "worker add: expected a positive integer, got 'abc'"),
            ("worker add 0", "worker add: expected a positive integer, got '0'"),
            ("worker add -2", "worker add: expected a positive integer, got '-2'"),
            ("worker add 99999999999", "worker add: expected a positive integer, got '99999999999'"),
            ("worker add 2 3", "worker add: unexpected argument '3'"),
            ("worker remove x", "worker remove: expected a positive integer, got 'x'"),
            ("worker kill", "worker kill: missing PID"),
            ("worker kill abc", "worker kill: expected a process id, got 'abc'"),
            ("worker kill 0", "worker kill: expected a process id, got '0'"),
            ("worker kill -5", "worker kill: expected a process id, got '-5'"),
            ("dirty add 1", "dirty: gunicornd has no dirty workers (a Python gunicorn feature)"),
            ("shutdown now", "shutdown: unknown mode 'now'; expected graceful or quick"),
            ("shutdown quick now", "shutdown: unexpected argument 'now'"),
            ("scale", "scale: missing the target; expected N, +N or -N"),
            ("scale abc", "scale: expected N, +N or -N with N a positive integer, got 'abc'"),
            ("scale 0", "scale: expected N, +N or -N with N a positive integer, got '0'"),
            ("scale +0", "scale: expected N, +N or -N with N a positive integer, got '+0'"),
            ("scale ++2", "scale: expected N, +N or -N with N a positive integer, got '++2'"),
            ("scale 2 3", "scale: unexpected argument '3'"),
            ("reload now", "reload: unexpected argument 'now'"),
            ("reopen x", "reopen: unexpected argument 'x'"),
            ("help me", "help: unexpected argument 'me'"),
            ("stop-workers 2", "stop-workers: unexpected argument '2'"),
            ("upgrade x", "upgrade: unknown mode 'x'; expected fork or in-place"),
            ("upgrade fork x", "upgrade: unexpected argument 'x'"),
            ("ping x", "ping: unexpected argument 'x'"),
            ("version x", "version: unexpected argument 'x'"),
            ("events x", "events: unexpected argument 'x'"),
        ];
        for (text, message) in cases {
            assert_eq!(parse(text), Err(message.to_string()), "{text:?}");
        }
    }

    #[test]
    fn display_is_canonical_and_parses_back() {
        let commands = [
            ControlCommand::Show(ShowTarget::Listeners),
            ControlCommand::WorkerAdd(2),
            ControlCommand::WorkerRemove(1),
            ControlCommand::WorkerKill(99),
            ControlCommand::Reload,
            ControlCommand::Reopen,
            ControlCommand::Shutdown(ShutdownMode::Quick),
            ControlCommand::Help,
            ControlCommand::Scale(ScaleTarget::To(3)),
            ControlCommand::Scale(ScaleTarget::Up(1)),
            ControlCommand::Scale(ScaleTarget::Down(4)),
            ControlCommand::StopWorkers,
            ControlCommand::Upgrade(None),
            ControlCommand::Upgrade(Some(UpgradeMode::InPlace)),
            ControlCommand::Ping,
            ControlCommand::Version,
            ControlCommand::Events,
        ];
        for c in commands {
            assert_eq!(parse(&c.to_string()), Ok(c), "{c}");
        }
        assert_eq!(ControlCommand::WorkerAdd(2).to_string(), "worker add 2");
        assert_eq!(
            ControlCommand::Scale(ScaleTarget::Down(4)).to_string(),
            "scale -4"
        );
    }

    #[test]
    fn gunicorn_commands_are_flagged() {
        assert!(ControlCommand::Show(ShowTarget::Stats).is_gunicorn_command());
        assert!(ControlCommand::Shutdown(ShutdownMode::Quick).is_gunicorn_command());
        assert!(!ControlCommand::Scale(ScaleTarget::To(2)).is_gunicorn_command());
        assert!(!ControlCommand::Events.is_gunicorn_command());
    }

    #[test]
    fn read_only_commands() {
        for text in ["show all", "show workers", "help", "ping", "version"] {
            assert!(parse(text).unwrap().is_read_only(), "{text}");
        }
        for text in [
            "worker add",
            "reload",
            "reopen",
            "shutdown",
            "scale 2",
            "stop-workers",
            "upgrade",
            "events",
        ] {
            assert!(!parse(text).unwrap().is_read_only(), "{text}");
        }
    }

    #[test]
    fn scale_target_applies_with_a_floor_of_one() {
        assert_eq!(ScaleTarget::To(5).apply(2), 5);
        assert_eq!(ScaleTarget::Up(2).apply(3), 5);
        assert_eq!(ScaleTarget::Down(2).apply(3), 1);
        assert_eq!(ScaleTarget::Down(9).apply(3), 1);
        assert_eq!(ScaleTarget::Up(u32::MAX).apply(usize::MAX), usize::MAX);
        assert_eq!(ScaleTarget::To(0).apply(3), 1);
        assert_eq!(ScaleTarget::Up(1).apply(0), 1);
    }

    #[test]
    fn scale_down_never_raises_the_target() {
        assert_eq!(ScaleTarget::Down(1).apply(1), 1);
        assert_eq!(ScaleTarget::Down(1).apply(0), 0);
    }
}
