//! Python WSGI apps (PEP 3333) under the real gunicornd: one small app per
//! behaviour in tests/wsgi/apps.py, served from the test's directory.

#![cfg(feature = "python")]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use gunicornd_test_support::*;

const APPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wsgi/apps.py");

/// gunicornd serving `apps:NAME` (apps.py copied into its directory, which
/// is on the Python path as the working directory).
fn serve(name: &str) -> Server {
    serve_spec(&format!("apps:{name}"))
}

fn serve_spec(spec: &str) -> Server {
    serve_with(spec, &[])
}

/// [`serve_spec`] with more `options` before the app.
fn serve_with(spec: &str, options: &[&str]) -> Server {
    let mut args = vec!["-b", "127.0.0.1:0", "-w", "1", "--no-control-socket"];
    args.extend_from_slice(options);
    args.push(spec);
    let launch = Launch::new(&args);
    fs::copy(APPS, launch.path("apps.py")).unwrap();
    launch.booted(1).start()
}

fn request(srv: &Server, raw: &str) -> Response {
    try_http_request(srv.addr(), raw.as_bytes())
        .unwrap_or_else(|e| panic!("request failed: {e}\n{}", srv.log()))
}

/// The raw bytes of the answer, however it ends.
fn raw_answer(srv: &Server, raw: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn environ_has_every_key_by_gunicorns_rules() {
    let srv = serve("environ");
    let r = request(
        &srv,
        "POST /caf%C3%A9/x?a=1&b=2 HTTP/1.1\r\nHost: example.com:8080\r\n\
         Content-Type: text/plain\r\nContent-Length: 4\r\nX-Dup: one\r\nX-Dup: two\r\n\
         X_Underscore: dropped\r\n\r\nbody",
    );
    assert_eq!(r.status, 200, "{}", srv.log());
    let env = r.json();
    let expect = [
        ("REQUEST_METHOD", "POST"),
        ("SCRIPT_NAME", ""),
        ("PATH_INFO", "/caf\u{c3}\u{a9}/x"),
        ("QUERY_STRING", "a=1&b=2"),
        ("RAW_URI", "/caf%C3%A9/x?a=1&b=2"),
        ("CONTENT_TYPE", "text/plain"),
        ("CONTENT_LENGTH", "4"),
        ("SERVER_NAME", "example.com"),
        ("SERVER_PORT", "8080"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("HTTP_HOST", "example.com:8080"),
        ("HTTP_X_DUP", "one,two"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("wsgi.url_scheme", "http"),
    ];
    for (key, value) in expect {
        assert_eq!(env[key].as_str(), Some(value), "{key}: {env}");
    }
    assert!(env["SERVER_SOFTWARE"]
        .as_str()
        .unwrap()
        .starts_with("gunicornd/"));
    assert!(env["REMOTE_PORT"].as_str().unwrap().parse::<u16>().is_ok());
    assert!(env.get("HTTP_X_UNDERSCORE").is_none(), "{env}");
    assert!(env.get("HTTP_CONTENT_TYPE").is_none(), "{env}");
    assert_eq!(env["wsgi.version"], serde_json::json!([1, 0]));
    assert_eq!(env["wsgi.multithread"], false);
    assert_eq!(env["wsgi.multiprocess"], true);
    assert_eq!(env["wsgi.run_once"], false);
    assert_eq!(env["wsgi.input_terminated"], true);
    assert_eq!(env["has_file_wrapper"], true);
    assert_eq!(env["wsgi.input"], "Input");
    assert_eq!(env["wsgi.errors"], "Errors");
    // Without a Host header: the listener's address.
    let env = request(&srv, "GET / HTTP/1.0\r\n\r\n").json();
    let (ip, port) = srv.addr().rsplit_once(':').unwrap();
    assert_eq!(env["SERVER_NAME"].as_str(), Some(ip), "{env}");
    assert_eq!(env["SERVER_PORT"].as_str(), Some(port), "{env}");
}

#[test]
fn wsgi_input_methods_with_content_length_and_chunked_bodies() {
    let srv = serve("input_methods");
    let body = "ab\ncd\nef";
    let cases = [
        ("read", vec!["ab\ncd\nef"]),
        ("read3", vec!["ab\n", "cd\n", "ef"]),
        ("readline", vec!["ab\n", "cd\n", "ef"]),
        ("readline2", vec!["ab", "\n", "cd\nef"]),
        ("readlines", vec!["ab\n", "cd\n", "ef"]),
        ("iter", vec!["ab\n", "cd\n", "ef"]),
    ];
    for (how, want) in cases {
        let sized = format!(
            "POST /?{how} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let chunked = format!(
            "POST /?{how} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
             4\r\nab\nc\r\n4\r\nd\nef\r\n0\r\n\r\n"
        );
        for raw in [sized, chunked] {
            let r = request(&srv, &raw);
            assert_eq!(r.status, 200, "{how}: {}", srv.log());
            let got: Vec<String> = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(got, want, "{how} ({raw:?})");
        }
    }
}

#[test]
fn file_wrapper_streams_a_file() {
    let srv = serve("file_wrapper");
    let r = srv.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, fs::read(APPS).unwrap());
}

#[test]
fn file_wrapper_sends_a_regular_file_with_sendfile_from_its_offset() {
    let srv = serve("sendfile");
    let file = fs::read(APPS).unwrap();
    // The file's read() raises: a 200 with the bytes means sendfile(2).
    // HTTP/1.1 without a length: chunked.
    let r = srv.get("/?offset=10");
    assert_eq!(r.status, 200, "{}", srv.log());
    assert_eq!(r.body, file[10..]);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    // A Content-Length shorter than the file: that many bytes.
    let r = srv.get("/?offset=10&length=20");
    assert_eq!(r.body, file[10..30]);
    // HTTP/1.0: delimited by the close.
    let r = request(&srv, "GET /?offset=3 HTTP/1.0\r\n\r\n");
    assert_eq!(r.body, file[3..]);
    // HEAD: the head only.
    let raw = raw_answer(&srv, "HEAD /?length=5 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        raw.ends_with(b"\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    // Not a file descriptor: iterated.
    let r = srv.get("/?kind=bytes&offset=7");
    assert_eq!(r.body, file[7..]);
}

#[test]
fn the_write_callable_comes_before_the_returned_body() {
    let srv = serve("write_callable");
    let r = srv.get("/");
    assert_eq!(r.text(), "written and returned");
}

#[test]
fn close_is_called_after_the_response_and_after_a_failure() {
    let srv = serve("closing");
    for path in ["/ok", "/fail"] {
        let marker = srv.path(&format!("closed{}", path.replace('/', "-")));
        let raw = format!(
            "GET {path}?marker={} HTTP/1.1\r\nHost: x\r\n\r\n",
            marker.display()
        );
        let answer = raw_answer(&srv, &raw);
        expect_within(Duration::from_secs(10), "close() called", || {
            marker.exists()
        });
        let text = String::from_utf8_lossy(&answer);
        if path == "/ok" {
            assert!(text.contains("one two") || text.contains("one ") && text.contains("two"));
        } else {
            // Headers were out: the connection is cut, no terminating chunk.
            assert!(!text.ends_with("0\r\n\r\n"), "{text}");
            srv.expect_log("failed in the middle", Duration::from_secs(5));
        }
    }
}

#[test]
fn exc_info_after_the_headers_were_sent_cuts_the_connection() {
    let srv = serve("exc_info");
    let answer = raw_answer(&srv, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("partial"), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "not a complete response: {text}"
    );
    srv.expect_log("late failure", Duration::from_secs(5));
}

#[test]
fn exc_info_before_anything_was_sent_replaces_the_status() {
    let srv = serve("exc_info_early");
    let r = srv.get("/");
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "sorry");
}

#[test]
fn an_exception_gives_a_500_and_the_traceback_in_the_log() {
    let srv = serve("raises");
    let r = srv.get("/x");
    assert_eq!(r.status, 500);
    srv.expect_log("Error handling request GET /x", Duration::from_secs(5));
    srv.expect_log("Traceback (most recent call last):", Duration::from_secs(5));
    srv.expect_log("RuntimeError: the app failed", Duration::from_secs(5));
    // The worker serves on.
    assert_eq!(srv.get("/x").status, 500);
}

#[test]
fn head_has_no_body() {
    let srv = serve("head");
    let answer = raw_answer(&srv, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("Content-Length: 5"), "{text}");
    assert!(
        text.ends_with("\r\n\r\n"),
        "no body after the head: {text:?}"
    );
}

#[test]
fn a_large_streamed_response_arrives_whole() {
    let srv = serve("large");
    let r = srv.get("/");
    assert_eq!(r.body.len(), 64 * 65536);
    assert!(r.body.iter().all(|&b| b == b'x'));
}

#[test]
fn content_length_is_honoured_both_ways() {
    let srv = serve("longer_than_declared");
    let r = srv.get("/");
    assert_eq!(r.text(), "hello", "never more bytes than declared");
    let srv = serve("shorter_than_declared");
    let answer = raw_answer(&srv, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.contains("Content-Length: 50") && text.ends_with("short"),
        "{text}"
    );
}

#[test]
fn hop_by_hop_headers_from_the_app_are_refused() {
    let srv = serve("hop_by_hop");
    let r = srv.get("/");
    assert_eq!(r.status, 500);
    srv.expect_log("Connection is a hop-by-hop header", Duration::from_secs(5));
}

#[test]
fn the_app_argument_in_gunicorns_forms() {
    for (spec, body) in [
        ("apps", "default!"),
        ("apps:application", "default!"),
        ("apps:make()", "hello."),
        ("apps:make('hi', punctuation='?')", "hi?"),
    ] {
        let srv = serve_spec(spec);
        let r = srv.get("/");
        assert_eq!(r.text(), body, "{spec}\n{}", srv.log());
    }
}

#[test]
fn an_app_that_cannot_be_imported_stops_the_server_with_exit_4() {
    for (spec, message) in [
        (
            "no_such_module:app",
            "ModuleNotFoundError: No module named 'no_such_module'",
        ),
        (
            "apps:missing",
            "Failed to find attribute 'missing' in 'apps'.",
        ),
        (
            "apps:make(open)",
            "Failed to parse arguments as literal values",
        ),
    ] {
        let launch = Launch::new(&["-b", "127.0.0.1:0", "-w", "1", "--no-control-socket", spec]);
        fs::copy(APPS, launch.path("apps.py")).unwrap();
        let srv = launch.start();
        assert_eq!(
            srv.wait_exit(Duration::from_secs(30)),
            4,
            "{spec}\n{}",
            srv.log()
        );
        let log = srv.log();
        assert!(log.contains(message), "{spec}: {log}");
        assert!(log.contains("App failed to load."), "{log}");
    }
}

#[test]
fn an_invalid_module_name_is_refused_by_check_config() {
    let out = std::process::Command::new(gunicornd_bin())
        .args(["--check-config", "not a module"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a Python module is a dotted name"), "{err}");
}

#[test]
fn version_names_the_embedded_python() {
    let out = std::process::Command::new(gunicornd_bin())
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(Python 3."), "{text}");
    assert!(Path::new(&gunicornd_bin()).exists());
}

#[test]
fn pythonpath_and_a_virtualenv_are_searched() {
    // --pythonpath: apps.py lives in lib/, not in the working directory.
    let launch = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "-w",
        "1",
        "--no-control-socket",
        "--pythonpath",
        "elsewhere,lib",
        "apps:make('from lib')",
    ]);
    fs::create_dir(launch.path("lib")).unwrap();
    fs::copy(APPS, launch.path("lib/apps.py")).unwrap();
    let srv = launch.booted(1).start();
    assert_eq!(srv.get("/").text(), "from lib.");

    // VIRTUAL_ENV: its site-packages, for the Python this binary embeds.
    let out = std::process::Command::new(gunicornd_bin())
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&out.stdout);
    let python = version
        .split("(Python ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .expect("a Python version")
        .to_string();
    let launch = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "-w",
        "1",
        "--no-control-socket",
        "venvapp:make('from the venv')",
    ]);
    let site = launch.path(&format!("venv/lib/python{python}/site-packages"));
    fs::create_dir_all(&site).unwrap();
    fs::copy(APPS, site.join("venvapp.py")).unwrap();
    let venv = launch.path("venv");
    let srv = launch.env("VIRTUAL_ENV", &venv).booted(1).start();
    assert_eq!(srv.get("/").text(), "from the venv.");
}

/// Copy a file or a directory tree from tests/wsgi/ into `to`.
fn copy_fixture(name: &str, to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/wsgi")
        .join(name);
    if from.is_dir() {
        fs::create_dir_all(to.join(name)).unwrap();
        for entry in fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), to.join(name).join(entry.file_name())).unwrap();
        }
    } else {
        fs::copy(&from, to.join(name)).unwrap();
    }
}

