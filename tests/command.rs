//! `-k command`: workers that are programs of their own, here
//! `tests/command/worker.py` (Python's standard library only), which serves
//! HTTP on the listener it inherits at fd 3 and speaks sd_notify, with
//! knobs to misbehave. What a master does with such workers: serve,
//! reload without failing a request, kill the ones whose heartbeat stops,
//! wait for the slow to boot, give up on the ones that never do, reload and
//! scale the ones that ignore the protocol, believe nobody but the worker
//! itself, and stay responsive whatever they write to their output.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gunicornd_protocol::{WorkerInfo, WorkersReply};
use gunicornd_test_support::*;

const LONG: Duration = Duration::from_secs(30);

/// The Python that runs the worker: the interpreter itself, not a wrapper
/// on `PATH` (pyenv's shims run a shell first).
fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 runs");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

fn worker_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/command/worker.py")
}

/// `gunicornd.toml` for `workers` command workers running worker.py with
/// the knobs `env` (`KEY=VALUE`), on an OS-chosen port, plus `extra` lines.
fn config(workers: usize, env: &[&str], extra: &str) -> String {
    let env: Vec<String> = env.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "worker_class = \"command\"\ncommand = [\"{}\", \"{}\"]\nworkers = {workers}\n\
         bind = \"127.0.0.1:0\"\nraw_env = [{}]\n{extra}",
        python(),
        worker_py().display(),
        env.join(", ")
    )
}

/// A launch from [`config`] with a control socket and `args` on the
/// command line; start() waits for the listener and the socket only.
fn launch(workers: usize, env: &[&str], extra: &str, args: &[&str]) -> Launch {
    let mut launch = Launch::from_config(&config(workers, env, extra)).control_socket();
    for a in args {
        launch = launch.arg(a);
    }
    launch
}

/// [`launch`], started, once `workers` workers have booted.
fn start(workers: usize, env: &[&str], extra: &str, args: &[&str]) -> Server {
    launch(workers, env, extra, args).booted(workers).start()
}

/// Rewrite the config file of `srv` (a reload reads it again).
fn rewrite(srv: &Server, workers: usize, env: &[&str], extra: &str) {
    std::fs::write(srv.path("gunicornd.toml"), config(workers, env, extra)).unwrap();
}

fn workers(srv: &Server) -> Vec<WorkerInfo> {
    let reply: WorkersReply = Conn::open(srv.socket.as_ref().unwrap()).ok("show workers");
    reply.workers
}

fn environ(pid: i32) -> BTreeMap<String, String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|&b| b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// The pid in a `hello from PID` answer.
fn served_by(srv: &Server) -> i32 {
    let r = srv.get("/");
    assert_eq!(r.status, 200, "{}", srv.log());
    r.text()
        .trim()
        .trim_start_matches("hello from ")
        .parse()
        .unwrap()
}

#[track_caller]
fn assert_no_failures(load: Load, srv: &Server, what: &str) -> u64 {
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{what}: {} of {} requests failed: {:?}\n{}",
        failures.len(),
        ok + failures.len() as u64,
        &failures[..failures.len().min(5)],
        srv.log()
    );
    assert!(ok > 0, "{what}: the load ran");
    ok
}

