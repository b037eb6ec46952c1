//! `builtin:debug[?OPTIONS]`: the echo app plus fault injection, for testing
//! supervisors and load balancers (worker timeouts, boot failures, slow
//! requests). Not meant to serve real traffic.
//!
//! Load-time options, in the spec's query string (`builtin:debug?boot_sleep=2`):
//!
//! - `boot_sleep=SECONDS` — `load` sleeps first: the worker hangs while booting.
//! - `boot_exit=CODE` — `load` logs an error and exits the process with CODE
//!   (0–255), as a worker that dies while booting.
//! - `fail_load=1` — `load` fails with an [`AppLoadError`]: the worker exits 4.
//!
//! `boot_sleep` applies before the other two; `boot_exit` and `fail_load`
//! cannot be combined. Unknown options are a load error.
//!
//! Per request, the query parameter `sleep=SECONDS` delays the answer (a
//! worker stuck in a request, for heartbeat timeouts). An invalid value gets
//! a 400. `panic=1` makes the worker panic in the middle of the request (a
//! bug in the server: the worker must die alone, logged).

use std::io;
use std::time::Duration;

use super::echo::echo;
use super::{App, AppLoadError, Request, ResponseSink};

/// The echo app with fault injection; see the module documentation.
#[derive(Debug)]
pub struct DebugApp {
    _private: (),
}

/// What the spec's query string asked for at load time.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DebugOptions {
    boot_sleep: Option<Duration>,
    boot_exit: Option<i32>,
    fail_load: bool,
}

impl DebugApp {
    /// Load with the options parsed from the spec.
    ///
    /// May sleep, fail, or end the process, as the options ask.
    pub fn load(boot: &DebugOptions) -> Result<Self, AppLoadError> {
        if let Some(pause) = boot.boot_sleep {
            tracing::info!(
                "builtin:debug: sleeping {:.3}s while booting as requested",
                pause.as_secs_f64()
            );
            std::thread::sleep(pause);
        }
        if boot.fail_load {
            return Err(AppLoadError(
                "builtin:debug: failing to load as requested (fail_load=1)".into(),
            ));
        }
        if let Some(code) = boot.boot_exit {
            tracing::error!(
                "builtin:debug: exiting with code {code} while booting as requested (boot_exit)"
            );
            std::process::exit(code);
        }
        Ok(DebugApp { _private: () })
    }
}

impl App for DebugApp {
    fn call(&mut self, req: Request<'_>, resp: &mut dyn ResponseSink) -> io::Result<()> {
        match request_sleep(&req.head.query) {
            Ok(Some(pause)) => std::thread::sleep(pause),
            Ok(None) => {}
            Err(message) => return bad_request(resp, &message),
        }
        if form_urlencoded::parse(req.head.query.as_bytes()).any(|(n, v)| n == "panic" && v == "1")
        {
            panic!("builtin:debug: panicking as requested (panic=1)");
        }
        echo(req, resp)
    }

    fn for_thread(&self, _threads: usize) -> io::Result<Box<dyn App + Send>> {
        Ok(Box::new(DebugApp { _private: () }))
    }
}

impl DebugOptions {
    /// Parse the spec's query string (without `?`; may be empty). Part of
    /// the app spec grammar ([`super::AppSpec`]).
    pub fn parse(query: &str) -> Result<DebugOptions, String> {
        parse_boot_options(query).map_err(|e| format!("builtin:debug: {e}"))
    }
}

fn parse_boot_options(query: &str) -> Result<DebugOptions, String> {
    let mut boot = DebugOptions::default();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "boot_sleep" => boot.boot_sleep = Some(parse_seconds("boot_sleep", &value)?),
            "boot_exit" => boot.boot_exit = Some(parse_exit_code(&value)?),
            "fail_load" => boot.fail_load = parse_flag("fail_load", &value)?,
            _ => {
                return Err(format!(
                    "unknown option '{name}': expected boot_sleep=SECONDS, boot_exit=CODE or fail_load=1"
                ))
            }
        }
    }
    if boot.fail_load && boot.boot_exit.is_some() {
        return Err("boot_exit and fail_load cannot be combined".into());
    }
    Ok(boot)
}

