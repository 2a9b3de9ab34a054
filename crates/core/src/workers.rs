//! Thread-per-core serving: N worker threads, each running a current-thread tokio
//! runtime of its own. HTTP listeners accept on the main runtime and hand each
//! connection to the next worker (round robin); the connection, its requests and
//! the upstream connections they open all live on that worker, so a request never
//! wakes another thread and nothing is work-stolen across cores. Upstream
//! connection pools are kept per worker for the same reason (`upstream::connect`).
//!
//! Without [`start`] (one worker, tests, the mesh binaries) [`next`] is `None` and
//! connections are spawned on the runtime that accepted them.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;

static WORKERS: OnceLock<Workers> = OnceLock::new();

thread_local! {
    /// This thread's worker number (0 off the workers).
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

/// Starts `n` worker threads (named `mg-worker-K`: a thread name shows 15 characters) for the rest of the
/// process. A second call changes nothing: the workers are the process's.
pub fn start(n: usize) -> std::io::Result<()> {
    if WORKERS.get().is_some() {
        return Ok(());
    }
    let mut handles = Vec::with_capacity(n);
    for k in 0..n {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name(format!("mg-worker-{k}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                CURRENT.with(|c| c.set(k + 1));
                let _ = tx.send(Ok(runtime.handle().clone()));
                // Runs the tasks handed to it until the process exits.
                runtime.block_on(std::future::pending::<()>());
            })?;
        let handle = rx
            .recv()
            .map_err(|_| std::io::Error::other("worker thread ended before starting"))??;
        handles.push(handle);
    }
    let _ = WORKERS.set(Workers {
        handles,
        next: AtomicUsize::new(0),
    });
    Ok(())
}

/// The runtime of the worker the next connection goes to (round robin), or
/// `None` without workers (serve it where it was accepted).
pub fn next() -> Option<&'static Handle> {
    let w = WORKERS.get()?;
    Some(&w.handles[w.next.fetch_add(1, Ordering::Relaxed) % w.handles.len()])
}

/// The calling thread's worker number: 1..=N on a worker, 0 elsewhere.
pub fn current() -> usize {
    CURRENT.with(Cell::get)
}
