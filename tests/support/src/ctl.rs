//! Running `gunicornctl` and reading what it printed.

use std::process::{Child, Command, Output};

use serde_json::Value;

use crate::binaries::gunicornctl_bin;

/// Runs gunicornctl. `XDG_RUNTIME_DIR` would take precedence over `--pid`
/// in the default-path rules, so it is removed.
pub fn ctl(args: &[&str]) -> Output {
    ctl_command(args).output().expect("run gunicornctl")
}

/// gunicornctl ready to run, without `XDG_RUNTIME_DIR`.
pub fn ctl_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(gunicornctl_bin());
    cmd.args(args).env_remove("XDG_RUNTIME_DIR");
    cmd
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// gunicornctl's stdout; panics unless it exited 0.
#[track_caller]
pub fn ctl_ok(args: &[&str]) -> String {
    let out = ctl(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "gunicornctl {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// gunicornctl with `--json` appended; its stdout parsed.
#[track_caller]
pub fn ctl_json(args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let text = ctl_ok(&args);
    match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => panic!("{args:?} printed invalid JSON ({e}): {text}"),
    }
}

/// The value of `key` in gunicornctl's `key  value` output (keys are
/// followed by at least two spaces).
pub fn pair<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?;
        rest.starts_with("  ").then(|| rest.trim())
    })
}

/// A process running in the background for the length of a test (e.g.
/// `gunicornctl events`), killed on drop.
pub struct Background {
    pub child: Child,
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
