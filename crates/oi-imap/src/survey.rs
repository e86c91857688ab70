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
//! A folder is done with the server once its changes are in, as the survey leaves it
//! unselected, unless it has new mail to download. So a folder with new mail is surveyed
//! only if all its new messages are to be downloaded, and how is known
//! ([`oi_core::NewBodies`]): the survey then fetches their bodies too, each up to the
//! largest size the download fetches whole (`BODY.PEEK[]<0.n>`, RFC 3501 §6.4.5, with n
//! one more than that size). A body that came whole waits for the folder's download
//! ([`Surveyed::bodies`]), which takes it instead of asking: in memory, or, above the
//! download's spooling size, in a spool file of the download's own spool folder, written
//! as it comes. One that did not (a message too large for a whole fetch) is dropped, and
//! the folder fetches it its own way. Without this, a folder with new mail needs two
//! round trips in turn (the SELECT with the changes, then the bodies) while the others
//! wait: with the server 20 ms away, 10 such folders wait 0.4 s for the network alone.
//! The bodies held in memory are bounded by [`BODIES_HELD_BYTES`]: beyond it they go to
//! spool files too, so memory stays flat whatever the new mail.
//!
//! While the survey reads, its connection is out of the pool: a folder that needs a
//! connection then opens one more while the repository has fewer than `maxconnections`,
//! and otherwise waits for the survey's end rather than open one more than that.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use oi_core::{Flags, Listing, NewBodies, Uid};

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
    /// The whole bodies of new messages fetched with the listing, and their flags then.
    pub(crate) bodies: BTreeMap<Uid, (Flags, BodyAhead)>,
}

/// A new message's whole body, read by a survey.
#[derive(Debug)]
pub(crate) enum BodyAhead {
    /// Held in memory.
    Memory(Vec<u8>),
    /// In a spool file of the folder's [`NewBodies::spool_dir`]: the file, its path
    /// (removed when dropped unless kept), and its length.
    Spooled(std::fs::File, tempfile::TempPath, u64),
}

impl BodyAhead {
    fn memory(&self) -> u64 {
        match self {
            BodyAhead::Memory(b) => b.len() as u64,
            BodyAhead::Spooled(..) => 0,
        }
    }
}

/// At most this many bytes of bodies wait in memory in a survey for their folders to take
/// them; the others wait in spool files.
pub(crate) const BODIES_HELD_BYTES: u64 = 2 << 20;

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
    /// The bytes of the bodies held in memory for folders that have not taken them yet.
    held: AtomicU64,
    /// The most `held` may reach ([`BODIES_HELD_BYTES`]).
    held_max: u64,
}

/// A folder to survey: its name, its SELECT (or EXAMINE) and changes commands, the kept
/// listing they ask the changes of, and how the bodies of its new messages are wanted
/// when they are asked for too.
pub(crate) struct Wanted {
    pub(crate) name: String,
    pub(crate) commands: Vec<crate::session::Command>,
    pub(crate) since: u64,
    pub(crate) known: u32,
    pub(crate) bodies: Option<NewBodies>,
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
                            Some(State::Read(s)) => {
                                self.held.fetch_sub(memory(&s.bodies), Ordering::Relaxed);
                                Some(*s)
                            }
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
        // Bodies above this are streamed to spool files as they come.
        let spool_over = wanted
            .iter()
            .filter_map(|w| w.bodies.as_ref().map(|b| b.spool_over))
            .min();
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
                wants: w.bodies,
                bodies: BTreeMap::new(),
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
            held: AtomicU64::new(0),
            held_max: BODIES_HELD_BYTES,
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
                spooling: Mutex::new(None),
                survey: &task,
            };
            let r = {
                let mut each = |u: Untagged| reader.untagged(u);
                let mut done = |tag: &str, c: &Completion| reader.done(tag, c);
                match spool_over {
                    Some(over) => {
                        let mut sink = Sink(&reader);
                        conn.collect_spooling(tags, over, &mut sink, &mut each, &mut done)
                            .await
                    }
                    None => conn.collect(tags, &mut each, &mut done).await,
                }
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
    /// How the bodies of its new messages are wanted, when they were asked for.
    wants: Option<NewBodies>,
    bodies: BTreeMap<Uid, (Flags, BodyAhead)>,
    failed: bool,
}

