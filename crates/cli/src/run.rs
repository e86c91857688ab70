//! Wiring: configuration → stores → engine, per account.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use oi_config::{
    AccountConfig, CaCerts, Config, ImapConfig, Override, PasswordSource, RepositoryKind,
};
use oi_core::{Event, EventSink, Repository, Secret, Severity, StoreError, SyncStats};
use oi_sync::{
    AccountPolicy, DeletionGuard, ExecOptions, Policy, RemoteFlags, SidePolicy, StatusFactory,
};

use crate::args::{Args, comma_list};
use crate::control::Control;
use crate::hold::Held;
use crate::py::{Keyring, PyNaming, Python};

/// How the run ended, for the exit status.
pub struct Outcome {
    failed: bool,
    /// Anything was changed anywhere (only consulted with `--distinct-exit-codes`).
    changed: bool,
    distinct: bool,
}

impl Outcome {
    fn done() -> Outcome {
        Outcome {
            failed: false,
            changed: true,
            distinct: false,
        }
    }

    /// 1 when any folder or account failed, else 0; with `--distinct-exit-codes`, 3 when
    /// nothing needed doing.
    pub fn code(&self) -> u8 {
        if self.failed {
            1
        } else if self.distinct && !self.changed {
            3
        } else {
            0
        }
    }

    /// [`Outcome::code`] as the process's exit status.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }
}

