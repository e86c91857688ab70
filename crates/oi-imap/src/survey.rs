//! Several changed folders' listings asked for in one write ([`Survey`]).
//!
//! A folder whose HIGHESTMODSEQ moved on since its kept listing needs one exchange with
//! the server before it can be planned: its SELECT and the fetch of the changes since
//! (`ImapFolder::send_listing_ahead`). With one connection the folders take turns, and
//! each turn waits a round trip: ten folders whose flags were changed on another device,
//! with the server 20 ms away, wait 0.2 s for nothing but the network. A survey sends
//! all those exchanges at once, right after the folder list, on one pooled connection;
//! a task of its own reads the answers and hands each folder its part as soon as it is
//! in, so that the first folders are planned while the server still answers for the
//! others.
//!
//! Each answer is told apart by the command it belongs to: the server answers pipelined
//! commands in order, so everything untagged that comes before a command's completion
//! and after the one before belongs to that command (the rule
//! `ImapFolder::finish_ahead` applies to one folder). What a folder gets is what
//! `finish_ahead` would have read: the SELECT's report, and the changes (FETCH, and
//! VANISHED, EXISTS, EXPUNGE for the count), which the folder applies to its kept
//! listing only if that listing is the one they were asked for.
//!
//! Only folders with no new message are surveyed (their listed UIDNEXT is right above
//! the kept listing's last UID): those are done with the server once their changes are
//! in, as the survey leaves them unselected. A folder with new mail needs its own SELECT
//! for the download anyway, where the changes go along (one round trip, as before).
//!
//! While the survey reads, its connection is out of the pool: a folder that needs a
//! connection then waits for the survey's end rather than open one more than
//! `maxconnections` allows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use oi_core::Listing;

use crate::client::{Completion, Connection};
use crate::keywords::KeywordMap;
use crate::response::Outcome;
use crate::response::Untagged;
use crate::store::{Pool, apply_fetch, lock_pool};

/// What the survey read for one folder.
#[derive(Debug)]
pub(crate) struct Surveyed {
    /// The HIGHESTMODSEQ of the kept listing the changes were asked since.
    pub(crate) since: u64,
    /// The last UID of that listing.
    pub(crate) known: u32,
    /// Everything untagged that answered the SELECT.
    pub(crate) select_part: Vec<Untagged>,
    /// The SELECT's completion.
    pub(crate) select_done: Completion,
    /// The messages whose flags changed (or that are above `known`), as the FETCH
    /// responses gave them: sizes only where the server sent one.
    pub(crate) changed: Listing,
    /// The other untagged responses to the changes fetch that count (VANISHED, EXISTS,
    /// EXPUNGE), in order.
    pub(crate) others: Vec<Untagged>,
}

/// One folder's place in the survey.
#[derive(Debug)]
enum State {
    /// Its answers are not all in.
    Waiting,
    /// All in, every command OK.
    Read(Box<Surveyed>),
    /// Refused, or the connection was lost: the folder asks again its own way.
    Failed,
}

/// A survey under way or done (see the module comment).
#[derive(Debug)]
pub(crate) struct Survey {
    folders: Mutex<HashMap<String, State>>,
    /// Bumped at each change of `folders` and at the end; `true` once the survey ended.
    changed: tokio::sync::watch::Sender<bool>,
    /// No longer waited for ([`Survey::abandon`]): its connection is closed at the end
    /// instead of going back to a pool that was emptied meanwhile.
    abandoned: std::sync::atomic::AtomicBool,
}

/// A folder to survey: its name, its SELECT (or EXAMINE) and changes commands, and the
/// kept listing they ask the changes of.
pub(crate) struct Wanted {
    pub(crate) name: String,
    pub(crate) commands: Vec<crate::session::Command>,
    pub(crate) since: u64,
    pub(crate) known: u32,
}

impl Survey {
    /// Whether `name` is one of the folders surveyed.
    pub(crate) fn has(&self, name: &str) -> bool {
        lock(&self.folders).contains_key(name)
    }

