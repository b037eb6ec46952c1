//! Scaling with TTIN and TTOU: one worker per signal, never below one, the
//! oldest retired first without failing a request, and a scale-down that
//! chooses well while workers boot or a respawn waits out its backoff.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use gunicornd_test_support::*;

/// utime + stime of `pid` in clock ticks (fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the ")" that closes the command name start at field 3.
    let rest = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields[14 - 3].parse().unwrap();
    let stime: u64 = fields[15 - 3].parse().unwrap();
    utime + stime
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&hz| hz > 0).unwrap_or(100)
}

#[test]
fn scale_up_and_down_under_load_retires_the_oldest() {
    // The master reports each worker's age (spawn order) to a hook: log lines
    // from concurrently booting workers do not come in spawn order.
    let ages_hook = "post_fork=echo \"$GUNICORND_WORKER_AGE $GUNICORND_WORKER_PID\" >> ages.txt";
    let srv = Server::start_with_workers(3, &["-w", "3", "--hook", ages_hook, "builtin:hello"]);
    let load = Load::start(srv.addr(), 4, "/", 200_000);
    for _ in 0..5 {
        srv.signal_delivered(libc::SIGTTIN);
    }
    srv.wait_booted(8);
    for _ in 0..5 {
        srv.signal_delivered(libc::SIGTTOU);
    }
    expect_within(Duration::from_secs(20), "back to 3 workers", || {
        srv.worker_pids().len() == 3
    });
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 50);
    let read_ages = || -> Vec<(u64, i32)> {
        let text = std::fs::read_to_string(srv.path("ages.txt")).unwrap_or_default();
        let mut ages: Vec<(u64, i32)> = text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter_map(|(a, p)| Some((a.parse().ok()?, p.trim().parse().ok()?)))
            .collect();
        ages.sort();
        ages
    };
    expect_within(Duration::from_secs(10), "all 8 post_fork hooks ran", || {
        read_ages().len() == 8
    });
    let ages = read_ages();
    let newest: BTreeSet<i32> = ages[ages.len() - 3..].iter().map(|&(_, pid)| pid).collect();
    assert_eq!(srv.worker_pids(), newest, "the oldest workers were retired");
}

#[test]
fn burst_of_ten_ttin_adds_exactly_ten_workers() {
    let srv = Server::start_with_workers(1, &["builtin:hello"]);
    for _ in 0..10 {
        srv.signal_delivered(libc::SIGTTIN);
    }
    srv.wait_booted(11);
    // Nothing more arrives later.
    assert!(!wait_until(Duration::from_millis(500), || srv
        .worker_pids()
        .len()
        != 11));
}

#[test]
fn ttou_never_goes_below_one_worker() {
    let srv = Server::start_with_workers(1, &["builtin:hello"]);
    let pid = srv.worker_pids();
    srv.signal_delivered(libc::SIGTTOU);
    assert!(!wait_until(Duration::from_millis(500), || srv
        .worker_pids()
        != pid));
}

/// TTOU with one booted and one still-booting worker stops the booting one;
/// guards against a scale-down that stopped the booted worker and left
/// nobody to answer until the other finished booting.
#[test]
fn scale_down_keeps_the_booted_worker_over_a_booting_one() {
    let srv = Server::start_with_workers(1, &["--no-control-socket", "builtin:debug?boot_sleep=3"]);
    srv.expect_log("Ready: 1 workers booted", Duration::from_secs(15));
    let booted = srv.worker_pids();
    srv.signal_delivered(libc::SIGTTIN);
    expect_within(Duration::from_secs(5), "a second, booting worker", || {
        srv.worker_pids().len() == 2
    });
    srv.signal_delivered(libc::SIGTTOU);
    let started = Instant::now();
    let answer = get_within(srv.addr(), Duration::from_secs(10));
    let took = started.elapsed();
    expect_within(Duration::from_secs(10), "one worker left", || {
        srv.worker_pids().len() == 1
    });
    assert_eq!(
        srv.worker_pids(),
        booted,
        "TTOU stopped the booted worker and kept the booting one; log:\n{}",
        srv.log()
    );
    assert!(
        answer.as_ref().is_ok_and(|r| r.status == 200) && took < Duration::from_secs(1),
        "a request during the scale-down: {:?} after {took:?}",
        answer.map(|r| r.status)
    );
}

/// Scaling down while the respawn of a worker that died booting waits out
/// its backoff; guards against a master that then busy-looped on the spawn
/// nobody wanted any more.
#[test]
fn scale_down_during_the_spawn_backoff_does_not_spin_the_master() {
    let srv = Server::start_with_workers(1, &["--no-control-socket", "builtin:debug?boot_sleep=2"]);
    srv.expect_log("Ready: 1 workers booted", Duration::from_secs(15));
    let booted = srv.worker_pids();
    srv.signal_delivered(libc::SIGTTIN);
    // Kill the extra worker while it boots, three times in a row: the
    // backoff before the next spawn grows to 400 ms, time enough to scale
    // down while it is pending.
    let mut killed = BTreeSet::new();
    for round in 1..=3 {
        let mut booting = 0;
        expect_within(Duration::from_secs(10), "a booting extra worker", || {
            let extra: Vec<i32> = srv
                .worker_pids()
                .into_iter()
                .filter(|p| !booted.contains(p) && !killed.contains(p))
                .collect();
            booting = extra.first().copied().unwrap_or(0);
            booting != 0
        });
        // SAFETY: plain kill(2) on the master's worker.
        unsafe { libc::kill(booting, libc::SIGKILL) };
        killed.insert(booting);
        srv.expect_log(
            &format!("{round} worker(s) in a row died before booting"),
            Duration::from_secs(10),
        );
    }
    srv.signal_delivered(libc::SIGTTOU);
    srv.expect_log("Number of workers: 2 -> 1", Duration::from_secs(5));
    let started = Instant::now();
    let before = cpu_ticks(srv.pid);
    assert!(!wait_until(Duration::from_secs(2), || !process_alive(
        srv.pid
    )));
    let used = cpu_ticks(srv.pid) - before;
    let elapsed = started.elapsed().as_secs_f64();
    // An idle master uses next to nothing; allow 15% of one CPU.
    let limit = (clock_ticks_per_second() as f64 * elapsed * 0.15) as u64;
    assert!(
        used < limit,
        "the master used {used} clock ticks of CPU in {elapsed:.2}s (limit {limit}): it spins; log:\n{}",
        srv.log()
    );
}
