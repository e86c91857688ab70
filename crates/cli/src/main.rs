//! `offlineimap`: the binary. It reads the command line and the configuration, builds the
//! stores, runs the accounts and turns the outcome into an exit status. It is the only crate
//! that knows about processes, signals and exit codes, and the only one using anyhow.

mod args;
mod auth;
mod control;
mod heap;
mod hold;
mod maintenance;
mod mbnames;
mod py;
mod run;
mod tracker;
mod window;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    heap::tune();
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
