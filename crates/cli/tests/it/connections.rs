//! `maxconnections`: how many IMAP connections a sync of several folders opens, counted in
//! the server's log. A folder with nothing to do on the server hands its connection to the
//! next folder before it makes its local changes; that must never open another one.

use crate::common::*;

const FOLDERS: [&str; 6] = ["Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta"];

fn logins(w: &World) -> usize {
    w.server.logs().matches("Login: user=<alice>").count()
}

fn local_subjects(w: &World, folder: &str) -> Vec<String> {
    let mut v: Vec<String> = local_messages(&w.maildir().join(folder))
        .into_iter()
        .map(|m| m.subject)
        .collect();
    v.sort();
    v
}

/// Six folders, each changed in its own way since the first sync: server flags only (the
/// early hand-over), a new local message (upload), a server deletion, a local flag change,
/// a new server message, nothing at all.
fn six_changed_folders(extra: &str) -> Option<World> {
    let w = World::new("maxconnections")?;
    for f in FOLDERS {
        w.server.create_mailbox(USER, f).unwrap();
        for i in 1..=3 {
            w.put(f, &format!("{f} {i}"));
        }
    }
    w.write_config(extra, "");
    w.sync_ok();
    w.server
        .add_flags(USER, "Alpha", 1, &["\\Flagged"])
        .unwrap();
    std::fs::write(w.maildir().join("Beta/new/1.local"), message("Beta local")).unwrap();
    w.expunge("Gamma", 2);
    let delta = local_messages(&w.maildir().join("Delta"));
    set_local_flags(&delta[0], "FS");
    w.put("Epsilon", "Epsilon 4");
    Some(w)
}

fn assert_synced(w: &World) {
    assert_eq!(
        local_subjects(w, "Alpha"),
        ["Alpha 1", "Alpha 2", "Alpha 3"]
    );
    let mut beta: Vec<String> = w
        .server_messages("Beta")
        .into_values()
        .map(|(s, _)| s)
        .collect();
    beta.sort();
    assert_eq!(beta, ["Beta 1", "Beta 2", "Beta 3", "Beta local"]);
    assert_eq!(local_subjects(w, "Gamma"), ["Gamma 1", "Gamma 3"]);
    let delta = w.server_messages("Delta");
    assert!(
        delta
            .values()
            .any(|(_, f)| f.iter().any(|x| x == "\\Flagged")),
        "{delta:?}"
    );
    assert_eq!(
        local_subjects(w, "Epsilon"),
        ["Epsilon 1", "Epsilon 2", "Epsilon 3", "Epsilon 4"]
    );
    let alpha = local_messages(&w.maildir().join("Alpha"));
    assert!(alpha.iter().any(|m| m.flags.contains('F')), "{alpha:?}");
}

/// OfflineIMAP's default, `maxconnections = 1`: the whole account on one connection.
#[test]
fn one_connection_for_every_folder_by_default() {
    let Some(w) = six_changed_folders("") else {
        return;
    };
    let before = logins(&w);
    w.sync_ok();
    assert_eq!(logins(&w) - before, 1, "{}", w.server.logs());
    assert_synced(&w);
    assert_nothing_done(&w.sync_ok());
}

/// `maxconnections = 3`: folders run side by side, never on more than three connections.
#[test]
fn maxconnections_bounds_the_connections() {
    let Some(w) = six_changed_folders("maxconnections = 3") else {
        return;
    };
    let before = logins(&w);
    w.sync_ok();
    let opened = logins(&w) - before;
    assert!(
        (2..=3).contains(&opened),
        "{opened} logins\n{}",
        w.server.logs()
    );
    assert_synced(&w);
    assert_nothing_done(&w.sync_ok());
}
