//! The error log: a tracing layer writing gunicorn's line format,
//! `[2026-11-22 01:57:18 +0000] [8981] [INFO] message`.

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::localtime::LocalTime;
use super::state::Shared;

/// The boolean field that marks an ERROR event as CRITICAL (set by the
/// `critical!` macro).
pub(crate) const CRITICAL_FIELD: &str = "critical";

/// The integer field that names the process a line speaks for, in place of
/// the one writing it (set by [`super::worker_output`]: a command worker's
/// output is written by the master, with the worker's pid).
pub(crate) const WORKER_PID_FIELD: &str = "worker_pid";

/// Formats every event that passes the level filter and writes it to the
/// error log target in [`Shared`].
pub(crate) struct ErrorLogLayer {
    shared: Arc<Shared>,
}

impl ErrorLogLayer {
    pub fn new(shared: Arc<Shared>) -> Self {
        ErrorLogLayer { shared }
    }

    fn emit(&self, event: &Event<'_>, bufs: &mut Buffers) {
        bufs.message.clear();
        bufs.fields.clear();
        let mut visitor = FieldVisitor {
            message: &mut bufs.message,
            fields: &mut bufs.fields,
            critical: false,
            pid: None,
        };
        event.record(&mut visitor);
        let level = *event.metadata().level();
        let critical = visitor.critical && level == Level::ERROR;
        let pid = visitor.pid.unwrap_or_else(std::process::id);
        if self.shared.critical_only() && !critical {
            return;
        }
        bufs.line.clear();
        let name = level_name(level, critical);
        format_line(
            &mut bufs.line,
            &LocalTime::now(),
            pid,
            name,
            &bufs.message,
            &bufs.fields,
        );
        self.shared.write_error(bufs.line.as_bytes());
    }
}

impl<S: Subscriber> Layer<S> for ErrorLogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        // Formatting runs user Display impls, which may log themselves: the
        // nested event gets fresh buffers instead of a double borrow.
        BUFFERS.with(|cell| match cell.try_borrow_mut() {
            Ok(mut bufs) => self.emit(event, &mut bufs),
            Err(_) => self.emit(event, &mut Buffers::default()),
        });
    }
}

/// Per-thread scratch space so a log line costs no allocation once warm.
#[derive(Default)]
struct Buffers {
    message: String,
    fields: String,
    line: String,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// gunicorn's level names.
pub(crate) fn level_name(level: Level, critical: bool) -> &'static str {
    match level {
        Level::ERROR if critical => "CRITICAL",
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        // gunicorn has nothing finer than DEBUG; trace events only pass a
        // debug filter if someone widens it, and then read as DEBUG.
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// `[stamp] [pid] [LEVEL] message key=value...\n`
pub(crate) fn format_line(
    out: &mut String,
    time: &LocalTime,
    pid: u32,
    level: &str,
    message: &str,
    fields: &str,
) {
    time.write_error_stamp(out);
    let _ = write!(out, " [{pid}] [{level}] {message}");
    out.push_str(if message.is_empty() {
        fields.trim_start()
    } else {
        fields
    });
    out.push('\n');
}

/// Collects the message and the other fields (as ` name=value`, the way
/// tracing's own formatter shows them), and notices the critical marker.
struct FieldVisitor<'a> {
    message: &'a mut String,
    fields: &'a mut String,
    critical: bool,
    /// [`WORKER_PID_FIELD`], if the event has it.
    pid: Option<u32>,
}

impl Visit for FieldVisitor<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match u32::try_from(value) {
            Ok(pid) if field.name() == WORKER_PID_FIELD => self.pid = Some(pid),
            _ => self.record_debug(field, &value),
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == CRITICAL_FIELD {
            self.critical = value;
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let _ = write!(self.fields, " {}={}", field.name(), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Matches `line` against `shape`, where `#` is any ASCII digit, `?` an
    /// ASCII letter, `±` is `+` or `-`, and `*` matches the rest of the line.
    pub(crate) fn has_shape(line: &str, shape: &str) -> bool {
        let mut chars = line.chars();
        for want in shape.chars() {
            if want == '*' {
                return true;
            }
            let Some(got) = chars.next() else {
                return false;
            };
            let ok = match want {
                '#' => got.is_ascii_digit(),
                '?' => got.is_ascii_alphabetic(),
                '±' => got == '+' || got == '-',
                _ => got == want,
            };
            if !ok {
                return false;
            }
        }
        chars.next().is_none()
    }

    #[test]
    fn formats_gunicorn_lines() {
        let t = LocalTime {
            year: 2026,
            month: 11,
            day: 22,
            hour: 1,
            minute: 57,
            second: 18,
            utc_offset: 0,
        };
        let mut out = String::new();
        format_line(&mut out, &t, 8981, "INFO", "Starting gunicorn 26.1.0", "");
        assert_eq!(
            out,
            "[2026-11-22 01:57:18 +0000] [8981] [INFO] Starting gunicorn 26.1.0\n"
        );
        out.clear();
        format_line(
            &mut out,
            &t,
            7,
            "WARNING",
            "Worker exited",
            " pid=12 code=3",
        );
        assert_eq!(
            out,
            "[2026-11-22 01:57:18 +0000] [7] [WARNING] Worker exited pid=12 code=3\n"
        );
        out.clear();
        format_line(&mut out, &t, 7, "DEBUG", "", " pid=12");
        assert_eq!(out, "[2026-11-22 01:57:18 +0000] [7] [DEBUG] pid=12\n");
    }

    #[test]
    fn shape_matcher_can_fail() {
        assert!(has_shape("[12] x", "[##] *"));
        assert!(!has_shape("[1a] x", "[##] *"));
        assert!(!has_shape("[12]", "[##] *"));
        assert!(!has_shape("[12] x", "[##]"));
    }

    #[test]
    fn level_names() {
        assert_eq!(level_name(Level::ERROR, true), "CRITICAL");
        assert_eq!(level_name(Level::ERROR, false), "ERROR");
        assert_eq!(level_name(Level::WARN, false), "WARNING");
        assert_eq!(level_name(Level::INFO, true), "INFO");
        assert_eq!(level_name(Level::DEBUG, false), "DEBUG");
    }
}
