//! Simulated power loss on the client's machine: the local Maildir and the metadata folder
//! live on a loop-mounted ext4 image mounted with `commit=600`, so that nothing reaches the
//! image file unless something fsyncs it (or the kernel writes back on its own). A two-way
//! sync of a 2000-message mailbox is killed (SIGKILL) at a random instant, and the image
//! FILE is copied at once: the copy holds what reached the "device". The original is
//! dropped, the copy is mounted (ext4 replays its journal), and a clean run must converge:
//! every message that should exist present once on each side (by Message-ID), the same
//! flags, and nothing left to do on a third run. The server (Dovecot) is not on the image:
//! only the client loses power. `POWERLOSS_RUNS` sets the number of power losses (10 by
//! default), `POWERLOSS_SEED` the seed; a failure prints the seed and the run.
//! A second test puts the power loss after every step of the `crash` scenario (the crash
//! hook), which reaches instants a random kill rarely hits, such as between an APPEND and
//! the local rename that records its UID.
//!
//! ext4 commits its whole journal on any fsync, so a missing fsync of a directory is hidden
//! whenever some later fsync comes before the power loss; what this finds is state that
//! is trusted (a commit, an APPEND) before it is on the disk.
//!
//! Needs root (losetup, mount): skipped loudly otherwise, a failure under CI=true.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use crate::scenarios::{TwoWaySync, env_number};