/// gunicornd serving `spec` from a directory holding `fixture`, with the
/// frameworks venv as its VIRTUAL_ENV; `None` when no venv can be made.
fn serve_framework(fixture: &str, spec: &str) -> Option<Server> {
    let venv = frameworks_venv()?;
    let launch = Launch::new(&["-b", "127.0.0.1:0", "-w", "1", "--no-control-socket", spec]);
    copy_fixture(fixture, launch.path(".").as_path());
    Some(launch.env("VIRTUAL_ENV", venv).booted(1).start())
}

#[test]
fn a_flask_app_runs_unchanged() {
    let Some(srv) = serve_framework("flask_app.py", "flask_app:app") else {
        return;
    };
    let r = request(
        &srv,
        "POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: 11\r\n\r\nname=Ada%21",
    );
    assert_eq!(r.status, 200, "{}", srv.log());
    assert_eq!(r.text(), "hello Ada!");
    let r = srv.get("/json");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(
        r.json(),
        serde_json::json!({"hello": "world", "answer": 42})
    );
}

#[test]
fn a_django_project_runs_from_its_wsgi_py() {
    let Some(srv) = serve_framework("mysite", "mysite.wsgi") else {
        return;
    };
    let r = srv.get("/hello/?who=gunicornd");
    assert_eq!(r.status, 200, "{}", srv.log());
    assert_eq!(r.text(), "hello from django, gunicornd");
    assert_eq!(srv.get("/nope").status, 404);
}