/// Runs what the command line asks for.
pub fn main(args: Args) -> Result<Outcome> {
    let path = oi_config::find_config_file(args.config.as_deref())?;
    let mut overrides = Vec::new();
    for k in &args.overrides {
        overrides.push(Override::parse(k).with_context(|| format!("-k {k}"))?);
    }
    if let Some(accounts) = &args.accounts {
        overrides.push(Override::accounts(accounts));
    }
    // --dry-run sets `[general] dry-run`, as OfflineIMAP's does, and the run reads only
    // that: `dry-run = True` in the file (or `-k dry-run=True`) is a dry run as much as the
    // flag is, since OfflineIMAP's accounts read the option. (Its mbnames and
    // --migrate-fmd5-using-nametrans look at the flag only; a dry run here changes nothing.)
    if args.dry_run {
        overrides.push(Override::general_switch("dry-run", "--dry-run"));
    }
    if args.ignore_keyring {
        overrides.push(Override::general_switch(
            "ignore-keyring",
            "--ignore-keyring",
        ));
    }
    if args.update_keyring {
        overrides.push(Override::general_switch(
            "update-keyring",
            "--update-keyring",
        ));
    }
    let config = oi_config::load(&path, &overrides).map_err(|e| anyhow::anyhow!("{e}"))?;

    let mut warnings = config.warnings.clone();
    let ui_name = args
        .ui
        .clone()
        .or_else(|| config.general.ui.clone())
        .unwrap_or_else(|| "ttyui".to_string());
    let kind = oi_ui::choose(&ui_name, &mut warnings);
    init_tracing(args.debug.as_deref());
    let ui = oi_ui::build(
        kind,
        &oi_ui::Options {
            log_file: args.logfile.clone(),
            syslog: args.syslog,
            dry_run: config.general.dry_run,
            stdout: false,
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in warnings {
        ui.emit(Event::Warning {
            account: None,
            message: w,
        });
    }
    if args.debug.is_some() {
        for u in &config.unknown {
            ui.emit(Event::Info {
                message: format!("ignored (not an OfflineIMAP option here): {u}"),
            });
        }
    }

    let tracker = Arc::new(crate::tracker::Tracker::new(args.profile.clone()));
    if let Some(dir) = &args.profile {
        // OfflineIMAP warns when DIR exists and uses it anyway; so do we.
        if dir.is_dir() {
            ui.emit(Event::Warning {
                account: None,
                message: format!("profile mode: directory {} already exists", dir.display()),
            });
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("-P: cannot create profile directory {}", dir.display()))?;
        ui.emit(Event::Info {
            message: format!(
                "profile mode: single-threaded; folder timings go to {}",
                dir.display()
            ),
        });
    }
    ui.observe(tracker.clone());
    ui.observe(Arc::new(crate::heap::TrimAfterFolder));
    let only_folders = args.folders.as_deref().map(comma_list);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // A sync's futures nest deep (account, folder pair, both stores, the connection);
        // unoptimised builds come near the default 2 MiB. Stack pages are only touched
        // when used, so the larger reserve costs no memory.
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let python = Python::new(config.general.pythonfile.clone());
    if config.general.pythonfile.is_some() {
        // OfflineIMAP runs the pythonfile at start, whether or not an option uses it.
        python.load()?;
    }
    if let Some(mb) = &config.general.mbnames {
        crate::mbnames::check(mb)?;
    }
    if args.mbnames_prune {
        crate::mbnames::prune(
            config.general.mbnames.as_ref(),
            &config.general.metadata,
            &config.general.accounts,
            &python,
            config.general.dry_run,
        )?;
        return Ok(Outcome::done());
    }
    if args.migrate_fmd5 {
        let n = crate::maintenance::migrate_fmd5(&config, &python, config.general.dry_run)?;
        println!(
            "{n} message file(s) {}renamed",
            if config.general.dry_run {
                "would be "
            } else {
                ""
            }
        );
        return Ok(Outcome::done());
    }
    if args.info || args.delete_folder.is_some() {
        // They log in too: ttyui asks for a missing password as a sync does.
        let mut config = config.clone();
        if ui.kind() == oi_ui::UiKind::TtyUi {
            ask_passwords(&mut config.accounts, &config.general, &python, &ui);
        }
        runtime.block_on(async {
            match &args.delete_folder {
                Some(folder) => crate::maintenance::delete_folder(&config, folder, &python).await,
                None => crate::maintenance::info(&config, &path, &python).await,
            }
        })?;
        return Ok(Outcome::done());
    }
    let failed = runtime.block_on(async {
        let control = Control::install().context("installing signal handlers")?;
        let reporter = {
            let (control, tracker) = (control.clone(), tracker.clone());
            tokio::spawn(async move {
                loop {
                    control.dump_requested().await;
                    eprint!("{}", tracker.dump());
                }
            })
        };
        let _stop_reporter = AbortOnDrop(reporter);
        anyhow::Ok(
            run_accounts(
                &config,
                &args,
                only_folders,
                ui.clone(),
                control,
                python.clone(),
            )
            .await,
        )
    })?;
    if let Some(mb) = &config.general.mbnames
        && !mb.incremental
    {
        crate::mbnames::write(
            mb,
            &config.general.metadata,
            &python,
            config.general.dry_run,
        )?;
    }
    let outcome = Outcome {
        failed: failed || ui.error_count() > 0,
        changed: !ui.summary().stats.is_empty(),
        distinct: args.distinct_exit_codes,
    };
    ui.finish(i32::from(outcome.code()));
    Ok(outcome)
}

/// Ends a background task when the scope that started it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn init_tracing(debug: Option<&str>) {
    let Some(types) = debug else { return };
    let mut filter = String::new();
    for t in comma_list(types) {
        let directive = match t.to_ascii_lowercase().as_str() {
            "all" => "trace".to_string(),
            "imap" => "imap=trace,oi_imap=debug".to_string(),
            "maildir" => "oi_maildir=debug".to_string(),
            "thread" => "oi_sync=debug".to_string(),
            other => format!("{other}=debug"),
        };
        if !filter.is_empty() {
            filter.push(',');
        }
        filter.push_str(&directive);
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run_accounts(
    config: &Config,
    args: &Args,
    only_folders: Option<Vec<String>>,
    ui: Arc<oi_ui::Ui>,
    control: Control,
    python: Python,
) -> bool {
    // -P implies -1, as in OfflineIMAP (one folder at a time keeps the timings readable).
    let single = args.single || args.profile.is_some();
    let parallel = if single {
        1
    } else {
        config.general.maxsyncaccounts.max(1)
    };
    let semaphore = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = tokio::task::JoinSet::new();
    let mut accounts = config.accounts.clone();
    if ui.kind() == oi_ui::UiKind::TtyUi {
        ask_passwords(&mut accounts, &config.general, &python, &ui);
    }
    for mut account in accounts {
        if single {
            // -1: one connection per repository too (OfflineIMAP's single-threaded mode).
            if let RepositoryKind::Imap(imap) = &mut account.remote.kind {
                imap.maxconnections = 1;
            }
        }
        let general = config.general.clone();
        let ui = ui.clone();
        let semaphore = semaphore.clone();
        let mut opts = ExecOptions {
            dry_run: config.general.dry_run,
            crash_after: crash_hook(),
            cancel: control.cancel.clone(),
            quick: false,
            large_message_bytes: None,
            // A killed run's APPEND can land a moment after the next run looked for it.
            landing_grace: Some(std::time::Duration::from_secs(2)),
            copy_ignore: Vec::new(),
            filter_headers: account.filterheaders.clone(),
            filter_headers_local: matches!(account.local.kind, RepositoryKind::Imap(_)),
            ignore_readonly: config.general.ignore_readonly,
        };
        // -q makes every sync quick, as `quick = -1` does for one account.
        let quick_setting = crate::window::quick_setting(
            &account,
            if args.quick { -1 } else { account.quick },
            &ui,
        );
        let mut quick_count = 0;
        let only = only_folders.clone();
        let mut control = control.clone();
        let python = python.clone();
        // -o and --dry-run sync once, as does an account without autorefresh.
        let period = account
            .autorefresh
            .filter(|_| !args.once && !config.general.dry_run)
            .map(|minutes| Duration::from_secs_f64(minutes * 60.0));
        tasks.spawn(async move {
            let mut failed = false;
            let held = period.map(|_| Held::for_account(&account, general.socktimeout));
            // IDLE watchers run only in autorefresh mode, as in OfflineIMAP.
            let (idle_tx, mut idle_rx) = tokio::sync::mpsc::channel::<String>(64);
            let _watchers = match period {
                Some(_) => start_watchers(&account, &general, &python, &ui, &control, idle_tx),
                None => tokio::task::JoinSet::new(),
            };
            // `skipsleep` in the configuration: the first sleep is skipped, as if SIGUSR1
            // had come during the first sync (OfflineIMAP clears the option once used).
            let mut skip_sleep = account.skipsleep;
            loop {
                control.seen();
                {
                    // The semaphore is never closed, so acquiring only waits.
                    let _permit = semaphore.acquire().await;
                    opts.quick = next_is_quick(quick_setting, &mut quick_count);
                    failed |= sync_with_hooks(
                        &account,
                        &general,
                        &opts,
                        &only,
                        &ui,
                        &python,
                        None,
                        held.as_ref(),
                    )
                    .await;
                }
                let Some(period) = period else { break };
                if std::mem::take(&mut skip_sleep) {
                    if control.finishing() {
                        break;
                    }
                    continue;
                }
                let deadline = tokio::time::Instant::now() + period;
                // Until the next full sync: sync single folders that IDLE reports changed.
                loop {
                    if control.finishing() {
                        break;
                    }
                    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                    tokio::select! {
                        _ = control.sleep(remaining) => break,
                        _ = held_keepalive(held.as_ref()) => {
                            if let Some(held) = &held {
                                held.keepalive().await;
                            }
                        }
                        Some(folder) = idle_rx.recv() => {
                            let _permit = semaphore.acquire().await;
                            let one = Some(vec![folder]);
                            let idle_opts = ExecOptions { quick: false, ..opts.clone() };
                            failed |= sync_with_hooks(
                                &account, &general, &idle_opts, &one, &ui, &python, Some("idle"),
                                held.as_ref(),
                            )
                            .await;
                        }
                    }
                }
                if control.finishing() {
                    break;
                }
            }
            if let Some(held) = &held {
                held.close().await;
            }
            failed
        });
    }
    let mut failed = false;
    while let Some(done) = tasks.join_next().await {
        failed |= done.unwrap_or(true);
    }
    failed
}

/// The next keepalive time of an account's held connections (never without them).
async fn held_keepalive(held: Option<&Held>) {
    match held {
        Some(held) => held.next_keepalive().await,
        None => std::future::pending().await,
    }
}

/// Watches the folders of the remote's `idlefolders` and sends a folder's name when the
/// server reports a change in it: all on one connection with NOTIFY when the server offers
/// it, else one EXAMINEd connection in IDLE per folder. IDLE is re-issued every 29 minutes
/// (servers drop it at 30) and lost connections are replaced.
fn start_watchers(
    account: &AccountConfig,
    general: &oi_config::General,
    python: &Python,
    ui: &Arc<oi_ui::Ui>,
    control: &Control,
    tx: tokio::sync::mpsc::Sender<String>,
) -> tokio::task::JoinSet<()> {
    let mut set = tokio::task::JoinSet::new();
    let RepositoryKind::Imap(imap) = &account.remote.kind else {
        return set;
    };
    let Some(expr) = &imap.idlefolders else {
        return set;
    };
    let warn = |message: String| {
        ui.emit(Event::Warning {
            account: Some(account.name.clone()),
            message,
        })
    };
    let folders = match python.string_list(expr) {
        Ok(f) => f,
        Err(e) => {
            warn(format!("idlefolders: {e:#}"));
            return set;
        }
    };
    let config = match imap_config(account, &account.remote.name, imap, general, python, &[]) {
        Ok(c) => c,
        Err(e) => {
            warn(format!("IDLE: {e:#}"));
            return set;
        }
    };
    let watch = Watch {
        repo: Arc::new(oi_imap::ImapRepository::new(
            config,
            ui.labelled(&account.name, &account.remote.name),
        )),
        ui: ui.clone(),
        account: account.name.clone(),
        cancel: control.cancel.clone(),
        tx,
    };
    set.spawn(async move {
        // Beyond OfflineIMAP: one NOTIFY connection for all the folders when the server
        // offers it; else one IDLE connection per folder, as OfflineIMAP does.
        if watch.all_with_notify(&folders).await {
            return;
        }
        let mut each = tokio::task::JoinSet::new();
        for folder in folders {
            let watch = watch.clone();
            each.spawn(async move { watch.one_with_idle(folder).await });
        }
        while each.join_next().await.is_some() {}
    });
    set
}

/// What an IDLE or NOTIFY watcher needs: where to connect, where to report, when to stop.
#[derive(Clone)]
struct Watch {
    repo: Arc<oi_imap::ImapRepository>,
    ui: Arc<oi_ui::Ui>,
    account: String,
    cancel: oi_sync::Cancel,
    tx: tokio::sync::mpsc::Sender<String>,
}

/// Servers drop an IDLE after 30 minutes; OfflineIMAP re-issues it after 29.
const IDLE_REISSUE: Duration = Duration::from_secs(29 * 60);

impl Watch {
    fn warn(&self, message: String) {
        self.ui.emit(Event::Warning {
            account: Some(self.account.clone()),
            message,
        });
    }

    /// Watches every folder on one connection with NOTIFY (RFC 5465), reconnecting after
    /// errors; false at once when the server does not offer NOTIFY.
    async fn all_with_notify(&self, folders: &[String]) -> bool {
        while !self.cancel.is_cancelled() {
            let mut watcher = match self.repo.watch_with_notify(folders).await {
                Ok(Some(w)) => w,
                Ok(None) => return false,
                Err(e) => {
                    self.warn(format!("NOTIFY: {e}; retrying in a minute"));
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    continue;
                }
            };
            self.ui.emit(Event::Info {
                message: format!(
                    "watching {} folder(s) with NOTIFY on one connection",
                    watcher.folders().len()
                ),
            });
            // Mail that arrived before the watch started: sync each folder once.
            for folder in folders {
                if self.tx.send(folder.clone()).await.is_err() {
                    return true;
                }
            }
            loop {
                match watcher.wait(IDLE_REISSUE).await {
                    Ok(changed) => {
                        for folder in changed {
                            if self.tx.send(folder).await.is_err() {
                                return true;
                            }
                        }
                    }
                    Err(e) => {
                        self.warn(format!("NOTIFY: {e}; reconnecting"));
                        break;
                    }
                }
            }
        }
        true
    }

    /// Watches one folder: an EXAMINEd connection in IDLE, reconnecting after errors.
    async fn one_with_idle(&self, folder: String) {
        while !self.cancel.is_cancelled() {
            let mut watcher = match self.repo.watch(&folder).await {
                Ok(w) => {
                    // Mail that arrived before this IDLE started would wait for the next
                    // change: sync the folder once now that it is watched.
                    if self.tx.send(folder.clone()).await.is_err() {
                        return;
                    }
                    w
                }
                Err(e) => {
                    self.warn(format!("IDLE on {folder}: {e}; retrying in a minute"));
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    continue;
                }
            };
            loop {
                match watcher.wait(IDLE_REISSUE).await {
                    Ok(true) => {
                        if self.tx.send(folder.clone()).await.is_err() {
                            return;
                        }
                    }
                    Ok(false) => {}
                    Err(e) => {
                        self.warn(format!("IDLE on {folder}: {e}; reconnecting"));
                        break;
                    }
                }
            }
        }
    }
}

/// OfflineIMAP's `quick` counting: negative, every sync is quick; N > 0, N quick syncs
/// between full ones, starting with a full one; 0, never quick.
fn next_is_quick(setting: i64, count: &mut i64) -> bool {
    match setting {
        s if s < 0 => true,
        0 => false,
        s => {
            if *count == 0 || *count > s {
                *count = 1;
                false
            } else {
                *count += 1;
                true
            }
        }
    }
}

/// The crash test hook: `OFFLINEIMAP_TEST_CRASH_AFTER=N` makes the process die (exit 99,
/// nothing committed, nothing cleaned up) just before its N+1th effect on a store, so that
/// tests can interrupt a real sync at every step and check that the next run converges.
fn crash_hook() -> Option<usize> {
    std::env::var("OFFLINEIMAP_TEST_CRASH_AFTER")
        .ok()
        .and_then(|v| v.parse().ok())
}

/// One sync of one account between its pre- and post-sync hooks. True when it failed.
#[allow(clippy::too_many_arguments)] // the sync's whole context; a struct would only rename it
async fn sync_with_hooks(
    account: &AccountConfig,
    general: &oi_config::General,
    opts: &ExecOptions,
    only: &Option<Vec<String>>,
    ui: &Arc<oi_ui::Ui>,
    python: &Python,
    mode: Option<&str>,
    held: Option<&Held>,
) -> bool {
    let mode = mode.unwrap_or(if opts.quick { "quick" } else { "full" });
    if let Some(cmd) = &account.presynchook {
        run_hook(&account.name, "presynchook", cmd, mode, ui).await;
    }
    let failed = match sync_one(
        account,
        general,
        opts.clone(),
        only.clone(),
        ui.clone(),
        python,
        held,
    )
    .await
    {
        Ok(failed) => failed,
        Err(e) => {
            ui.emit(Event::Error {
                account: Some(account.name.clone()),
                folder: None,
                severity: Severity::Repository,
                message: format!("{e:#}"),
            });
            true
        }
    };
    if let Some(cmd) = &account.postsynchook {
        run_hook(&account.name, "postsynchook", cmd, mode, ui).await;
    }
    failed
}

/// Runs a hook with `sh -c` and waits for it. Its output goes to the log; a failure is
/// reported and does not stop the sync (OfflineIMAP's behaviour).
async fn run_hook(account: &str, which: &str, cmd: &str, mode: &str, ui: &Arc<oi_ui::Ui>) {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("OFFLINEIMAPSYNCMODE", mode)
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    match out {
        Ok(out) => {
            for line in String::from_utf8_lossy(&out.stdout)
                .lines()
                .chain(String::from_utf8_lossy(&out.stderr).lines())
            {
                ui.emit(Event::Info {
                    message: format!("[{account}] {which}: {line}"),
                });
            }
            if !out.status.success() {
                ui.emit(Event::Warning {
                    account: Some(account.to_string()),
                    message: format!("{which} `{cmd}` failed ({})", out.status),
                });
            }
        }
        Err(e) => ui.emit(Event::Warning {
            account: Some(account.to_string()),
            message: format!("{which} `{cmd}` could not run: {e}"),
        }),
    }
}

async fn sync_one(
    account: &AccountConfig,
    general: &oi_config::General,
    opts: ExecOptions,
    only_folders: Option<Vec<String>>,
    ui: Arc<oi_ui::Ui>,
    python: &Python,
    held: Option<&Held>,
) -> Result<bool> {
    ui.emit(Event::AccountStart {
        account: account.name.clone(),
    });
    std::fs::create_dir_all(&general.metadata)
        .with_context(|| format!("creating metadata folder {}", general.metadata.display()))?;
    let _lock = oi_status::AccountLock::acquire(&general.metadata, &account.name)?;

    let RepositoryKind::Imap(imap) = &account.remote.kind else {
        bail!(
            "remote repository {} must be of type IMAP",
            account.remote.name
        );
    };
    ui.emit(Event::SyncFolders {
        account: account.name.clone(),
        remote_name: account.remote.name.clone(),
        remote_kind: "IMAP".to_string(),
        local_name: account.local.name.clone(),
        local_kind: match account.local.kind {
            RepositoryKind::Maildir(_) => "Maildir",
            RepositoryKind::Imap(_) => "IMAP",
        }
        .to_string(),
    });
    let events: Arc<dyn EventSink> = ui.labelled(&account.name, &account.remote.name);
    let local_events: Arc<dyn EventSink> = ui.labelled(&account.name, &account.local.name);
    let custom_flags: &[(char, String)] = match &account.local.kind {
        RepositoryKind::Maildir(m) => &m.custom_flags,
        RepositoryKind::Imap(_) => &[],
    };
    let remote = held_or_new(
        imap_config(
            account,
            &account.remote.name,
            imap,
            general,
            python,
            custom_flags,
        )?,
        events.clone(),
        held.and_then(|h| h.remote.as_ref()),
    )
    .await;
    let naming = Arc::new(
        PyNaming::new(
            python.clone(),
            account.remote.folders.clone(),
            account.local.folders.clone(),
        )
        .with_folder_encoding(account.utf8foldernames, imap.decodefoldernames)
        .with_copy_ignore(imap.copy_ignore_eval.clone())
        .with_local_copy_ignore(match &account.local.kind {
            RepositoryKind::Imap(local) => local.copy_ignore_eval.clone(),
            RepositoryKind::Maildir(_) => None,
        }),
    );
    let status = Status(oi_status::StatusDir::new(
        general.metadata.clone(),
        &account.name,
        &account.remote.name,
        &account.local.name,
        general.fsync,
    ));
    let side = |r: &oi_config::RepositoryConfig| SidePolicy {
        readonly: r.readonly,
        sync_deletes: r.sync_deletes,
    };
    let policy = AccountPolicy {
        folders: Policy {
            remote: side(&account.remote),
            local: side(&account.local),
            guard: DeletionGuard {
                max_percent: account.max_delete_percent,
            },
            max_size: account.maxsize,
            max_age: account
                .maxage
                .map(|m| crate::window::max_age(m, chrono::Utc::now()))
                .transpose()?,
            start_date: crate::window::start_date(account, chrono::Utc::now())?,
            remote_flags: RemoteFlags(
                oi_core::Flags::from_maildir("DFRST")
                    | oi_imap::keywords::KeywordMap::new(custom_flags.iter().cloned())
                        .map(|k| k.mapped_letters())
                        .unwrap_or_default(),
            ),
        },
        create_remote: account.remote.createfolders,
        create_local: account.local.createfolders,
        only_folders,
        connections: imap.maxconnections,
    };
    let root = match &account.local.kind {
        RepositoryKind::Maildir(m) => m.localfolders.clone(),
        RepositoryKind::Imap(_) => std::path::PathBuf::new(),
    };
    let pair = Pair {
        account,
        general,
        root: &root,
        python,
        dry_run: opts.dry_run,
        naming: naming.as_ref(),
        status: &status,
        policy: &policy,
        opts: &opts,
        ui: &ui,
    };
    let result = match &account.local.kind {
        RepositoryKind::Maildir(maildir) => {
            let local = VisibleMaildir {
                inner: oi_maildir::MaildirRepository::new(oi_maildir::MaildirConfig {
                    root: maildir.localfolders.clone(),
                    sep: maildir.sep,
                    fsync: general.fsync,
                })
                .with_options(maildir_options(account, maildir)),
                naming: naming.clone(),
            };
            pair.run(&remote, &local).await
        }
        RepositoryKind::Imap(local_imap) => {
            // IMAP <-> IMAP: the local server's UIDs are mapped to the remote's in
            // OfflineIMAP's Repository-<local>/UIDMapping files.
            let inner = held_or_new(
                imap_config(
                    account,
                    &account.local.name,
                    local_imap,
                    general,
                    python,
                    &[],
                )?,
                local_events.clone(),
                held.and_then(|h| h.local.as_ref()),
            )
            .await;
            let copy_ignore: Option<oi_imapmap::CopyIgnore> =
                local_imap.copy_ignore_eval.as_ref().map(|_| {
                    let naming = naming.clone();
                    Arc::new(move |folder: &str, sep: char| naming.local_copy_ignore(folder, sep))
                        as oi_imapmap::CopyIgnore
                });
            let local = oi_imapmap::MappedImapRepository::new(
                inner,
                &general.metadata,
                &account.local.name,
                general.fsync,
                local_events,
            )
            .with_copy_ignore(copy_ignore);
            let r = pair.run(&remote, &local).await;
            local.shutdown().await;
            r
        }
    };
    remote.shutdown().await;
    result
}

/// An IMAP repository for one sync: on the connections held from the previous sync
/// (checked first, so that lost ones are replaced) or on new ones.
async fn held_or_new(
    config: oi_imap::ImapConfig,
    events: Arc<dyn EventSink>,
    held: Option<&oi_imap::HeldConnections>,
) -> oi_imap::ImapRepository {
    match held {
        Some(held) => {
            let lost = held.keepalive().await;
            if lost > 0 {
                events.emit(Event::Info {
                    message: format!("{lost} held connection(s) lost; reconnecting"),
                });
            }
            oi_imap::ImapRepository::with_held(config, events, held)
        }
        None => oi_imap::ImapRepository::new(config, events),
    }
}

/// One account's folder pairs, whatever the local repository's type.
struct Pair<'a> {
    account: &'a AccountConfig,
    general: &'a oi_config::General,
    /// The local repository's root (mbnames' `localfolders`).
    root: &'a std::path::Path,
    python: &'a Python,
    dry_run: bool,
    naming: &'a PyNaming,
    status: &'a Status,
    policy: &'a AccountPolicy,
    opts: &'a ExecOptions,
    ui: &'a Arc<oi_ui::Ui>,
}

impl Pair<'_> {
    async fn run<RR: Repository, LR: Repository>(&self, remote: &RR, local: &LR) -> Result<bool> {
        let account = self.account;
        let report = oi_sync::sync_account(
            &account.name,
            remote,
            local,
            self.status,
            self.naming,
            self.policy,
            self.opts,
            self.ui.as_ref(),
        )
        .await;
        let report = match report {
            Err(oi_sync::SyncError::CrashHook) => {
                // Die as a killed process would: no LOGOUT, no commit, no cleanup.
                std::process::exit(99);
            }
            Err(oi_sync::SyncError::Cancelled) => {
                self.ui.emit(Event::Warning {
                    account: Some(account.name.clone()),
                    message: "stopped by a signal at a safe point; the next run goes on from there"
                        .to_string(),
                });
                return Ok(false);
            }
            other => other?,
        };
        // OfflineIMAP calls the remote's newmail_hook after copying new mail out of INBOX.
        if let RepositoryKind::Imap(imap) = &account.remote.kind
            && let Some(hook) = &imap.newmail_hook
            && report
                .per_folder
                .iter()
                .any(|(f, s)| f == "INBOX" && s.copied_to_local > 0)
        {
            let call = oi_config::PyExpr {
                source: format!("({})()", hook.source),
                ..hook.clone()
            };
            if let Err(e) = self.python.call(&call) {
                self.ui.emit(Event::Warning {
                    account: Some(account.name.clone()),
                    message: format!("newmail_hook: {e:#}"),
                });
            }
        }
        if let Some(mb) = &self.general.mbnames {
            crate::mbnames::account_done(
                mb,
                &self.general.metadata,
                &account.name,
                self.root,
                &report.folders,
                self.python,
                self.dry_run,
            )?;
        }
        let stats: SyncStats = report.stats;
        self.ui.emit(Event::AccountDone {
            account: account.name.clone(),
            stats,
            failed_folders: report.failed.len(),
        });
        Ok(!report.failed.is_empty())
    }
}

/// The IMAP store's settings from the repository's options.
pub(crate) fn imap_config(
    account: &AccountConfig,
    repo: &str,
    c: &ImapConfig,
    general: &oi_config::General,
    python: &Python,
    custom_flags: &[(char, String)],
) -> Result<oi_imap::ImapConfig> {
    // OfflineIMAP evaluates the *eval options when it connects; so do we, once per sync.
    let password = match &c.password {
        PasswordSource::None => None,
        PasswordSource::Inline(s) => Some(s.clone()),
        PasswordSource::File(p) => Some(read_password_file(p)?),
        PasswordSource::Eval(e) => Some(Secret::new(python.string(e)?)),
    };
    let host = match &c.hosteval {
        Some(e) => python.string(e)?,
        None => c.host.clone(),
    };
    let port = match &c.porteval {
        Some(e) => Some(python.port(e)?),
        None => c.port,
    };
    let mut user = match &c.usereval {
        Some(e) => Some(python.string(e)?),
        None => c.user.clone(),
    };
    let mut password = password;
    if (user.is_none() || password.is_none()) && c.preauthtunnel.is_none() {
        // OfflineIMAP's order ends with ~/.netrc, then /etc/netrc (after remotehosteval).
        let found = oi_imap::netrc::netrc_credentials(&host, user.as_deref())
            .map_err(|e| anyhow::anyhow!("netrc: {e}"))?;
        if user.is_none() {
            user = found.user;
        }
        if password.is_none() {
            password = found.password;
        }
    }
    let tunnel = match (&c.preauthtunnel, &c.transporttunnel) {
        (Some(cmd), _) => Some(oi_imap::Tunnel::Preauth(cmd.clone())),
        (None, Some(cmd)) => Some(oi_imap::Tunnel::Transport(cmd.clone())),
        (None, None) => None,
    };
    // XOAUTH2 needs no password; the password mechanisms fail on their own without one.
    let oauth2 = crate::auth::oauth2(account, c, general, python)?;
    // A transport tunnel still logs in with the password; a preauth tunnel does not.
    let logs_in = !matches!(tunnel, Some(oi_imap::Tunnel::Preauth(_))) && oauth2.is_none();
    if logs_in && password.is_none() {
        // OfflineIMAP 8's last source, before ttyui asks: the Python keyring.
        let keyring = if general.ignore_keyring {
            None
        } else {
            match python.keyring_password(repo, &host, user.as_deref()) {
                Keyring::Found(p) => {
                    password = Some(p);
                    None
                }
                Keyring::Absent(why) => Some(why),
            }
        };
        if password.is_none() {
            return Err(NoPassword { keyring }.into());
        }
    }
    // --update-keyring stores the password once it logged in (OfflineIMAP stores it
    // before, so a mistyped answer to ttyui's prompt would be kept and asked no more),
    // and not in a dry run, which changes nothing anywhere.
    let on_login = match (
        &password,
        logs_in && general.update_keyring && !general.dry_run,
    ) {
        (Some(p), true) => {
            let (python, repo, host, user, p) = (
                python.clone(),
                repo.to_string(),
                host.clone(),
                user.clone(),
                p.clone(),
            );
            Some(oi_imap::LoginHook(std::sync::Arc::new(
                move |events: &dyn EventSink| {
                    if let Err(e) = python.keyring_store(&repo, &host, user.as_deref(), &p) {
                        events.emit(Event::Warning {
                            account: None,
                            message: format!("--update-keyring: {e:#}"),
                        });
                    }
                },
            )))
        }
        _ => None,
    };
    let security = if c.ssl {
        oi_imap::Security::Tls
    } else if c.starttls {
        oi_imap::Security::StartTls
    } else {
        oi_imap::Security::Plain
    };
    let ca = match &c.ca {
        CaCerts::SystemDefault => oi_imap::CaSource::System,
        CaCerts::OsDefault => oi_imap::CaSource::OsDefault,
        CaCerts::File(p) => oi_imap::CaSource::File(p.clone()),
    };
    Ok(oi_imap::ImapConfig {
        host,
        port,
        user: user.unwrap_or_default(),
        password,
        security,
        ca,
        fingerprints: c.cert_fingerprints.clone(),
        tunnel,
        timeout: general.socktimeout,
        expunge: c.expunge,
        pipeline_depth: c.pipelinedepth,
        auth_mechanisms: crate::auth::mechanisms(&c.auth_mechanisms),
        identity: c.remote_identity.clone(),
        oauth2,
        net: oi_imap::NetOptions {
            family: match c.ipv6 {
                None => oi_imap::IpFamily::Any,
                Some(true) => oi_imap::IpFamily::V6,
                Some(false) => oi_imap::IpFamily::V4,
            },
            tls_versions: match c.tls_version {
                oi_config::TlsVersion::Negotiate => oi_imap::TlsVersions::Negotiate,
                oi_config::TlsVersion::Tls12 => oi_imap::TlsVersions::Tls12Only,
            },
            client_cert: c.sslclientcert.clone().map(|cert| oi_imap::ClientCert {
                cert,
                key: c.sslclientkey.clone(),
            }),
            proxy: account.proxy.as_ref().map(crate::auth::proxy),
            compress: c.usecompression,
        },
        keywords: oi_imap::keywords::KeywordMap::new(custom_flags.iter().cloned())
            .map_err(|e| anyhow::anyhow!("customflag: {e}"))?,
        // A test hook, like OFFLINEIMAP_TEST_CRASH_AFTER: proves the full-scan path against a
        // server that does offer CONDSTORE/QRESYNC.
        condstore: std::env::var_os("OFFLINEIMAP_TEST_NO_CONDSTORE").is_none(),
        fetch_attempts: c.retrycount,
        folders: oi_imap::FolderListing::from_config(c.reference.as_deref(), c.subscribedonly),
        on_login,
        max_connections: c.maxconnections.max(1),
    })
}

/// An IMAP repository with no password from anywhere (the case where ttyui asks).
#[derive(Debug)]
pub(crate) struct NoPassword {
    /// Why the keyring had none (`None` with `ignore-keyring`).
    keyring: Option<String>,
}

impl std::fmt::Display for NoPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "no password configured (remotepass, remotepassfile, remotepasseval or ~/.netrc",
        )?;
        if let Some(why) = &self.keyring {
            write!(f, "; {why}")?;
        }
        f.write_str("); only the ttyui interface on a terminal asks for it")
    }
}

