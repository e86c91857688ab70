//! Blocking work waited for without blocking the task's thread.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// What the helper thread leaves for the task.
struct Shared<T> {
    outcome: Option<std::thread::Result<T>>,
    waker: Option<Waker>,
}

/// Work running on a thread of its own (see [`off_thread`]): awaited, or waited for.
pub struct OffThread<T> {
    shared: Arc<(Mutex<Shared<T>>, Condvar)>,
}

impl<T> std::fmt::Debug for OffThread<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OffThread")
    }
}

/// Runs `work` on a thread of its own and waits for it without a runtime: the thread
/// wakes the task when it is done, and meanwhile the task's other futures run (the engine
/// polls the folders under way in one task). A panic in `work` is raised in the caller,
/// as if `work` had run in place; with no thread to be had, it does run in place, now.
/// Awaiting the handle after it gave its result waits for ever.
pub fn off_thread<T, F>(name: &str, work: F) -> OffThread<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let shared = Arc::new((
        Mutex::new(Shared {
            outcome: None,
            waker: None,
        }),
        Condvar::new(),
    ));
    let theirs = Arc::clone(&shared);
    // The work goes to the thread, or comes back when no thread can be started.
    let handoff = Arc::new(Mutex::new(Some(work)));
    let taken = Arc::clone(&handoff);
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            if let Some(work) = locked(&taken).take() {
                finish(&theirs, catch_unwind(AssertUnwindSafe(work)));
            }
        });
    if spawned.is_err()
        && let Some(work) = locked(&handoff).take()
    {
        finish(&shared, catch_unwind(AssertUnwindSafe(work)));
    }
    OffThread { shared }
}

/// Leaves the outcome for the waiting side and wakes it.
fn finish<T>(shared: &(Mutex<Shared<T>>, Condvar), outcome: std::thread::Result<T>) {
    let waker = {
        let mut s = locked(&shared.0);
        s.outcome = Some(outcome);
        s.waker.take()
    };
    shared.1.notify_all();
    if let Some(w) = waker {
        w.wake();
    }
}

fn unwrap<T>(outcome: std::thread::Result<T>) -> T {
    match outcome {
        Ok(v) => v,
        Err(panic) => resume_unwind(panic),
    }
}

impl<T> OffThread<T> {
    /// Blocks the calling thread until the work is done, for a caller that cannot await
    /// (a `Drop`, or the next operation after an awaiting future was dropped).
    pub fn wait(self) -> T {
        let (lock, done) = &*self.shared;
        let mut s = locked(lock);
        loop {
            if let Some(outcome) = s.outcome.take() {
                drop(s);
                return unwrap(outcome);
            }
            s = done.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl<T> Future for OffThread<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = locked(&self.shared.0);
        match s.outcome.take() {
            Some(outcome) => {
                drop(s);
                Poll::Ready(unwrap(outcome))
            }
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// A lock whose holder panicked still guards plain data: the result and the waker are
/// handed over whatever happened, or the task would wait forever.
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Wake};

    /// A minimal executor: polls until ready, parking between wake-ups.
    fn block_on<F: Future>(f: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }

    #[test]
    fn the_work_runs_on_another_thread_and_its_result_comes_back() {
        let here = std::thread::current().id();
        let (there, v) = block_on(off_thread("test", || (std::thread::current().id(), 42)));
        assert_ne!(there, here);
        assert_eq!(v, 42);
    }

    #[test]
    fn the_work_can_be_waited_for_where_it_cannot_be_awaited() {
        let job = off_thread("test", || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            7
        });
        assert_eq!(job.wait(), 7);
    }

    #[test]
    fn a_panic_in_the_work_is_raised_in_the_caller() {
        let caught = std::panic::catch_unwind(|| {
            block_on(off_thread("test", || -> u32 { panic!("the work failed") }))
        });
        let panic = caught.unwrap_err();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"the work failed"));
    }
}
