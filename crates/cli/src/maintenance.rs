//! One-shot maintenance commands: `--info`, `--delete-folder`,
//! `--migrate-fmd5-using-nametrans`. Each runs instead of a sync and exits.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use oi_config::{AccountConfig, Config, RepositoryKind};
use oi_core::{EventSink, NullSink, Repository, Side};
use oi_sync::FolderNaming;

use crate::py::{PyNaming, Python};
use crate::run::imap_config;

fn naming(account: &AccountConfig, python: &Python) -> PyNaming {
    PyNaming::new(
        python.clone(),
        account.remote.folders.clone(),
        account.local.folders.clone(),
    )
}

/// `--info`: what the configuration means, and the folders each side has, with their
/// names on the other side (no secret is printed).
pub async fn info(config: &Config, path: &Path, python: &Python) -> Result<()> {
    println!("offlineimap {}", env!("CARGO_PKG_VERSION"));
    println!("configuration: {}", path.display());
    println!("metadata: {}", config.general.metadata.display());
    for account in &config.accounts {
        println!("\naccount {}", account.name);
        if let Some(m) = account.autorefresh {
            println!("  autorefresh: every {m} minute(s)");
        }
        let names = naming(account, python);
        for (side, repo) in [
            (Side::Remote, &account.remote),
            (Side::Local, &account.local),
        ] {
            let flags = format!(
                "readonly={} createfolders={} sync_deletes={}",
                repo.readonly, repo.createfolders, repo.sync_deletes
            );
            let folders: Result<(Vec<String>, char)> = match &repo.kind {
                RepositoryKind::Imap(c) => {
                    match &c.preauthtunnel {
                        Some(t) => println!(
                            "  {side} repository {} (IMAP, preauthtunnel {t}) {flags}",
                            repo.name
                        ),
                        None => println!(
                            "  {side} repository {} (IMAP, {}:{} as {}, ssl={} starttls={}) {flags}",
                            repo.name,
                            c.host,
                            c.port
                                .map_or_else(|| "default".to_string(), |p| p.to_string()),
                            c.user.as_deref().unwrap_or("(unset)"),
                            c.ssl,
                            c.starttls
                        ),
                    }
                    let events: Arc<dyn EventSink> = Arc::new(NullSink);
                    let r = oi_imap::ImapRepository::new(
                        imap_config(account, &repo.name, c, &config.general, python, &[])?,
                        events,
                    );
                    let listed = r.list_folders().await;
                    let sep = r.separator();
                    r.shutdown().await;
                    listed.map(|l| (l, sep)).map_err(anyhow::Error::from)
                }
                RepositoryKind::Maildir(m) => {
                    println!(
                        "  {side} repository {} (Maildir {}, sep {:?}) {flags}",
                        repo.name,
                        m.localfolders.display(),
                        m.sep
                    );
                    let r = oi_maildir::MaildirRepository::new(oi_maildir::MaildirConfig {
                        root: m.localfolders.clone(),
                        sep: m.sep,
                        fsync: false,
                    })
                    .with_options(crate::run::maildir_options(account, m));
                    r.list_folders()
                        .await
                        .map(|l| (l, m.sep))
                        .map_err(anyhow::Error::from)
                }
            };
            match folders {
                Ok((list, sep)) => {
                    let other_sep = match (&side, &account.local.kind) {
                        (Side::Remote, RepositoryKind::Maildir(m)) => m.sep,
                        _ => sep,
                    };
                    let translated = names.translate(side, &list, sep, other_sep, true)?;
                    for (name, t) in list.iter().zip(translated) {
                        match t {
                            Some(t) => println!("    {name} -> {}", t.other),
                            None => println!("    {name} (excluded by folderfilter)"),
                        }
                    }
                }
                Err(e) => println!("    cannot list folders: {e:#}"),
            }
        }
    }
    Ok(())
}

/// `--delete-folder`: deletes one folder on the remote of the only selected account.
pub async fn delete_folder(config: &Config, folder: &str, python: &Python) -> Result<()> {
    let [account] = config.accounts.as_slice() else {
        bail!(
            "--delete-folder needs exactly one account ({} configured): choose one with -a",
            config.accounts.len()
        );
    };
    let RepositoryKind::Imap(c) = &account.remote.kind else {
        bail!("the remote repository {} is not IMAP", account.remote.name);
    };
    let events: Arc<dyn EventSink> = Arc::new(NullSink);
    let r = oi_imap::ImapRepository::new(
        imap_config(
            account,
            &account.remote.name,
            c,
            &config.general,
            python,
            &[],
        )?,
        events,
    );
    let result = r.delete_folder(folder).await;
    r.shutdown().await;
    result.with_context(|| format!("deleting folder {folder} of {}", account.remote.name))?;
    println!("deleted folder {folder} on {}", account.remote.name);
    Ok(())
}

/// `--migrate-fmd5-using-nametrans`: OfflineIMAP before 6.3.5 hashed the folder's
/// untranslated name into `FMD5=`; since then the visible name. Files with the old hash
/// would look like messages moved in from another folder and be uploaded again.
pub fn migrate_fmd5(config: &Config, python: &Python, dry_run: bool) -> Result<usize> {
    let mut renamed = 0;
    for account in &config.accounts {
        let RepositoryKind::Maildir(m) = &account.local.kind else {
            continue;
        };
        let names = naming(account, python);
        let repo = oi_maildir::MaildirRepository::new(oi_maildir::MaildirConfig {
            root: m.localfolders.clone(),
            sep: m.sep,
            fsync: config.general.fsync,
        })
        .with_options(crate::run::maildir_options(account, m));
        let rt = tokio::runtime::Builder::new_current_thread().build()?;
        for folder in rt.block_on(repo.list_folders())? {
            let old = oi_maildir::name::fmd5(&folder);
            let new = oi_maildir::name::fmd5(&names.local_visible(&folder)?);
            if old == new {
                continue;
            }
            let dir = repo.folder_path(&folder)?;
            for sub in ["cur", "new"] {
                let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
                    continue;
                };
                for entry in entries {
                    let entry = entry?;
                    let name = entry.file_name().to_string_lossy().to_string();
                    // (An OfflineIMAP Maildir name's FMD5 sits before the info part, so the
                    // `!` of maildir-windows-compatible does not matter here.)
                    let needle = format!(",FMD5={old}");
                    if !name.contains(&needle) {
                        continue;
                    }
                    let target = name.replacen(&needle, &format!(",FMD5={new}"), 1);
                    if dry_run {
                        println!("would rename {}/{sub}/{name} -> {target}", folder);
                    } else {
                        std::fs::rename(entry.path(), dir.join(sub).join(&target))
                            .with_context(|| format!("renaming {}", entry.path().display()))?;
                    }
                    renamed += 1;
                }
            }
        }
    }
    Ok(renamed)
}