#[test]
fn n_workers_serve_on_the_inherited_listener_announced_as_systemd_does() {
    let srv = start(3, &[], "timeout = 12\n", &[]);
    let pids = srv.worker_pids();
    assert_eq!(pids.len(), 3);
    let port = srv.addr().rsplit(':').next().unwrap().to_string();

    // Each worker is the program itself, with the listener at fd 3, its
    // output on a pipe, and the environment gunicornd announces.
    let mut notify_socket = String::new();
    for &pid in &pids {
        let env = environ(pid);
        let var = |k: &str| env.get(k).cloned().unwrap_or_default();
        assert_eq!(var("LISTEN_FDS"), "1", "{env:?}");
        assert_eq!(var("LISTEN_PID"), pid.to_string());
        assert_eq!(var("LISTEN_FDNAMES"), format!("127.0.0.1_{port}"));
        assert_eq!(var("GUNICORN_FD"), "3");
        assert_eq!(var("GUNICORND_MASTER_PID"), srv.pid.to_string());
        assert!(var("GUNICORND_WORKER_AGE").parse::<u64>().is_ok());
        assert_eq!(var("WATCHDOG_USEC"), "12000000");
        assert!(!env.contains_key("WATCHDOG_PID"));
        let notify = var("NOTIFY_SOCKET");
        assert!(Path::new(&notify).is_absolute(), "{notify}");
        notify_socket = notify;
        let fd = |n: i32| {
            std::fs::read_link(format!("/proc/{pid}/fd/{n}"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        assert!(fd(3).starts_with("socket:"), "fd 3: {}", fd(3));
        assert!(
            fd(1).starts_with("pipe:") && fd(1) == fd(2),
            "{} {}",
            fd(1),
            fd(2)
        );
        // Its stderr reaches the error log, under its own pid.
        srv.expect_log(
            &format!("[{pid}] [INFO] worker.py: serving on fd 3 (1 listener(s)), pid {pid}"),
            LONG,
        );
    }

    // All of them serve: each reports its count with STATUS=.
    let load = Load::start(srv.addr(), 6, "/", 1_000_000);
    expect_within(LONG, "every worker to serve requests", || {
        workers(&srv).iter().all(|w| {
            w.status
                .as_deref()
                .is_some_and(|s| s.starts_with("served ") && !s.starts_with("served 0 "))
        })
    });
    assert_no_failures(load, &srv, "three workers");
    let listed = workers(&srv);
    assert!(listed.iter().all(|w| w.booted && w.requests.is_none()));
    assert!(
        listed.iter().all(|w| w.last_heartbeat.is_some()),
        "{listed:?}"
    );
    let table = ctl_ok(&[
        "-s",
        srv.socket.as_ref().unwrap().to_str().unwrap(),
        "workers",
    ]);
    assert!(table.lines().next().unwrap().ends_with("STATUS"), "{table}");
    assert!(table.contains(" served "), "{table}");

    // USR1 reaches the program; QUIT makes it leave at once.
    srv.signal(libc::SIGUSR1);
    expect_within(LONG, "each worker to hear USR1", || {
        srv.log()
            .matches("worker.py: reopening logs (USR1)")
            .count()
            == 3
    });
    srv.signal(libc::SIGQUIT);
    assert_eq!(srv.wait_exit(LONG), 0, "{}", srv.log());
    assert!(pids.iter().all(|&p| !process_alive(p)));
    let dir = Path::new(&notify_socket).parent().unwrap();
    assert!(
        !dir.exists(),
        "the NOTIFY_SOCKET and its directory go with the master"
    );
}

#[test]
fn reload_under_load_fails_no_request() {
    let srv = start(2, &[], "", &[]);
    let load = Load::start(srv.addr(), 4, "/", 1_000_000);
    let mut pids = srv.worker_pids();
    for round in 0..5 {
        srv.signal_delivered(libc::SIGHUP);
        let old = pids.clone();
        srv.expect_log(&format!("Reload complete: generation {}", round + 2), LONG);
        expect_within(LONG, "the old workers gone", || {
            let now = srv.worker_pids();
            now.len() == 2 && now.is_disjoint(&old)
        });
        pids = srv.worker_pids();
    }
    let ok = assert_no_failures(load, &srv, "five reloads");
    eprintln!("reload under load: {ok} requests, 0 failed");
}

#[test]
fn a_worker_that_stops_sending_watchdog_is_killed_and_replaced() {
    let srv = start(1, &["WORKER_WATCHDOG_STOP_AFTER=1"], "timeout = 2\n", &[]);
    let pid = *srv.worker_pids().iter().next().unwrap();
    srv.expect_log(
        &format!("WORKER TIMEOUT (pid:{pid}): no WATCHDOG=1 in time"),
        LONG,
    );
    expect_within(LONG, "the worker replaced", || {
        let now = srv.worker_pids();
        !process_alive(pid) && now.len() == 1 && !now.contains(&pid)
    });
    // Logged when the master reaps it, which may come after the
    // replacement is listed.
    srv.expect_log(&format!("Worker (pid:{pid}) was sent SIGABRT!"), LONG);
}

#[test]
fn a_worker_slow_to_send_ready_keeps_the_old_generation_serving_until_it_does() {
    let srv = start(2, &[], "", &[]);
    let old = srv.worker_pids();
    rewrite(&srv, 2, &["WORKER_READY_DELAY=4"], "");
    srv.signal_delivered(libc::SIGHUP);
    let hup = Instant::now();
    let new: BTreeSet<i32> = srv.poll("the new generation spawned", |s| {
        let fresh: BTreeSet<i32> = workers(s)
            .iter()
            .filter(|w| w.generation == Some(2))
            .map(|w| w.pid)
            .collect();
        (fresh.len() == 2).then_some(fresh)
    });
    // Until they say READY=1, the new workers are no capacity (their boot
    // grace does not apply: they said STATUS=starting at once), and the old
    // ones (waiting for their replacements) still run and serve every
    // request.
    while hup.elapsed() < Duration::from_secs(3) {
        let listed = workers(&srv);
        assert_eq!(listed.len(), 4, "{listed:?}");
        for w in &listed {
            if new.contains(&w.pid) {
                assert!(!w.booted, "{w:?} booted before READY=1\n{}", srv.log());
            } else {
                assert!(old.contains(&w.pid) && w.booted, "{w:?}");
            }
        }
        assert!(old.contains(&served_by(&srv)));
    }
    srv.expect_log("Reload complete: generation 2", LONG);
    assert!(
        hup.elapsed() >= Duration::from_secs(4),
        "the reload completed before READY=1"
    );
    expect_within(LONG, "only the new generation", || srv.worker_pids() == new);
    assert!(new.contains(&served_by(&srv)));
}

#[test]
fn a_worker_that_never_sends_ready_in_time_fails_to_boot() {
    // At startup, as gunicorn's exit 3: the server halts.
    let srv = launch(1, &["WORKER_NEVER_READY=1"], "timeout = 2\n", &[]).start();
    assert_eq!(srv.wait_exit(LONG), 3, "{}", srv.log());
    let log = srv.log();
    assert!(log.contains("while booting: no READY=1 in time"), "{log}");
    assert!(
        log.contains("Reason: Worker failed to boot: no READY=1 in time."),
        "{log}"
    );

    // During a reload, the generation that serves stays.
    let srv = start(2, &[], "timeout = 2\n", &[]);
    let old = srv.worker_pids();
    rewrite(&srv, 2, &["WORKER_NEVER_READY=1"], "timeout = 2\n");
    srv.signal_delivered(libc::SIGHUP);
    srv.expect_log(
        "Reload failed: Worker failed to boot: no READY=1 in time. Keeping generation 1 serving",
        LONG,
    );
    expect_within(LONG, "only the old generation", || srv.worker_pids() == old);
    assert!(old.contains(&served_by(&srv)));

    // Without --halt-on-boot-error it is a crash like any other: retried,
    // with backoff.
    let srv = launch(
        1,
        &["WORKER_NEVER_READY=1"],
        "timeout = 1\n",
        &["--halt-on-boot-error=false"],
    )
    .start();
    srv.expect_log("2 worker(s) in a row died before booting", LONG);
    assert!(!srv.exited());
}

#[test]
fn exit_codes_3_and_4_halt_only_with_halt_on_boot_error() {
    let srv = launch(1, &["WORKER_EXIT=3"], "", &[]).start();
    assert_eq!(srv.wait_exit(LONG), 3, "{}", srv.log());
    assert!(srv.log_contains("Reason: Worker failed to boot."));
    let srv = launch(1, &["WORKER_EXIT=4"], "", &["--halt-on-boot-error=false"]).start();
    srv.expect_log("3 worker(s) in a row died before booting", LONG);
    assert!(!srv.exited());
}

#[test]
fn a_program_that_ignores_the_protocol_is_still_reloaded_and_scaled() {
    let srv = start(2, &["WORKER_PROTOCOL=0"], "", &[]);
    assert!(workers(&srv).iter().all(|w| w.booted && w.status.is_none()));
    let old = srv.worker_pids();
    srv.signal_delivered(libc::SIGHUP);
    srv.expect_log("Reload complete: generation 2", LONG);
    expect_within(LONG, "all replaced", || {
        let now = srv.worker_pids();
        now.len() == 2 && now.is_disjoint(&old)
    });
    srv.signal_delivered(libc::SIGTTIN);
    srv.wait_pool(3);
    srv.signal_delivered(libc::SIGTTOU);
    srv.signal_delivered(libc::SIGTTOU);
    srv.wait_pool(1);
    served_by(&srv);
}

#[test]
fn a_message_from_another_pid_on_the_notify_socket_is_ignored() {
    // The worker speaks (STATUS=) but never says READY=1; with no timeout
    // nothing gives up on it.
    let srv = launch(1, &["WORKER_NEVER_READY=1"], "timeout = 0\n", &[]).start();
    let pid = srv.poll("the worker", |s| s.worker_pids().into_iter().next());
    let notify = srv.poll("its NOTIFY_SOCKET", |_| {
        environ(pid).get("NOTIFY_SOCKET").cloned()
    });
    expect_within(LONG, "the worker to say it is starting", || {
        workers(&srv)
            .iter()
            .any(|w| w.status.as_deref() == Some("starting"))
    });
    // This test process is no worker: its READY=1 counts for nobody.
    let me = UnixDatagram::unbound().unwrap();
    me.send_to(b"READY=1\nSTATUS=forged", &notify).unwrap();
    srv.expect_log(
        &format!(
            "Ignoring a NOTIFY_SOCKET message from pid {}, which is not one of this master's \
             command workers",
            std::process::id()
        ),
        LONG,
    );
    let listed = workers(&srv);
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].booted, "{listed:?}");
    assert_eq!(listed[0].status.as_deref(), Some("starting"));
}

#[test]
fn ten_megabytes_a_second_of_output_do_not_delay_the_masters_answers() {
    let srv = start(1, &["WORKER_FLOOD_BYTES=10000000"], "", &[]);
    let pid = *srv.worker_pids().iter().next().unwrap();
    // The worker really writes that much: its write count over a second.
    let written = |pid: i32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/io"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("wchar: ").and_then(|v| v.parse().ok()))
            .unwrap_or(0)
    };
    let (before, since) = (written(pid), Instant::now());
    let mut conn = Conn::open(srv.socket.as_ref().unwrap());
    let mut latencies = Vec::new();
    while since.elapsed() < Duration::from_secs(3) {
        let asked = Instant::now();
        let pong: serde_json::Value = conn.ok("ping");
        latencies.push(asked.elapsed());
        assert_eq!(pong["pong"], true);
    }
    let rate = (written(pid) - before) as f64 / since.elapsed().as_secs_f64();
    latencies.sort();
    let (median, worst) = (
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    );
    eprintln!(
        "output flood: {:.1} MB/s written; {} pings, median {median:?}, worst {worst:?}",
        rate / 1e6,
        latencies.len()
    );
    assert!(rate > 8e6, "the worker wrote only {rate} bytes/s");
    assert!(median < Duration::from_millis(20), "median ping {median:?}");
    assert!(worst < Duration::from_millis(250), "worst ping {worst:?}");
    srv.expect_log(
        &format!("lines of output from worker (pid:{pid}): it wrote more than 1000 lines"),
        LONG,
    );
    // The lines that are kept carry the worker's pid.
    assert!(srv.log_contains(&format!("[{pid}] [INFO] xxxxxxxxxx")));
    // The worker still serves.
    assert_eq!(served_by(&srv), pid);
}

