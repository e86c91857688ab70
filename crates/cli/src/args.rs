//! The command line, spelled as OfflineIMAP spells it.

use std::path::PathBuf;

use clap::Parser;

/// Signals, exit status and files, for `--help` and the man page.
const AFTER_HELP: &str = "\
Signals:
  SIGUSR1           sync all accounts now (ends the autorefresh sleep)
  SIGUSR2, SIGABRT  finish the current sync, then exit (leave autorefresh)
  SIGTERM, SIGINT, SIGHUP
                    stop at the next safe point; the third one exits at once
  SIGQUIT           print what every account and folder is doing; go on

Exit status:
  0  everything synced (with --distinct-exit-codes: something was synced)
  1  a folder or an account failed
  2  configuration or usage error
  3  with --distinct-exit-codes: nothing needed doing

Files:
  ~/.offlineimaprc or $XDG_CONFIG_HOME/offlineimap/config   the configuration
  ~/.offlineimap (or [general] metadata)                     OfflineIMAP's state:
      Account-<name>/LocalStatus-sqlite/, Repository-<name>/FolderValidity/, <name>.lock";

/// Sync IMAP mailboxes with local Maildirs (a drop-in OfflineIMAP).
#[derive(Debug, Parser)]
#[command(
    name = "offlineimap",
    version,
    disable_version_flag = true,
    // OfflineIMAP's optparse lets a repeated option override the earlier one.
    args_override_self = true,
    after_long_help = AFTER_HELP
)]
pub struct Args {
    /// Print the version and exit.
    #[arg(long = "version")]
    pub version: bool,

    /// Print the version with library details and exit.
    #[arg(short = 'V')]
    pub version_long: bool,

    /// Configuration file (default: $XDG_CONFIG_HOME/offlineimap/config, then ~/.offlineimaprc).
    #[arg(short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Sync only these accounts (comma separated), overriding [general] accounts.
    #[arg(short = 'a', value_name = "ACCOUNTS")]
    pub accounts: Option<String>,

    /// Run only once, ignoring autorefresh.
    #[arg(short = 'o')]
    pub once: bool,

    /// Sync only these folders (comma separated remote names).
    #[arg(short = 'f', value_name = "FOLDERS")]
    pub folders: Option<String>,

    /// Override a configuration option: [section:]option=value (repeatable).
    #[arg(short = 'k', value_name = "[SECTION:]OPTION=VALUE")]
    pub overrides: Vec<String>,

    /// User interface: ttyui (the default), basic, quiet, syslog, machineui or blinkenlights;
    /// a comma-separated list tries each in turn (one not usable here falls to the next,
    /// basic at the end).
    #[arg(short = 'u', value_name = "UI")]
    pub ui: Option<String>,

    /// Also write the log to this file.
    #[arg(short = 'l', value_name = "FILE")]
    pub logfile: Option<PathBuf>,

    /// Also log to the system log (syslog / the journal).
    #[arg(short = 's')]
    pub syslog: bool,

    /// Debug output for these types: imap, maildir, thread, ALL (comma separated).
    #[arg(short = 'd', value_name = "TYPES")]
    pub debug: Option<String>,

    /// Single-threaded: one account and one connection at a time.
    #[arg(short = '1')]
    pub single: bool,

    /// Profile mode: write a timing profile of every folder sync (its phases and how long
    /// each took) into DIR, one `ACCOUNT.FOLDER.prof` file per folder. Implies -1.
    #[arg(short = 'P', value_name = "DIR")]
    pub profile: Option<PathBuf>,

    /// Quick sync: skip folders whose message counts and local flags are unchanged
    /// (server-side flag changes wait for the next full sync).
    #[arg(short = 'q')]
    pub quick: bool,

    /// Plan and print what would be done; change nothing anywhere.
    #[arg(long = "dry-run")]
    pub dry_run: bool,

    /// Print what the configuration says about each account and its repositories
    /// (connecting to list their folders), then exit.
    #[arg(long = "info")]
    pub info: bool,

    /// Delete this folder on the remote repository (one account only, the server's own
    /// folder name and separator), then exit.
    #[arg(long = "delete-folder", value_name = "FOLDER")]
    pub delete_folder: Option<String>,

    /// Rename local Maildir files whose FMD5 was computed from the folder's untranslated
    /// name (before OfflineIMAP 6.3.5) to the FMD5 of its visible name, then exit.
    #[arg(long = "migrate-fmd5-using-nametrans")]
    pub migrate_fmd5: bool,

    /// Remove the mbnames intermediate files of accounts no longer in `[general]
    /// accounts`, rewrite the mailbox list, then exit (honours --dry-run).
    #[arg(long = "mbnames-prune")]
    pub mbnames_prune: bool,

    /// Never read passwords from the Python keyring (sets `[general] ignore-keyring`).
    #[arg(long = "ignore-keyring")]
    pub ignore_keyring: bool,

    /// Store the password used for each IMAP login in the Python keyring (sets
    /// `[general] update-keyring`).
    #[arg(long = "update-keyring")]
    pub update_keyring: bool,

    /// Exit status 3 when the run had nothing to do (0 when it synced changes, 1 on
    /// errors), so cron and systemd can tell the three apart. Without it the exit status
    /// is OfflineIMAP's: 0 or 1.
    #[arg(long = "distinct-exit-codes")]
    pub distinct_exit_codes: bool,
}

/// Splits a comma-separated flag value, trimming blanks and dropping empty items.
pub fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offlineimap_spelling_parses() {
        let a = Args::try_parse_from([
            "offlineimap",
            "-c",
            "rc",
            "-a",
            "A,B",
            "-o",
            "-f",
            "INBOX",
            "-k",
            "Repository_R:remotepass=x",
            "-u",
            "quiet",
            "--dry-run",
            "-l",
            "log",
        ])
        .unwrap();
        assert_eq!(a.config, Some(PathBuf::from("rc")));
        assert_eq!(comma_list(a.accounts.as_deref().unwrap()), ["A", "B"]);
        assert!(a.once && a.dry_run);
        assert_eq!(a.overrides, ["Repository_R:remotepass=x"]);
    }

    /// OfflineIMAP's optparse: a repeated option overrides, -k accumulates; the keyring
    /// switches are accepted.
    #[test]
    fn repeated_options_override_and_keyring_switches_parse() {
        let a = Args::try_parse_from([
            "offlineimap",
            "-u",
            "quiet",
            "-u",
            "basic",
            "-k",
            "a=1",
            "-k",
            "b=2",
            "--ignore-keyring",
            "--update-keyring",
            "-o",
            "-o",
        ])
        .unwrap();
        assert_eq!(a.ui.as_deref(), Some("basic"));
        assert_eq!(a.overrides, ["a=1", "b=2"]);
        assert!(a.ignore_keyring && a.update_keyring && a.once);
    }

    #[test]
    fn comma_list_trims() {
        assert_eq!(comma_list(" a, ,b "), ["a", "b"]);
    }
}