#[test]
fn a_worker_killed_for_timeout_logs_where_python_was_stuck() {
    let launch = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "-w",
        "1",
        "-t",
        "2",
        "--no-control-socket",
        "apps:sleepy",
    ]);
    fs::copy(APPS, launch.path("apps.py")).unwrap();
    let srv = launch.booted(1).start();
    let addr = srv.addr().to_string();
    let client = std::thread::spawn(move || {
        let _ = try_http_request(&addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    });
    srv.expect_log("WORKER TIMEOUT", Duration::from_secs(20));
    // faulthandler's dump, from the worker, before it exits.
    srv.expect_log("in sleepy", Duration::from_secs(10));
    client.join().unwrap();
}

#[test]
fn hup_loads_changed_app_code() {
    let launch = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "-w",
        "1",
        "--no-control-socket",
        "changing:app",
    ]);
    let module = launch.path("changing.py");
    let version = |v: &str| {
        format!(
            "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'{v}']\n"
        )
    };
    fs::write(&module, version("v1")).unwrap();
    let srv = launch.booted(1).start();
    assert_eq!(srv.get("/").text(), "v1");
    fs::write(&module, version("v2")).unwrap();
    srv.signal(libc::SIGHUP);
    expect_within(Duration::from_secs(20), "the new code answers", || {
        try_http_request(srv.addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .is_ok_and(|r| r.text() == "v2")
    });
}