#[test]
fn a_worker_that_says_stopping_is_replaced_before_it_exits() {
    let srv = start(1, &["WORKER_STOPPING_AFTER=2"], "", &[]);
    let pid = *srv.worker_pids().iter().next().unwrap();
    srv.expect_log(
        &format!("Worker (pid:{pid}) is stopping on its own (STOPPING=1)"),
        LONG,
    );
    // Its replacement is there while it still runs (it exits a second
    // after saying so).
    let replaced_early = wait_until(LONG, || {
        let now = srv.worker_pids();
        process_alive(pid) && now.len() == 2
    });
    assert!(replaced_early, "{}", srv.log());
    expect_within(LONG, "the old one gone", || !process_alive(pid));
    assert!(!srv.log_contains("died before booting"));
}

#[test]
fn gunicornctl_kill_replaces_a_command_worker_and_the_master_dying_ends_them() {
    let srv = start(2, &[], "", &[]);
    let socket = srv.socket.clone().unwrap();
    let pids: Vec<i32> = srv.worker_pids().into_iter().collect();
    let s = socket.to_str().unwrap();
    ctl_ok(&["-s", s, "kill", &pids[0].to_string()]);
    expect_within(LONG, "a replacement", || {
        let now = srv.worker_pids();
        !now.contains(&pids[0]) && now.len() == 2
    });
    srv.wait_pool(2);
    // SIGKILL to the master: the workers get SIGTERM (the parent-death
    // signal) and leave.
    let workers = srv.worker_pids();
    srv.signal(libc::SIGKILL);
    expect_within(LONG, "the workers to end with their master", || {
        workers.iter().all(|&p| !process_alive(p))
    });
}