/// The spool file of the literal being streamed (see [`Sink`]): `None` when it has
/// nowhere to go (its folder wants no spooled bodies) or could not be written.
struct Spooling {
    file: Option<tempfile::NamedTempFile>,
    written: u64,
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
    /// The literal being streamed, from its start to the FETCH response it ends in.
    spooling: Mutex<Option<Spooling>>,
    survey: &'a Survey,
}

/// Where the survey's streamed literals go: a spool file in the spool folder of the
/// folder being answered for, if it wants bodies. Never fails: a literal that cannot be
/// written is read and dropped, and its folder fetches the message its own way.
struct Sink<'a, 'b>(&'a Reader<'b>);

impl crate::client::LiteralSink for Sink<'_, '_> {
    fn start(&mut self, _len: u64) -> std::io::Result<()> {
        let r = self.0;
        let dir = {
            let at = r.at.load(Ordering::Relaxed);
            let parts = lock(&r.parts);
            r.owner
                .get(at)
                .and_then(|&(i, _)| parts.get(i))
                .and_then(|p| p.wants.as_ref())
                .map(|w| w.spool_dir.clone())
        };
        let file = dir.and_then(|d| oi_core::spool_file(&d).ok());
        *lock(&r.spooling) = Some(Spooling { file, written: 0 });
        Ok(())
    }

    fn data(&mut self, piece: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let mut spooling = lock(&self.0.spooling);
        if let Some(s) = spooling.as_mut()
            && let Some(file) = s.file.as_mut()
        {
            match file.write_all(piece) {
                Ok(()) => s.written += piece.len() as u64,
                Err(_) => s.file = None,
            }
        }
        Ok(())
    }
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
            Untagged::Fetch(mut f) => {
                let spooled = f.streamed.and(lock(&self.spooling).take());
                let body = match (f.body.take(), spooled, f.streamed) {
                    (Some(body), _, _) => Some(Arrived::Memory(body)),
                    (None, Some(s), Some(len)) => s
                        .file
                        .filter(|_| s.written == len)
                        .map(|file| Arrived::Spooled(file, len)),
                    _ => None,
                };
                if let Some(body) = body {
                    self.keep_body(part, &f, body);
                }
                apply_fetch(&self.keywords, &mut part.changed, f);
            }
            u @ (Untagged::Vanished { .. } | Untagged::Exists(_) | Untagged::Expunge(_)) => {
                part.others.push(u);
            }
            _ => {}
        }
        None
    }

    /// Keeps a new message's body for its folder when the folder wants it and it is
    /// whole (no longer than the whole fetches of its download: one byte more was asked
    /// for); in memory while the survey holds room for it, else in a spool file. Drops it
    /// otherwise: the folder then fetches it itself.
    fn keep_body(&self, part: &mut Part, f: &crate::response::FetchData, body: Arrived) {
        let (Some(uid), Some(wants)) = (f.uid.and_then(Uid::new), part.wants.as_ref()) else {
            return;
        };
        let len = match &body {
            Arrived::Memory(b) => b.len() as u64,
            Arrived::Spooled(_, len) => *len,
        };
        if len > wants.up_to || part.bodies.contains_key(&uid) {
            return;
        }
        let kept = match body {
            Arrived::Spooled(tmp, len) => spooled(tmp, len),
            Arrived::Memory(b) => {
                let held = &self.survey.held;
                let room = held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                    (h + len <= self.survey.held_max).then_some(h + len)
                });
                match room {
                    Ok(_) => Some(BodyAhead::Memory(b)),
                    Err(_) => spill(&wants.spool_dir, &b),
                }
            }
        };
        let Some(kept) = kept else {
            return;
        };
        let flags = self
            .keywords
            .flags_from_imap(f.flags.as_deref().unwrap_or_default())
            .0;
        part.bodies.insert(uid, (flags, kept));
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
        let bodies = std::mem::take(&mut part.bodies);
        let state = match (part.failed, part.select_done.take()) {
            (false, Some(select_done)) => State::Read(Box::new(Surveyed {
                since: part.since,
                known: part.known,
                select_part: std::mem::take(&mut part.select_part),
                select_done,
                changed: std::mem::take(&mut part.changed),
                others: std::mem::take(&mut part.others),
                bodies,
            })),
            _ => {
                self.survey
                    .held
                    .fetch_sub(memory(&bodies), Ordering::Relaxed);
                State::Failed
            }
        };
        let name = part.name.clone();
        drop(parts);
        self.survey.set(&name, state);
    }
}