#[test]
fn preload_imports_the_app_once_in_the_master() {
    let launch = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "-w",
        "2",
        "--preload",
        "--no-control-socket",
        "counted:app",
    ]);
    let counter = launch.path("imports.txt");
    fs::write(
        launch.path("counted.py"),
        format!(
            "import os\nwith open({:?}, 'a') as f:\n    f.write('%d\\n' % os.getpid())\n\
             def app(environ, start_response):\n    start_response('200 OK', [])\n    \
             return [str(os.getpid()).encode()]\n",
            counter.display().to_string()
        ),
    )
    .unwrap();
    let srv = launch.booted(2).start();
    let imports = fs::read_to_string(&counter).unwrap();
    assert_eq!(
        imports.lines().collect::<Vec<_>>(),
        [srv.pid.to_string()],
        "imported once, by the master\n{}",
        srv.log()
    );
    // Both workers serve the forked app, and scaling forks more of them.
    let answer: i32 = srv.get("/").text().parse().unwrap();
    assert!(srv.worker_pids().contains(&answer), "{answer}");
    srv.signal(libc::SIGTTIN);
    expect_within(Duration::from_secs(20), "three booted workers", || {
        srv.booted_count() == 3
    });
    assert_eq!(fs::read_to_string(&counter).unwrap().lines().count(), 1);
}