#[test]
fn a_binary_upgrade_hands_over_to_new_command_workers_without_a_failed_request() {
    let srv = start(2, &[], "", &["-p", "g.pid"]);
    let pidfile = srv.path("g.pid");
    let load = Load::start(srv.addr(), 4, "/", 1_000_000);
    let old_workers = srv.worker_pids();
    let old = srv.pid;
    srv.signal(libc::SIGUSR2);
    srv.expect_log("is ready, all its workers booted", LONG);
    let new = std::fs::read_to_string(format!("{}.2", pidfile.display()))
        .unwrap()
        .trim()
        .parse::<i32>()
        .unwrap();
    let new_workers = children_of(new);
    assert_eq!(new_workers.len(), 2, "{}", srv.log());
    for pid in &new_workers {
        assert_eq!(environ(*pid)["GUNICORND_MASTER_PID"], new.to_string());
    }
    srv.signal(libc::SIGWINCH);
    srv.signal(libc::SIGTERM);
    expect_within(LONG, "the new master promoted", || {
        srv.log_contains(&format!("[{new}] [INFO] Master has been promoted."))
    });
    expect_within(LONG, "the old master and its workers gone", || {
        srv.exited() && old_workers.iter().all(|&p| !process_alive(p))
    });
    assert!(!process_alive(old));
    assert_no_failures(load, &srv, "an upgrade");
    assert_eq!(children_of(new), new_workers);
    // SAFETY: the test started this process tree.
    unsafe { libc::kill(new, libc::SIGTERM) };
    expect_within(LONG, "the new master gone", || !process_alive(new));
}