    /// Waits for a folder's answers and takes them; `None` when the folder was not
    /// surveyed, was taken already, or its answers could not be read.
    pub(crate) async fn take(&self, name: &str) -> Option<Surveyed> {
        let mut rx = self.changed.subscribe();
        loop {
            {
                let mut folders = lock(&self.folders);
                match folders.get(name) {
                    None => return None,
                    Some(State::Waiting) => {}
                    Some(_) => {
                        return match folders.remove(name) {
                            Some(State::Read(s)) => Some(*s),
                            _ => None,
                        };
                    }
                }
            }
            if rx.changed().await.is_err() {
                // The task is gone without an answer for it.
                return None;
            }
        }
    }

    /// Waits until the survey's connection is back in the pool (or dropped).
    pub(crate) async fn finished(&self) {
        let mut rx = self.changed.subscribe();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives up waiting for the survey, with the pool locked (`_pool`), so that its task
    /// either has put its connection back already or will close it.
    pub(crate) fn abandon(&self, _pool: &mut Vec<Connection>) {
        self.abandoned.store(true, Ordering::Relaxed);
    }

    fn set(&self, name: &str, state: State) {
        lock(&self.folders).insert(name.to_string(), state);
        self.changed.send_modify(|_| {});
    }

    /// Sends every folder's commands at once on `conn` and reads the answers on a task
    /// of its own, which puts the connection back in `pool` at the end (or drops it if it
    /// broke). `None` when the commands could not even be sent (the connection is then
    /// dropped: it broke).
    pub(crate) async fn start(
        mut conn: Connection,
        wanted: Vec<Wanted>,
        keywords: KeywordMap,
        pool: Pool,
    ) -> Option<Arc<Survey>> {
        debug_assert!(wanted.len() <= SURVEY_FOLDERS);
        let mut owner = Vec::new();
        let mut commands = Vec::new();
        let mut folders = HashMap::new();
        let mut parts = Vec::new();
        for (i, w) in wanted.into_iter().enumerate() {
            for (j, c) in w.commands.into_iter().enumerate() {
                owner.push((i, j == 0));
                commands.push(c);
            }
            folders.insert(w.name.clone(), State::Waiting);
            parts.push(Part {
                name: w.name,
                since: w.since,
                known: w.known,
                select_part: Vec::new(),
                select_done: None,
                changed: Listing::default(),
                others: Vec::new(),
                failed: false,
            });
        }
        let tags = match conn.send_ahead(commands).await {
            Ok(tags) => tags,
            Err(e) => {
                tracing::debug!(error = %e, "survey not sent");
                return None;
            }
        };
        let (changed, _) = tokio::sync::watch::channel(false);
        let survey = Arc::new(Survey {
            folders: Mutex::new(folders),
            changed,
            abandoned: Default::default(),
        });
        let task = survey.clone();
        tokio::spawn(async move {
            // However the reading ends (a panic included), no folder is left waiting; the
            // connection is back in the pool by then (dropped after it).
            let _end = End(&task);
            let reader = Reader {
                owner,
                tags: tags.clone(),
                parts: Mutex::new(parts),
                at: AtomicUsize::new(0),
                astray: Default::default(),
                selected: Mutex::new(None),
                keywords,
                survey: &task,
            };
            let r = {
                let mut each = |u: Untagged| reader.untagged(u);
                let mut done = |tag: &str, c: &Completion| reader.done(tag, c);
                conn.collect(tags, &mut each, &mut done).await
            };
            match r {
                // A completion out of order: what the connection is in is anyone's guess.
                Ok(_) if reader.astray.load(Ordering::Relaxed) => {
                    tracing::debug!("survey answers out of order: connection closed");
                    drop(conn);
                }
                Ok(_) => {
                    conn.selected = lock(&reader.selected).take();
                    let mut pool = lock_pool(&pool);
                    if !task.abandoned.load(Ordering::Relaxed) {
                        pool.push(conn);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "survey connection lost");
                    drop(conn);
                }
            }
        });
        Some(survey)
    }
}

/// Ends a survey when dropped: the folders not handed their part by then ask again their
/// own way, and the survey's connection is no longer waited for.
struct End<'a>(&'a Survey);

