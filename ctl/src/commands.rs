//! One function per subcommand: send the requests, print the outcome.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use gunicornd_protocol::{
    Arg, ConfigReply, ControlCommand, HelpReply, ListenersReply, ReloadReply, Request, ScaleReply,
    ScaleTarget, ShowAllReply, ShowTarget, ShutdownMode, ShutdownReply, StatsReply, StatusReply,
    StopWorkersReply, WorkerAddReply, WorkerKillReply, WorkerRemoveReply, WorkersReply,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::WaitOpts;
use crate::client::{Client, Flavor};
use crate::error::CtlError;
use crate::pool::{normalize_workers, Pool, StatusView};
use crate::render;
use crate::wait::{pool_failure, reload_failure, Check, Waiter};

/// Where to print, and how.
pub struct Output<'a> {
    pub out: &'a mut dyn Write,
    pub json: bool,
}

impl Output<'_> {
    /// `--json`: the value; otherwise the human line(s) from `text`.
    fn print<T: Serialize>(
        &mut self,
        value: &T,
        text: impl FnOnce() -> String,
    ) -> Result<(), CtlError> {
        if self.json {
            render::write_json(self.out, value)?;
        } else {
            writeln!(self.out, "{}", text())?;
        }
        Ok(())
    }

    /// `--json`: the server's data untouched; otherwise decode it and render.
    fn show<T: DeserializeOwned>(
        &mut self,
        command: &ControlCommand,
        data: Value,
        render: impl FnOnce(&mut dyn Write, &T) -> std::io::Result<()>,
    ) -> Result<(), CtlError> {
        if self.json {
            render::write_json(self.out, &data)?;
            return Ok(());
        }
        let reply: T = serde_json::from_value(data)
            .map_err(|e| CtlError::Failed(format!("unexpected reply to '{command}': {e}")))?;
        render(self.out, &reply)?;
        Ok(())
    }
}

pub fn status(path: &Path, o: &mut Output) -> Result<(), CtlError> {
    let view = StatusView::fetch(&mut Client::connect(path)?)?;
    if o.json {
        render::write_json(o.out, &view)?;
    } else {
        render::status(o.out, &view)?;
    }
    Ok(())
}

pub fn workers(path: &Path, o: &mut Output) -> Result<(), CtlError> {
    let pool = Pool::fetch(&mut Client::connect(path)?)?;
    let reply = WorkersReply::new(pool.workers);
    if o.json {
        render::write_json(o.out, &reply)?;
    } else {
        render::workers(o.out, &reply)?;
    }
    Ok(())
}

/// `stats`, `listeners`, `config`: one `show` each.
pub fn show(path: &Path, target: ShowTarget, o: &mut Output) -> Result<(), CtlError> {
    let command = ControlCommand::Show(target);
    let data = Client::connect(path)?.call(&command)?;
    match target {
        ShowTarget::Stats => o.show::<StatsReply>(&command, data, render::stats),
        ShowTarget::Listeners => o.show::<ListenersReply>(&command, data, render::listeners),
        ShowTarget::Config => o.show::<ConfigReply>(&command, data, render::config),
        ShowTarget::All => o.show::<ShowAllReply>(&command, data, render::show_all),
        ShowTarget::Workers => o.show::<WorkersReply>(&command, data, render::workers),
        ShowTarget::Dirty => o.show::<Value>(&command, data, |out, v| render::write_json(out, v)),
    }
}

pub fn scale(
    path: &Path,
    target: ScaleTarget,
    wait: WaitOpts,
    o: &mut Output,
) -> Result<(), CtlError> {
    let mut client = Client::connect(path)?;
    let mut waiter = if wait.wait {
        Some(Waiter::start(&mut client, wait.timeout)?)
    } else {
        None
    };
    let change = match client.flavor()? {
        Flavor::Gunicornd(_) => client.call_as::<ScaleReply>(&ControlCommand::Scale(target))?,
        Flavor::Gunicorn => scale_with_worker_commands(&mut client, target)?,
    };
    let Some(waiter) = &mut waiter else {
        return o.print(&change, || {
            format!("workers target {} -> {}", change.previous, change.total)
        });
    };
    let total = change.total;
    let pool = waiter.until(
        &mut client,
        &format!("{total} booted workers"),
        pool_failure,
        |c| {
            let pool = Pool::fetch(c)?;
            let serving = pool.serving();
            Ok(if serving == total && pool.workers.len() == total {
                Check::Done(pool)
            } else {
                Check::Pending(format!("{serving} booted, {} running", pool.workers.len()))
            })
        },
    )?;
    let elapsed = waiter.elapsed().as_secs_f64();
    let result = json!({"previous": change.previous, "total": total, "workers": pool.pids(), "elapsed": elapsed});
    o.print(&result, || {
        format!(
            "workers target {} -> {total}: {total} booted in {}",
            change.previous,
            render::duration(elapsed)
        )
    })
}

