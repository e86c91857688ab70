//! Re-pairing messages when UIDs cannot be trusted: after the server changed a folder's
//! UIDVALIDITY (every UID renumbered), and when a folder with no status meets local
//! messages that carry no UID we know (a Maildir left by mbsync or another tool).
//!
//! Messages are paired by Message-ID; several messages with one Message-ID are told apart
//! by their CRLF size, and whatever stays ambiguous is left unpaired rather than guessed:
//! an unpaired message is copied (a duplicate at worst), a wrong pair could make a later
//! deletion remove a different message.

use std::collections::BTreeMap;

use oi_core::{Identity, MsgRef, Uid};

/// What the pairing found, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pairing {
    /// Local message → remote UID.
    pub pairs: Vec<(MsgRef, Uid)>,
    /// Local messages left unpaired.
    pub unpaired_local: usize,
    /// Remote messages left unpaired.
    pub unpaired_remote: usize,
}

/// Pairs local with remote messages by identity (pure).
pub fn pair(remote: &[(Uid, Identity)], local: &[(MsgRef, Identity)]) -> Pairing {
    type Groups<'a, T> = BTreeMap<&'a str, Vec<(&'a T, Option<u64>)>>;
    let mut r: Groups<'_, Uid> = BTreeMap::new();
    for (uid, id) in remote {
        if let Some(mid) = &id.message_id {
            r.entry(mid.as_str()).or_default().push((uid, id.size));
        }
    }
    let mut l: Groups<'_, MsgRef> = BTreeMap::new();
    for (m, id) in local {
        if let Some(mid) = &id.message_id {
            l.entry(mid.as_str()).or_default().push((m, id.size));
        }
    }
    let mut pairs = Vec::new();
    for (mid, locals) in &l {
        let Some(remotes) = r.get(mid) else { continue };
        if let ([(lm, _)], [(ru, _)]) = (locals.as_slice(), remotes.as_slice()) {
            pairs.push(((*lm).clone(), **ru));
            continue;
        }
        // Several with one Message-ID: pair by size where a size is unique on both sides.
        for (lm, lsize) in locals {
            let Some(size) = lsize else { continue };
            let same_l = locals.iter().filter(|(_, s)| s == lsize).count();
            let same_r: Vec<_> = remotes.iter().filter(|(_, s)| *s == Some(*size)).collect();
            if same_l == 1
                && let [(ru, _)] = same_r.as_slice()
            {
                pairs.push(((*lm).clone(), **ru));
            }
        }
    }
    Pairing {
        unpaired_local: local.len() - pairs.len(),
        unpaired_remote: remote.len() - pairs.len(),
        pairs,
    }
}

/// First UID of the range used to park local messages out of the way while UIDs are
/// reassigned: far above anything a server hands out in practice.
pub const PARKING: u32 = 4_000_000_000;

/// Orders the renames `from → to` so that none targets a UID still held locally, parking
/// a message at a free high UID to break a cycle. `held` is every UID the local side holds
/// now. Returns the renames to perform, in order (a parked message appears twice).
pub fn rename_order(pairs: &[(MsgRef, Uid)], held: &[Uid]) -> Vec<(MsgRef, Uid)> {
    let mut held: std::collections::BTreeSet<Uid> = held.iter().copied().collect();
    let mut pending: Vec<(MsgRef, Uid)> = pairs
        .iter()
        .filter(|(from, to)| *from != MsgRef::Uid(*to))
        .cloned()
        .collect();
    let mut out = Vec::new();
    let mut next_parking = PARKING;
    while !pending.is_empty() {
        if let Some(i) = pending.iter().position(|(_, to)| !held.contains(to)) {
            let (from, to) = pending.remove(i);
            if let MsgRef::Uid(old) = &from {
                held.remove(old);
            }
            held.insert(to);
            out.push((from, to));
            continue;
        }
        // Every target is held: by pending messages (a cycle) or by messages that are not
        // being renamed. Park the holder of the first target if it is pending, else the
        // target cannot be freed here and that pair is dropped (left unpaired).
        let (_, target) = pending[0].clone();
        let holder = pending
            .iter()
            .position(|(from, _)| *from == MsgRef::Uid(target));
        match holder {
            Some(h) => {
                while held.contains(&Uid::new(next_parking).unwrap_or(target)) {
                    next_parking += 1;
                }
                let Some(park) = Uid::new(next_parking) else {
                    pending.remove(0);
                    continue;
                };
                held.remove(&target);
                held.insert(park);
                out.push((MsgRef::Uid(target), park));
                pending[h].0 = MsgRef::Uid(park);
            }
            None => {
                pending.remove(0);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(n: u32) -> Uid {
        Uid::new(n).unwrap()
    }

    fn id(mid: &str, size: u64) -> Identity {
        Identity {
            message_id: Some(mid.to_string()),
            size: Some(size),
        }
    }

    #[test]
    fn pairs_by_message_id_then_size_and_never_guesses() {
        let remote = vec![
            (uid(10), id("<a>", 5)),
            (uid(11), id("<dup>", 7)),
            (uid(12), id("<dup>", 9)),
            (uid(13), id("<same>", 3)),
            (uid(14), id("<same>", 3)),
            (uid(15), Identity::default()),
        ];
        let local = vec![
            (MsgRef::Uid(uid(1)), id("<a>", 5)),
            (MsgRef::Uid(uid(2)), id("<dup>", 9)),
            (MsgRef::Unsynced("k".into()), id("<dup>", 7)),
            (MsgRef::Uid(uid(3)), id("<same>", 3)),
            (MsgRef::Uid(uid(4)), Identity::default()),
        ];
        let p = pair(&remote, &local);
        let mut got = p.pairs.clone();
        got.sort();
        assert_eq!(
            got,
            vec![
                (MsgRef::Uid(uid(1)), uid(10)),
                (MsgRef::Uid(uid(2)), uid(12)),
                (MsgRef::Unsynced("k".into()), uid(11)),
            ]
        );
        assert_eq!((p.unpaired_local, p.unpaired_remote), (2, 3));
    }

    #[test]
    fn renames_never_collide_and_cycles_are_parked() {
        // 1→2, 2→1 is a cycle; 3→5 targets a UID held by a message that is not renamed.
        let pairs = vec![
            (MsgRef::Uid(uid(1)), uid(2)),
            (MsgRef::Uid(uid(2)), uid(1)),
            (MsgRef::Uid(uid(3)), uid(5)),
            (MsgRef::Uid(uid(6)), uid(6)),
        ];
        let order = rename_order(&pairs, &[uid(1), uid(2), uid(3), uid(5), uid(6)]);
        // Simulate and check: no rename lands on a held UID, and the end state is right.
        let mut at: BTreeMap<Uid, &str> = [
            (uid(1), "a"),
            (uid(2), "b"),
            (uid(3), "c"),
            (uid(5), "x"),
            (uid(6), "d"),
        ]
        .into();
        for (from, to) in &order {
            let MsgRef::Uid(f) = from else { unreachable!() };
            assert!(!at.contains_key(to), "rename onto held {to}");
            let m = at.remove(f).unwrap();
            at.insert(*to, m);
        }
        assert_eq!(at[&uid(2)], "a");
        assert_eq!(at[&uid(1)], "b");
        assert_eq!(
            at[&uid(3)],
            "c",
            "a pair whose target cannot be freed is dropped"
        );
        assert_eq!(at[&uid(5)], "x");
        assert_eq!(at[&uid(6)], "d");
    }
}
