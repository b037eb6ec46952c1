//! Command-line behaviour that needs no daemon: exit codes, messages,
//! socket-path rules, completions.

use std::os::unix::net::UnixListener;
use std::process::{Command, Output};

fn ctl(args: &[&str], xdg: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gunicornctl"));
    cmd.args(args);
    match xdg {
        Some(dir) => cmd.env("XDG_RUNTIME_DIR", dir),
        None => cmd.env_remove("XDG_RUNTIME_DIR"),
    };
    cmd.output().expect("run gunicornctl")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn missing_socket_exits_3_and_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nope.ctl");
    let out = ctl(&["-s", sock.to_str().unwrap(), "status"], None);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stderr(&out),
        format!(
            "gunicornctl: cannot reach gunicornd at {}: no such socket (is it running? try -s PATH or --pid FILE)\n",
            sock.display()
        )
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn stale_socket_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("stale.ctl");
    drop(UnixListener::bind(&sock).unwrap());
    let out = ctl(&["reload", "-s", sock.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("connection refused (stale socket: nothing is listening)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn default_paths_follow_the_daemons_rules() {
    let uid = nix::unistd::getuid().as_raw();
    let out = ctl(&["--name", "shop", "status"], None);
    assert!(
        stderr(&out).contains(&format!(" at /tmp/gunicornd-{uid}/shop.ctl: ")),
        "{}",
        stderr(&out)
    );

    let out = ctl(&["status", "--pid", "/nonexistent/app.pid"], None);
    assert!(
        stderr(&out).contains(" at /nonexistent/app.pid.ctl: "),
        "{}",
        stderr(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    let xdg = dir.path().to_str().unwrap();
    let out = ctl(&["status", "--pid", "/nonexistent/app.pid"], Some(xdg));
    assert!(
        stderr(&out).contains(&format!(" at {xdg}/gunicornd.ctl: ")),
        "{}",
        stderr(&out)
    );

    // -s beats everything.
    let out = ctl(
        &[
            "status",
            "--pid",
            "/x.pid",
            "-s",
            "/nonexistent/explicit.ctl",
        ],
        Some(xdg),
    );
    assert!(
        stderr(&out).contains(" at /nonexistent/explicit.ctl: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["scale", "abc"],
        &["scale"],
        &["kill", "0"],
        &["stop", "--now"],
        &["frobnicate"],
    ] {
        let out = ctl(args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn help_documents_exit_status_and_paths() {
    let out = ctl(&["--help"], None);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3  cannot reach the daemon"), "{text}");
    assert!(text.contains("/tmp/gunicornd-<uid>/NAME.ctl"), "{text}");
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = ctl(&["completions", shell], None);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("gunicornctl") && script.contains("stop-workers"),
            "{shell}: {script}"
        );
    }
    assert_eq!(ctl(&["completions", "tcsh"], None).status.code(), Some(2));
}
