//! Where formatted log lines wait and the thread that writes them.
//!
//! The request path appends its line to one of a few buffers (a thread keeps
//! using the same one, so workers rarely share a lock) and goes on; the writer
//! thread swaps the buffers out every [`BATCH_WAIT`] and writes them with one
//! `write` each. Compared with handing a boxed record to the writer per request,
//! nothing crosses threads per request: no allocation freed elsewhere, no
//! reference count bounced between cores, no channel slot, no wake-up.
//!
//! When nothing was logged for a while the writer parks for up to a second; the
//! first line after that unparks it. A buffer past [`HIGH_WATER`] wakes it early;
//! one past [`MAX_PENDING`] (the writer cannot keep up) drops lines, counted.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;
use std::time::Duration;

/// How long lines may wait before they are written.
const BATCH_WAIT: Duration = Duration::from_millis(10);
/// Buffered bytes that wake the writer before its time.
const HIGH_WATER: usize = 256 * 1024;
/// Buffered bytes past which lines are dropped (and counted).
const MAX_PENDING: usize = 8 * 1024 * 1024;
/// Empty rounds before the writer parks until woken.
const IDLE_ROUNDS: u32 = 10;
/// The longest an idle writer sleeps: it also checks then whether it is the
/// sink's last holder (a handle's drop wakes it, but may do so just before its
/// reference is gone).
const IDLE_PARK: Duration = Duration::from_secs(1);

/// Buffers of one log, and how to reach its writer.
#[derive(Debug)]
pub(super) struct Sink {
    shards: Box<[Shard]>,
    writer: Thread,
    /// The writer is parked until a line arrives.
    idle: AtomicBool,
    /// A buffer passed `HIGH_WATER` and the writer was told.
    woken: AtomicBool,
    /// Answered once everything queued before the request is written and flushed.
    flushes: Mutex<Vec<SyncSender<()>>>,
}

/// One buffer, on its own cache lines so workers do not contend by accident.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Mutex<Vec<u8>>);

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while appending leaves at worst a partial line; keep logging.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sink {
    /// Starts the writer thread for `out`.
    pub(super) fn start(out: Box<dyn Write + Send>) -> std::io::Result<Arc<Sink>> {
        let shards = std::thread::available_parallelism().map_or(4, |n| n.get().clamp(2, 16));
        let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<Sink>>(1);
        let handle = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                if let Ok(sink) = rx.recv() {
                    write_loop(sink, out);
                }
            })?;
        let sink = Arc::new(Sink {
            shards: (0..shards).map(|_| Shard::default()).collect(),
            writer: handle.thread().clone(),
            idle: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            flushes: Mutex::new(Vec::new()),
        });
        // The writer stops once it is the sink's last holder (see `write_loop`).
        let _ = tx.send(sink.clone());
        Ok(sink)
    }

    /// Appends one line with `write` (which must not add the newline); false when
    /// the line was dropped because the writer is too far behind.
    pub(super) fn append(&self, write: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
        let shard = &self.shards[thread_slot() % self.shards.len()];
        let mut buf = shard.lock();
        if buf.len() >= MAX_PENDING {
            return false;
        }
        let start = buf.len();
        if write(&mut buf) {
            buf.push(b'\n');
        } else {
            buf.truncate(start);
        }
        let high = buf.len() >= HIGH_WATER;
        drop(buf);
        if (high && !self.woken.swap(true, Ordering::AcqRel))
            || (self.idle.load(Ordering::Acquire) && self.idle.swap(false, Ordering::AcqRel))
        {
            self.writer.unpark();
        }
        true
    }

    /// Asks the writer to write and flush everything so far; `done` gets `()`
    /// once it has.
    pub(super) fn flush(&self, done: SyncSender<()>) {
        self.flushes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(done);
        self.idle.store(false, Ordering::Release);
        self.writer.unpark();
    }

    /// Wakes the writer (to notice it is the last holder of the sink).
    pub(super) fn wake(&self) {
        self.idle.store(false, Ordering::Release);
        self.writer.unpark();
    }

    /// Writes every buffer to `out` (swapping each with `spare`); whether
    /// anything was written.
    fn drain(&self, out: &mut dyn Write, spare: &mut Vec<u8>) -> bool {
        let mut any = false;
        for shard in self.shards.iter() {
            std::mem::swap(&mut *shard.lock(), spare);
            if !spare.is_empty() {
                any = true;
                let _ = out.write_all(spare);
                spare.clear();
            }
        }
        self.woken.store(false, Ordering::Release);
        any
    }
}