#[test]
fn with_user_the_program_runs_as_that_user_and_may_still_notify() {
    // Root alone can switch users; the interpreter and the script must be
    // readable by nobody (this Python may live in root's home).
    let system_python = Path::new("/usr/bin/python3");
    if !nix::unistd::geteuid().is_root() || !system_python.exists() {
        eprintln!("skipped: needs root and /usr/bin/python3");
        return;
    }
    let launch = Launch::from_config("").control_socket().dir_mode(0o755);
    let script = launch.path("worker.py");
    std::fs::copy(worker_py(), &script).unwrap();
    std::fs::write(
        launch.path("gunicornd.toml"),
        format!(
            "worker_class = \"command\"\ncommand = [\"/usr/bin/python3\", \"{}\"]\n\
             bind = \"127.0.0.1:0\"\nuser = \"nobody\"\n",
            script.display()
        ),
    )
    .unwrap();
    let srv = launch.booted(1).start();
    let pid = served_by(&srv);
    let creds = credentials(pid).unwrap();
    assert_eq!(creds.uids, [65534; 4], "{creds:?}");
    assert!(
        !creds.groups.contains(&0),
        "no group left over from root: {creds:?}"
    );
    // It said READY=1 (it booted by it, not by the grace: it spoke) and
    // keeps pinging through a socket it may write to.
    let listed = workers(&srv);
    assert!(listed[0]
        .status
        .as_deref()
        .is_some_and(|s| s.starts_with("served")));
    let notify = PathBuf::from(&environ(pid)["NOTIFY_SOCKET"]);
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&notify).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (65534, 0o600));
}
