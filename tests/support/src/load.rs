//! A load generator for "no request fails" tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::http::try_http_request;

/// `conns` client threads sending requests back to back until stopped,
/// counting successes and failures.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<(u64, Vec<String>)>>,
}

impl Load {
    /// Start `conns` clients against `addr`, each bounded to `max_requests`.
    pub fn start(addr: &str, conns: usize, path: &str, max_requests: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..conns)
            .map(|_| {
                let stop = stop.clone();
                let addr = addr.to_string();
                let raw = format!("GET {path} HTTP/1.1\r\nHost: load\r\n\r\n");
                thread::spawn(move || {
                    let mut ok = 0u64;
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::Relaxed)
                        && ok + (failures.len() as u64) < max_requests
                    {
                        match try_http_request(&addr, raw.as_bytes()) {
                            Ok(r) if r.status == 200 => ok += 1,
                            Ok(r) => failures.push(format!("status {}", r.status)),
                            Err(e) => failures.push(e.to_string()),
                        }
                    }
                    (ok, failures)
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stop the clients; returns (successes, failure descriptions).
    pub fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut ok = 0;
        let mut failures = Vec::new();
        for t in self.threads {
            let (o, f) = t.join().unwrap();
            ok += o;
            failures.extend(f);
        }
        (ok, failures)
    }
}