#[test]
fn preload_of_an_app_that_cannot_be_imported_fails_the_start() {
    let launch = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "--preload",
        "--no-control-socket",
        "no_such_module:app",
    ]);
    let srv = launch.start();
    assert_ne!(srv.wait_exit(Duration::from_secs(30)), 0);
    let log = srv.log();
    assert!(
        log.contains("App failed to load (no_such_module:app)"),
        "{log}"
    );
    assert!(log.contains("No module named 'no_such_module'"), "{log}");
}

#[test]
fn a_gunicorn_python_config_file_is_honoured() {
    let port = free_port();
    let launch = Launch::new(&["-c", "gunicorn.conf.py", "--no-control-socket"]);
    fs::copy(APPS, launch.path("apps.py")).unwrap();
    let record = launch.path("post_worker_init.txt");
    fs::write(
        launch.path("gunicorn.conf.py"),
        format!(
            "import multiprocessing\n\
             bind = '127.0.0.1:{port}'\n\
             workers = 2\n\
             threads = 4\n\
             spew = False\n\
             wsgi_app = 'apps:make(\"from the config\")'\n\
             def post_worker_init(worker):\n\
             \x20   with open({record:?}, 'a') as f:\n\
             \x20       f.write('%d %d\\n' % (worker.pid, worker.age))\n",
            record = record.display().to_string()
        ),
    )
    .unwrap();
    let srv = launch.booted(2).start();
    assert_eq!(srv.addr(), format!("127.0.0.1:{port}"));
    assert_eq!(srv.get("/").text(), "from the config.");
    // Every worker ran the hook before it counted as booted.
    srv.expect_log("Ready: 2 workers booted", Duration::from_secs(20));
    let workers = srv.worker_pids();
    assert_eq!(workers.len(), 2);
    let hooked: std::collections::BTreeSet<i32> = fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(hooked, workers, "post_worker_init ran in each worker");
    // threads = 4 with the default class: gthread, as in gunicorn.
    assert!(srv.log_contains("Using worker: gthread"), "{}", srv.log());
    srv.expect_log(
        "ignoring names gunicornd has no setting for: spew",
        Duration::from_secs(5),
    );
}

#[test]
fn a_python_config_file_that_raises_is_refused_with_its_traceback() {
    let launch = Launch::new(&["-c", "bad.conf.py", "--check-config"]);
    fs::write(launch.path("bad.conf.py"), "workers = 1 / 0\n").unwrap();
    let srv = launch.start();
    assert_ne!(srv.wait_exit(Duration::from_secs(30)), 0);
    let log = srv.log();
    assert!(log.contains("cannot evaluate"), "{log}");
    assert!(log.contains("ZeroDivisionError"), "{log}");
}