/// At most how many folders one survey asks for: their commands go out in one write
/// before anything is read, which must fit in the socket's buffers (a server that stops
/// reading while its answers wait to be read would otherwise block that write for good).
/// About 200 bytes each.
pub(crate) const SURVEY_FOLDERS: usize = 64;

/// Merges the changes a survey read into the kept listing they were asked since: each
/// changed message takes its new flags, and keeps its size unless the server sent one.
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

/// A body as the reading gives it, before it is kept.
enum Arrived {
    Memory(Vec<u8>),
    /// Streamed to this spool file, of this length.
    Spooled(tempfile::NamedTempFile, u64),
}

/// The bytes of a folder's bodies held in memory.
fn memory(bodies: &BTreeMap<Uid, (Flags, BodyAhead)>) -> u64 {
    bodies.values().map(|(_, b)| b.memory()).sum()
}

/// A streamed body's file, flushed, as a [`BodyAhead`].
fn spooled(mut tmp: tempfile::NamedTempFile, len: u64) -> Option<BodyAhead> {
    use std::io::Write;
    tmp.flush().ok()?;
    let (file, path) = tmp.into_parts();
    Some(BodyAhead::Spooled(file, path, len))
}

/// A body held in memory written to a spool file of `dir` instead.
fn spill(dir: &std::path::Path, body: &[u8]) -> Option<BodyAhead> {
    use std::io::Write;
    let mut tmp = oi_core::spool_file(dir).ok()?;
    tmp.write_all(body).ok()?;
    spooled(tmp, body.len() as u64)
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
            held: AtomicU64::new(0),
            held_max: BODIES_HELD_BYTES,
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
            wants: None,
            bodies: BTreeMap::new(),
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
            spooling: Mutex::new(None),
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

    /// A's new-message fetch is being answered (A's SELECT done), A wanting bodies of up
    /// to 10 bytes spooled into `dir` above 4.
    fn answering_a_with_bodies<'a>(s: &'a Survey, dir: &std::path::Path) -> Reader<'a> {
        let r = reader(s);
        lock(&r.parts)[0].wants = Some(NewBodies {
            up_to: 10,
            spool_dir: dir.to_path_buf(),
            spool_over: 4,
        });
        r.done("a1", &completion(Outcome::Ok));
        r
    }

    fn body_fetch(uid: u32, body: Option<&[u8]>, streamed: Option<u64>) -> Untagged {
        Untagged::Fetch(crate::response::FetchData {
            seq: uid,
            uid: Some(uid),
            flags: Some(vec!["\\Seen".into()]),
            size: Some(99),
            body: body.map(|b| b.to_vec()),
            streamed,
            ..Default::default()
        })
    }

    fn taken_bodies(s: &Survey, name: &str) -> BTreeMap<u32, Vec<u8>> {
        let Some(State::Read(got)) = lock(&s.folders).remove(name) else {
            panic!("{name} not read");
        };
        got.bodies
            .into_iter()
            .map(|(uid, (flags, b))| {
                assert_eq!(flags, Flags::SEEN);
                let bytes = match b {
                    BodyAhead::Memory(v) => v,
                    BodyAhead::Spooled(_, path, len) => {
                        let v = std::fs::read(&path).unwrap();
                        assert_eq!(v.len() as u64, len);
                        v
                    }
                };
                (uid.get(), bytes)
            })
            .collect()
    }

    fn spool_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn whole_bodies_are_kept_in_memory_or_spooled_and_cut_ones_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let s = survey(&["A", "B"]);
        let r = answering_a_with_bodies(&s, dir.path());
        r.untagged(body_fetch(4, Some(b"abc"), None));
        // One byte more than the 10 wanted came: the message is longer, cut.
        r.untagged(body_fetch(5, Some(b"0123456789X"), None));
        r.untagged(body_fetch(9, Some(b"0123456789"), None));
        // Streamed through the sink, as the session hands literals above 4 bytes out.
        let mut sink = Sink(&r);
        use crate::client::LiteralSink;
        sink.start(7).unwrap();
        sink.data(b"stre").unwrap();
        sink.data(b"amd").unwrap();
        r.untagged(body_fetch(6, None, Some(7)));
        // A streamed literal the sink did not see whole is dropped.
        sink.start(9).unwrap();
        sink.data(b"short").unwrap();
        r.untagged(body_fetch(7, None, Some(9)));
        assert_eq!(spool_files(dir.path()), 1, "the short one's file is gone");
        r.done("a2", &completion(Outcome::Ok));
        assert_eq!(s.held.load(Ordering::Relaxed), 13);
        let bodies = taken_bodies(&s, "A");
        assert_eq!(
            bodies,
            BTreeMap::from([
                (4, b"abc".to_vec()),
                (6, b"streamd".to_vec()),
                (9, b"0123456789".to_vec())
            ])
        );
        // A body for B, which wants none, is not kept (nor spooled anywhere).
        r.done("b1", &completion(Outcome::Ok));
        r.untagged(body_fetch(8, Some(b"xyz"), None));
        r.done("b2", &completion(Outcome::Ok));
        assert!(taken_bodies(&s, "B").is_empty());
    }

    #[test]
    fn bodies_beyond_the_memory_budget_wait_in_spool_files_and_taking_frees_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = survey(&["A", "B"]);
        s.held_max = 5;
        let r = answering_a_with_bodies(&s, dir.path());
        r.untagged(body_fetch(4, Some(b"abc"), None));
        r.untagged(body_fetch(5, Some(b"defg"), None));
        r.untagged(body_fetch(6, Some(b"hi"), None));
        assert_eq!(s.held.load(Ordering::Relaxed), 5);
        assert_eq!(spool_files(dir.path()), 1);
        r.done("a2", &completion(Outcome::Ok));
        let taken = lock(&s.folders).remove("A");
        let Some(State::Read(got)) = taken else {
            panic!("A not read");
        };
        assert!(matches!(
            got.bodies[&Uid::new(5).unwrap()].1,
            BodyAhead::Spooled(..)
        ));
        // What `take` does with what it hands out.
        s.held.fetch_sub(memory(&got.bodies), Ordering::Relaxed);
        assert_eq!(s.held.load(Ordering::Relaxed), 0);
        drop(got);
        assert_eq!(
            spool_files(dir.path()),
            0,
            "a body never taken leaves no file"
        );
    }

    #[test]
    fn a_failed_folder_gives_its_bodies_and_their_budget_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = survey(&["A", "B"]);
        let r = answering_a_with_bodies(&s, dir.path());
        r.untagged(body_fetch(4, Some(b"abc"), None));
        r.done("a2", &completion(Outcome::No));
        assert_eq!(state(&s, "A"), "failed");
        assert_eq!(s.held.load(Ordering::Relaxed), 0);
    }
}
