//! Regression tests for control-socket defects a review found in the real
//! gunicornd: `worker remove` below zero workers, one client's pipelined
//! requests stalling everyone else, and a half-closed client losing its
//! reply. Each test starts its own gunicornd (`support::Launch`), polls facts
//! with deadlines and kills what it started on drop.

mod support;

use std::io::{BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use gunicornd_protocol::{write_frame, PingReply, Request, Response};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use support::{children_of, ctl_ok, poll, process_alive, Conn, Launch};

/// One request frame: a big-endian length, then the JSON payload.
fn frame(id: u64, command: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    write_frame(&mut bytes, &Request::new(id, command)).unwrap();
    bytes
}

/// Time for one `ping` on a fresh connection, or why it failed.
fn ping_latency(socket: &std::path::Path) -> Result<Duration, String> {
    let started = Instant::now();
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(&frame(1, "ping"))
        .map_err(|e| format!("send: {e}"))?;
    match gunicornd_protocol::read_frame::<_, Response>(&mut stream) {
        Ok(Response::Ok { .. }) => Ok(started.elapsed()),
        other => Err(format!("ping answered {other:?}")),
    }
}

/// Kills a daemon's master and its workers, by pid, on drop.
/// `support::Gunicornd` kills the process group named by the master's pid,
/// but a daemon's group is named by the intermediate process that called
/// `setsid`, so without this a daemon that survives its test would leak.
struct KillDaemonOnDrop(i32);

impl Drop for KillDaemonOnDrop {
    fn drop(&mut self) {
        if !process_alive(self.0) {
            return;
        }
        for worker in children_of(self.0) {
            let _ = kill(Pid::from_raw(worker), Signal::SIGKILL);
        }
        let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
    }
}

// ---------------------------------------------------------------------------
// 5. `worker remove` with no workers left

#[test]
fn worker_remove_with_no_workers_keeps_the_daemon() {
    let mut srv = Launch::new(2).daemon().start();
    let _daemon = KillDaemonOnDrop(srv.pid);
    let sock = srv.sock().to_string();
    ctl_ok(&["-s", &sock, "stop-workers"]);
    srv.poll("every worker to stop", |s| {
        s.workers().is_empty().then_some(())
    });
    let mut conn = Conn::open(srv.socket.as_ref().unwrap());
    conn.send_bytes(&frame(1, "worker remove 1"));
    let reply = conn.read();
    // The master must still be there to answer, whatever it replied.
    let ping = ping_latency(srv.socket.as_ref().unwrap());
    assert!(
        ping.is_ok(),
        "after 'worker remove 1' with no workers (reply: {reply:?}) the master \
         does not answer ping: {ping:?}"
    );
    match reply {
        Ok(Response::Ok { data, .. }) => {
            let removed = data.get("removed").and_then(|n| n.as_u64());
            assert!(
                removed.is_some_and(|n| n <= 1),
                "'worker remove 1' with no workers reported removing {:?}: {data}",
                data.get("removed")
            );
        }
        // Refusing to go below zero is an answer too.
        Ok(Response::Error { .. }) => {}
        other => panic!("no reply to 'worker remove 1' with no workers: {other:?}"),
    }
    let pong: PingReply = Conn::open(srv.socket.as_ref().unwrap()).ok("ping");
    assert!(pong.pong);
    assert_eq!(pong.pid, srv.pid);
    assert!(process_alive(srv.pid), "the master keeps running");
    ctl_ok(&["-s", &sock, "stop"]);
    srv.wait_gone();
}

// ---------------------------------------------------------------------------
// 7. A client pipelining many requests does not stall the others

#[test]
fn a_pipelining_client_does_not_delay_another_clients_ping() {
    const REQUESTS: usize = 20_000;
    let srv = Launch::new(8).start();
    let socket = srv.socket.clone().unwrap();
    let idle = ping_latency(&socket).unwrap();

    let flood = UnixStream::connect(&socket).unwrap();
    flood
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let replies = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut stream = flood.try_clone().unwrap();
        let sent = sent.clone();
        thread::spawn(move || {
            let one = frame(1, "show workers");
            let batch: Vec<u8> = one.repeat(500);
            for _ in 0..REQUESTS / 500 {
                if stream.write_all(&batch).is_err() {
                    return;
                }
                sent.fetch_add(500, Ordering::Relaxed);
            }
        })
    };
    let reader = {
        let mut stream = BufReader::new(flood.try_clone().unwrap());
        let replies = replies.clone();
        let finished = finished.clone();
        thread::spawn(move || {
            // Only count whole frames: the contents do not matter here.
            let mut len = [0u8; 4];
            let mut payload = Vec::new();
            while replies.load(Ordering::Relaxed) < REQUESTS {
                if stream.read_exact(&mut len).is_err() {
                    break;
                }
                payload.resize(u32::from_be_bytes(len) as usize, 0);
                if stream.read_exact(&mut payload).is_err() {
                    break;
                }
                replies.fetch_add(1, Ordering::Relaxed);
            }
            finished.store(true, Ordering::Relaxed);
        })
    };

    poll("the flood to start", || {
        (sent.load(Ordering::Relaxed) > 0).then_some(())
    });
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    let mut pings = 0;
    while !finished.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(15) {
        let took = ping_latency(&socket).unwrap();
        worst = worst.max(took);
        pings += 1;
    }
    let answered = replies.load(Ordering::Relaxed);
    let _ = flood.shutdown(Shutdown::Both);
    let _ = writer.join();
    let _ = reader.join();
    assert!(
        worst < Duration::from_millis(500),
        "a ping took {worst:?} (idle: {idle:?}) while another client pipelined {REQUESTS} \
         'show workers' ({answered} answered, {pings} pings measured)"
    );
    assert!(pings > 0, "no ping was measured during the flood");
    eprintln!("flood of {REQUESTS}: {answered} answered, {pings} pings, worst {worst:?}");
}

// ---------------------------------------------------------------------------
// 8. A client that half-closes after its request still gets the reply

#[test]
fn a_half_closed_client_still_gets_its_reply() {
    let srv = Launch::new(1).start();
    let mut conn = Conn::open(srv.socket.as_ref().unwrap());
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The master must find the request and the end of stream together, in
    // one read: hold it stopped while both are sent.
    let master = Pid::from_raw(srv.pid);
    kill(master, Signal::SIGSTOP).unwrap();
    poll("the master to stop", || {
        (state_of(srv.pid) == Some('T')).then_some(())
    });
    conn.send_bytes(&frame(7, "ping"));
    conn.stream.shutdown(Shutdown::Write).unwrap();
    kill(master, Signal::SIGCONT).unwrap();
    match conn.read() {
        Ok(Response::Ok { id, data }) => {
            assert_eq!(id, 7, "{data}");
            let pong: PingReply = serde_json::from_value(data).unwrap();
            assert!(pong.pong);
            assert_eq!(pong.pid, srv.pid);
        }
        other => panic!("after 'ping' and shutdown(SHUT_WR): {other:?}"),
    }
}

/// The state letter of `pid` in /proc (`T` when stopped).
fn state_of(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}