impl std::error::Error for NoPassword {}

/// ttyui's password prompt (OfflineIMAP's `getpass`): for every IMAP repository that has no
/// password from its options or ~/.netrc, asks once on the terminal, without echo, before
/// any account starts, and keeps the answer in memory only. Without a terminal nothing is
/// asked and the sync fails with [`NoPassword`]'s explanation.
fn ask_passwords(
    accounts: &mut [AccountConfig],
    general: &oi_config::General,
    python: &Python,
    ui: &oi_ui::Ui,
) {
    let mut given: std::collections::HashMap<String, Secret> = std::collections::HashMap::new();
    for account in accounts.iter_mut() {
        let account_name = account.name.clone();
        // imap_config reads account options (OAuth2); the loop below changes the copy.
        let snapshot = account.clone();
        for repo in [&mut account.remote, &mut account.local] {
            let RepositoryKind::Imap(imap) = &mut repo.kind else {
                continue;
            };
            if let Some(secret) = given.get(&repo.name) {
                imap.password = PasswordSource::Inline(secret.clone());
                continue;
            }
            // Only a repository without any password option can need asking (this also
            // keeps a remotepasseval from running one extra time here).
            let missing = matches!(imap.password, PasswordSource::None)
                && matches!(
                    imap_config(&snapshot, &repo.name, imap, general, python, &[]),
                    Err(e) if e.is::<NoPassword>()
                );
            if !missing {
                continue;
            }
            let user = imap.user.clone().unwrap_or_default();
            // On a runtime worker the terminal read must not stall the other tasks.
            let typed = if tokio::runtime::Handle::try_current().is_ok() {
                tokio::task::block_in_place(|| oi_ui::prompt_password(&user))
            } else {
                oi_ui::prompt_password(&user)
            };
            match typed {
                Ok(typed) => {
                    let secret = Secret::new(typed);
                    given.insert(repo.name.clone(), secret.clone());
                    imap.password = PasswordSource::Inline(secret);
                }
                Err(e) => ui.emit(Event::Warning {
                    account: Some(account_name.clone()),
                    message: format!("cannot ask for the password of {}: {e}", repo.name),
                }),
            }
        }
    }
}

