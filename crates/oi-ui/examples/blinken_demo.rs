//! Feeds a made-up sync to the chosen UI (`blinken_demo blinkenlights`), slowly enough to
//! watch: a manual check of the terminal interfaces in a real terminal.
#![allow(clippy::unwrap_used)]

use oi_core::{Event, EventSink, Side, SyncStats, Uid};

fn main() {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "blinkenlights".into());
    let mut warnings = Vec::new();
    let kind = oi_ui::choose(&name, &mut warnings);
    let ui = oi_ui::build(kind, &oi_ui::Options::default()).unwrap();
    let acc = "Test".to_string();
    ui.emit(Event::AccountStart {
        account: acc.clone(),
    });
    ui.labelled(&acc, "Remote").emit(Event::Connecting {
        account: None,
        repository: None,
        host: "127.0.0.1".into(),
        port: Some(143),
    });
    let mut total = SyncStats::default();
    for (folder, n) in [("INBOX", 30u32), ("Archive", 12)] {
        ui.emit(Event::FolderStart {
            account: acc.clone(),
            folder: folder.into(),
        });
        for i in 1..=n {
            ui.emit(Event::CopyingMessage {
                account: acc.clone(),
                folder: folder.into(),
                from: Side::Remote,
                uid: Uid::new(i),
                num: i as usize,
                total: n as usize,
            });
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let stats = SyncStats {
            copied_to_local: u64::from(n),
            ..SyncStats::default()
        };
        total.add(&stats);
        ui.emit(Event::FolderDone {
            account: acc.clone(),
            folder: folder.into(),
            stats,
        });
    }
    ui.emit(Event::AccountDone {
        account: acc,
        stats: total,
        failed_folders: 0,
    });
    ui.finish(0);
}
