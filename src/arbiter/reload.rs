//! Reload (HUP): a new configuration and a new generation of workers, with
//! the previous generation kept as the fallback until the new one serves.
//!
//! Rules that keep a reload safe:
//! - everything that can fail (loading the configuration, binding new
//!   addresses) happens before anything is changed;
//! - `previous` is the last generation that fully served: a HUP during a
//!   reload does not replace it, so a failure always falls back to it;
//! - sockets a reload no longer binds stay open in the master until the
//!   reload completes (the old workers still accept on them, and a rollback
//!   takes them back).

use nix::sys::signal::Signal;

use super::{Arbiter, PreviousGeneration, Retire, State};
use crate::config::Settings;
use crate::control::protocol::EventKind;
use crate::listeners::{self, Listener, ListenerSpec};

impl Arbiter {
    /// Re-read the configuration and roll a new generation of workers in;
    /// the old ones retire as the new ones boot (see `manage`).
    pub(super) fn reload(&mut self) -> Result<(), String> {
        tracing::info!("Hang up: Master");
        if self.state != State::Running {
            return Err("the server is shutting down".into());
        }
        self.report.reloading();
        let result = self.load_and_roll();
        if let Err(e) = &result {
            tracing::error!("Reload failed, keeping the running configuration: {e}");
            self.emit(EventKind::ReloadFailed {
                generation: None,
                reason: e.clone(),
            });
            self.report.reloaded();
        }
        result
    }

    fn load_and_roll(&mut self) -> Result<(), String> {
        let new = match self.loader.load() {
            Ok(crate::config::Startup::Run(s)) => s,
            Ok(_) => return Err("the configuration asks to print or check it, not to run".into()),
            Err(e) => return Err(e.to_string()),
        };
        // Fallible steps first: nothing has changed if they fail.
        if new.binds != self.settings.binds && !self.inherited_listeners {
            self.rebind(&new)?;
        }
        if let Err(e) = crate::log::reconfigure(&crate::log::LogConfig::from_settings(&new)) {
            tracing::error!(
                "Reload: cannot apply the new log settings ({e}); keeping the previous ones."
            );
        }
        if let Err(e) = crate::log::reopen() {
            tracing::error!("Cannot reopen log files: {e}");
        }
        let old_target = self.target;
        if new.workers != self.settings.workers || self.target == 0 {
            self.target = new.workers;
        }
        self.hooks.set_commands(&new.hooks);
        self.stats.reloads += 1;
        let old_settings = std::mem::replace(&mut self.settings, new);
        if self.previous.is_none() {
            self.previous = Some(PreviousGeneration {
                settings: old_settings,
                generation: self.generation,
                target: old_target,
            });
        }
        self.generation = self.next_generation;
        self.next_generation += 1;
        for w in self.workers.iter_mut() {
            if w.running() && w.retire.is_none() {
                w.retire = Some(Retire::Generation);
            }
        }
        self.boot_failures = 0;
        self.next_spawn_at = None;
        tracing::info!(
            "Reloading: starting generation {} with {} workers",
            self.generation,
            self.target
        );
        self.hooks.fire(
            "on_reload",
            &[("GUNICORND_WORKERS", self.target.to_string())],
        );
        self.emit(EventKind::ReloadStarted {
            generation: self.generation,
        });
        self.target_changed(old_target);
        Ok(())
    }

