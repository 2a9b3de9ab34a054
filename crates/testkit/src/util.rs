//! Small process and network helpers for tests.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A port that was free a moment ago, for processes that need a number up front
/// (prefer binding to port 0 directly).
///
/// Taken below the kernel's ephemeral range, not from `bind(:0)`: a port released
/// by `bind(:0)` is soon handed out again as the local port of some outgoing
/// connection (this test's or a parallel one's), and the process it was meant
/// for then fails with "address in use". Each process starts at its own offset
/// and never hands out the same port twice.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive ports that were free a moment ago (see
/// [`free_port`]; none of them is handed out again by this process).
pub fn free_ports(n: u16) -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = reserved_range();
    let n = n.max(1);
    let span = u32::from(high - low).saturating_sub(u32::from(n)).max(1);
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let at = NEXT.fetch_add(u32::from(n), Ordering::Relaxed);
        let first = low + ((start + at) % span) as u16;
        if (first..first + n).all(bindable) {
            return first;
        }
    }
    panic!("no {n} consecutive free ports in {low}..{high}");
}

/// Ports below the ephemeral range (`ip_local_port_range`), from 10000.
fn reserved_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    (10_000, ephemeral_low.max(10_001))
}

/// Free on every address a test process may bind it on.
fn bindable(port: u16) -> bool {
    TcpListener::bind(("0.0.0.0", port)).is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Waits until something accepts TCP connections on `addr`.
pub async fn wait_for_port(addr: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Resident set size of a process in KiB (Linux `/proc`), `None` if unreadable.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