impl Drop for End<'_> {
    fn drop(&mut self) {
        for state in lock(&self.0.folders).values_mut() {
            if matches!(state, State::Waiting) {
                *state = State::Failed;
            }
        }
        self.0.changed.send_replace(true);
    }
}

/// What the reading task gathers for one folder until its last command completes.
struct Part {
    name: String,
    since: u64,
    known: u32,
    select_part: Vec<Untagged>,
    select_done: Option<Completion>,
    changed: Listing,
    others: Vec<Untagged>,
    failed: bool,
}

/// The survey's reading state, shared by the two callbacks of `Connection::collect`.
struct Reader<'a> {
    /// For each command in the order sent: its folder's index in `parts`, and whether
    /// it is that folder's SELECT.
    owner: Vec<(usize, bool)>,
    parts: Mutex<Vec<Part>>,
    /// The tags of the commands, in the order sent.
    tags: Vec<String>,
    /// How many commands have completed: the next one is the one being answered.
    at: AtomicUsize,
    /// A completion came that is not the next command's: nothing more is handed out.
    astray: std::sync::atomic::AtomicBool,
    /// The mailbox the last SELECT that succeeded left selected (`None` after one that
    /// failed: the server then has none selected).
    selected: Mutex<Option<String>>,
    keywords: KeywordMap,
    survey: &'a Survey,
}

impl Reader<'_> {
    fn untagged(&self, u: Untagged) -> Option<Untagged> {
        if self.astray.load(Ordering::Relaxed) {
            return None;
        }
        let at = self.at.load(Ordering::Relaxed);
        // Anything after the last completion belongs to no command sent here.
        let &(i, select) = self.owner.get(at)?;
        let mut parts = lock(&self.parts);
        let part = &mut parts[i];
        if select {
            part.select_part.push(u);
            return None;
        }
        match u {
            Untagged::Fetch(f) => apply_fetch(&self.keywords, &mut part.changed, f),
            u @ (Untagged::Vanished { .. } | Untagged::Exists(_) | Untagged::Expunge(_)) => {
                part.others.push(u);
            }
            _ => {}
        }
        None
    }

    fn done(&self, tag: &str, c: &Completion) {
        let at = self.at.fetch_add(1, Ordering::Relaxed);
        if self.tags.get(at).is_none_or(|t| t != tag) {
            // Answers matched by count would go to the wrong folders from here on.
            self.astray.store(true, Ordering::Relaxed);
        }
        if self.astray.load(Ordering::Relaxed) {
            return;
        }
        let Some(&(i, select)) = self.owner.get(at) else {
            return;
        };
        let mut parts = lock(&self.parts);
        let part = &mut parts[i];
        if select {
            part.select_done = Some(c.clone());
            *lock(&self.selected) = (c.outcome == Outcome::Ok).then(|| part.name.clone());
        }
        part.failed |= c.outcome != Outcome::Ok;
        // The folder's last command: hand its part out now.
        let last_of_folder = self.owner.get(at + 1).is_none_or(|&(next, _)| next != i);
        if !last_of_folder {
            return;
        }
        let state = match (part.failed, part.select_done.take()) {
            (false, Some(select_done)) => State::Read(Box::new(Surveyed {
                since: part.since,
                known: part.known,
                select_part: std::mem::take(&mut part.select_part),
                select_done,
                changed: std::mem::take(&mut part.changed),
                others: std::mem::take(&mut part.others),
            })),
            _ => State::Failed,
        };
        let name = part.name.clone();
        drop(parts);
        self.survey.set(&name, state);
    }
}

/// Merges the changes a survey read into the kept listing they were asked since: each
/// changed message takes its new flags, and keeps its size unless the server sent one.
/// At most how many folders one survey asks for: their commands go out in one write
/// before anything is read, which must fit in the socket's buffers (a server that stops
/// reading while its answers wait to be read would otherwise block that write for good).
/// About 150 bytes each.
pub(crate) const SURVEY_FOLDERS: usize = 64;

