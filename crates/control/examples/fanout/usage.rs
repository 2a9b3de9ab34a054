//! What a process uses (part of the `fanout` example): resident memory and its
//! peak from `/proc/self/status`, CPU time from `/proc/self/stat`, and, with glibc,
//! the heap actually in use (`mallinfo2`) and the RSS left after `malloc_trim(0)`,
//! which tell live memory apart from memory the allocator keeps after a burst.

/// Memory of this process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    pub rss_kb: u64,
    /// Peak RSS (VmHWM).
    pub hwm_kb: u64,
    /// Bytes allocated and not freed (0 where unknown: not glibc).
    pub heap_kb: u64,
    /// RSS once the allocator returned its free memory to the system.
    pub trimmed_kb: u64,
}

impl Mem {
    /// Measures this process; `trim` also returns the allocator's free memory to
    /// the system (so later peaks start from live memory) and measures again.
    pub fn of_self(trim: bool) -> Mem {
        let (rss_kb, hwm_kb) = status();
        let mut mem = Mem {
            rss_kb,
            hwm_kb,
            heap_kb: glibc::heap_bytes() / 1024,
            trimmed_kb: rss_kb,
        };
        if trim && glibc::trim() {
            mem.trimmed_kb = status().0;
        }
        mem
    }
}

fn status() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User + system CPU time of this process (all threads) so far, in ms
/// (10 ms resolution: clock ticks of 1/100 s).
pub fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces);
    // utime and stime are fields 14 and 15 of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    ticks * 10
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    /// `struct mallinfo2` of glibc ≥ 2.33.
    #[repr(C)]
    struct Mallinfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }

    unsafe extern "C" {
        fn mallinfo2() -> Mallinfo2;
        fn malloc_trim(pad: usize) -> i32;
    }

    /// Bytes in use: allocated from the arenas plus mmapped chunks.
    pub fn heap_bytes() -> u64 {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let info = unsafe { mallinfo2() };
        (info.uordblks + info.hblkhd) as u64
    }

    pub fn trim() -> bool {
        // SAFETY: malloc_trim releases free memory; it is safe at any time.
        unsafe { malloc_trim(0) };
        true
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod glibc {
    pub fn heap_bytes() -> u64 {
        0
    }

    pub fn trim() -> bool {
        false
    }
}
