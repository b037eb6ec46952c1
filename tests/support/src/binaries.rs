//! Where the workspace's binaries are. `env!("CARGO_BIN_EXE_...")` exists
//! only inside a package's own integration tests, so this crate finds them
//! beside the running test instead: a test binary is
//! `target/<profile>/deps/<test>`, the binaries are `target/<profile>/<bin>`.

use std::path::{Path, PathBuf};

/// The `gunicornd` binary of this build.
#[track_caller]
pub fn gunicornd_bin() -> PathBuf {
    binary("gunicornd")
}

/// The `gunicornctl` binary of this build.
#[track_caller]
pub fn gunicornctl_bin() -> PathBuf {
    binary("gunicornctl")
}

/// The cargo target directory this test was built into (`target/`, or
/// `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    profile_dir()
        .parent()
        .expect("target/<profile> has a parent")
        .to_path_buf()
}

/// `target/<profile>`: the directory above the test binary's `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| {
            panic!(
                "{} is not in target/<profile>/deps/: cannot find the binaries",
                exe.display()
            )
        })
        .to_path_buf()
}

#[track_caller]
fn binary(name: &str) -> PathBuf {
    let bin = profile_dir().join(name);
    assert!(
        bin.exists(),
        "{} is missing: build every binary of the workspace first \
         (`cargo build --workspace`; `cargo nextest run --workspace` does it too)",
        bin.display()
    );
    bin
}
