//! The gthread worker (`-k gthread`, `--threads`): keep-alive by the HTTP/1.1
//! and HTTP/1.0 rules, pipelining, the idle timeout, the connection limit,
//! threads running a WSGI app side by side, and the zero-failure guarantees
//! of reloads, recycling and graceful stops with clients that reuse their
//! connections.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use gunicornd_test_support::*;

/// `gunicornd -k gthread` on a loopback port with `options`, serving `app`.
fn gthread(workers: usize, options: &[&str], app: &str) -> Server {
    gthread_launch(workers, options, app).start()
}

fn gthread_launch(workers: usize, options: &[&str], app: &str) -> Launch {
    let workers_arg = workers.to_string();
    let mut args = vec![
        "-b",
        "127.0.0.1:0",
        "-w",
        &workers_arg,
        "-k",
        "gthread",
        "--no-control-socket",
    ];
    args.extend_from_slice(options);
    args.push(app);
    Launch::new(&args).booted(workers)
}

/// One response read off a connection that stays open.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn keeps_alive(&self) -> bool {
        self.header("Connection") == Some("keep-alive")
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection that reads responses one at a time (by their
/// Content-Length), so the next request can follow on the same socket.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(srv: &Server) -> Client {
        Client::connect_to(srv.addr()).unwrap()
    }

    fn connect_to(addr: &str) -> io::Result<Client> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Client {
            reader: BufReader::new(s),
        })
    }

    fn send(&mut self, raw: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(raw)
    }

    fn get(&mut self, path: &str) -> io::Result<Answer> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())?;
        self.answer()
    }

    /// The next response; `UnexpectedEof` when the server closed before
    /// its first byte.
    fn answer(&mut self) -> io::Result<Answer> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let field = line.trim_end();
            if field.is_empty() {
                break;
            }
            let (n, v) = field
                .split_once(':')
                .ok_or_else(|| io::Error::other(format!("bad field {field:?}")))?;
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let mut answer = Answer {
            status,
            headers,
            body: Vec::new(),
        };
        match answer.header("Content-Length").map(str::parse::<usize>) {
            Some(Ok(n)) => {
                answer.body.resize(n, 0);
                self.reader.read_exact(&mut answer.body)?;
            }
            _ => {
                self.reader.read_to_end(&mut answer.body)?;
            }
        }
        Ok(answer)
    }

    /// Whether the server closes the connection within `timeout`
    /// (nothing more arrives: end of stream).
    fn closed_within(&mut self, timeout: Duration) -> bool {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .unwrap();
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok() && rest.is_empty()
    }
}