/// gunicorn has no `scale`: turn it into `worker add/remove N` against the
/// current target.
fn scale_with_worker_commands(
    client: &mut Client,
    target: ScaleTarget,
) -> Result<ScaleReply, CtlError> {
    let stats: StatsReply = client.call_as(&ControlCommand::Show(ShowTarget::Stats))?;
    let previous = stats.workers_target;
    let total = target.apply(previous);
    let count = |n: usize| {
        u32::try_from(n)
            .map_err(|_| CtlError::Failed(format!("cannot change the worker count by {n}")))
    };
    if total > previous {
        let r: WorkerAddReply =
            client.call_as(&ControlCommand::WorkerAdd(count(total - previous)?))?;
        Ok(ScaleReply {
            previous: r.previous,
            total: r.total,
        })
    } else if total < previous {
        let r: WorkerRemoveReply =
            client.call_as(&ControlCommand::WorkerRemove(count(previous - total)?))?;
        Ok(ScaleReply {
            previous: r.previous,
            total: r.total,
        })
    } else {
        Ok(ScaleReply { previous, total })
    }
}

pub fn reload(path: &Path, wait: WaitOpts, o: &mut Output) -> Result<(), CtlError> {
    let mut client = Client::connect(path)?;
    if !wait.wait {
        let reply: ReloadReply = client.call_as(&ControlCommand::Reload)?;
        return o.print(&reply, || match reply.generation {
            Some(g) => format!("reloading (new generation {g})"),
            None => "reloading".to_string(),
        });
    }
    let before = Pool::fetch(&mut client)?;
    let old: HashSet<i32> = before.pids().into_iter().collect();
    let mut waiter = Waiter::start(&mut client, wait.timeout)?;
    let reply: ReloadReply = client.call_as(&ControlCommand::Reload)?;
    let generation = reply
        .generation
        .or_else(|| before.newest_generation().map(|g| g + 1));
    let is_old = |w: &gunicornd_protocol::WorkerInfo| {
        old.contains(&w.pid)
            || matches!((w.generation, generation), (Some(g), Some(new)) if g < new)
    };
    let pool = waiter.until(&mut client, "the reload", reload_failure, |c| {
        let pool = Pool::fetch(c)?;
        let old_left = pool.workers.iter().filter(|w| is_old(w)).count();
        let (serving, target) = (pool.serving(), pool.target());
        Ok(
            if old_left == 0 && serving == target && pool.workers.len() == target {
                Check::Done(pool)
            } else {
                Check::Pending(format!(
                    "{serving} of {target} workers booted, {old_left} old worker(s) still running"
                ))
            },
        )
    })?;
    let elapsed = waiter.elapsed().as_secs_f64();
    let mut retired: Vec<i32> = old.into_iter().collect();
    retired.sort_unstable();
    let result = json!({
        "status": "reloaded",
        "generation": generation,
        "workers": pool.pids(),
        "retired": retired,
        "elapsed": elapsed,
    });
    o.print(&result, || {
        let generation = generation
            .map(|g| format!(" (generation {g})"))
            .unwrap_or_default();
        format!(
            "reloaded in {}: {} new workers booted{generation}, {} old workers retired",
            render::duration(elapsed),
            pool.workers.len(),
            retired.len()
        )
    })
}

pub fn reopen(path: &Path, o: &mut Output) -> Result<(), CtlError> {
    let reply: StatusReply = Client::connect(path)?.call_as(&ControlCommand::Reopen)?;
    o.print(&reply, || "reopening log files".to_string())
}

