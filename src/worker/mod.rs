//! What runs in a worker process, from the moment `fork()` returns in the
//! child until it exits (gunicorn's `Worker` in `gunicorn/workers/base.py`).
//!
//! Exit codes, as gunicorn's: 0 normal, 1 aborted (SIGABRT after a heartbeat
//! timeout), 3 the worker failed to boot, 4 the app failed to load.

pub mod clients;
pub mod command;
pub mod connection;
pub mod gthread;
pub mod kind;
pub mod notify;
pub mod signals;
pub mod stream;
pub mod sync;

use std::os::fd::RawFd;

use nix::unistd::{Gid, Pid, Uid};

use crate::config::Settings;
use crate::listeners::Listener;
use crate::scoreboard::Slot;

pub const EXIT_OK: i32 = 0;
pub const EXIT_ABORTED: i32 = 1;
/// gunicorn's "could not start" statuses, part of the control protocol's
/// interface (the `worker_exited` event reports them) and so defined there.
pub use gunicornd_protocol::exit::{APP_LOAD_ERROR, WORKER_BOOT_ERROR};

/// What the master hands a freshly forked worker.
pub struct WorkerSetup<'a> {
    pub age: u64,
    pub master_pid: Pid,
    pub listeners: &'a [Listener],
    pub slot: &'a Slot,
    /// The sending end of the worker channel (`notify.rs`).
    pub notify_fd: RawFd,
    pub settings: &'a Settings,
    /// Requests before asking to be recycled (jitter applied); 0 = never.
    pub max_requests: u64,
    /// Descriptors that belong to the master alone (its event loop, signal
    /// pipe, control socket): closed first thing in the child.
    pub master_fds: Vec<RawFd>,
    /// The signal mask to restore once the worker's handlers are in place
    /// (the master blocks every signal across fork).
    pub signal_mask: nix::sys::signal::SigSet,
    /// The app the master loaded before forking (`--preload`), if it did.
    pub preloaded: std::cell::Cell<Option<Box<dyn crate::app::App>>>,
}

/// How a worker kind serves once booted; returns the exit code.
pub type Serve = fn(&WorkerSetup<'_>, &mut dyn crate::app::App, &crate::signals::SignalPipe) -> i32;

/// Boot the worker, `serve` until told to stop, exit. Never returns: the
/// process exits.
fn run(setup: WorkerSetup<'_>, serve: Serve) -> ! {
    let _ = LEAVING.set(Leaving {
        hooks: setup.settings.hooks.clone(),
        master_pid: setup.master_pid,
        age: setup.age,
    });
    let code = match boot(&setup) {
        Ok((mut app, sigpipe)) => {
            tracing::debug!("Worker booted (pid: {})", std::process::id());
            serve(&setup, app.as_mut(), &sigpipe)
        }
        Err(code) => code,
    };
    exit(code)
}

/// What the worker needs to leave from wherever it is (the serving loop, or
/// a Python signal handler in the middle of a request).
struct Leaving {
    /// The command hooks (`worker_exit` is the one fired here).
    hooks: std::collections::BTreeMap<String, String>,
    master_pid: Pid,
    age: u64,
}

static LEAVING: std::sync::OnceLock<Leaving> = std::sync::OnceLock::new();

/// Set by the first [`quit`]: its hook runs once, whichever route called it.
static QUITTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// End the worker: fire `worker_exit`, then `_exit(code)`.
pub fn exit(code: i32) -> ! {
    tracing::info!("Worker exiting (pid: {})", std::process::id());
    if let Some(Leaving {
        hooks,
        master_pid,
        age,
    }) = LEAVING.get()
    {
        crate::hooks::spawn(
            hooks,
            "worker_exit",
            &[
                ("GUNICORND_PID", master_pid.to_string()),
                ("GUNICORND_WORKER_PID", std::process::id().to_string()),
                ("GUNICORND_WORKER_AGE", age.to_string()),
                ("GUNICORND_WORKER_EXIT", format!("exit {code}")),
            ],
        );
    }
    // _exit: skip atexit handlers and destructors inherited from the master
    // (they belong to the master's resources: pidfile, sockets).
    // SAFETY: terminating the process is always sound.
    unsafe { libc::_exit(code) }
}

/// A quick stop (QUIT/INT) or abort (ABRT) whose hook must run first
/// (see [`signals`]): run it, then exit with gunicorn's code. Returns only
/// when a quit is already under way (the hook itself was interrupted by
/// the same signal's second route), so the first one finishes.
pub fn quit(sig: nix::sys::signal::Signal) {
    if QUITTING.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let code = signals::quick_stop_code(sig).unwrap_or(EXIT_OK);
    #[cfg(feature = "python")]
    crate::python::run_signal_hook(sig);
    exit(code)
}

/// Everything between fork and serving. Errors carry the exit code.
type Booted = (Box<dyn crate::app::App>, crate::signals::SignalPipe);

fn boot(setup: &WorkerSetup<'_>) -> Result<Booted, i32> {
    for &fd in &setup.master_fds {
        let _ = nix::unistd::close(fd);
    }
    // The worker runs on the stack of the master's call to fork: a panic
    // must not unwind through those frames (their destructors would act
    // on the master's resources: pidfile, sockets). Log it, and end this
    // worker alone, at once.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("Worker panicked (pid: {}): {info}", std::process::id());
        // SAFETY: terminating the process is always sound.
        unsafe { libc::_exit(EXIT_ABORTED) }
    }));
    let sigpipe = signals::install().map_err(|e| {
        tracing::error!("Exception in worker process: cannot install signal handlers: {e}");
        WORKER_BOOT_ERROR
    })?;
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&setup.signal_mask),
        None,
    );
    tracing::info!("Booting worker with pid: {}", std::process::id());
    let settings = setup.settings;
    for (k, v) in &settings.raw_env {
        // SAFETY (set_var): the worker process is single-threaded.
        std::env::set_var(k, v);
    }
    drop_privileges(settings.user, settings.group).map_err(|e| {
        tracing::error!("Exception in worker process: {e}");
        WORKER_BOOT_ERROR
    })?;
    // Die with the master (it would otherwise be noticed only at the next
    // parent-pid check); TERM so that a request in flight still completes.
    // After dropping privileges: a credential change clears this setting.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM);
    if nix::unistd::getppid() != setup.master_pid {
        tracing::info!(
            "Parent changed, shutting down: <Worker {}>",
            std::process::id()
        );
        return Err(EXIT_OK);
    }
    let spec = settings.app.as_deref().unwrap_or_default();
    let app = match setup.preloaded.take() {
        Some(app) => app,
        None => crate::app::load(spec, settings).map_err(|e| {
            tracing::error!("Failed to load application '{spec}': {e}");
            APP_LOAD_ERROR
        })?,
    };
    run_post_worker_init(setup)?;
    setup.slot.mark_booted();
    notify::send(setup.notify_fd, notify::WorkerMsg::Booted).map_err(|e| {
        tracing::error!("Exception in worker process: cannot reach the master: {e}");
        WORKER_BOOT_ERROR
    })?;
    Ok((app, sigpipe))
}