fn json(answer: &Answer) -> serde_json::Value {
    serde_json::from_slice(&answer.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", answer.text()))
}

#[cfg(feature = "python")]
const APP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gthread/app.py");

/// gthread workers serving tests/gthread/app.py.
#[cfg(feature = "python")]
fn python(workers: usize, options: &[&str]) -> Server {
    let launch = gthread_launch(workers, options, "app:application");
    std::fs::copy(APP, launch.path("app.py")).unwrap();
    launch.start()
}

#[cfg(feature = "python")]
#[test]
fn a_hundred_keep_alive_requests_on_one_connection_are_answered_by_one_worker() {
    let srv = python(2, &["--threads", "2"]);
    let mut client = Client::connect(&srv);
    let mut pids = std::collections::BTreeSet::new();
    for i in 0..100 {
        let answer = client
            .get(&format!("/{i}"))
            .unwrap_or_else(|e| panic!("request {i}: {e}\n{}", srv.log()));
        assert_eq!(answer.status, 200);
        assert!(answer.keeps_alive(), "request {i}: {answer:?}");
        let doc = json(&answer);
        assert_eq!(doc["path"], format!("/{i}"));
        pids.insert(doc["pid"].as_i64().unwrap());
    }
    assert_eq!(pids.len(), 1, "one connection, one worker: {pids:?}");
}

#[cfg(feature = "python")]
#[test]
fn one_thread_is_not_multithreaded() {
    let srv = python(1, &["--threads", "1"]);
    let answer = Client::connect(&srv).get("/").unwrap();
    assert_eq!(json(&answer)["multithread"], false);
    assert!(answer.keeps_alive());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let srv = gthread(1, &["--threads", "4"], "builtin:echo");
    let mut client = Client::connect(&srv);
    // Sent at once, a body in the middle, the last one asking to close.
    client
        .send(
            b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n\
              POST /two HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
              GET /three HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /four HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    for (path, keep) in [
        ("/one", true),
        ("/two", true),
        ("/three", true),
        ("/four", false),
    ] {
        let answer = client.answer().unwrap();
        assert_eq!(answer.status, 200, "{path}");
        let doc = json(&answer);
        assert_eq!(doc["path"], path, "{doc}");
        assert_eq!(answer.keeps_alive(), keep, "{path}: {answer:?}");
    }
    assert!(client.closed_within(Duration::from_secs(5)));
}

#[test]
fn a_pipelined_burst_larger_than_one_read_is_answered_whole() {
    for app in ["builtin:hello", "builtin:echo"] {
        let srv = gthread(1, &["--threads", "2"], app);
        let mut client = Client::connect(&srv);
        // About 60 KiB at once: several of the loop's reads.
        let burst: String = (0..2000)
            .map(|i| format!("GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n"))
            .collect();
        let writer = client.reader.get_ref().try_clone().unwrap();
        let sender = thread::spawn(move || (&writer).write_all(burst.as_bytes()));
        for i in 0..2000 {
            let answer = client
                .answer()
                .unwrap_or_else(|e| panic!("{app}: response {i}: {e}"));
            assert_eq!(answer.status, 200, "{app}: response {i}");
            if app == "builtin:echo" {
                assert_eq!(json(&answer)["path"], format!("/{i}"));
            }
        }
        sender.join().unwrap().unwrap();
    }
}

#[test]
fn http_1_0_keeps_the_connection_only_when_it_asks() {
    let srv = gthread(1, &[], "builtin:hello");
    let mut client = Client::connect(&srv);
    client.send(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let answer = client.answer().unwrap();
    assert_eq!(answer.header("Connection"), Some("close"));
    assert!(client.closed_within(Duration::from_secs(5)));

    let mut client = Client::connect(&srv);
    for _ in 0..3 {
        client
            .send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let answer = client.answer().unwrap();
        assert_eq!(answer.text(), "Hello, World!\n");
        assert!(answer.keeps_alive(), "{answer:?}");
    }
}

#[test]
fn a_client_that_closed_its_side_is_answered_and_closed_at_once() {
    // Served by a thread (echo) and on the loop itself (hello).
    for app in ["builtin:echo", "builtin:hello"] {
        closed_side(app);
    }
}

/// A request followed by the end of the client's stream, against `app`.
fn closed_side(app: &str) {
    let srv = gthread(1, &["--keep-alive", "30"], app);
    let mut client = Client::connect(&srv);
    client
        .send(b"GET /last HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    client
        .reader
        .get_ref()
        .shutdown(std::net::Shutdown::Write)
        .unwrap();
    let started = Instant::now();
    let answer = client.answer().unwrap();
    assert_eq!(answer.status, 200);
    // Whether the answer says close depends on when the end of stream was
    // read; either way the connection is not kept.
    assert!(client.closed_within(Duration::from_secs(10)));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closed after {:?}",
        started.elapsed()
    );
}

#[test]
fn an_idle_connection_is_closed_after_keep_alive_seconds() {
    let srv = gthread(1, &["--keep-alive", "1"], "builtin:hello");
    let mut client = Client::connect(&srv);
    assert!(client.get("/").unwrap().keeps_alive());
    let idle = Instant::now();
    assert!(client.closed_within(Duration::from_secs(10)));
    let waited = idle.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
    // A connection still sending its next request is not idle: its head
    // deadline applies instead.
    let mut client = Client::connect(&srv);
    assert!(client.get("/").unwrap().keeps_alive());
    client.send(b"GET / HTTP/1.1\r\n").unwrap();
    thread::sleep(Duration::from_millis(1500));
    client.send(b"Host: t\r\n\r\n").unwrap();
    assert_eq!(client.answer().unwrap().status, 200);

    // --keep-alive 0: every response closes.
    let srv = gthread(1, &["--keep-alive", "0"], "builtin:hello");
    let mut client = Client::connect(&srv);
    assert_eq!(client.get("/").unwrap().header("Connection"), Some("close"));
    assert!(client.closed_within(Duration::from_secs(5)));
}

#[test]
fn the_head_deadline_applies_to_every_request_on_a_connection() {
    let srv = gthread(
        1,
        &["--header-timeout", "2", "--keep-alive", "30"],
        "builtin:hello",
    );
    let mut client = Client::connect(&srv);
    assert!(client.get("/").unwrap().keeps_alive());
    // Idle for longer than the head deadline: keep-alive's own deadline.
    thread::sleep(Duration::from_millis(2500));
    assert!(client.get("/").unwrap().keeps_alive());
    // A second request that does not arrive whole gets its 408.
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    let started = Instant::now();
    let answer = client.answer().unwrap();
    assert_eq!(answer.status, 408, "{answer:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(5),
        "408 after {waited:?}"
    );
}

#[test]
fn worker_connections_bounds_the_connections_a_worker_keeps() {
    let srv = gthread(
        1,
        &["--worker-connections", "2", "--keep-alive", "30"],
        "builtin:hello",
    );
    let mut first = Client::connect(&srv);
    assert!(first.get("/").unwrap().keeps_alive());
    // The second connection fills the worker: its response closes it.
    let mut second = Client::connect(&srv);
    let answer = second.get("/").unwrap();
    assert_eq!(answer.header("Connection"), Some("close"), "{answer:?}");
    assert!(second.closed_within(Duration::from_secs(5)));
    // Closed on our side too, it no longer counts (it did while the
    // worker's lingering close waited for us).
    drop(second);
    // With room again, a third is served (and closed: the first is kept).
    let mut third = Client::connect(&srv);
    assert_eq!(third.get("/").unwrap().header("Connection"), Some("close"));
    // The first connection is still served (whether it is kept depends on
    // how soon the worker sees the third one closed).
    assert_eq!(first.get("/").unwrap().status, 200);
}

/// Client threads reusing their connections for `GET path` until stopped.
/// A request on a reused connection that the server closed before sending
/// anything is sent again on a new one, as HTTP clients do (RFC 9112
/// §9.3.1: the server may close an idle connection at any time); anything
/// else that goes wrong counts as a failure.
struct KeepAliveLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<(u64, Vec<String>)>>,
}

impl KeepAliveLoad {
    fn start(addr: &str, clients: usize, path: &str) -> KeepAliveLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let (stop, addr, path) = (stop.clone(), addr.to_string(), path.to_string());
                thread::spawn(move || {
                    let (mut ok, mut failures) = (0, Vec::new());
                    let mut conn: Option<Client> = None;
                    while !stop.load(Ordering::Relaxed) {
                        let reused = conn.is_some();
                        let client = match conn.as_mut() {
                            Some(c) => c,
                            None => match Client::connect_to(&addr) {
                                Ok(c) => conn.insert(c),
                                Err(e) => {
                                    failures.push(format!("connect: {e}"));
                                    continue;
                                }
                            },
                        };
                        match client.get(&path) {
                            Ok(a) if a.status == 200 => {
                                ok += 1;
                                if !a.keeps_alive() {
                                    conn = None;
                                }
                            }
                            Ok(a) => {
                                failures.push(format!("status {}", a.status));
                                conn = None;
                            }
                            Err(e)
                                if reused
                                    && matches!(
                                        e.kind(),
                                        io::ErrorKind::UnexpectedEof
                                            | io::ErrorKind::ConnectionReset
                                            | io::ErrorKind::BrokenPipe
                                    ) =>
                            {
                                conn = None;
                            }
                            Err(e) => {
                                failures.push(format!("reused={reused}: {e}"));
                                conn = None;
                            }
                        }
                    }
                    (ok, failures)
                })
            })
            .collect();
        KeepAliveLoad { stop, threads }
    }

    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut ok, mut failures) = (0, Vec::new());
        for t in self.threads {
            let (o, f) = t.join().unwrap();
            ok += o;
            failures.extend(f);
        }
        (ok, failures)
    }
}

