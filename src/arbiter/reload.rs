//! Reload (HUP), the part that does I/O: load the new configuration and
//! bind its new addresses before anything changes, then let the plan roll a
//! new generation in ([`super::Pool::begin_reload`]); and, when that
//! generation cannot boot, restore what the previous one ran with.
//!
//! Rules that keep a reload safe:
//! - everything that can fail (loading the configuration, binding new
//!   addresses) happens before anything is changed;
//! - the previous generation is the last one that fully served: a HUP during
//!   a reload does not replace it, so a failure always falls back to it;
//! - sockets a reload no longer binds are parked in the master until the
//!   reload completes (the old workers still accept on them, and a rollback
//!   takes them back).

use super::{control_access, limits, Arbiter, Outcome};
use crate::config::Settings;
use crate::listeners::{self, Listener, ListenerSpec};
use crate::worker::kind::WorkerKind;

impl Arbiter {
    /// Re-read the configuration and roll a new generation of workers in;
    /// the old ones retire as the new ones boot (see `Pool::manage`).
    pub(super) fn reload(&mut self) -> Outcome {
        tracing::info!("Hang up: {}", self.name);
        if let Err(why) = self.pool.start_reload() {
            return Outcome::Refused(why);
        }
        // RELOADING=1 goes out before the work it announces.
        self.execute();
        match self.load_and_apply() {
            Ok((new, kind)) => {
                let configured = (self.settings.workers, new.workers);
                let old = std::mem::replace(&mut self.settings, new);
                let old_kind = std::mem::replace(&mut self.kind, kind);
                if self.previous_settings.is_none() {
                    self.previous_settings = Some(old);
                    self.previous_kind = Some(old_kind);
                }
                self.pool.begin_reload(configured, limits(&self.settings))
            }
            Err(e) => self.pool.reload_failed(&e),
        }
    }

    /// Load the configuration and apply what belongs to the master alone
    /// (sockets, log settings, hooks); nothing has changed when it fails.
    /// Returns the settings and the worker kind they ask for.
    fn load_and_apply(&mut self) -> Result<(Settings, WorkerKind), String> {
        let new = match self.loader.load() {
            Ok(crate::config::Startup::Run(s)) => s,
            Ok(_) => return Err("the configuration asks to print or check it, not to run".into()),
            Err(e) => return Err(e.to_string()),
        };
        let kind = WorkerKind::from_settings(&new)?;
        if matches!(kind, WorkerKind::Command(_)) {
            // Kept once made: a rollback may bring command workers back.
            self.ensure_notify_socket(&new)?;
        }
        super::log_worker_kind(&kind, &new);
        if new.binds != self.settings.binds && self.listener_source.rebindable() {
            self.rebind(&new)?;
        }
        if new.tls != self.settings.tls && new.tls.any() {
            // The files were read and checked by the load: new workers serve
            // them; a broken renewal failed the load and changed nothing.
            tracing::info!("Reload: new TLS certificate; new workers serve it.");
        }
        if let Err(e) = crate::log::reconfigure(&crate::log::LogConfig::from_settings(&new)) {
            tracing::error!(
                "Reload: cannot apply the new log settings ({e}); keeping the previous ones."
            );
        }
        if let Err(e) = crate::log::reopen() {
            tracing::error!("Cannot reopen log files: {e}");
        }
        self.hooks.set_commands(&new.hooks);
        if let Some(ctl) = self.control.as_mut() {
            ctl.set_access(control_access(&new));
        }
        Ok((new, kind))
    }

    /// Make the listeners match `settings.binds`: keep the sockets of
    /// addresses that stay (rebinding a bound address would fail), bind only
    /// new ones, and park the ones no longer wanted until the reload is over.
    /// Binding is all or nothing.
    fn rebind(&mut self, settings: &Settings) -> Result<(), String> {
        enum Source {
            Current(usize),
            Parked(usize),
            Fresh(usize),
        }
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
                .parked_listeners
                .iter()
                .position(|l| listeners::serves(l, bind))
            {
                plan.push(Source::Parked(i));
            } else {
                let one = ListenerSpec::new(settings, std::slice::from_ref(bind));
                let mut bound = listeners::create_all(&one, &[], 1)?;
                listeners::set_all_nonblocking(&bound)?;
                plan.push(Source::Fresh(fresh.len()));
                fresh.append(&mut bound);
            }
        }
        // Infallible from here: move every socket to where it belongs.
        let mut current: Vec<Option<Listener>> = self.listeners.drain(..).map(Some).collect();
        let mut parked: Vec<Option<Listener>> = self.parked_listeners.drain(..).map(Some).collect();
        let mut fresh: Vec<Option<Listener>> = fresh.into_iter().map(Some).collect();
        for source in plan {
            let taken = match source {
                Source::Current(i) => current[i].take(),
                Source::Parked(i) => parked[i].take(),
                Source::Fresh(i) => fresh[i].take(),
            };
            self.listeners.extend(taken);
        }
        self.parked_listeners = parked.into_iter().chain(current).flatten().collect();
        listeners::log_listening(&self.listeners, self.pid, &settings.tls);
        Ok(())
    }

    /// The reload is over: parked sockets can go (their files too, unless a
    /// listener still has the path).
    pub(super) fn close_parked_listeners(&mut self) {
        let in_use: Vec<_> = self.listeners.iter().map(|l| l.addr().clone()).collect();
        for l in self.parked_listeners.drain(..) {
            let unlink = !in_use.contains(l.addr());
            l.close(unlink);
        }
    }

    /// A failed reload: the settings, hooks, log settings and sockets of
    /// the generation that served before it come back (the plan restores
    /// its worker count and generation).
    pub(super) fn restore_previous(&mut self) {
        let Some(prev) = self.previous_settings.take() else {
            return;
        };
        if let Some(kind) = self.previous_kind.take() {
            self.kind = kind;
        }
        if prev.binds != self.settings.binds && self.listener_source.rebindable() {
            if let Err(e) = self.rebind(&prev) {
                tracing::error!("Cannot restore the previous listeners: {e}");
            }
        }
        self.close_parked_listeners();
        self.hooks.set_commands(&prev.hooks);
        if let Some(ctl) = self.control.as_mut() {
            ctl.set_access(control_access(&prev));
        }
        self.settings = prev;
        if let Err(e) =
            crate::log::reconfigure(&crate::log::LogConfig::from_settings(&self.settings))
        {
            tracing::error!("Cannot restore the previous log settings: {e}");
        }
    }
}
