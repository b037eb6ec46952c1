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
//!    (default `gunicornd`). The directory is created 0700 by the daemon and
//!    refused when someone else could have planted it ([`ensure_private_dir`]).
//!
//! Unlike gunicorn (`$HOME/.gunicorn/`), nothing is written to the home
//! directory, which is often read-only or absent for service accounts.

use std::ffi::OsString;
use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
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
pub fn private_tmp_dir(uid: u32) -> PathBuf {
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

/// Creates `dir` with mode 0700 if it is missing, then checks that it is
/// safe to put a control socket in: a real directory (not a symlink), owned
/// by `uid`, and not writable by group or others. Anyone who can write to
/// the directory (or who owns it) could replace the socket with their own
/// and receive our clients' commands, or make the daemon unlink files.
///
/// Only the final component is created: its parent (normally `/tmp`) must
/// exist.
pub fn ensure_private_dir(dir: &Path, uid: u32) -> io::Result<()> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", dir.display()),
            ))
        }
    }
    // lstat: a symlink planted by someone else must not be followed.
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot inspect {}: {e}", dir.display())))?;
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to put the control socket in {}: {why}; remove it or pass --control-socket PATH",
                dir.display()
            ),
        ))
    };
    if meta.file_type().is_symlink() {
        return refuse("it is a symbolic link".to_string());
    }
    if !meta.is_dir() {
        return refuse("it exists and is not a directory".to_string());
    }
    if meta.uid() != uid {
        return refuse(format!(
            "it is owned by uid {}, not by uid {uid}",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return refuse(format!(
            "its mode {mode:04o} lets other users write to it (expected 0700)"
        ));
    }
    Ok(())
}

/// Whether `socket` lies in the `/tmp/gunicornd-<uid>` fallback directory,
/// i.e. whether the daemon must create and check that directory with
/// [`ensure_private_dir`] before binding. (Any other directory belongs to
/// whoever chose the path.)
pub fn is_private_tmp_path(socket: &Path, uid: u32) -> bool {
    socket.parent() == Some(private_tmp_dir(uid).as_path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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

    fn my_uid() -> u32 {
        nix::unistd::getuid().as_raw()
    }

    #[test]
    fn creates_the_directory_0700_and_accepts_it_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("gunicornd-test");
        ensure_private_dir(&dir, my_uid()).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        ensure_private_dir(&dir, my_uid()).unwrap();
    }

    #[test]
    fn refuses_a_directory_others_can_write() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("open");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_private_dir(&dir, my_uid()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(
            err.to_string()
                .contains("its mode 0777 lets other users write to it"),
            "{err}"
        );
        assert!(err.to_string().contains("--control-socket PATH"), "{err}");
    }

    #[test]
    fn refuses_a_directory_owned_by_someone_else() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("theirs");
        ensure_private_dir(&dir, my_uid()).unwrap();
        let other = my_uid().wrapping_add(1);
        let err = ensure_private_dir(&dir, other).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("owned by uid {}, not by uid {other}", my_uid())),
            "{err}"
        );
    }

    #[test]
    fn refuses_symlinks_and_files() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        ensure_private_dir(&real, my_uid()).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = ensure_private_dir(&link, my_uid()).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");

        let file = tmp.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = ensure_private_dir(&file, my_uid()).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn reports_a_missing_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let err = ensure_private_dir(&tmp.path().join("a/b"), my_uid()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().starts_with("cannot create "), "{err}");
    }
}