#[test]
fn pre_request_and_post_request_hooks_run_around_each_request() {
    let launch = Launch::new(&["-c", "hooks.conf.py", "--no-control-socket"]);
    fs::copy(APPS, launch.path("apps.py")).unwrap();
    let record = launch.path("requests.txt");
    fs::write(
        launch.path("hooks.conf.py"),
        format!(
            "bind = '127.0.0.1:0'\n\
             workers = 1\n\
             wsgi_app = 'apps:head'\n\
             def pre_request(worker, req):\n\
             \x20   with open({record:?}, 'a') as f:\n\
             \x20       f.write('pre %s %s\\n' % (req.method, req.path))\n\
             def post_request(worker, req, environ, resp):\n\
             \x20   with open({record:?}, 'a') as f:\n\
             \x20       f.write('post %s %s\\n' % (environ['PATH_INFO'], resp.status))\n",
            record = record.display().to_string()
        ),
    )
    .unwrap();
    let srv = launch.booted(1).start();
    assert_eq!(srv.get("/one").status, 200);
    expect_within(Duration::from_secs(5), "both hooks recorded", || {
        fs::read_to_string(&record).unwrap_or_default() == "pre GET /one\npost /one 200\n"
    });
}

/// A server whose Python config file records `worker_int` and
/// `worker_abort` calls (`int PID` / `abort PID`) in the returned file.
fn serve_with_signal_hooks(extra: &[&str]) -> (Server, std::path::PathBuf) {
    let mut args = vec!["-c", "signals.conf.py", "--no-control-socket"];
    args.extend_from_slice(extra);
    let launch = Launch::new(&args);
    fs::copy(APPS, launch.path("apps.py")).unwrap();
    let record = launch.path("signal_hooks.txt");
    fs::write(
        launch.path("signals.conf.py"),
        format!(
            "bind = '127.0.0.1:0'\n\
             workers = 1\n\
             wsgi_app = 'apps:spinning'\n\
             def record(what, worker):\n\
             \x20   with open({record:?}, 'a') as f:\n\
             \x20       f.write('%s %d\\n' % (what, worker.pid))\n\
             def worker_int(worker):\n\
             \x20   record('int', worker)\n\
             def worker_abort(worker):\n\
             \x20   record('abort', worker)\n\
             def post_worker_init(worker):\n\
             \x20   record('ready', worker)\n",
            record = record.display().to_string()
        ),
    )
    .unwrap();
    (launch.booted(1).start(), record)
}

/// The one worker, once its hooks are in place.
fn only_worker(srv: &Server, record: &Path) -> i32 {
    let pids = srv.worker_pids();
    assert_eq!(pids.len(), 1, "{pids:?}");
    let pid = *pids.first().unwrap();
    expect_record(record, &format!("ready {pid}"));
    pid
}