pub fn kill(path: &Path, pid: i32, o: &mut Output) -> Result<(), CtlError> {
    let reply: WorkerKillReply =
        Client::connect(path)?.call_as(&ControlCommand::WorkerKill(pid))?;
    // gunicorn reports an unknown pid inside an `ok` reply.
    if !reply.success {
        let why = reply
            .error
            .unwrap_or_else(|| "the daemon did not say why".to_string());
        return Err(CtlError::Failed(format!("cannot kill worker {pid}: {why}")));
    }
    o.print(&reply, || format!("worker {pid} is stopping"))
}

pub fn stop(path: &Path, quick: bool, o: &mut Output) -> Result<(), CtlError> {
    let mode = if quick {
        ShutdownMode::Quick
    } else {
        ShutdownMode::Graceful
    };
    let reply: ShutdownReply = Client::connect(path)?.call_as(&ControlCommand::Shutdown(mode))?;
    o.print(&reply, || format!("shutting down ({})", reply.mode))
}

pub fn stop_workers(path: &Path, o: &mut Output) -> Result<(), CtlError> {
    let reply: StopWorkersReply = Client::connect(path)?.call_as(&ControlCommand::StopWorkers)?;
    o.print(&reply, || {
        format!(
            "stopping {} worker(s); the master keeps running",
            reply.workers
        )
    })
}

/// `raw COMMAND [ARG]...`: sent as is; a reply to a command we know is
/// rendered like the matching subcommand, anything else printed as JSON.
pub fn raw(path: &Path, words: &[String], o: &mut Output) -> Result<(), CtlError> {
    let Some((command, rest)) = words.split_first() else {
        return Err(CtlError::Failed("raw: no command given".to_string()));
    };
    let request = Request {
        id: 0,
        command: command.clone(),
        args: rest.iter().map(|a| Arg::Str(a.clone())).collect(),
    };
    let mut client = Client::connect(path)?;
    let data = client.request(&request.command, request.args.clone())?;
    if data.get("success") == Some(&Value::Bool(false)) {
        let why = data
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("the daemon did not say why");
        return Err(CtlError::Failed(format!(
            "'{}' failed: {why}",
            words.join(" ")
        )));
    }
    if o.json {
        render::write_json(o.out, &data)?;
        return Ok(());
    }
    let rendered = match ControlCommand::parse(&request) {
        Ok(ControlCommand::Show(ShowTarget::Workers)) => {
            let mut reply: Option<WorkersReply> = serde_json::from_value(data.clone()).ok();
            if let Some(reply) = &mut reply {
                normalize_workers(&client.flavor()?, &mut reply.workers);
            }
            reply.map(|r| render::workers(o.out, &r))
        }
        Ok(ControlCommand::Show(ShowTarget::All)) => {
            let mut reply: Option<ShowAllReply> = serde_json::from_value(data.clone()).ok();
            if let Some(reply) = &mut reply {
                normalize_workers(&client.flavor()?, &mut reply.web_workers);
            }
            reply.map(|r| render::show_all(o.out, &r))
        }
        Ok(ControlCommand::Show(ShowTarget::Stats)) => {
            render_as::<StatsReply>(o.out, &data, render::stats)
        }
        Ok(ControlCommand::Show(ShowTarget::Listeners)) => {
            render_as::<ListenersReply>(o.out, &data, render::listeners)
        }
        Ok(ControlCommand::Show(ShowTarget::Config)) => {
            render_as::<ConfigReply>(o.out, &data, render::config)
        }
        Ok(ControlCommand::Help) => render_as::<HelpReply>(o.out, &data, render::help),
        _ => None,
    };
    match rendered {
        Some(result) => result?,
        None => render::write_json(o.out, &data)?,
    }
    Ok(())
}

/// Renders `data` as `T`, or `None` if it does not have that shape.
fn render_as<T: DeserializeOwned>(
    out: &mut dyn Write,
    data: &Value,
    render: impl FnOnce(&mut dyn Write, &T) -> std::io::Result<()>,
) -> Option<std::io::Result<()>> {
    let reply: T = serde_json::from_value(data.clone()).ok()?;
    Some(render(out, &reply))
}