pub(crate) fn merge_changed(listing: &mut Listing, changed: Listing) {
    for (uid, meta) in changed.messages {
        let size = meta
            .size
            .or_else(|| listing.messages.get(&uid).and_then(|m| m.size));
        listing.messages.insert(
            uid,
            oi_core::MessageMeta {
                flags: meta.flags,
                size,
            },
        );
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn survey(names: &[&str]) -> Survey {
        let (changed, _) = tokio::sync::watch::channel(false);
        Survey {
            folders: Mutex::new(
                names
                    .iter()
                    .map(|n| (n.to_string(), State::Waiting))
                    .collect(),
            ),
            changed,
            abandoned: Default::default(),
        }
    }

    fn part(name: &str) -> Part {
        Part {
            name: name.into(),
            since: 7,
            known: 3,
            select_part: Vec::new(),
            select_done: None,
            changed: Listing::default(),
            others: Vec::new(),
            failed: false,
        }
    }

    fn completion(outcome: Outcome) -> Completion {
        Completion {
            command: "X".into(),
            outcome,
            code: None,
            text: String::new(),
        }
    }

    /// Folders A and B, each a SELECT and one fetch, tagged a1 a2 b1 b2.
    fn reader(s: &Survey) -> Reader<'_> {
        Reader {
            owner: vec![(0, true), (0, false), (1, true), (1, false)],
            tags: ["a1", "a2", "b1", "b2"].map(String::from).to_vec(),
            parts: Mutex::new(vec![part("A"), part("B")]),
            at: AtomicUsize::new(0),
            astray: Default::default(),
            selected: Mutex::new(None),
            keywords: KeywordMap::default(),
            survey: s,
        }
    }

    fn state(s: &Survey, name: &str) -> &'static str {
        match lock(&s.folders).get(name) {
            Some(State::Waiting) => "waiting",
            Some(State::Read(_)) => "read",
            Some(State::Failed) => "failed",
            None => "none",
        }
    }

    #[test]
    fn each_answer_goes_to_the_command_being_answered() {
        let s = survey(&["A", "B"]);
        let r = reader(&s);
        r.untagged(Untagged::Exists(5));
        r.done("a1", &completion(Outcome::Ok));
        r.untagged(Untagged::Exists(4));
        assert_eq!(state(&s, "A"), "waiting");
        r.done("a2", &completion(Outcome::Ok));
        assert_eq!(state(&s, "A"), "read");
        // B's SELECT is refused, and its fetch with it.
        r.done("b1", &completion(Outcome::No));
        r.done("b2", &completion(Outcome::Bad));
        assert_eq!(state(&s, "B"), "failed");
        // Nothing is selected after a failed SELECT.
        assert_eq!(*lock(&r.selected), None);
        let Some(State::Read(a)) = lock(&s.folders).remove("A") else {
            panic!("A not read");
        };
        assert!(matches!(a.select_part[..], [Untagged::Exists(5)]));
        assert!(matches!(a.others[..], [Untagged::Exists(4)]));
        assert_eq!((a.since, a.known), (7, 3));
    }

    #[test]
    fn a_completion_out_of_order_hands_nothing_more_out() {
        let s = survey(&["A", "B"]);
        {
            let _end = End(&s);
            let r = reader(&s);
            r.done("a1", &completion(Outcome::Ok));
            r.done("a2", &completion(Outcome::Ok));
            assert_eq!(*lock(&r.selected), Some("A".to_string()));
            // A stray tag where B's SELECT should complete: B's answers cannot be told.
            r.done("zz", &completion(Outcome::Ok));
            r.untagged(Untagged::Exists(9));
            r.done("b1", &completion(Outcome::Ok));
            r.done("b2", &completion(Outcome::Ok));
            assert!(r.astray.load(Ordering::Relaxed));
            assert_eq!(state(&s, "B"), "waiting");
        }
        // The end of the survey leaves no folder waiting.
        assert_eq!(state(&s, "A"), "read");
        assert_eq!(state(&s, "B"), "failed");
        assert!(*s.changed.borrow());
    }
}
