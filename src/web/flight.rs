//! Single-flight rendering of the big responses (`/metrics`, `/`): while one rendering
//! runs, every request that arrives waits for it and gets the same `Bytes`. `Bytes`
//! clones share one refcounted buffer, so N concurrent (or slow) clients cost one copy
//! of the body, not N, and one render's CPU, not N.
//!
//! A request that arrives while a render is running gets that render, which began a
//! little before it arrived: the same freshness as a scrape that took that long.

use std::sync::{Arc, Mutex};

use hyper::body::Bytes;
use tokio::sync::watch;

/// The render in progress, if any; waiters subscribe to its outcome.
#[derive(Default)]
pub struct SingleFlight {
    running: Mutex<Option<watch::Receiver<Option<Bytes>>>>,
}

/// Clears the running slot when the render ends, also if it panics (its waiters then
/// see the sender dropped and answer with an error).
struct Finished(Arc<SingleFlight>);

impl Drop for Finished {
    fn drop(&mut self) {
        *self.0.slot() = None;
    }
}

impl SingleFlight {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<watch::Receiver<Option<Bytes>>>> {
        // A poisoned lock only means a panic elsewhere; the slot itself stays valid.
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `render` on the blocking pool unless a render is already running, and
    /// returns that render's body. `None` if the render failed (panicked).
    pub async fn get<F>(self: &Arc<Self>, render: F) -> Option<Bytes>
    where
        F: FnOnce() -> Bytes + Send + 'static,
    {
        let mut rx = {
            let mut slot = self.slot();
            match slot.as_ref() {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    *slot = Some(rx.clone());
                    let finished = Finished(self.clone());
                    // Detached from this request: if its client goes away, the others
                    // still get the body.
                    drop(tokio::task::spawn_blocking(move || {
                        let body = render();
                        drop(finished);
                        let _ = tx.send(Some(body));
                    }));
                    rx
                }
            }
        };
        rx.wait_for(Option::is_some).await.ok()?.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_one_render_and_later_ones_render_again() {
        let flight = Arc::new(SingleFlight::default());
        let renders = Arc::new(AtomicUsize::new(0));
        let render = |renders: Arc<AtomicUsize>| {
            move || {
                std::thread::sleep(Duration::from_millis(300));
                let n = renders.fetch_add(1, Ordering::SeqCst);
                Bytes::from(format!("render {n}"))
            }
        };
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (f, r) = (flight.clone(), renders.clone());
            tasks.push(tokio::spawn(async move { f.get(render(r)).await }));
        }
        let mut bodies = Vec::new();
        for t in tasks {
            bodies.push(t.await.unwrap().unwrap());
        }
        assert_eq!(renders.load(Ordering::SeqCst), 1);
        assert!(bodies.iter().all(|b| b == "render 0"));
        // The same buffer, not ten copies.
        assert!(bodies.iter().all(|b| b.as_ptr() == bodies[0].as_ptr()));
        let again = flight.get(render(renders.clone())).await.unwrap();
        assert_eq!(again, "render 1");
    }

    #[tokio::test]
    async fn a_panicking_render_fails_its_waiters_and_the_next_one_renders() {
        let flight = Arc::new(SingleFlight::default());
        assert!(flight.get(|| panic!("render bug")).await.is_none());
        assert_eq!(
            flight.get(|| Bytes::from_static(b"ok")).await.unwrap(),
            "ok"
        );
    }
}
