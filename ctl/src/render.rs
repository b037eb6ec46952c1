//! Human-readable output: aligned tables and key/value lists.

use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use gunicornd_protocol::{
    ConfigReply, HelpReply, ListenersReply, ShowAllReply, StatsReply, UpgradeInfo, WorkerInfo,
    WorkersReply,
};
use serde::Serialize;
use serde_json::Value;

use crate::pool::StatusView;

/// Columns separated by two spaces, each as wide as its widest cell, no
/// trailing blanks.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn write(&self, out: &mut dyn Write, indent: &str) -> io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::from(indent);
            for (i, (cell, width)) in line.iter().zip(&widths).enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                text.push_str(&" ".repeat(width - cell.chars().count()));
            }
            writeln!(out, "{}", text.trim_end())?;
        }
        Ok(())
    }
}

/// `key   value` lines with the values aligned.
pub fn write_pairs(out: &mut dyn Write, pairs: &[(&str, String)]) -> io::Result<()> {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (key, value) in pairs {
        let mut lines = value.lines();
        let first = format!("{key:<width$}  {}", lines.next().unwrap_or(""));
        writeln!(out, "{}", first.trim_end())?;
        for more in lines {
            writeln!(out, "{:<width$}  {more}", "")?;
        }
    }
    Ok(())
}

