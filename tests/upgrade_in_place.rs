//! In-place binary upgrade (`upgrade_mode = "in-place"`, `gunicornctl
//! upgrade --in-place`): the probe of the new binary, and a failed probe
//! changing nothing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use gunicornd_test_support::*;

const LONG: Duration = Duration::from_secs(20);

/// A hello server run from a copy of gunicornd in its own directory, so
/// that a test can replace the binary; returns the server and the copy.
fn from_copy(extra: &[&str]) -> (Server, std::path::PathBuf) {
    let launch = Launch::hello(1);
    let program = launch.path("gunicornd");
    fs::copy(gunicornd_bin(), &program).unwrap();
    let mut launch = launch.binary(&program);
    for a in extra {
        launch = launch.arg(a);
    }
    (launch.start(), program)
}

/// Replaces `program` by a script (a new file, as a package manager does).
fn install_script(program: &Path, script: &str) {
    fs::remove_file(program).unwrap();
    fs::write(program, script).unwrap();
    fs::set_permissions(program, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_broken_new_binary_fails_the_probe_and_the_master_serves_on() {
    let (srv, program) = from_copy(&[]);
    let workers = srv.wait_booted(1);
    install_script(&program, "#!/bin/sh\necho 'broken build' >&2\nexit 1\n");
    let out = ctl(&["-s", srv.sock(), "upgrade", "--in-place"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the new binary failed the probe: broken build (exit status: 1)"),
        "{err}"
    );
    srv.expect_log("the new binary failed the probe: broken build", LONG);
    assert!(process_alive(srv.pid));
    assert_eq!(srv.worker_pids(), workers, "nothing changed");
    assert_eq!(srv.get("/").status, 200);
}

#[test]
fn the_probe_checks_the_configuration_of_the_new_binary() {
    // `upgrade_mode = "in-place"` makes a plain USR2 (and `upgrade` without
    // a mode) upgrade in place; the probe gets the original arguments.
    let (srv, program) = from_copy(&["--upgrade-mode", "in-place"]);
    let args = srv.path("probe-args");
    install_script(
        &program,
        &format!(
            "#!/bin/sh\necho \"$@\" > {}\necho 'Error: no such setting' >&2\nexit 2\n",
            args.display()
        ),
    );
    srv.signal_delivered(libc::SIGUSR2);
    srv.expect_log(
        "the new binary failed the probe: no such setting (exit status: 2)",
        LONG,
    );
    let given = fs::read_to_string(&args).unwrap();
    assert!(
        given.starts_with("--upgrade-probe 1 ") && given.contains("--upgrade-mode in-place"),
        "{given}"
    );
    assert!(process_alive(srv.pid));
    assert_eq!(srv.get("/").status, 200);
}

#[test]
fn the_probe_flag_answers_for_the_state_version() {
    let dir = tempfile::tempdir().unwrap();
    let probe = |version: &str| {
        let mut cmd = std::process::Command::new(gunicornd_bin());
        without_inherited_settings(&mut cmd)
            .current_dir(dir.path())
            .args(["--upgrade-probe", version, "builtin:hello"])
            .output()
            .unwrap()
    };
    let ok = probe("1");
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let other = probe("999");
    assert_eq!(other.status.code(), Some(1));
    assert!(
        stderr(&other).contains("reads upgrade state version 1, not 999"),
        "{}",
        stderr(&other)
    );
}
