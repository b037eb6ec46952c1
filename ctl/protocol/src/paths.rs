//! Where the control socket lives when `--control-socket` is not given.
//!
//! The daemon and `gunicornctl` apply the same rules, so a client started
//! with the same `--pid`/`--name` (and environment) finds the daemon:
//!
//! 1. `$XDG_RUNTIME_DIR/gunicornd.ctl` when `XDG_RUNTIME_DIR` is set (and
//!    not empty): a per-user 0700 directory managed by the login session.
//! 2. `<pidfile>.ctl` beside the pidfile when `--pid` is given: the place
//!    operators already point tools at.
//! 3. `/tmp/gunicornd-<uid>/<name>.ctl` otherwise, `<name>` from `--name`
//!    (default `gunicornd`). The daemon creates the directory 0700 and
//!    refuses it when someone else could have planted it.
//!
//! Unlike gunicorn (`$HOME/.gunicorn/`), nothing is written to the home
//! directory, which is often read-only or absent for service accounts.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// File name used under `$XDG_RUNTIME_DIR`.
pub const XDG_SOCKET_NAME: &str = "gunicornd.ctl";

/// `<name>` when `--name` is not given.
pub const DEFAULT_NAME: &str = "gunicornd";

/// The default socket path (see the module docs for the rules). Pure: the
/// caller supplies the environment, so both sides and the tests agree.
pub fn default_socket_path(
    xdg_runtime_dir: Option<&Path>,
    pidfile: Option<&Path>,
    name: Option<&str>,
    uid: u32,
) -> PathBuf {
    if let Some(dir) = xdg_runtime_dir.filter(|d| !d.as_os_str().is_empty()) {
        return dir.join(XDG_SOCKET_NAME);
    }
    if let Some(pidfile) = pidfile {
        let mut path = OsString::from(pidfile.as_os_str());
        path.push(".ctl");
        return PathBuf::from(path);
    }
    private_tmp_dir(uid).join(format!("{}.ctl", file_name_for(name)))
}

/// [`default_socket_path`] with `XDG_RUNTIME_DIR` read from the environment.
pub fn default_socket_path_from_env(
    pidfile: Option<&Path>,
    name: Option<&str>,
    uid: u32,
) -> PathBuf {
    let xdg = std::env::var_os("XDG_RUNTIME_DIR");
    default_socket_path(xdg.as_deref().map(Path::new), pidfile, name, uid)
}

/// `/tmp/gunicornd-<uid>`: the fallback socket directory. Always `/tmp`
/// rather than `$TMPDIR`, so that a client with a different `TMPDIR` (sudo,
/// systemd's PrivateTmp aside) still finds the daemon.
fn private_tmp_dir(uid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/gunicornd-{uid}"))
}

/// `--name` made safe as a file name: a `/` would leave the directory and
/// `.`/`..`/empty are not names, so those fall back to replacements.
fn file_name_for(name: Option<&str>) -> String {
    match name.map(str::trim) {
        None | Some("" | "." | "..") => DEFAULT_NAME.to_string(),
        Some(name) => name.replace(['/', '\0'], "_"),
    }
}

/// Whether `socket` lies in the `/tmp/gunicornd-<uid>` fallback directory,
/// i.e. whether the daemon must create and check that directory before
/// binding. (Any other directory belongs to
/// whoever chose the path.)
pub fn is_private_tmp_path(socket: &Path, uid: u32) -> bool {
    socket.parent() == Some(private_tmp_dir(uid).as_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdg_runtime_dir_wins() {
        let p = default_socket_path(
            Some(Path::new("/run/user/1000")),
            Some(Path::new("/run/app.pid")),
            Some("app"),
            1000,
        );
        assert_eq!(p, Path::new("/run/user/1000/gunicornd.ctl"));
    }

    #[test]
    fn empty_xdg_runtime_dir_counts_as_unset() {
        let p = default_socket_path(
            Some(Path::new("")),
            Some(Path::new("/run/app.pid")),
            None,
            1000,
        );
        assert_eq!(p, Path::new("/run/app.pid.ctl"));
    }

    #[test]
    fn pidfile_is_next() {
        let p = default_socket_path(None, Some(Path::new("/var/run/app.pid")), Some("x"), 7);
        assert_eq!(p, Path::new("/var/run/app.pid.ctl"));
        let p = default_socket_path(None, Some(Path::new("app.pid")), None, 7);
        assert_eq!(p, Path::new("app.pid.ctl"));
    }

    #[test]
    fn tmp_fallback_uses_uid_and_name() {
        assert_eq!(
            default_socket_path(None, None, None, 1000),
            Path::new("/tmp/gunicornd-1000/gunicornd.ctl")
        );
        assert_eq!(
            default_socket_path(None, None, Some("shop"), 0),
            Path::new("/tmp/gunicornd-0/shop.ctl")
        );
        assert_eq!(
            default_socket_path(None, None, Some("../etc/x"), 5),
            Path::new("/tmp/gunicornd-5/.._etc_x.ctl")
        );
        assert_eq!(
            default_socket_path(None, None, Some(".."), 5),
            Path::new("/tmp/gunicornd-5/gunicornd.ctl")
        );
        assert_eq!(
            default_socket_path(None, None, Some(""), 5),
            Path::new("/tmp/gunicornd-5/gunicornd.ctl")
        );
    }

    #[test]
    fn recognises_the_private_tmp_path() {
        assert!(is_private_tmp_path(
            &default_socket_path(None, None, Some("a"), 3),
            3
        ));
        assert!(!is_private_tmp_path(Path::new("/run/app.pid.ctl"), 3));
        assert!(!is_private_tmp_path(
            &default_socket_path(None, None, Some("a"), 3),
            4
        ));
    }
}