#[test]
fn reloads_under_a_keep_alive_load_fail_no_request() {
    // builtin:echo runs on the threads (the max-requests test below has
    // builtin:hello, which runs on the loop).
    let srv = gthread(2, &["--threads", "2"], "builtin:echo");
    let load = KeepAliveLoad::start(srv.addr(), 4, "/");
    let mut pids = srv.worker_pids();
    for round in 0..3 {
        srv.signal_delivered(libc::SIGHUP);
        let old = pids.clone();
        let replaced = wait_until(Duration::from_secs(20), || {
            let now = srv.worker_pids();
            now.len() == 2 && now.is_disjoint(&old)
        });
        assert!(
            replaced,
            "round {round}: workers not replaced\n{}",
            srv.log()
        );
        pids = srv.worker_pids();
    }
    let (ok, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}\n{}", srv.log());
    assert!(ok > 100, "only {ok} requests");
}

#[test]
fn in_place_upgrades_under_a_keep_alive_load_fail_no_request() {
    let srv = gthread(
        2,
        &["--threads", "2", "--upgrade-mode", "in-place"],
        "builtin:echo",
    );
    let load = KeepAliveLoad::start(srv.addr(), 4, "/");
    let mut pids = srv.worker_pids();
    for round in 0..2 {
        srv.signal_delivered(libc::SIGUSR2);
        let old = pids.clone();
        expect_within(
            Duration::from_secs(20),
            &format!("round {round}: the workers replaced under the same master"),
            || {
                let now = srv.worker_pids();
                now.len() == 2 && now.is_disjoint(&old)
            },
        );
        assert!(process_alive(srv.pid));
        pids = srv.worker_pids();
    }
    srv.expect_log("Upgraded in place", Duration::from_secs(5));
    let (ok, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}\n{}", srv.log());
    assert!(ok > 100, "only {ok} requests");
}