fn read_password_file(path: &Path) -> Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading remotepassfile {}", path.display()))?;
    Ok(Secret::new(text.lines().next().unwrap_or_default()))
}

/// The Maildir store's options from the repository's and the account's.
pub(crate) fn maildir_options(
    account: &AccountConfig,
    m: &oi_config::MaildirConfig,
) -> oi_maildir::MaildirOptions {
    oi_maildir::MaildirOptions {
        windows_compatible: account.maildir_windows_compatible,
        restore_atime: m.restoreatime,
        utime_from_header: m.utime_from_header,
        filename_use_mail_timestamp: m.filename_use_mail_timestamp,
    }
}

/// Adapts the LocalStatus directory to the engine's factory trait.
struct Status(oi_status::StatusDir);

impl StatusFactory for Status {
    type Status = oi_status::SqliteStatus;

    fn open(
        &self,
        status_name: &str,
        remote: &str,
        local: &str,
    ) -> Result<Self::Status, StoreError> {
        self.0
            .open_folder(status_name, remote, local)
            .map_err(|e| StoreError::with_source(Severity::Folder, "opening LocalStatus", e))
    }

    fn peek_remote_token(&self, status_name: &str) -> Option<String> {
        self.0.peek_token(status_name, oi_core::Side::Remote)
    }

