//! Slow and stalling clients against the sync worker: none of them may
//! hold a worker, a slow transfer that makes progress is not taken for a
//! hung worker, and the close after a response never resets it.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gunicornd_test_support::*;

/// One worker of `app` on a loopback port, with extra `options`.
fn one_worker(options: &[&str], app: &str) -> Server {
    let mut args = vec!["-b", "127.0.0.1:0", "-w", "1", "--no-control-socket"];
    args.extend_from_slice(options);
    args.push(app);
    Launch::new(&args).booted(1).start()
}

fn connect(srv: &Server) -> TcpStream {
    let s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Everything the server sends until it closes (or the read fails).
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn trickling_clients_hold_no_worker_and_get_408_at_the_head_deadline() {
    let head_deadline = Duration::from_secs(3);
    let srv = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "-w",
        "2",
        "-t",
        "4",
        "--header-timeout",
        "3",
        "--no-control-socket",
        "builtin:hello",
    ])
    .booted(2)
    .start();
    let workers = srv.worker_pids();
    let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: one byte a second\r\n\r\n";
    let mut tricklers: Vec<TcpStream> = (0..50).map(|_| connect(&srv)).collect();
    let started = Instant::now();
    let mut sent = 0;
    let mut slowest = Duration::ZERO;
    // One byte a second on each trickler for longer than the head deadline
    // and the heartbeat timeout, while other clients are served.
    while started.elapsed() < Duration::from_secs(6) {
        if started.elapsed() >= Duration::from_secs(sent as u64) {
            for t in &mut tricklers {
                let _ = t.write_all(&head[sent..sent + 1]);
            }
            sent += 1;
        }
        let asked = Instant::now();
        let r = get_within(srv.addr(), head_deadline + Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("a normal client was not answered: {e}\n{}", srv.log()));
        assert_eq!(r.status, 200);
        slowest = slowest.max(asked.elapsed());
        let next = Duration::from_millis(200).saturating_sub(asked.elapsed());
        let _ = wait_for(next, || None::<()>);
    }
    assert!(
        slowest < head_deadline + Duration::from_secs(1),
        "slowest answer {slowest:?}"
    );
    for t in &mut tricklers {
        let answer = read_all(t);
        assert!(
            answer.starts_with(b"HTTP/1.1 408 "),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    let log = srv.log();
    assert!(!log.contains("WORKER TIMEOUT"), "{log}");
    assert_eq!(srv.worker_pids(), workers, "no worker was replaced");
}

#[test]
fn a_silent_client_is_closed_at_the_head_deadline_even_without_a_timeout() {
    let srv = one_worker(&["-t", "0", "--header-timeout", "1"], "builtin:hello");
    let mut silent = connect(&srv);
    let started = Instant::now();
    // The only worker still serves others.
    assert_eq!(srv.get("/").status, 200);
    let answer = read_all(&mut silent);
    assert!(answer.is_empty(), "nothing was asked, nothing is answered");
    // The kernel holds a TCP connection that sent nothing for about a
    // second (TCP_DEFER_ACCEPT) before the worker's deadline starts.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
}

#[test]
fn a_small_body_is_read_by_the_loop_before_the_app_runs() {
    let srv = one_worker(&[], "builtin:echo");
    let mut slow = connect(&srv);
    slow.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
        .unwrap();
    // Half the body is there: the single worker serves someone else.
    assert_eq!(srv.get("/other").status, 200);
    slow.write_all(b"world").unwrap();
    let answer = read_response(&mut slow).unwrap();
    assert_eq!(answer.json()["body"], "helloworld");

    // A client that waits for 100 Continue gets it from the loop.
    let mut polite = connect(&srv);
    polite
        .write_all(
            b"POST /p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
        )
        .unwrap();
    let mut interim = [0u8; 25];
    polite.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    polite.write_all(b"ping").unwrap();
    let answer = read_response(&mut polite).unwrap();
    assert_eq!(answer.json()["body"], "ping");
}

/// A directory with one sparse file `big` of `len` bytes, served by
/// `static:` with these extra options.
fn serve_big_file(len: u64, extra: &[&str]) -> Server {
    let launch = Launch::new(&[]);
    let dir = launch.path("www");
    fs::create_dir(&dir).unwrap();
    fs::File::create(dir.join("big"))
        .unwrap()
        .set_len(len)
        .unwrap();
    let spec = format!("static:{}", dir.display());
    let mut launch = launch;
    for arg in ["-b", "127.0.0.1:0", "-w", "1", "--no-control-socket"]
        .iter()
        .chain(extra)
    {
        launch = launch.arg(arg);
    }
    launch.arg(spec).booted(1).start()
}

/// Read a response head and then exactly its Content-Length, in pieces of
/// `piece` bytes, calling `between` after each.
fn read_sized_body(s: &mut TcpStream, piece: usize, mut between: impl FnMut(u64)) -> u64 {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap_or_else(|| panic!("no Content-Length in {head}"))
        .parse()
        .unwrap();
    let mut got = 0u64;
    let mut buf = vec![0u8; piece];
    while got < length {
        let want = piece.min((length - got) as usize);
        match s.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => got += n as u64,
            Err(e) => panic!("after {got} of {length} bytes: {e}"),
        }
        between(got);
    }
    assert_eq!(got, length, "the whole body arrived");
    got
}

