//! The exit statuses gunicorn defines for a process that could not start,
//! which gunicornd's workers and master exit with too.
//!
//! A worker exits with one of these when it cannot boot; the master reports
//! that in the `worker_exited` event's `exit_code` (and in its `reason`), and
//! exits with the same status itself when the running configuration is at
//! fault (during a reload the previous generation keeps serving instead).
//! They are part of the interface: supervisors and gunicornctl's `--wait`
//! read them.

/// The worker failed to boot (for example it could not switch to `--user`).
pub const WORKER_BOOT_ERROR: i32 = 3;

/// The worker could not load the application.
pub const APP_LOAD_ERROR: i32 = 4;
