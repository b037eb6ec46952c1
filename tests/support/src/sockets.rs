//! Loopback ports and who holds which socket, as `/proc` shows it.

use std::collections::BTreeSet;
use std::fs;
use std::net::TcpListener;

/// A loopback port nothing listens on right now (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Inodes of the sockets listening on TCP `port` (IPv4 or IPv6), from
/// /proc/net/tcp{,6}.
pub fn listening_inodes(port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let Some(local) = f.get(1) else { continue };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            // State 0A is LISTEN; the inode is the tenth field.
            if local_port == Some(port) && f.get(3) == Some(&"0A") {
                if let Some(inode) = f.get(9).and_then(|i| i.parse().ok()) {
                    inodes.push(inode);
                }
            }
        }
    }
    inodes
}

/// The inode of the socket behind descriptor `fd` of `pid` (`/proc` shows
/// it as `socket:[INODE]`), if it is a socket.
pub fn socket_inode(pid: i32, fd: i32) -> Option<u64> {
    let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    inode_of_link(&target.to_string_lossy())
}

/// The descriptors of `pid` that refer to any of the sockets `inodes`.
pub fn fds_holding_socket(pid: i32, inodes: &[u64]) -> Vec<i32> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return vec![];
    };
    entries
        .flatten()
        .filter(|e| {
            fs::read_link(e.path()).is_ok_and(|t| {
                inode_of_link(&t.to_string_lossy()).is_some_and(|i| inodes.contains(&i))
            })
        })
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

/// Which of `pids` hold any of the sockets `inodes` open.
pub fn socket_holders(pids: &BTreeSet<i32>, inodes: &[u64]) -> Vec<i32> {
    pids.iter()
        .copied()
        .filter(|&pid| !fds_holding_socket(pid, inodes).is_empty())
        .collect()
}

/// `INODE` from a descriptor's link text `socket:[INODE]`.
fn inode_of_link(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}
