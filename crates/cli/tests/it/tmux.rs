//! The binary in a real terminal: a detached tmux session on a tmux server of the test's
//! own (its socket in the world's scratch directory), for the terminal UIs (`longrun`'s
//! password prompt, `ui`'s blinkenlights).

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::common::*;

/// True when tmux is installed; a loud skip otherwise, a failure under CI.
pub(crate) fn have_tmux() -> bool {
    if Command::new("tmux").arg("-V").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "tmux missing under CI"
    );
    eprintln!("SKIPPED: tmux not installed");
    false
}

pub(crate) struct Tmux {
    socket: PathBuf,
    session: String,
}

impl Tmux {
    /// Runs the binary with `-c rc` and `flags` (in the world's HOME) in a new detached
    /// session `session` of `width` × `height`; when it exits, the terminal shows
    /// `EXIT=<status>` and stays open for a minute.
    pub(crate) fn start(
        w: &World,
        session: String,
        (width, height): (u16, u16),
        flags: &str,
    ) -> Tmux {
        let tmux = Tmux {
            socket: w.dir.path().join("tmux.sock"),
            session,
        };
        let cmd = format!(
            "HOME={home} {bin} -c {rc} {flags}; echo EXIT=$?; sleep 60",
            home = w.dir.path().display(),
            bin = env!("CARGO_BIN_EXE_offlineimap"),
            rc = w.rc().display(),
        );
        let started = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            &tmux.session,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            &cmd,
        ]);
        assert!(
            started.status.success(),
            "{}",
            String::from_utf8_lossy(&started.stderr)
        );
        tmux
    }

    /// A tmux command on this test's tmux server.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }

    /// What the session's terminal shows, with the scrollback when `history`.
    pub(crate) fn screen(&self, history: bool) -> String {
        let mut args = vec!["capture-pane", "-p"];
        if history {
            args.extend(["-S", "-"]);
        }
        args.extend(["-t", &self.session]);
        String::from_utf8_lossy(&self.run(&args).stdout).to_string()
    }

    /// Types `keys` (tmux key names) into the session.
    pub(crate) fn send_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend(keys);
        self.run(&args);
    }

    /// Ends the session and this test's tmux server.
    pub(crate) fn kill(&self) {
        let _ = self.run(&["kill-server"]);
    }
}
