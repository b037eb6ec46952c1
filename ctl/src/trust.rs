//! Whether a control socket may be used, checked before anything is sent.
//!
//! Whoever owns the socket, or can put another one in its place, receives
//! our commands and writes the replies we act on (an upgrade signals the
//! pids the replies name). So gunicornctl talks only to a socket owned by
//! root or by the user it runs as, in a directory that belongs to one of
//! them and that nobody else can write to, unless it has the sticky bit
//! (like `/tmp`: there, others cannot remove or rename what is not theirs).
//! The directory is checked first: once it is known to be safe, the socket
//! found in it stays the one checked.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::CtlError;

/// The sticky bit (`S_ISVTX`).
const STICKY: u32 = 0o1000;

/// Checks `path` (and the directories it lives in) against the uids
/// gunicornctl trusts: root and its own effective uid. A path that does not
/// exist passes: connecting then fails with its own message.
pub fn check_socket(path: &Path) -> Result<(), CtlError> {
    check_socket_for(path, nix::unistd::geteuid().as_raw())
}

fn check_socket_for(path: &Path, me: u32) -> Result<(), CtlError> {
    let refuse = |reason: String| CtlError::Untrusted {
        path: path.to_path_buf(),
        reason,
    };
    let Ok(link) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    // The directory that holds the name we were given.
    let named_in = parent_of(path);
    if let Ok(dir) = fs::canonicalize(&named_in) {
        check_dir(&dir, me).map_err(refuse)?;
    }
    if link.file_type().is_symlink() {
        if !trusted(link.uid(), me) {
            return Err(refuse(format!(
                "it is a symbolic link owned by {}, not by root or {}; give the socket's own \
                 path with -s",
                who(link.uid()),
                who(me)
            )));
        }
        let Ok(target) = fs::canonicalize(path) else {
            return Ok(());
        };
        check_dir(&parent_of(&target), me).map_err(refuse)?;
    }
    let Ok(socket) = fs::metadata(path) else {
        return Ok(());
    };
    if !trusted(socket.uid(), me) {
        return Err(refuse(format!(
            "it belongs to {}, and gunicornctl only talks to sockets of root or of the user it \
             runs as ({}), since whoever owns one can pose as the server; if that user runs the \
             server, run gunicornctl as that user{}",
            who(socket.uid()),
            who(me),
            sudo_hint(socket.uid())
        )));
    }
    Ok(())
}

/// The directory a path's last component lives in (`.` for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A directory is safe when root or `me` owns it and nobody else can
/// replace what is in it.
fn check_dir(dir: &Path, me: u32) -> Result<(), String> {
    // Missing or unreadable: connecting will say so.
    let Ok(meta) = fs::metadata(dir) else {
        return Ok(());
    };
    if !trusted(meta.uid(), me) {
        return Err(format!(
            "its directory {} belongs to {}, not to root or {}, so that user could replace the \
             socket; put the socket in a directory of root or of the server's user (gunicornd \
             --control-socket PATH)",
            dir.display(),
            who(meta.uid()),
            who(me)
        ));
    }
    let mode = meta.mode();
    if mode & 0o022 != 0 && mode & STICKY == 0 {
        return Err(format!(
            "its directory {} (mode {:04o}) lets other users replace the socket; take away their \
             write permission (chmod go-w {}) or put the socket elsewhere (gunicornd \
             --control-socket PATH)",
            dir.display(),
            mode & 0o7777,
            dir.display()
        ));
    }
    Ok(())
}

fn trusted(uid: u32, me: u32) -> bool {
    uid == 0 || uid == me
}

/// `uid 33 (www-data)`, or `uid 33` for a uid without a name.
fn who(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    }
}

/// ` (sudo -u NAME gunicornctl ...)` when the owner has a name.
fn sudo_hint(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!(" (sudo -u {name} gunicornctl ...)"),
        None => String::new(),
    }
}

fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    /// Someone gunicornctl does not trust: neither root nor us.
    fn stranger() -> u32 {
        if me() == 65534 {
            65533
        } else {
            65534
        }
    }

    fn reason(result: Result<(), CtlError>) -> String {
        match result {
            Err(CtlError::Untrusted { reason, .. }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn sockets_of_root_or_our_own_user_pass() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        check_socket_for(&path, me()).unwrap();
        // What is missing is for connect to report.
        check_socket_for(&dir.path().join("missing.sock"), me()).unwrap();
        // A sticky directory anyone may write to, like /tmp.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        check_socket_for(&path, me()).unwrap();
    }

    #[test]
    fn a_socket_or_directory_of_another_user_is_refused() {
        if me() != 0 {
            eprintln!("SKIPPED: needs root to give files to another user");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(stranger()), None).unwrap();
        let why = reason(check_socket_for(&path, me()));
        assert!(
            why.starts_with(&format!("it belongs to uid {}", stranger())),
            "{why}"
        );
        assert!(why.contains("run gunicornctl as that user"), "{why}");

        std::os::unix::fs::chown(&path, Some(0), None).unwrap();
        std::os::unix::fs::chown(dir.path(), Some(stranger()), None).unwrap();
        let why = reason(check_socket_for(&path, me()));
        let canonical = fs::canonicalize(dir.path()).unwrap();
        assert!(
            why.starts_with(&format!(
                "its directory {} belongs to uid {}",
                canonical.display(),
                stranger()
            )),
            "{why}"
        );
        // A symbolic link of another user, to a socket of ours.
        std::os::unix::fs::chown(dir.path(), Some(0), None).unwrap();
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(stranger()), None).unwrap();
        let why = reason(check_socket_for(&link, me()));
        assert!(
            why.starts_with("it is a symbolic link owned by uid"),
            "{why}"
        );
    }

    #[test]
    fn a_directory_others_may_write_to_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let why = reason(check_socket_for(&path, me()));
        assert!(
            why.contains("(mode 0777) lets other users replace the socket"),
            "{why}"
        );
        assert!(why.contains("chmod go-w"), "{why}");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o770)).unwrap();
        assert!(reason(check_socket_for(&path, me())).contains("(mode 0770)"));
    }

    #[test]
    fn a_symlink_is_followed_to_a_trusted_socket_only() {
        let dir = tempfile::tempdir().unwrap();
        let real_dir = dir.path().join("real");
        fs::create_dir(&real_dir).unwrap();
        let path = real_dir.join("ctl.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        check_socket_for(&link, me()).unwrap();
        // The target's directory counts too.
        fs::set_permissions(&real_dir, fs::Permissions::from_mode(0o777)).unwrap();
        let why = reason(check_socket_for(&link, me()));
        let canonical = fs::canonicalize(&real_dir).unwrap();
        assert!(
            why.contains(&format!("{} (mode 0777)", canonical.display())),
            "{why}"
        );
    }
}
