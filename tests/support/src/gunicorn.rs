//! Python venvs cached under the target directory: gunicorn (>= 25.1), for
//! the tests that check compatibility with the original, and the WSGI
//! frameworks the Python app tests run.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use crate::binaries::target_dir;

/// Python with gunicorn installed, or `None` (with a message) when this
/// machine cannot create venvs. The venv is `target/gunicorn-venv`, made
/// once, atomically.
pub fn gunicorn_python() -> Option<PathBuf> {
    let python = venv("gunicorn-venv", &["gunicorn>=25.1"])?.join("bin/python");
    let version =
        run_ok(Command::new(&python).args(["-c", "import gunicorn; print(gunicorn.__version__)"]));
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    assert!(
        parts.as_slice() >= &[25, 1][..],
        "gunicorn {version} in {} is older than 25.1",
        python.display()
    );
    Some(python)
}

/// A venv with Flask and Django (for the WSGI framework tests), as
/// `target/frameworks-venv`; `None` when venvs cannot be made here.
pub fn frameworks_venv() -> Option<PathBuf> {
    venv("frameworks-venv", &["flask>=3", "django>=4.2"])
}

/// The venv `target/NAME` with `packages` installed from PyPI, made once,
/// atomically; `None` (with a message) when this machine cannot make venvs.
pub fn venv(name: &str, packages: &[&str]) -> Option<PathBuf> {
    let target = target_dir();
    let venv = target.join(name);
    let python = venv.join("bin/python");
    if !python.exists() {
        let probe = Command::new("python3")
            .args(["-c", "import venv, ensurepip"])
            .output();
        if !probe.is_ok_and(|o| o.status.success()) {
            eprintln!("SKIPPED: `python3 -m venv` is unavailable (no python3, or no venv/ensurepip module)");
            return None;
        }
        // Build beside the final place and rename when complete, so an
        // interrupted or concurrent run never leaves a half-made venv there.
        // (The venv is used through `bin/python -m ...`, which survives the
        // rename; console-script shebangs would not.)
        let building = target.join(format!("{name}.building-{}", std::process::id()));
        let _ = fs::remove_dir_all(&building);
        run_ok(Command::new("python3").arg("-m").arg("venv").arg(&building));
        run_ok(
            Command::new(building.join("bin/python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(packages),
        );
        if fs::rename(&building, &venv).is_err() {
            // Another run finished first; use its venv.
            let _ = fs::remove_dir_all(&building);
        }
    }
    Some(venv)
}

#[track_caller]
fn run_ok(cmd: &mut Command) -> Output {
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run {cmd:?}: {e}"),
    };
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
