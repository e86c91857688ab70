//! Signals, turned into control messages in this one place (architecture habit 8).
//!
//! OfflineIMAP's meanings: SIGUSR1 ends the current autorefresh sleep (sync now); SIGUSR2
//! and SIGABRT leave autorefresh mode after the current sync; SIGTERM, SIGINT and SIGHUP
//! stop at the next safe point (the engine commits what it did), and the third one exits
//! at once. SIGQUIT (ours; it kills OfflineIMAP) reports what every task is doing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use oi_sync::Cancel;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// What every account task consults between syncs.
#[derive(Clone)]
pub struct Control {
    /// Stop at the next safe point.
    pub cancel: Cancel,
    finishing: Arc<AtomicBool>,
    wake: watch::Receiver<u64>,
    /// SIGQUIT: report what every task is doing.
    dump: Arc<tokio::sync::Notify>,
}

impl Control {
    /// Installs the signal handlers (must run inside the tokio runtime).
    pub fn install() -> std::io::Result<Control> {
        let (tx, rx) = watch::channel(0u64);
        let control = Control {
            cancel: Cancel::new(),
            finishing: Arc::new(AtomicBool::new(false)),
            wake: rx,
            dump: Arc::new(tokio::sync::Notify::new()),
        };
        let tx = Arc::new(tx);
        let wake_all = {
            let tx = tx.clone();
            move || {
                tx.send_modify(|n| *n += 1);
            }
        };

        let mut usr1 = signal(SignalKind::user_defined1())?;
        let w = wake_all.clone();
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                w();
            }
        });
        for kind in [
            SignalKind::user_defined2(),
            SignalKind::from_raw(libc::SIGABRT),
        ] {
            let mut s = signal(kind)?;
            let finishing = control.finishing.clone();
            let w = wake_all.clone();
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    // OfflineIMAP's words; also what tells a user the signal was taken.
                    eprintln!("WARNING: Terminating after this sync...");
                    finishing.store(true, Ordering::SeqCst);
                    w();
                }
            });
        }
        // SIGQUIT would dump core by default; here it asks for a report and the run goes on.
        let mut quit = signal(SignalKind::quit())?;
        let dump = control.dump.clone();
        tokio::spawn(async move {
            while quit.recv().await.is_some() {
                dump.notify_one();
            }
        });
        let count = Arc::new(AtomicUsize::new(0));
        for kind in [
            SignalKind::terminate(),
            SignalKind::interrupt(),
            SignalKind::hangup(),
        ] {
            let mut s = signal(kind)?;
            let (count, cancel, finishing) = (
                count.clone(),
                control.cancel.clone(),
                control.finishing.clone(),
            );
            let w = wake_all.clone();
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                    if n >= 3 {
                        eprintln!("ERROR: third stop signal: exiting at once");
                        std::process::exit(130);
                    }
                    eprintln!(
                        "WARNING: stop signal {n} of 3: stopping at the next safe point \
                         (this may take some time); a third one exits at once"
                    );
                    finishing.store(true, Ordering::SeqCst);
                    cancel.cancel();
                    w();
                }
            });
        }
        Ok(control)
    }

    /// Waits for the next SIGQUIT.
    pub async fn dump_requested(&self) {
        self.dump.notified().await;
    }

    /// True once no further sync should start.
    pub fn finishing(&self) -> bool {
        self.finishing.load(Ordering::SeqCst) || self.cancel.is_cancelled()
    }

    /// Sleeps for the autorefresh period, or less when SIGUSR1 (sync now) or a stop comes.
    /// A signal that arrived during the previous sync ends the sleep at once.
    pub async fn sleep(&mut self, period: std::time::Duration) {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = self.wake.changed() => {}
        }
        // Mark the current value seen so the next sleep waits for a new signal.
        self.wake.borrow_and_update();
    }

    /// Marks signals so far as seen (called when a sync starts, so a SIGUSR1 that came
    /// during the sleep does not also cut the next one short).
    pub fn seen(&mut self) {
        self.wake.borrow_and_update();
    }
}
