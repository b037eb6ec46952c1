//! Command-line behaviour that needs no daemon: exit codes, messages,
//! socket-path rules, completions.

use std::os::unix::net::UnixListener;
use std::process::Output;

use gunicornd_test_support::{ctl, ctl_command, stderr};

/// gunicornctl with `XDG_RUNTIME_DIR` set to `xdg` (`ctl` removes it).
fn ctl_with_xdg(args: &[&str], xdg: &str) -> Output {
    ctl_command(args)
        .env("XDG_RUNTIME_DIR", xdg)
        .output()
        .expect("run gunicornctl")
}

#[test]
fn missing_socket_exits_3_and_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nope.ctl");
    let out = ctl(&["-s", sock.to_str().unwrap(), "status"]);
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
    let out = ctl(&["reload", "-s", sock.to_str().unwrap()]);
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
    let out = ctl(&["--name", "shop", "status"]);
    assert!(
        stderr(&out).contains(&format!(" at /tmp/gunicornd-{uid}/shop.ctl: ")),
        "{}",
        stderr(&out)
    );

    let out = ctl(&["status", "--pid", "/nonexistent/app.pid"]);
    assert!(
        stderr(&out).contains(" at /nonexistent/app.pid.ctl: "),
        "{}",
        stderr(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    let xdg = dir.path().to_str().unwrap();
    let out = ctl_with_xdg(&["status", "--pid", "/nonexistent/app.pid"], xdg);
    assert!(
        stderr(&out).contains(&format!(" at {xdg}/gunicornd.ctl: ")),
        "{}",
        stderr(&out)
    );

    // -s beats everything.
    let out = ctl_with_xdg(
        &[
            "status",
            "--pid",
            "/x.pid",
            "-s",
            "/nonexistent/explicit.ctl",
        ],
        xdg,
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
        let out = ctl(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn help_documents_exit_status_and_paths() {
    let out = ctl(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3  cannot reach the daemon"), "{text}");
    assert!(text.contains("/tmp/gunicornd-<uid>/NAME.ctl"), "{text}");
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = ctl(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("gunicornctl") && script.contains("stop-workers"),
            "{shell}: {script}"
        );
    }
    assert_eq!(ctl(&["completions", "tcsh"]).status.code(), Some(2));
}