/// The per-request `sleep=SECONDS`, if present.
fn request_sleep(query: &str) -> Result<Option<Duration>, String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "sleep")
        .map(|(_, value)| parse_seconds("sleep", &value))
        .transpose()
}

fn parse_seconds(option: &str, value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| {
            format!("invalid {option}={value}: expected a non-negative number of seconds")
        })
}

fn parse_exit_code(value: &str) -> Result<i32, String> {
    value
        .parse::<u8>()
        .map(i32::from)
        .map_err(|_| format!("invalid boot_exit={value}: expected an exit code 0-255"))
}

fn parse_flag(option: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!("invalid {option}={value}: expected 1 or 0")),
    }
}

fn bad_request(resp: &mut dyn ResponseSink, message: &str) -> io::Result<()> {
    let body = format!("{message}\n");
    resp.start(
        400,
        &[
            ("Content-Type".to_string(), "text/plain".to_string()),
            ("Content-Length".to_string(), body.len().to_string()),
        ],
    )?;
    resp.write(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::app::testing::{call, head};

    #[test]
    fn parses_boot_options() {
        assert_eq!(parse_boot_options(""), Ok(DebugOptions::default()));
        assert_eq!(
            parse_boot_options("boot_sleep=1.5&boot_exit=3"),
            Ok(DebugOptions {
                boot_sleep: Some(Duration::from_millis(1500)),
                boot_exit: Some(3),
                fail_load: false
            })
        );
        assert_eq!(
            parse_boot_options("fail_load=1").map(|b| b.fail_load),
            Ok(true)
        );
        assert_eq!(
            parse_boot_options("fail_load=0").map(|b| b.fail_load),
            Ok(false)
        );
    }

    #[test]
    fn rejects_bad_boot_options() {
        let err = DebugOptions::parse("bogus=1").unwrap_err();
        assert_eq!(
            err,
            "builtin:debug: unknown option 'bogus': expected boot_sleep=SECONDS, boot_exit=CODE or fail_load=1"
        );
        for bad in [
            "boot_sleep=-1",
            "boot_sleep=abc",
            "boot_sleep=inf",
            "boot_exit=256",
            "boot_exit=x",
            "fail_load=yes",
        ] {
            let name = bad.split('=').next().unwrap();
            let err = DebugOptions::parse(bad).unwrap_err();
            assert!(err.contains(&format!("invalid {bad}")), "{bad}: {err}");
            assert!(err.contains(name));
        }
        assert!(DebugOptions::parse("fail_load=1&boot_exit=3")
            .unwrap_err()
            .contains("cannot be combined"));
    }

    #[test]
    fn fail_load_is_a_load_error() {
        let err = DebugApp::load(&DebugOptions::parse("fail_load=1").unwrap()).unwrap_err();
        assert!(err.0.contains("fail_load=1"), "{err}");
        let spec = crate::app::AppSpec::parse("builtin:debug?fail_load=1").unwrap();
        assert!(spec.load(&Default::default()).is_err());
    }

    #[test]
    fn boot_sleep_delays_load() {
        let started = Instant::now();
        DebugApp::load(&DebugOptions::parse("boot_sleep=0.05").unwrap()).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn echoes_and_sleeps_per_request() {
        let mut app = DebugApp::load(&DebugOptions::default()).unwrap();
        let started = Instant::now();
        let sent = call(&mut app, &head("GET", "/slow?sleep=0.05&x=1", &[]), b"body");
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(sent.status, Some(200));
        let doc: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
        assert_eq!(doc["query"], "sleep=0.05&x=1");
        assert_eq!(doc["body"], "body");
    }

    #[test]
    fn bad_sleep_is_400() {
        let mut app = DebugApp::load(&DebugOptions::default()).unwrap();
        let sent = call(&mut app, &head("GET", "/?sleep=soon", &[]), b"");
        assert_eq!(sent.status, Some(400));
        assert_eq!(
            sent.body_str(),
            "invalid sleep=soon: expected a non-negative number of seconds\n"
        );
    }
}