    fn read_ahead(&self) {
        // Without the thread each folder reads its own status, as it would anyway.
        let _ = self.0.read_ahead();
    }

    fn forget(&self, status_name: &str, remote: &str, local: &str) -> Result<(), StoreError> {
        let fail = |e| StoreError::with_source(Severity::Folder, "purging LocalStatus", e);
        self.0.purge_folder(status_name).map_err(fail)?;
        for (side, name) in [
            (oi_core::Side::Remote, remote),
            (oi_core::Side::Local, local),
        ] {
            match std::fs::remove_file(self.0.validity_path(side, name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StoreError::with_source(
                        Severity::Folder,
                        "removing FolderValidity",
                        e,
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The Maildir repository with OfflineIMAP's FMD5 rule: file names carry the MD5 of the
/// folder's *visible* name, which is its name through the local repository's nametrans.
struct VisibleMaildir {
    inner: oi_maildir::MaildirRepository,
    naming: Arc<PyNaming>,
}

impl Repository for VisibleMaildir {
    type Folder = oi_maildir::MaildirFolder;

    fn separator(&self) -> char {
        self.inner.separator()
    }

    async fn list_folders(&self) -> Result<Vec<String>, StoreError> {
        self.inner.list_folders().await
    }

    async fn create_folder(&self, name: &str) -> Result<(), StoreError> {
        self.inner.create_folder(name).await
    }

    fn prepare(&self, name: &str) {
        self.inner.prepare(name);
    }

    fn prepare_many(&self, names: &[String]) {
        self.inner.prepare_many(names);
    }

    fn syncing_only(&self, names: &[String]) {
        self.inner.syncing_only(names);
    }

    fn spool_dir(&self, name: &str) -> Option<std::path::PathBuf> {
        self.inner.spool_dir(name)
    }

    async fn open_folder(
        &self,
        name: &str,
        access: oi_core::Access,
    ) -> Result<Self::Folder, StoreError> {
        let visible = self.naming.local_visible(name)?;
        Ok(self
            .inner
            .open_folder_with_visible_name(name, &visible, access)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_counting_follows_offlineimap() {
        let run = |setting, n| {
            let mut c = 0;
            (0..n)
                .map(|_| next_is_quick(setting, &mut c))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(0, 3), [false, false, false]);
        assert_eq!(run(-1, 2), [true, true]);
        assert_eq!(run(2, 7), [false, true, true, false, true, true, false]);
    }
}
