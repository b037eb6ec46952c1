//! The private directory the control socket is created in when it falls
//! back to `/tmp/gunicornd-<uid>/` (the third rule of
//! [`paths::default_socket_path`](super::paths::default_socket_path)).
//! Only the daemon creates it; the client only connects.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