#[test]
fn max_requests_recycling_under_a_keep_alive_load_fails_no_request() {
    let srv = gthread(
        2,
        &["--threads", "2", "--max-requests", "300"],
        "builtin:hello",
    );
    let first = srv.worker_pids();
    let load = KeepAliveLoad::start(srv.addr(), 4, "/");
    let recycled = wait_until(Duration::from_secs(30), || {
        srv.worker_pids().is_disjoint(&first)
    });
    let (ok, failures) = load.finish();
    assert!(recycled, "workers not recycled\n{}", srv.log());
    assert!(failures.is_empty(), "{failures:?}\n{}", srv.log());
    assert!(ok >= 600, "only {ok} requests");
    assert!(srv.log_contains("Autorestarting worker after 300 requests"));
}

#[test]
fn scaling_down_under_a_keep_alive_load_fails_no_request() {
    let srv = gthread(4, &["--threads", "2"], "builtin:echo");
    let load = KeepAliveLoad::start(srv.addr(), 4, "/");
    for _ in 0..3 {
        srv.signal_delivered(libc::SIGTTOU);
    }
    expect_within(Duration::from_secs(20), "down to 1 worker", || {
        srv.worker_pids().len() == 1
    });
    let (ok, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}\n{}", srv.log());
    assert!(ok > 50, "only {ok} requests");
}

