//! `offlineimap`: the binary. It reads the command line and the configuration, builds the
//! stores, runs the accounts and turns the outcome into an exit status. It is the only crate
//! that knows about processes, signals and exit codes, and the only one using anyhow.

mod args;
mod auth;
mod control;
mod hold;
mod maintenance;
mod mbnames;
mod py;
mod run;
mod tracker;
mod window;

use std::process::ExitCode;

use clap::Parser;

/// Keeps freed message buffers from piling up in glibc's heap. glibc serves a block of
/// 128 KiB or more with its own mmap, but after the first such block is freed it raises
/// that threshold to the block's size (up to 32 MiB): from then on every message body of a
/// few MiB comes from the heap arenas (one per thread) and stays there when freed, so peak
/// memory grew with the size of the messages synced. A fixed threshold turns the
/// adjustment off, and two arenas are plenty for a process that runs two workers.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only sets allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let args = args::Args::parse();
    if args.version {
        println!("offlineimap {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if args.version_long {
        println!(
            "offlineimap {} (Rust reimplementation of OfflineIMAP 8; imap-codec, rustls, SQLite)",
            env!("CARGO_PKG_VERSION"),
        );
        return ExitCode::SUCCESS;
    }
    match run::main(args) {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            eprintln!("ERROR: {e:#}");
            ExitCode::from(2)
        }
    }
}