    /// Make the listeners match `settings.binds`: keep the sockets of
    /// addresses that stay (rebinding a bound address would fail), bind only
    /// new ones, and park the ones no longer wanted until the reload is over.
    /// Binding is all or nothing.
    fn rebind(&mut self, settings: &Settings) -> Result<(), String> {
        enum Source {
            Current(usize),
            Retired(usize),
            Fresh(usize),
        }
        let spec = ListenerSpec {
            binds: &[],
            backlog: settings.backlog,
            umask: settings.umask,
            owner: (settings.user, settings.group),
        };
        let mut fresh: Vec<Listener> = Vec::new();
        let mut plan = Vec::with_capacity(settings.binds.len());
        for bind in &settings.binds {
            if let Some(i) = self
                .listeners
                .iter()
                .position(|l| listeners::serves(l, bind))
            {
                plan.push(Source::Current(i));
            } else if let Some(i) = self
                .retired_listeners
                .iter()
                .position(|l| listeners::serves(l, bind))
            {
                plan.push(Source::Retired(i));
            } else {
                let one = ListenerSpec {
                    binds: std::slice::from_ref(bind),
                    ..spec
                };
                let mut bound = listeners::create_all(&one, &[], 1)?;
                for l in &bound {
                    l.set_nonblocking().map_err(|e| format!("{l}: {e}"))?;
                }
                plan.push(Source::Fresh(fresh.len()));
                fresh.append(&mut bound);
            }
        }
        // Infallible from here: move every socket to where it belongs.
        let mut current: Vec<Option<Listener>> = self.listeners.drain(..).map(Some).collect();
        let mut retired: Vec<Option<Listener>> =
            self.retired_listeners.drain(..).map(Some).collect();
        let mut fresh: Vec<Option<Listener>> = fresh.into_iter().map(Some).collect();
        for source in plan {
            let taken = match source {
                Source::Current(i) => current[i].take(),
                Source::Retired(i) => retired[i].take(),
                Source::Fresh(i) => fresh[i].take(),
            };
            self.listeners.extend(taken);
        }
        self.retired_listeners = retired.into_iter().chain(current).flatten().collect();
        let shown: Vec<String> = self.listeners.iter().map(|l| l.to_string()).collect();
        tracing::info!("Listening at: {} ({})", shown.join(","), self.pid);
        Ok(())
    }

    /// The reload is over: sockets that no worker of the serving generation
    /// uses can go (their files too, unless a listener still has the path).
    pub(super) fn close_retired_listeners(&mut self) {
        let in_use: Vec<_> = self.listeners.iter().map(|l| l.addr().clone()).collect();
        for l in self.retired_listeners.drain(..) {
            let unlink = !in_use.contains(l.addr());
            l.close(unlink);
        }
    }

    /// A failed reload: the previous generation serves again, with its
    /// settings, worker count, hooks, log settings and sockets.
    pub(super) fn roll_back(&mut self, reason: &str) {
        let Some(prev) = self.previous.take() else {
            return;
        };
        tracing::error!(
            "Reload failed: {reason} Keeping generation {} serving; fix the configuration and reload again.",
            prev.generation
        );
        let failed = self.generation;
        self.emit(EventKind::ReloadFailed {
            generation: Some(failed),
            reason: reason.to_string(),
        });
        if prev.settings.binds != self.settings.binds && !self.inherited_listeners {
            if let Err(e) = self.rebind(&prev.settings) {
                tracing::error!("Cannot restore the previous listeners: {e}");
            }
        }
        self.close_retired_listeners();
        let old_target = self.target;
        self.generation = prev.generation;
        self.target = prev.target;
        self.hooks.set_commands(&prev.settings.hooks);
        self.settings = prev.settings;
        if let Err(e) =
            crate::log::reconfigure(&crate::log::LogConfig::from_settings(&self.settings))
        {
            tracing::error!("Cannot restore the previous log settings: {e}");
        }
        // Every worker of a later generation goes (a HUP during the reload
        // may have started more than one); the serving one is un-retired.
        for pid in self
            .workers
            .oldest_first(|w| w.generation != prev.generation && w.running())
        {
            self.send_stop(pid, Signal::SIGTERM);
        }
        for w in self.workers.iter_mut() {
            if w.generation == prev.generation && w.retire == Some(Retire::Generation) {
                w.retire = None;
            }
        }
        self.boot_failures = 0;
        self.next_spawn_at = None;
        self.report.reloaded();
        self.target_changed(old_target);
    }

    /// The generation a failed reload falls back to, while any of its
    /// workers still serves.
    pub(super) fn fallback_generation(&self) -> Option<u64> {
        let prev = self.previous.as_ref()?;
        let serving = self
            .workers
            .count(|w| w.generation == prev.generation && w.running())
            > 0;
        serving.then_some(prev.generation)
    }
}