/// This thread's buffer index: threads take slots in turn on first use.
fn thread_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SLOT.with(|s| *s)
}

/// Writes batches until every `AccessLog` handle is gone, then the rest.
fn write_loop(sink: Arc<Sink>, out: Box<dyn Write + Send>) {
    let mut out = out;
    let mut spare = Vec::with_capacity(64 * 1024);
    let mut empty_rounds = 0;
    loop {
        let last = Arc::strong_count(&sink) == 1;
        let waiting: Vec<_> =
            std::mem::take(&mut *sink.flushes.lock().unwrap_or_else(|e| e.into_inner()));
        if sink.drain(&mut out, &mut spare) {
            empty_rounds = 0;
        } else {
            empty_rounds += 1;
        }
        let _ = out.flush();
        for done in waiting {
            let _ = done.send(());
        }
        if last {
            return;
        }
        if empty_rounds >= IDLE_ROUNDS {
            sink.idle.store(true, Ordering::Release);
            // A line appended before `idle` was visible would otherwise wait for
            // the next one: look once more before parking for good.
            if sink.shards.iter().any(|s| !s.lock().is_empty())
                || !sink
                    .flushes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty()
            {
                sink.idle.store(false, Ordering::Release);
                continue;
            }
            std::thread::park_timeout(IDLE_PARK);
            empty_rounds = 0;
        } else {
            std::thread::park_timeout(BATCH_WAIT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An in-memory output the test can read while the writer writes.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn lines(&self) -> Vec<String> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines().map(str::to_owned).collect()
        }
    }

    fn line(text: String) -> impl FnOnce(&mut Vec<u8>) -> bool {
        move |buf| {
            buf.extend_from_slice(text.as_bytes());
            true
        }
    }

    fn flush(sink: &Sink) {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        sink.flush(done);
        wait.recv_timeout(Duration::from_secs(5)).expect("flushed");
    }

    #[test]
    fn lines_from_many_threads_are_all_written_whole() {
        let out = Shared::default();
        let sink = Sink::start(Box::new(out.clone())).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        assert!(sink.append(line(format!("{{\"t\":{t},\"i\":{i}}}"))));
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        flush(&sink);
        let lines = out.lines();
        assert_eq!(lines.len(), 16_000);
        for t in 0..8 {
            // Each thread's lines keep their order.
            let mine: Vec<_> = lines
                .iter()
                .filter(|l| l.starts_with(&format!("{{\"t\":{t},")))
                .collect();
            let want: Vec<_> = (0..2_000)
                .map(|i| format!("{{\"t\":{t},\"i\":{i}}}"))
                .collect();
            assert_eq!(mine, want.iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_line_after_an_idle_spell_is_written_without_a_flush() {
        let out = Shared::default();
        let sink = Sink::start(Box::new(out.clone())).unwrap();
        // Long enough for the writer to park without a timeout.
        std::thread::sleep(BATCH_WAIT * (IDLE_ROUNDS + 5));
        assert!(sink.idle.load(Ordering::Acquire), "writer parked");
        assert!(sink.append(line("late".into())));
        let deadline = Instant::now() + Duration::from_secs(5);
        while out.lines().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(out.lines(), ["late"]);
    }

    #[test]
    fn a_failed_format_leaves_nothing_and_the_writer_ends_with_its_last_holder() {
        let out = Shared::default();
        let sink = Sink::start(Box::new(out.clone())).unwrap();
        assert!(sink.append(|buf| {
            buf.extend_from_slice(b"half a li");
            false
        }));
        assert!(sink.append(line("whole".into())));
        flush(&sink);
        assert_eq!(out.lines(), ["whole"]);
        let weak = Arc::downgrade(&sink);
        sink.wake();
        drop(sink);
        let deadline = Instant::now() + Duration::from_secs(5);
        while weak.strong_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            weak.strong_count(),
            0,
            "the writer thread let go of the sink"
        );
    }
}
