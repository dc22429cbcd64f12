//! The allocator's idle hand-back. The process allocates with mimalloc
//! (`main.rs`), which keeps the pages a thread freed for that thread's
//! next allocations and gives them back to the OS lazily, when the thread
//! allocates again. A runtime worker that goes quiet after a burst (a load
//! of batches, the dedupe index rebuilt at start-up) would hold its freed
//! pages until the next burst. Measured with `host/benches/memory/run.sh`
//! (100,000 leads, HubSpot): idle after a restart 98 -> 80 MB resident,
//! drained after the load 153 -> 141 MB; the ingest bench showed no
//! difference in throughput beyond its noise.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The shortest time between two hand-backs of one thread: a loaded
/// worker parks thousands of times a second.
const EVERY: Duration = Duration::from_millis(500);

/// For `tokio::runtime::Builder::on_thread_park`: returns the calling
/// worker's freed pages to the OS, at most once every `EVERY` (500 ms). Harmless
/// where mimalloc is not the global allocator (its heaps are then empty).
pub fn on_worker_park() {
    thread_local!(static LAST: Cell<Option<Instant>> = const { Cell::new(None) });
    LAST.with(|last| {
        let now = Instant::now();
        if last.get().is_some_and(|t| now.duration_since(t) < EVERY) {
            return;
        }
        last.set(Some(now));
        // SAFETY: `mi_collect` has no preconditions; it frees and purges
        // the calling thread's unused pages and touches no live block.
        unsafe { libmimalloc_sys::mi_collect(true) };
    });
}