fn run_cmd(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{program} {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// An ext4 image attached to a loop device and mounted; unmounted and detached on drop,
/// also when the test fails.
struct Disk {
    image: PathBuf,
    mnt: PathBuf,
    dev: Option<String>,
    mounted: bool,
    /// How many power losses this disk went through (names the image copies).
    generation: usize,
}

impl Disk {
    /// Attaches `image` and mounts it on `mnt` with a 600 s journal commit interval.
    fn attach(image: &Path, mnt: &Path) -> Disk {
        let mut disk = Disk {
            image: image.to_path_buf(),
            mnt: mnt.to_path_buf(),
            dev: None,
            mounted: false,
            generation: 0,
        };
        let dev = run_cmd("losetup", &["--find", "--show", image.to_str().unwrap()]).unwrap();
        disk.dev = Some(dev.clone());
        run_cmd(
            "mount",
            &[
                "-t",
                "ext4",
                "-o",
                "commit=600,noatime",
                &dev,
                mnt.to_str().unwrap(),
            ],
        )
        .unwrap();
        disk.mounted = true;
        disk
    }

    /// Makes everything written so far durable (what a user's own changes are before a run).
    fn sync(&self) {
        run_cmd("sync", &["-f", self.mnt.to_str().unwrap()]).unwrap();
    }

    fn detach(&mut self) {
        if self.mounted {
            let mnt = self.mnt.to_str().unwrap();
            if run_cmd("umount", &[mnt]).is_err() {
                let _ = run_cmd("umount", &["-l", mnt]);
            }
            self.mounted = false;
        }
        if let Some(dev) = self.dev.take() {
            let _ = run_cmd("losetup", &["-d", &dev]);
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Every file on the mounted image (relative path → hash of the contents).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, u64>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let path = e.path();
            if path.file_name().is_some_and(|n| n == "lost+found") {
                continue;
            }
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                walk(root, &path, out);
            } else if ft.is_file() {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&path).unwrap_or_default().hash(&mut h);
                out.insert(path.strip_prefix(root).unwrap().to_path_buf(), h.finish());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The client's disk: a fresh ext4 image of `mib` MiB mounted on `<dir>/disk`; the
/// World's Mail and meta folders (where its config points) are links into it.
fn client_disk(w: &World, mib: u64) -> Disk {
    let mnt = w.dir.path().join("disk");
    std::fs::create_dir(&mnt).unwrap();
    let image = w.dir.path().join("disk0.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    run_cmd("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]).unwrap();
    let disk = Disk::attach(&image, &mnt);
    for (link, name) in [(w.maildir(), "Mail"), (w.metadata(), "meta")] {
        std::fs::create_dir(mnt.join(name)).unwrap();
        std::os::unix::fs::symlink(mnt.join(name), link).unwrap();
    }
    disk.sync();
    disk
}

/// The power goes off: the image FILE is copied at once (it holds what reached the
/// device), the original is dropped, and the copy is mounted in its place (ext4 replays
/// its journal). Returns whether anything the process had written was lost.
fn power_loss(disk: &mut Disk, ctx: &str) -> bool {
    disk.generation += 1;
    let next = disk
        .image
        .with_file_name(format!("disk{}.img", disk.generation));
    run_cmd(
        "cp",
        &[
            "--sparse=always",
            disk.image.to_str().unwrap(),
            next.to_str().unwrap(),
        ],
    )
    .unwrap();
    let mnt = disk.mnt.clone();
    let written = snapshot(&mnt);
    disk.detach();
    let _ = std::fs::remove_file(&disk.image);
    let generation = disk.generation;
    *disk = Disk::attach(&next, &mnt);
    disk.generation = generation;
    let survived = snapshot(&mnt);
    if written == survived {
        eprintln!("{ctx}: everything written had reached the disk");
        return false;
    }
    let lost: Vec<_> = written
        .iter()
        .filter(|(p, h)| survived.get(*p) != Some(*h))
        .map(|(p, _)| p)
        .collect();
    let extra: Vec<_> = survived
        .keys()
        .filter(|p| !written.contains_key(*p))
        .collect();
    eprintln!(
        "{ctx}: power loss dropped {} of {} files (or their latest contents), \
         e.g. {:?}; {} deleted or renamed files came back, e.g. {:?}",
        lost.len(),
        written.len(),
        &lost[..lost.len().min(4)],
        extra.len(),
        &extra[..extra.len().min(4)],
    );
    true
}

/// True when this process may use loop devices and mount (root); a loud skip otherwise,
/// a failure under CI.
fn may_mount(test: &str) -> bool {
    let uid = run_cmd("id", &["-u"]).unwrap_or_default();
    let ok = uid == "0" && Path::new("/dev/loop-control").exists();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: needs root and /dev/loop-control under CI"
        );
        eprintln!("SKIPPED {test}: needs root and loop devices (losetup, mount)");
    }
    ok
}

#[test]
fn power_loss_during_two_way_sync_loses_and_duplicates_nothing() {
    let test = "power_loss";
    if !may_mount(test) {
        return;
    }
    let runs: usize = env_number("POWERLOSS_RUNS", 10);
    let seed: u64 = env_number("POWERLOSS_SEED", 0x90_5eed);
    eprintln!("{test}: POWERLOSS_SEED={seed}");
    let Some(w) = World::new(test) else {
        return;
    };
    let mut disk = client_disk(&w, 256);
    let mut sync = TwoWaySync::new(&w, seed, "power");
    let mut dropped_runs = 0;
    for run in 0..runs {
        let ctx = format!("seed {seed}, run {run}");
        if run > 0 {
            sync.change_both_sides();
        }
        // The user's changes (and the previous clean run) are on the disk before the run:
        // only what the killed run wrote without fsync may be lost.
        disk.sync();
        sync.kill_within(if run == 0 { 2500 } else { 300 });

        if power_loss(&mut disk, &ctx) {
            dropped_runs += 1;
        }

        sync.clean_run_converges(&ctx, "clean run after the power loss failed");
        let again = w.run(&[]);
        let again_err = String::from_utf8_lossy(&again.stderr).to_string();
        assert!(
            again.status.success(),
            "{ctx}: third run failed: {again_err}"
        );
        assert_nothing_done(&again_err);
    }
    assert!(
        dropped_runs > 0,
        "seed {seed}: no power loss dropped anything: this tested nothing beyond a kill"
    );
}

/// The scenario of the `crash` module on the client's disk: the binary dies (crash hook:
/// exit without commit or cleanup) before each effect N in turn, the power goes off at
/// that instant, and the next run must reach the state an uninterrupted run reaches. This
/// puts the power loss at every step deterministically, e.g. between an APPEND and the
/// local rename that records its UID.
#[test]
fn power_loss_after_every_step_converges() {
    let test = "power_loss_steps";
    if !may_mount(test) {
        return;
    }
    let Some(expected) = crate::crash::reference_state("power_loss_reference") else {
        return;
    };
    let mut crashes = 0;
    for n in 0..40 {
        let ctx = format!("power loss before effect {n}");
        let w = World::new(test).unwrap();
        let mut disk = client_disk(&w, 32);
        crate::crash::prepare(&w);
        disk.sync();
        let finished = crate::crash::run_dying_before(&w, n, &ctx);
        // The process wrote nothing after its last fsync at these instants (the power loss
        // finds everything on the disk when the engine is right); this unsynced file shows
        // that the simulation does drop what was not synced.
        let sentinel = disk.mnt.join("unsynced");
        std::fs::write(&sentinel, "not synced").unwrap();
        power_loss(&mut disk, &ctx);
        assert!(!sentinel.exists(), "{ctx}: an unsynced write survived");
        w.sync_ok();
        assert_eq!(crate::crash::state(&w), expected, "{ctx}");
        assert_nothing_done(&w.sync_ok());
        if finished {
            break;
        }
        crashes += 1;
    }
    assert!(crashes >= 6, "the hook fired only {crashes} times");
}
