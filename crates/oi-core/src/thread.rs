//! Blocking work waited for without blocking the task's thread.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

/// What the helper thread leaves for the task.
struct Shared<T> {
    outcome: Option<std::thread::Result<T>>,
    waker: Option<Waker>,
}

/// Runs `work` on a thread of its own and waits for it without a runtime: the thread
/// wakes the task when it is done, and meanwhile the task's other futures run (the engine
/// polls the folders under way in one task). A panic in `work` is raised in the caller,
/// as if `work` had run in place; with no thread to be had, it does run in place.
pub fn off_thread<T, F>(name: &str, work: F) -> impl Future<Output = T> + Send + use<T, F>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let shared = Arc::new(Mutex::new(Shared {
        outcome: None,
        waker: None,
    }));
    let theirs = Arc::clone(&shared);
    // The work goes to the thread, or comes back when no thread can be started.
    let handoff = Arc::new(Mutex::new(Some(work)));
    let taken = Arc::clone(&handoff);
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let work = locked(&taken).take();
            let Some(work) = work else { return };
            let outcome = catch_unwind(AssertUnwindSafe(work));
            let waker = {
                let mut s = locked(&theirs);
                s.outcome = Some(outcome);
                s.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        });
    let inline = match spawned {
        Ok(_) => None,
        Err(_) => locked(&handoff).take(),
    };
    async move {
        if let Some(work) = inline {
            return work();
        }
        let outcome = std::future::poll_fn(|cx| {
            let mut s = locked(&shared);
            match s.outcome.take() {
                Some(outcome) => Poll::Ready(outcome),
                None => {
                    s.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        match outcome {
            Ok(v) => v,
            Err(panic) => resume_unwind(panic),
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
    fn a_panic_in_the_work_is_raised_in_the_caller() {
        let caught = std::panic::catch_unwind(|| {
            block_on(off_thread("test", || -> u32 { panic!("the work failed") }))
        });
        let panic = caught.unwrap_err();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"the work failed"));
    }
}