/// Pretty JSON for `--json`.
pub fn write_json<T: Serialize>(out: &mut dyn Write, value: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

pub fn dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// `3d 4h`, `1h 2m 3s`, `2m 5s`, `42s`, `0.4s`.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".to_string();
    }
    if secs < 10.0 {
        return format!("{:.1}s", secs);
    }
    let total = secs.round() as u64;
    let (d, h, m, s) = (
        total / 86_400,
        total % 86_400 / 3600,
        total % 3600 / 60,
        total % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

/// `1.2s ago`; `-` when the worker never sent one.
pub fn heartbeat(secs: Option<f64>) -> String {
    match secs {
        Some(s) if s.is_finite() && s >= 0.0 => format!("{} ago", duration(s)),
        _ => "-".to_string(),
    }
}

/// KiB → `812 KiB`, `23.4 MiB`, `1.2 GiB`.
pub fn memory(kb: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    let mut value = kb as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{kb} KiB")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// RFC 3339 UTC time of an event timestamp.
pub fn timestamp(unix_secs: f64) -> String {
    match Duration::try_from_secs_f64(unix_secs) {
        Ok(d) => humantime::format_rfc3339_millis(UNIX_EPOCH + d).to_string(),
        Err(_) => format!("{unix_secs}"),
    }
}

pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// What a worker is doing, in one word.
pub fn worker_state(w: &WorkerInfo) -> &'static str {
    if w.aborted {
        "aborted"
    } else if w.retiring == Some(true) {
        "retiring"
    } else if w.booted {
        "booted"
    } else {
        "booting"
    }
}

pub fn status(out: &mut dyn Write, s: &StatusView) -> io::Result<()> {
    let mut workers = format!("{} booted / {} target", s.workers_booted, s.workers_target);
    if s.workers_current != s.workers_booted {
        workers.push_str(&format!(" ({} processes)", s.workers_current));
    }
    let listeners = if s.listeners.is_empty() {
        "-".to_string()
    } else {
        s.listeners
            .iter()
            .map(|l| l.address.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut pairs = vec![
        ("server", s.server.clone()),
        ("master", s.master_pid.to_string()),
        ("uptime", s.uptime.map_or_else(|| "-".to_string(), duration)),
        ("workers", workers),
        ("generation", dash(s.generation)),
        ("listeners", listeners),
    ];
    if let Some(b) = &s.binary {
        let modified = u64::try_from(b.mtime)
            .ok()
            .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
            .map_or_else(
                || b.mtime.to_string(),
                |t| humantime::format_rfc3339_seconds(t).to_string(),
            );
        pairs.push((
            "binary",
            format!("{} (inode {}, modified {modified})", b.path, b.inode),
        ));
        pairs.push(("exec'd", format!("{} ago", duration(b.execed))));
    }
    if let Some(u) = &s.upgrade {
        pairs.push(("upgrade", upgrade_phase(s.master_pid, u)));
    }
    write_pairs(out, &pairs)
}

/// Both masters of an upgrade and where it stands, seen from `master`.
fn upgrade_phase(master: i32, u: &UpgradeInfo) -> String {
    match u.phase.as_str() {
        "starting" => format!(
            "starting: new master {} is booting its workers (old master {master})",
            u.pid
        ),
        "ready" => format!(
            "ready: new master {} serves beside this one (old master {master}); \
             stop this one to hand over",
            u.pid
        ),
        "waiting" => format!(
            "waiting: this is the new master {master}, not yet promoted; old master {} still runs",
            u.pid
        ),
        other => format!("{other}: other master {}", u.pid),
    }
}

pub fn workers(out: &mut dyn Write, reply: &WorkersReply) -> io::Result<()> {
    if reply.workers.is_empty() {
        return writeln!(out, "no workers");
    }
    worker_table(&reply.workers).write(out, "")
}

/// The workers, one per row; a STATUS column (what command workers said
/// with sd_notify's `STATUS=`) only when one of them said something.
fn worker_table(workers: &[WorkerInfo]) -> Table {
    let statuses = workers.iter().any(|w| w.status.is_some());
    // Connections held, idle and busy (request in the app): gunicornd's
    // forked workers report them, gunicorn's and command workers do not.
    let connections = workers.iter().any(|w| w.connections.is_some());
    let mut headers = vec!["PID", "AGE", "GEN", "STATE", "REQUESTS"];
    if connections {
        headers.extend(["CONNS", "IDLE", "BUSY"]);
    }
    headers.extend(["LAST BEAT", "RSS"]);
    if statuses {
        headers.push("STATUS");
    }
    let mut table = Table::new(&headers);
    for w in workers {
        let mut row = vec![
            w.pid.to_string(),
            w.age.to_string(),
            dash(w.generation),
            worker_state(w).to_string(),
            dash(w.requests),
        ];
        if connections {
            let idle = w
                .connections
                .zip(w.in_flight)
                .map(|(held, busy)| held.saturating_sub(busy));
            row.extend([dash(w.connections), dash(idle), dash(w.in_flight)]);
        }
        row.extend([
            heartbeat(w.last_heartbeat),
            w.rss_kb.map_or_else(|| "-".to_string(), memory),
        ]);
        if statuses {
            row.push(dash(w.status.as_deref()));
        }
        table.row(row);
    }
    table
}

pub fn stats(out: &mut dyn Write, s: &StatsReply) -> io::Result<()> {
    let mut pairs = vec![
        ("uptime", s.uptime.map_or_else(|| "-".to_string(), duration)),
        ("master", s.pid.to_string()),
        ("workers current", s.workers_current.to_string()),
        ("workers target", s.workers_target.to_string()),
        ("workers booted", dash(s.workers_booted)),
        ("workers spawned", s.workers_spawned.to_string()),
        ("workers killed", s.workers_killed.to_string()),
        ("reloads", s.reloads.to_string()),
        ("generation", dash(s.generation)),
    ];
    if let Some(pid) = s.dirty_arbiter_pid {
        pairs.push(("dirty arbiter", pid.to_string()));
    }
    write_pairs(out, &pairs)
}

pub fn listeners(out: &mut dyn Write, reply: &ListenersReply) -> io::Result<()> {
    if reply.listeners.is_empty() {
        return writeln!(out, "no listeners");
    }
    let mut table = Table::new(&["ADDRESS", "TYPE", "FD", "SCHEME"]);
    for l in &reply.listeners {
        let scheme = if l.tls { "https" } else { "http" };
        table.row(vec![
            l.address.clone(),
            l.kind.clone(),
            l.fd.to_string(),
            scheme.to_string(),
        ]);
    }
    table.write(out, "")
}

pub fn config(out: &mut dyn Write, reply: &ConfigReply) -> io::Result<()> {
    let pairs: Vec<(&str, String)> = reply
        .0
        .iter()
        .map(|(k, v)| (k.as_str(), config_value(v)))
        .collect();
    write_pairs(out, &pairs)
}

fn config_value(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".to_string(),
        Value::Array(items) => items
            .iter()
            .map(config_value)
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

pub fn help(out: &mut dyn Write, reply: &HelpReply) -> io::Result<()> {
    let pairs: Vec<(&str, String)> = reply
        .commands
        .iter()
        .map(|(c, d)| (c.as_str(), d.clone()))
        .collect();
    write_pairs(out, &pairs)
}

pub fn show_all(out: &mut dyn Write, reply: &ShowAllReply) -> io::Result<()> {
    writeln!(out, "master {}", reply.arbiter.pid)?;
    writeln!(out, "workers ({})", reply.web_worker_count)?;
    if !reply.web_workers.is_empty() {
        worker_table(&reply.web_workers).write(out, "  ")?;
    }
    if let Some(dirty) = &reply.dirty_arbiter {
        writeln!(
            out,
            "dirty arbiter {}",
            dirty.get("pid").map_or("?".to_string(), Value::to_string)
        )?;
        writeln!(out, "dirty workers ({})", reply.dirty_worker_count)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn tables_are_aligned_without_trailing_blanks() {
        let mut t = Table::new(&["PID", "STATE", "X"]);
        t.row(vec!["12345".into(), "ok".into(), "".into()]);
        t.row(vec!["7".into(), "retiring".into(), "1".into()]);
        assert_eq!(
            text(|o| t.write(o, "")),
            "PID    STATE     X\n12345  ok\n7      retiring  1\n"
        );
    }

    #[test]
    fn pairs_align_and_continue_multiline_values() {
        let out = text(|o| write_pairs(o, &[("a", "1".into()), ("long key", "x\ny".into())]));
        assert_eq!(out, "a         1\nlong key  x\n          y\n");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration(0.42), "0.4s");
        assert_eq!(duration(42.0), "42s");
        assert_eq!(duration(125.0), "2m 5s");
        assert_eq!(duration(3723.0), "1h 2m 3s");
        assert_eq!(duration(90061.0), "1d 1h 1m");
        assert_eq!(duration(-1.0), "-");
        assert_eq!(heartbeat(Some(1.25)), "1.2s ago");
        assert_eq!(heartbeat(Some(-1.7e9)), "-");
        assert_eq!(heartbeat(None), "-");
        assert_eq!(memory(812), "812 KiB");
        assert_eq!(memory(23_962), "23.4 MiB");
        assert_eq!(memory(3 * 1024 * 1024), "3.0 GiB");
        assert_eq!(timestamp(1_767_225_600.25), "2026-01-01T00:00:00.250Z");
    }

    #[test]
    fn workers_table_shows_dashes_for_missing_fields() {
        let w = WorkerInfo {
            pid: 101,
            age: 1,
            booted: true,
            aborted: false,
            last_heartbeat: Some(0.3),
            kind: None,
            generation: None,
            requests: None,
            connections: None,
            in_flight: None,
            rss_kb: Some(2048),
            uptime: None,
            retiring: None,
            status: None,
        };
        let out = text(|o| workers(o, &WorkersReply::new(vec![w.clone()])));
        assert_eq!(
            out,
            "PID  AGE  GEN  STATE   REQUESTS  LAST BEAT  RSS\n101  1    -    booted  -         0.3s ago   2.0 MiB\n"
        );
        // A command worker's STATUS= gets a column, with a dash for the
        // workers that said nothing.
        let said = WorkerInfo {
            pid: 102,
            status: Some("serving 3 clients".into()),
            last_heartbeat: None,
            ..w.clone()
        };
        let out = text(|o| workers(o, &WorkersReply::new(vec![w.clone(), said])));
        assert_eq!(
            out,
            "PID  AGE  GEN  STATE   REQUESTS  LAST BEAT  RSS      STATUS\n\
             101  1    -    booted  -         0.3s ago   2.0 MiB  -\n\
             102  1    -    booted  -         -          2.0 MiB  serving 3 clients\n"
        );
        // Connections held: how many are idle and how many busy.
        let serving = WorkerInfo {
            connections: Some(5),
            in_flight: Some(2),
            ..w.clone()
        };
        let out = text(|o| workers(o, &WorkersReply::new(vec![serving, w])));
        assert_eq!(
            out,
            "PID  AGE  GEN  STATE   REQUESTS  CONNS  IDLE  BUSY  LAST BEAT  RSS\n\
             101  1    -    booted  -         5      3     2     0.3s ago   2.0 MiB\n\
             101  1    -    booted  -         -      -     -     0.3s ago   2.0 MiB\n"
        );
    }
}