#[test]
fn trickling_clients_hold_no_thread() {
    let srv = gthread(
        1,
        &["--threads", "1", "--header-timeout", "10"],
        "builtin:echo",
    );
    // Twenty connections, each with half a request head sent.
    let mut tricklers: Vec<Client> = (0..20).map(|_| Client::connect(&srv)).collect();
    for t in &mut tricklers {
        t.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n").unwrap();
    }
    // The one thread still answers others at once, on fresh and kept
    // connections.
    let started = Instant::now();
    let mut client = Client::connect(&srv);
    for _ in 0..10 {
        let answer = client.get("/fast").unwrap();
        assert_eq!(json(&answer)["path"], "/fast");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // And each trickler is answered once its head is complete.
    for t in &mut tricklers {
        t.send(b"\r\n").unwrap();
        assert_eq!(json(&t.answer().unwrap())["path"], "/slow");
    }
}

#[cfg(feature = "python")]
#[test]
fn a_wsgi_app_runs_on_several_threads_at_once() {
    let srv = python(1, &["--threads", "4"]);
    let addr = srv.addr().to_string();
    let slow = thread::spawn(move || {
        let started = Instant::now();
        let answer = Client::connect_to(&addr).unwrap().get("/?sleep=3").unwrap();
        (answer, started.elapsed())
    });
    // While the slow request sleeps in the app, the other threads answer.
    thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut threads = std::collections::BTreeSet::new();
    let fast: Vec<thread::JoinHandle<Answer>> = (0..3)
        .map(|_| {
            let addr = srv.addr().to_string();
            thread::spawn(move || {
                Client::connect_to(&addr)
                    .unwrap()
                    .get("/?sleep=0.5")
                    .unwrap()
            })
        })
        .collect();
    for t in fast {
        let doc = json(&t.join().unwrap());
        assert_eq!(doc["multithread"], true);
        threads.insert(doc["thread"].as_u64().unwrap());
    }
    let fast_took = started.elapsed();
    assert!(
        fast_took < Duration::from_millis(2500),
        "the fast requests waited for the slow one: {fast_took:?}\n{}",
        srv.log()
    );
    let (answer, slow_took) = slow.join().unwrap();
    assert!(slow_took >= Duration::from_secs(3));
    let doc = json(&answer);
    assert_eq!(doc["multithread"], true);
    threads.insert(doc["thread"].as_u64().unwrap());
    assert_eq!(threads.len(), 4, "four requests at once on four threads");
}

/// A thread keeps its Python thread state from one request to the next:
/// what the app keeps in a `threading.local` (a database connection, a
/// cache) is still there, rather than gone with a thread state made and
/// dropped per request.
#[cfg(feature = "python")]
#[test]
fn a_threading_local_lives_from_one_request_to_the_next() {
    let srv = python(1, &["--threads", "1"]);
    let mut client = Client::connect(&srv);
    let counts: Vec<u64> = (0..5)
        .map(|_| {
            json(&client.get("/").unwrap())["served_by_thread"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(counts, [1, 2, 3, 4, 5], "{}", srv.log());
}

/// What `gunicornctl workers` says of the one worker: (connections, busy).
fn connections(srv: &Server) -> (u64, u64) {
    let workers = ctl_json(&["-s", srv.sock(), "workers"]);
    let w = &workers["workers"][0];
    (
        w["connections"].as_u64().unwrap(),
        w["in_flight"].as_u64().unwrap(),
    )
}

#[test]
fn a_graceful_stop_closes_idle_connections_and_finishes_busy_ones() {
    let srv = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "-w",
        "1",
        "-k",
        "gthread",
        "--threads",
        "2",
        "--graceful-timeout",
        "20",
        "builtin:debug",
    ])
    .control_socket()
    .booted(1)
    .start();
    let mut idle = Client::connect(&srv);
    assert!(idle.get("/").unwrap().keeps_alive());
    let mut busy = Client::connect(&srv);
    assert!(busy.get("/").unwrap().keeps_alive());
    busy.send(b"GET /?sleep=3 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // gunicornctl workers: two connections, one of them in the app.
    srv.poll("one idle and one busy connection", |s| {
        (connections(s) == (2, 1)).then_some(())
    });
    let text = ctl_ok(&["-s", srv.sock(), "workers"]);
    assert!(
        text.lines().next().unwrap().contains("CONNS  IDLE  BUSY"),
        "{text}"
    );
    let stopped = Instant::now();
    srv.signal_delivered(libc::SIGTERM);
    assert!(
        idle.closed_within(Duration::from_secs(5)),
        "idle not closed"
    );
    assert!(
        stopped.elapsed() < Duration::from_millis(2500),
        "the idle connection waited for the busy one: {:?}",
        stopped.elapsed()
    );
    let answer = busy.answer().unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("Connection"), Some("close"));
    assert!(busy.closed_within(Duration::from_secs(5)));
    assert_eq!(srv.wait_exit(Duration::from_secs(20)), 0, "{}", srv.log());
    assert!(stopped.elapsed() < Duration::from_secs(20));
}