fn kill_worker(pid: i32, sig: i32) {
    // SAFETY: sending a signal to a pid we read from the master's children.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

fn wait_gone(pid: i32) {
    expect_within(Duration::from_secs(20), "the worker exited", || {
        !process_alive(pid)
    });
}

fn expect_record(record: &Path, line: &str) {
    expect_within(Duration::from_secs(20), line, || {
        fs::read_to_string(record)
            .unwrap_or_default()
            .lines()
            .any(|l| l == line)
    });
}

/// Start a request to the spinning app and wait until the app runs.
fn enter_spinning_app(srv: &Server) -> std::thread::JoinHandle<()> {
    let addr = srv.addr().to_string();
    let client = std::thread::spawn(move || {
        let _ = try_http_request(&addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    });
    let entered = srv.path("entered");
    expect_within(Duration::from_secs(20), "the app is running", || {
        entered.exists()
    });
    client
}

#[test]
fn worker_int_runs_on_quit_whether_the_worker_is_idle_or_in_python() {
    let (srv, record) = serve_with_signal_hooks(&[]);
    // Idle in the serving loop: the hook runs from the loop.
    let idle = only_worker(&srv, &record);
    kill_worker(idle, libc::SIGINT);
    expect_record(&record, &format!("int {idle}"));
    wait_gone(idle);
    // Busy in Python code that never returns: Python's own signal check
    // runs the hook between two bytecodes.
    expect_within(Duration::from_secs(20), "a replacement booted", || {
        srv.worker_pids().len() == 1 && !srv.worker_pids().contains(&idle)
    });
    let busy = only_worker(&srv, &record);
    let client = enter_spinning_app(&srv);
    kill_worker(busy, libc::SIGQUIT);
    expect_record(&record, &format!("int {busy}"));
    wait_gone(busy);
    client.join().unwrap();
    assert!(!srv.log().contains("WORKER TIMEOUT"), "{}", srv.log());
}

#[test]
fn worker_abort_runs_when_the_worker_is_killed_for_timeout() {
    let (srv, record) = serve_with_signal_hooks(&["-t", "2"]);
    let stuck = only_worker(&srv, &record);
    let client = enter_spinning_app(&srv);
    srv.expect_log("WORKER TIMEOUT", Duration::from_secs(20));
    expect_record(&record, &format!("abort {stuck}"));
    // The traceback of where it was stuck still comes first.
    srv.expect_log("in spinning", Duration::from_secs(10));
    wait_gone(stuck);
    client.join().unwrap();
}

#[test]
fn preload_with_a_python_config_file_runs_its_hooks_in_each_worker() {
    let launch = Launch::new(&["-c", "preload.conf.py", "--no-control-socket"]);
    fs::copy(APPS, launch.path("apps.py")).unwrap();
    let record = launch.path("hooks.txt");
    fs::write(
        launch.path("preload.conf.py"),
        format!(
            "bind = '127.0.0.1:0'\n\
             workers = 2\n\
             preload_app = True\n\
             wsgi_app = 'counted:app'\n\
             def post_worker_init(worker):\n\
             \x20   with open({record:?}, 'a') as f:\n\
             \x20       f.write('init %d\\n' % worker.pid)\n\
             def pre_request(worker, req):\n\
             \x20   with open({record:?}, 'a') as f:\n\
             \x20       f.write('pre %d %s\\n' % (worker.pid, req.path))\n",
            record = record.display().to_string()
        ),
    )
    .unwrap();
    let imports = launch.path("imports.txt");
    fs::write(
        launch.path("counted.py"),
        format!(
            "import os\nwith open({:?}, 'a') as f:\n    f.write('%d\\n' % os.getpid())\n\
             def app(environ, start_response):\n    start_response('200 OK', [])\n    \
             return [b'ok']\n",
            imports.display().to_string()
        ),
    )
    .unwrap();
    let srv = launch.booted(2).start();
    srv.expect_log("Ready: 2 workers booted", Duration::from_secs(20));
    assert_eq!(
        fs::read_to_string(&imports).unwrap(),
        format!("{}\n", srv.pid)
    );
    let inits: std::collections::BTreeSet<i32> = fs::read_to_string(&record)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("init "))
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(inits, srv.worker_pids(), "post_worker_init in each worker");
    assert_eq!(srv.get("/p").status, 200);
    expect_within(Duration::from_secs(5), "pre_request recorded", || {
        fs::read_to_string(&record)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("pre ") && l.ends_with(" /p"))
    });
}

#[test]
fn a_proxy_header_gives_gunicorns_proxy_keys() {
    let srv = serve_with("apps:environ", &["--proxy-protocol", "v1"]);
    let proxied = request(
        &srv,
        "PROXY TCP6 2001:db8::7 2001:db8::1 4242 443\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .json();
    assert_eq!(proxied["PROXY_PROTOCOL"], "TCP6", "{proxied}");
    assert_eq!(proxied["PROXY_ADDR"], "2001:db8::7");
    assert_eq!(proxied["PROXY_PORT"], "4242");
    assert_eq!(proxied["REMOTE_ADDR"], "2001:db8::7");
    assert_eq!(proxied["REMOTE_PORT"], "4242");
    // A connection without the header has none of the keys.
    let direct = request(
        &srv,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .json();
    assert!(direct.get("PROXY_PROTOCOL").is_none(), "{direct}");
    assert_eq!(direct["REMOTE_ADDR"], "127.0.0.1");
}
