//! Tests of the subscriber and the shared outputs. All but one run a local
//! subscriber (`with_default`) over their own temp files; the global
//! entry points are exercised together in `global_logging`, because the
//! global subscriber can be installed once per process.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use tracing::{debug, error, info, warn};

use super::error_log::tests::has_shape;
use super::*;
use crate::app::testing::{head, tcp_peer};

/// `[YYYY-MM-DD HH:MM:SS ±HHMM] [` — the start of every error line.
const STAMP_SHAPE: &str = "[####-##-## ##:##:## ±####] [";

struct Files {
    _dir: TempDir,
    errors: PathBuf,
    access: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    Files {
        errors: dir.path().join("error.log"),
        access: dir.path().join("access.log"),
        _dir: dir,
    }
}

fn config(files: &Files, level: &str, access: bool) -> LogConfig {
    LogConfig {
        errorlog: files.errors.to_str().unwrap().to_string(),
        loglevel: level.to_string(),
        accesslog: access.then(|| files.access.to_str().unwrap().to_string()),
        access_log_format: DEFAULT_ACCESS_LOG_FORMAT.to_string(),
        owner: (None, None),
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Run `body` with a local subscriber configured by `cfg`.
fn with_local_log(cfg: &LogConfig, body: impl FnOnce(&Shared, &LevelHandle)) {
    let threshold = Threshold::parse(&cfg.loglevel).unwrap();
    let shared = Arc::new(Shared::new(Outputs::open(cfg).unwrap(), threshold));
    let (subscriber, handle) = subscriber(Arc::clone(&shared), threshold.filter);
    tracing::subscriber::with_default(subscriber, || body(&shared, &handle));
}

/// The `[LEVEL] message` tails of the lines in `text`, checking each line's
/// stamp and pid on the way.
fn tails(text: &str) -> Vec<String> {
    let pid_part = format!("[{}] ", std::process::id());
    text.lines()
        .map(|line| {
            assert!(
                has_shape(line, &format!("{STAMP_SHAPE}*")),
                "bad stamp: {line}"
            );
            // The shape is ASCII but for the one-char `±`, which matches one byte.
            let rest = &line[STAMP_SHAPE.chars().count() - 1..];
            rest.strip_prefix(&pid_part)
                .unwrap_or_else(|| panic!("bad pid: {line}"))
                .to_string()
        })
        .collect()
}

#[test]
fn error_lines_have_gunicorns_format() {
    let files = files();
    with_local_log(&config(&files, "debug", false), |_, _| {
        info!("Starting gunicornd {}", "0.1.0");
        warn!(pid = 12, "Worker exited");
        error!(reason = %"boom", "failed");
        debug!("details");
    });
    let text = read(&files.errors);
    let first = text.lines().next().unwrap();
    assert!(has_shape(
        first,
        &format!(
            "{STAMP_SHAPE}{}] [INFO] Starting gunicornd 0.1.0",
            std::process::id()
        )
    ));
    assert_eq!(
        tails(&text),
        [
            "[INFO] Starting gunicornd 0.1.0",
            "[WARNING] Worker exited pid=12",
            "[ERROR] failed reason=boom",
            "[DEBUG] details",
        ]
    );
}

#[test]
fn level_filtering_and_reload() {
    let files = files();
    with_local_log(&config(&files, "warning", false), |_, handle| {
        debug!("hidden debug");
        info!("hidden info");
        warn!("shown warning");
        error!("shown error");
        handle.reload(LevelFilter::DEBUG).unwrap();
        debug!("shown debug");
    });
    assert_eq!(
        tails(&read(&files.errors)),
        [
            "[WARNING] shown warning",
            "[ERROR] shown error",
            "[DEBUG] shown debug"
        ]
    );
}

#[test]
fn critical_is_its_own_level() {
    let files = files();
    with_local_log(&config(&files, "critical", false), |_, _| {
        error!("hidden error");
        warn!("hidden warning");
        crate::critical!("shown critical {}", 1);
        crate::critical!(code = 4, "App failed to load");
    });
    assert_eq!(
        tails(&read(&files.errors)),
        [
            "[CRITICAL] shown critical 1",
            "[CRITICAL] App failed to load code=4"
        ]
    );

    let files = self::files();
    with_local_log(&config(&files, "info", false), |_, _| {
        crate::critical!("critical at info");
        error!("plain error");
    });
    assert_eq!(
        tails(&read(&files.errors)),
        ["[CRITICAL] critical at info", "[ERROR] plain error"]
    );
}

#[test]
fn access_lines_go_to_their_own_file() {
    let files = files();
    with_local_log(&config(&files, "info", true), |shared, _| {
        let peer = tcp_peer("127.0.0.1:40000");
        let head = head("GET", "/?1.5", &[]);
        let rec = AccessRecord {
            peer: &peer,
            head: Some(&head),
            status: 200,
            body_bytes: 2,
            response_headers: &[],
            started: SystemTime::now(),
            duration: Duration::from_millis(1),
        };
        shared.write_access(&rec);
        shared.write_access(&AccessRecord {
            status: 404,
            body_bytes: 0,
            ..rec
        });
    });
    let text = read(&files.access);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        has_shape(lines[0], "127.0.0.1 - - [##/???/####:##:##:## ±####] *"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].ends_with(r#"] "GET /?1.5 HTTP/1.1" 200 2 "-" "-""#),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].ends_with(r#"] "GET /?1.5 HTTP/1.1" 404 0 "-" "-""#),
        "{}",
        lines[1]
    );
    assert_eq!(read(&files.errors), "");
}

#[test]
fn access_log_off_writes_nothing() {
    let files = files();
    with_local_log(&config(&files, "info", false), |shared, _| {
        assert!(!shared.access_on());
        let peer = PeerAddr::Unix;
        shared.write_access(&AccessRecord {
            peer: &peer,
            head: None,
            status: 400,
            body_bytes: 0,
            response_headers: &[],
            started: SystemTime::now(),
            duration: Duration::ZERO,
        });
    });
    assert!(!files.access.exists());
}

#[test]
fn reopen_follows_a_rotated_error_log() {
    let files = files();
    let rotated = files.errors.with_extension("log.1");
    with_local_log(&config(&files, "info", true), |shared, _| {
        info!("before rotation");
        fs::rename(&files.errors, &rotated).unwrap();
        shared.reopen().unwrap();
        info!("after rotation");
    });
    assert_eq!(tails(&read(&rotated)), ["[INFO] before rotation"]);
    assert_eq!(tails(&read(&files.errors)), ["[INFO] after rotation"]);
}

#[test]
fn open_errors_name_the_file() {
    let mut cfg = LogConfig {
        errorlog: "/nonexistent-dir/error.log".into(),
        ..LogConfig::default()
    };
    let err = Outputs::open(&cfg).err().unwrap();
    assert_eq!(
        err,
        "cannot open log file /nonexistent-dir/error.log: No such file or directory (os error 2)"
    );
    cfg.errorlog = "-".into();
    cfg.accesslog = Some("/nonexistent-dir/access.log".into());
    assert!(Outputs::open(&cfg)
        .err()
        .unwrap()
        .contains("/nonexistent-dir/access.log"));
}

#[test]
fn config_from_settings() {
    let cfg = LogConfig::default();
    assert_eq!(cfg.errorlog, "-");
    assert_eq!(cfg.loglevel, "info");
    assert_eq!(cfg.accesslog, None);
    assert_eq!(
        cfg.access_log_format,
        r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#
    );
}

/// The global entry points, in one test because the global subscriber can
/// be installed only once. Other tests may log to the global subscriber
/// from their threads, so assertions look only for this test's messages.
#[test]
fn global_logging() {
    let files = files();
    let before_init_is_harmless = reopen();
    assert_eq!(before_init_is_harmless, Ok(()));
    assert!(reconfigure(&LogConfig::default()).is_err());

    init(&config(&files, "info", false)).unwrap();
    assert_eq!(
        init(&config(&files, "info", false)),
        Err("logging is already initialised".into())
    );
    assert!(!access_enabled());

    // Filtering at info.
    std::thread::spawn(|| {
        info!("global-marker info 1");
        debug!("global-marker debug 1");
        crate::critical!("global-marker critical 1");
    })
    .join()
    .unwrap();
    let mine = |path: &Path| -> Vec<String> {
        tails(&read(path))
            .into_iter()
            .filter(|l| l.contains("global-marker"))
            .collect()
    };
    assert_eq!(
        mine(&files.errors),
        [
            "[INFO] global-marker info 1",
            "[CRITICAL] global-marker critical 1"
        ]
    );

    // HUP: a bad config changes nothing...
    let mut bad = config(&files, "debug", true);
    bad.accesslog = Some("/nonexistent-dir/access.log".into());
    assert!(reconfigure(&bad)
        .unwrap_err()
        .contains("/nonexistent-dir/access.log"));
    assert!(reconfigure(&config(&files, "loud", true))
        .unwrap_err()
        .contains("invalid log level 'loud'"));
    info!("global-marker info 2");
    debug!("global-marker debug 2");
    assert!(!access_enabled());

    // ...a good one switches level and turns the access log on.
    reconfigure(&config(&files, "debug", true)).unwrap();
    debug!("global-marker debug 3");
    assert!(access_enabled());
    let peer = tcp_peer("127.0.0.1:1");
    let head = head("GET", "/global-marker", &[]);
    let rec = AccessRecord {
        peer: &peer,
        head: Some(&head),
        status: 200,
        body_bytes: 5,
        response_headers: &[],
        started: SystemTime::now(),
        duration: Duration::ZERO,
    };
    access(&rec);

    // USR1 after both files were rotated away.
    let rotated_errors = files.errors.with_extension("log.1");
    let rotated_access = files.access.with_extension("log.1");
    fs::rename(&files.errors, &rotated_errors).unwrap();
    fs::rename(&files.access, &rotated_access).unwrap();
    reopen().unwrap();
    warn!("global-marker warning 4");
    access(&AccessRecord { status: 201, ..rec });

    assert_eq!(
        mine(&rotated_errors),
        [
            "[INFO] global-marker info 1",
            "[CRITICAL] global-marker critical 1",
            "[INFO] global-marker info 2",
            "[DEBUG] global-marker debug 3",
        ]
    );
    assert_eq!(mine(&files.errors), ["[WARNING] global-marker warning 4"]);
    let rotated_access = read(&rotated_access);
    let access_now = read(&files.access);
    assert!(
        rotated_access
            .trim_end()
            .ends_with(r#""GET /global-marker HTTP/1.1" 200 5 "-" "-""#),
        "{rotated_access}"
    );
    assert!(
        access_now
            .trim_end()
            .ends_with(r#""GET /global-marker HTTP/1.1" 201 5 "-" "-""#),
        "{access_now}"
    );

    // Back to no access log: access() is a no-op again.
    reconfigure(&config(&files, "info", false)).unwrap();
    assert!(!access_enabled());
    access(&rec);
    assert_eq!(read(&files.access).lines().count(), 1);
}

#[test]
fn a_command_workers_output_carries_its_pid_and_follows_the_level() {
    let files = files();
    with_local_log(&config(&files, "info", false), |_, _| {
        worker_output(4242, "listening on fd 3 {not a format}");
        info!(worker_pid = 7_u64, "a line of worker 7");
    });
    let text = read(&files.errors);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        has_shape(
            lines[0],
            &format!("{STAMP_SHAPE}4242] [INFO] listening on fd 3 {{not a format}}")
        ),
        "{text}"
    );
    assert!(
        lines[1].ends_with("[7] [INFO] a line of worker 7"),
        "{text}"
    );
    // Output is INFO: not written at a higher level.
    let files = self::files();
    with_local_log(&config(&files, "warning", false), |_, _| {
        worker_output(4242, "quiet");
    });
    assert_eq!(read(&files.errors), "");
}