#[test]
fn a_pipelined_request_does_not_reset_a_large_response() {
    const LEN: u64 = 50 * 1024 * 1024;
    let srv = serve_big_file(LEN, &[]);
    let mut s = connect(&srv);
    s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut pipelined = false;
    let mut paused = false;
    let mut second = s.try_clone().unwrap();
    let got = read_sized_body(&mut s, 64 * 1024, |got| {
        // Sent while the worker is busy writing: it stays unread in the
        // worker's socket when the response ends.
        if got >= 1024 * 1024 && !pipelined {
            second
                .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            pipelined = true;
        }
        // Near the end the worker has written everything: a plain close
        // now would reset the connection and destroy what is unread.
        if got >= LEN - 1024 * 1024 && !paused {
            let _ = wait_for(Duration::from_millis(300), || None::<()>);
            paused = true;
        }
    });
    assert_eq!(got, LEN);
}

#[test]
fn a_slow_download_that_progresses_is_not_a_hung_worker() {
    let srv = serve_big_file(8 * 1024 * 1024, &["-t", "2"]);
    let mut s = connect(&srv);
    s.write_all(b"GET /big HTTP/1.0\r\n\r\n").unwrap();
    let started = Instant::now();
    // 8 MiB in 128 KiB pieces, one every 60 ms: about 4 s, twice --timeout.
    read_sized_body(&mut s, 128 * 1024, |_| {
        let _ = wait_for(Duration::from_millis(60), || None::<()>);
    });
    assert!(started.elapsed() > Duration::from_secs(2));
    let log = srv.log();
    assert!(!log.contains("WORKER TIMEOUT"), "{log}");
}

#[test]
fn a_slow_upload_that_progresses_is_not_a_hung_worker() {
    let srv = one_worker(&["-t", "2"], "builtin:echo");
    let mut s = connect(&srv);
    let len = 640 * 1024;
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n"
    )
    .unwrap();
    let piece = vec![b'u'; 32 * 1024];
    let started = Instant::now();
    // 20 pieces, one every 200 ms: about 4 s, twice --timeout.
    for _ in 0..len / piece.len() {
        s.write_all(&piece).unwrap();
        let _ = wait_for(Duration::from_millis(200), || None::<()>);
    }
    let answer = read_response(&mut s).unwrap();
    assert_eq!(answer.status, 200, "{}", srv.log());
    assert_eq!(answer.json()["body_length"], len);
    assert!(started.elapsed() > Duration::from_secs(2));
    let log = srv.log();
    assert!(!log.contains("WORKER TIMEOUT"), "{log}");
}

#[test]
fn an_oversized_echo_body_is_refused_with_413() {
    let srv = one_worker(&[], "builtin:echo");
    let mut s = connect(&srv);
    let len = 2 * 1024 * 1024;
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n"
    )
    .unwrap();
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = s.write_all(&vec![b'x'; len]);
        })
    };
    let answer = read_response(&mut s).unwrap();
    assert_eq!(answer.status, 413);
    writer.join().unwrap();
    // The worker goes on serving.
    assert_eq!(srv.get("/").status, 200);
}

#[test]
fn a_panic_ends_only_that_worker_and_leaves_the_masters_files() {
    let launch = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "-w",
        "1",
        "-p",
        "gunicornd.pid",
        "--no-control-socket",
        "builtin:debug",
    ]);
    let pidfile = launch.path("gunicornd.pid");
    let srv = launch.booted(1).start();
    let first = srv.worker_pids();
    let _ = try_http_request(srv.addr(), b"GET /?panic=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    srv.expect_log("Worker panicked (pid: ", Duration::from_secs(10));
    expect_within(Duration::from_secs(20), "a replacement serves", || {
        let now = srv.worker_pids();
        now.len() == 1 && now != first
    });
    assert_eq!(srv.get("/").status, 200);
    // The child's panic ran none of the master's destructors.
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap().trim(),
        srv.pid.to_string()
    );
    assert!(!srv.exited());
    // Nothing unwound into the master's frames in the child (whose drops
    // would close the master's descriptors: the runtime aborts on that).
    let log = srv.log();
    assert!(!log.contains("fatal runtime error"), "{log}");
    assert!(!log.contains("stack backtrace"), "{log}");
}

#[test]
fn a_head_longer_than_the_loop_buffers_still_meets_the_head_deadline() {
    let srv = one_worker(&["--header-timeout", "2"], "builtin:hello");
    // 70 KB of header fields at once (past what the loop buffers before
    // handing the head to the parser), then a byte now and then.
    let mut slow = connect(&srv);
    let mut head = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..9 {
        head.push_str(&format!("X-Big-{i}: {}\r\n", "b".repeat(7900)));
    }
    slow.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let trickler = {
        let mut s = slow.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..20 {
                if s.write_all(b"X").is_err() {
                    return;
                }
                let _ = wait_for(Duration::from_millis(500), || None::<()>);
            }
        })
    };
    let answer = read_all(&mut slow);
    assert!(
        answer.starts_with(b"HTTP/1.1 408 "),
        "{:?}",
        String::from_utf8_lossy(&answer[..answer.len().min(200)])
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    // The worker serves others again.
    assert_eq!(srv.get("/").status, 200);
    trickler.join().unwrap();
}
