//! In-place binary upgrade (`upgrade_mode = "in-place"`, `gunicornctl
//! upgrade --in-place`): the new binary replaces this master's image in the
//! same process, so the pid that supervisors and containers watch stays.
//!
//! First the probe: the new binary, run as a child with the master's
//! original arguments and environment plus [`PROBE_FLAG`], loads and checks
//! the configuration and says whether it reads the state format this
//! master writes ([`STATE_VERSION`]). A failed probe aborts the upgrade
//! with its reason and changes nothing.

use std::ffi::OsString;
use std::io::Read;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use super::{Arbiter, Outcome};

/// The version of the state an old image hands the new one across
/// `execve`; a new binary that reads another one says so in the probe.
pub const STATE_VERSION: u32 = 1;

/// The hidden command-line flag that makes `gunicornd` a probe: check the
/// configuration and the state version given with it, then exit.
pub const PROBE_FLAG: &str = "--upgrade-probe";

/// How long a probe may take. It only loads the configuration, and the
/// master waits for it without serving its event loop, so this is short.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the master looks whether the probe has exited.
const PROBE_POLL: Duration = Duration::from_millis(5);

/// What the probe says about `version`: `Ok` if this binary reads it, else
/// why not (the probe's exit message).
pub fn probe_answer(version: u32) -> Result<(), String> {
    if version == STATE_VERSION {
        Ok(())
    } else {
        Err(format!(
            "the new binary reads upgrade state version {STATE_VERSION}, not {version}"
        ))
    }
}

impl Arbiter {
    /// USR2 / `upgrade in-place`: probe the new binary; on success hand the
    /// state over and exec it.
    pub(super) fn in_place_upgrade(&mut self) -> Outcome {
        tracing::info!("In-place upgrade requested: {}", self.name);
        if let Err(why) = self.pool.start_upgrade() {
            return Outcome::Refused(why);
        }
        if let Err(reason) = self.probe() {
            return self
                .pool
                .upgrade_not_started(&format!("the new binary failed the probe: {reason}"));
        }
        tracing::info!("Upgrade: the new binary passed the probe");
        self.pool.upgrade_not_started(
            "the new binary passed the probe, but this build cannot hand its state over yet",
        )
    }

    /// Runs the binary this master was started from (the path, which may
    /// name a new file by now) as a probe and waits for its answer.
    fn probe(&self) -> Result<(), String> {
        let program = self.start.program.clone()?;
        let mut args: Vec<OsString> = self.start.args.iter().skip(1).cloned().collect();
        // Before the original arguments: after a `--` they would be the
        // command workers' words.
        args.splice(
            0..0,
            [OsString::from(PROBE_FLAG), STATE_VERSION.to_string().into()],
        );
        let mut child = Process::new(&program)
            .args(&args)
            .env_clear()
            .envs(self.start.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.start.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        let mut stderr = child.stderr.take().expect("stderr is piped");
        // Read on the side so that a chatty probe cannot fill the pipe and
        // block before it exits.
        let reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        });
        let deadline = Instant::now() + PROBE_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!(
                        "it did not answer within {} s",
                        PROBE_TIMEOUT.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(PROBE_POLL),
                Err(e) => break Err(format!("cannot wait for it: {e}")),
            }
        };
        let text = reader.join().unwrap_or_default();
        let status = status?;
        if status.success() {
            return Ok(());
        }
        let said = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(|l| l.strip_prefix("Error: ").unwrap_or(l).to_string());
        Err(match said {
            Some(line) => format!("{line} ({status})"),
            None => format!("it {status} and said nothing"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_accepts_only_its_own_state_version() {
        assert_eq!(probe_answer(STATE_VERSION), Ok(()));
        assert_eq!(
            probe_answer(STATE_VERSION + 1),
            Err(format!(
                "the new binary reads upgrade state version {STATE_VERSION}, not {}",
                STATE_VERSION + 1
            ))
        );
    }
}