/// gunicorn's `post_worker_init` hook, from a Python configuration file.
fn run_post_worker_init(setup: &WorkerSetup<'_>) -> Result<(), i32> {
    #[cfg(feature = "python")]
    if let Some(config) = setup
        .settings
        .config
        .as_deref()
        .filter(|c| c.extension().is_some_and(|e| e == "py"))
    {
        crate::python::worker_hooks(config, setup.age).map_err(|e| {
            tracing::error!("Exception in worker process: post_worker_init failed:\n{e}");
            WORKER_BOOT_ERROR
        })?;
    }
    #[cfg(not(feature = "python"))]
    let _ = setup;
    Ok(())
}

/// Switch to the configured user and group, completely: with a user, the
/// supplementary groups are the user's own (`initgroups`), none left over
/// from root, and the group is `--group` or else the user's primary group;
/// the group is changed before the user (once the uid is dropped we may no
/// longer change the gid). With only a group, it replaces every group. Any
/// failure is returned, saying what could not be done: the worker must not
/// serve with more privileges than it was told to have.
fn drop_privileges(user: Option<u32>, group: Option<u32>) -> Result<(), String> {
    use nix::unistd::{initgroups, setgid, setgroups, setuid, User};
    let group = group.map(Gid::from_raw);
    let Some(uid) = user
        .map(Uid::from_raw)
        .filter(|&uid| uid != Uid::effective())
    else {
        // The user stays: only the group changes, if asked.
        if let Some(gid) = group.filter(|&gid| gid != Gid::effective()) {
            if Uid::effective().is_root() {
                setgroups(&[gid]).map_err(|e| {
                    format!("cannot set the supplementary groups to {gid} alone: {e}")
                })?;
            }
            setgid(gid).map_err(|e| format!("cannot switch to group {gid}: {e}"))?;
        }
        return Ok(());
    };
    let account = User::from_uid(uid)
        .map_err(|e| format!("cannot look up user {uid} in the user database: {e}"))?;
    let name = account
        .as_ref()
        .map_or_else(|| uid.to_string(), |a| a.name.clone());
    let gid = match (group, &account) {
        (Some(gid), _) => gid,
        (None, Some(account)) => account.gid,
        (None, None) => {
            return Err(format!(
                "cannot switch to user {uid}: it has no entry in the user database, so it has \
                 no primary group; set --group"
            ))
        }
    };
    match &account {
        Some(account) => {
            let c_name = std::ffi::CString::new(account.name.as_bytes())
                .map_err(|_| format!("user name {:?} holds a NUL byte", account.name))?;
            initgroups(&c_name, gid).map_err(|e| {
                format!("cannot set the supplementary groups of user {name} (initgroups): {e}")
            })?;
        }
        // Not in the database: it belongs to no other group.
        None => setgroups(&[gid]).map_err(|e| {
            format!("cannot set the supplementary groups of user {name} to {gid} alone: {e}")
        })?,
    }
    setgid(gid).map_err(|e| format!("cannot switch to group {gid}: {e}"))?;
    setuid(uid).map_err(|e| format!("cannot switch to user {name} ({uid}): {e}"))?;
    // setuid as root drops the real and saved ids too; check that it did.
    if !uid.is_root() && setuid(Uid::from_raw(0)).is_ok() {
        return Err(format!(
            "switched to user {name} ({uid}) but could switch back to root"
        ));
    }
    Ok(())
}
