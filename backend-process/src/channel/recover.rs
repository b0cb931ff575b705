//! Dead-peer detection and recovery: finding processes that died (or exec'd another program)
//! holding handles or a message half sent or received, and settling what they left.

use super::*;

/// How long a slot reserved for a child being forked may wait for the child to take it over.
pub(super) const PENDING_GRACE: Duration = Duration::from_secs(2);

impl Chan {
    /// Looks for dead processes holding handles, at most every `SLICE` per process.
    pub(super) fn maybe_reap(&self) {
        let now = epoch_nanos();
        let last = self.last_reap.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SLICE.as_nanos() as u64 {
            return;
        }
        if self
            .last_reap
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.reap();
        }
    }

    /// `true` if the process of slot `i` (a live pid) took the slot's holder lock and no
    /// longer holds it, and maps the channel no more: it exec'd another program, which holds
    /// none of its handles (`crate::holder`). `false` when that cannot be known: no lock was
    /// taken, or this process has no open file description of its own to test it through. A
    /// process whose lock is gone but that still maps the channel closed its descriptor and
    /// runs on: its slot is told alive or dead by its pid alone from then on.
    fn holder_gone(&self, i: usize, pid: u32) -> bool {
        let slot = &self.hdr().procs[i % MAX_PROCESSES];
        // Acquire: pairs with the Release store in `hold_slot` (the lock was taken before).
        if slot.holder_lock.load(Ordering::Acquire) == 0 {
            return false;
        }
        let Some(fd) = self.own_file() else {
            return false;
        };
        if crate::holder::is_held(fd, i as u32) {
            return false;
        }
        if crate::holder::maps_file(pid, fd) {
            // Relaxed: a hint for later reaps (a new owner of the slot that lost it only
            // loses the exec test); the test above is what decided now.
            slot.holder_lock.store(0, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Subtracts the counts of every dead process's slot from the totals (a process that
    /// exec'd another program counts as dead).
    pub(super) fn reap(&self) {
        let me = procs::my_pid();
        let hdr = self.hdr();
        for (i, slot) in hdr.used_slots().iter().enumerate() {
            // Acquire: pairs with the Release store of a new owner's pid.
            let pid = slot.pid.load(Ordering::Acquire);
            if pid == SLOT_FREE || pid == SLOT_BUSY {
                continue;
            }
            // Set when the pid lives but exec'd another program (`holder_gone`).
            let mut by_exec = false;
            // A reservation for a child that never ran its fork handler (killed at once, or the
            // fork failed) is reaped after `PENDING_GRACE`; the child, if it runs later,
            // registers afresh. One whose child's pid is known (`registry::note_child`) is
            // kept while that child lives: it has only not had a CPU yet.
            let pending = slot.pending.load(Ordering::Relaxed);
            let stale = pending != 0
                && procs::monotonic_nanos()
                    .saturating_sub(slot.pending_since.load(Ordering::Relaxed))
                    > PENDING_GRACE.as_nanos() as u64
                && (pending & registry::PENDING_TOKEN != 0
                    || !procs::is_alive(Identity {
                        pid: pending,
                        start: 0,
                    }));
            if !stale {
                if pid == me {
                    continue;
                }
                let id = Identity {
                    pid,
                    start: slot.start.load(Ordering::Relaxed),
                };
                if procs::is_alive(id) {
                    if !self.holder_gone(i, pid) {
                        continue;
                    }
                    by_exec = true;
                }
            }
            // Claim the slot so only one reaper subtracts its counts.
            if slot
                .pid
                .compare_exchange(pid, SLOT_BUSY, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            // Tested again now that no process can claim the slot: the test above may have
            // fallen between the give-back of a previous owner of the same pid (its lock
            // released with its `Chan`) and a new claim by that pid (its lock not yet taken).
            // A claim resets the flag before it publishes the pid, and the flag is set only
            // once the lock is held, so the test is exact here.
            if by_exec && !self.holder_gone(i, pid) {
                // Release: as for any store of the pid. A CAS: the owner may have given the
                // slot back meanwhile (`Chan::drop`).
                let _ =
                    slot.pid
                        .compare_exchange(SLOT_BUSY, pid, Ordering::Release, Ordering::Relaxed);
                continue;
            }
            let (mut wake, deferred) = self.recover_claims(i, slot);
            let (s, r) = slot.counted();
            // Handles it had in flight (`travel.rs`): swapped, not read, so a deserializer
            // racing to take one over gets it or sees zero, never both.
            let (s, r) = travel::add_in_flight(slot.travel.swap(0, Ordering::AcqRel), s, r);
            for c in [
                &slot.senders,
                &slot.receivers,
                &slot.inh_senders,
                &slot.inh_receivers,
            ] {
                c.store(0, Ordering::Relaxed);
            }
            slot.engaged.store(0, Ordering::Relaxed);
            slot.pending.store(0, Ordering::Relaxed);
            if !deferred {
                slot.start.store(0, Ordering::Relaxed);
                for (w, s) in slot.claims.iter().zip(&slot.sends) {
                    w.store(0, Ordering::Relaxed);
                    s.pos.store(0, Ordering::Relaxed);
                    s.recv_span.store(0, Ordering::Relaxed);
                }
                slot.unclaimed.store(0, Ordering::Relaxed);
            }
            if s > 0 && hdr.conn.senders.fetch_sub(s, Ordering::AcqRel) == s {
                wake = true;
            }
            if r > 0 && hdr.conn.receivers.fetch_sub(r, Ordering::AcqRel) == r {
                wake = true;
            }
            // Release: the cleared fields are visible to the next claimer. A slot whose claims
            // wait on a live thread's word keeps the dead identity (its counts now zero), so a
            // later reap tries again.
            let next = if deferred { pid } else { SLOT_FREE };
            slot.pid.store(next, Ordering::Release);
            if wake {
                self.wake_everyone();
            }
        }
    }
}

impl Chan {
    /// Settles what the dead process of `dead` (a slot this reaper holds) left half done in
    /// the ring, unless a live process's thread may be the one doing it: records it had
    /// claimed and not completed (killed while decoding: `Ring::recover`, or
    /// `Ring::recover_range` for a range), and message slots
    /// and cells it had taken and not published (killed while encoding: `Ring::recover_send`).
    /// Returns whether it settled any (peers may go on) and whether it left any for a later
    /// reap (a live thread's words named the same record: a claim that lost its CAS, until
    /// that thread claims again).
    ///
    /// A live thread's words name a record (or cells) from before its claiming CAS until it
    /// claims another, having completed (published) the first; each new value is stored with
    /// Release. Loading `head` and `tail` (Acquire) first, then every live process's words
    /// (Acquire), the reaper sees the words of any live claimer below them, or a later value
    /// (and then the completion or publication, which the ring checks last). A word may also
    /// be a claim that lost its CAS; if every word naming an unsettled record is a dead
    /// process's, one of them did claim it: dead receivers' words that disagree on the range
    /// at one position are settled by [`settle_receives`]. Dead senders' words that disagree
    /// on the cells of one position (one of them lost its claim) are left alone.
    ///
    /// A word that says a thread held a pack (`ring::RANGE_HOLD`) at `head` or past it: the
    /// pack is let go if the stamp still says that thread holds it (`Ring::recover_hold`;
    /// the identity in the stamp makes it exact). Below `head`, the thread claimed the pack
    /// it took empty (or another did): settled as a claim of a single record.
    pub(super) fn recover_claims(&self, at: usize, dead: &ProcSlot) -> (bool, bool) {
        // Relaxed: the process is dead; the stores it made before it died are visible.
        // The record (or range) each receiving thread may hold: `h`, its range word, and
        // whether it held a pack there (with the holder's identity).
        let words: Vec<(u64, u64, Option<u64>)> = dead
            .claims
            .iter()
            .zip(&dead.sends)
            .enumerate()
            .filter_map(|(j, (w, s))| {
                let h = w.load(Ordering::Relaxed).checked_sub(1)?;
                let range = s.recv_span.load(Ordering::Relaxed);
                Some(if range == ring::RANGE_HOLD {
                    (h, 0, Some(super::holder_id(at, j)))
                } else {
                    (h, range, None)
                })
            })
            .collect();
        let mut sends: Vec<(&SendWords, u64, u64)> = dead
            .sends
            .iter()
            .map(|w| {
                (
                    w,
                    w.pos.load(Ordering::Relaxed),
                    w.span.load(Ordering::Relaxed),
                )
            })
            .filter(|&(_, pos, _)| pos != 0)
            .collect();
        let ring = self.ring();
        // Acquire, before the live words below (see above); `recover_send` reloads `tail`.
        let (head, _) = (ring.head_acquire(), ring.tail_acquire());
        let mut held = false;
        for &(h, _, owner) in &words {
            if let Some(owner) = owner.filter(|_| h >= head) {
                held |= ring.recover_hold(h, owner);
            }
        }
        let mut recvs: Vec<(u64, u64)> = words
            .iter()
            .filter(|&&(h, ..)| h < head)
            .map(|&(h, range, _)| (h, range))
            .collect();
        if recvs.is_empty() && sends.is_empty() {
            return (held, false);
        }
        let before = recvs.len() + sends.len();
        // The positions live receive words name, and every dead one's word (this slot's too).
        let (mut live_at, mut dead_at) = (Vec::new(), recvs.clone());
        let me = procs::my_pid();
        for slot in self.hdr().used_slots() {
            // Acquire: pairs with the Release store of a new owner's pid.
            let pid = slot.pid.load(Ordering::Acquire);
            if pid == SLOT_FREE || std::ptr::eq(slot, dead) {
                continue;
            }
            // Busy: being reaped (dead) or being claimed (no claims yet).
            let live = pid != SLOT_BUSY
                && (pid == me
                    || procs::is_alive(Identity {
                        pid,
                        start: slot.start.load(Ordering::Relaxed),
                    }));
            // Acquire: pairs with the Release decrement after an unclaimed operation.
            if live && slot.unclaimed.load(Ordering::Acquire) != 0 {
                return (held, true);
            }
            for (w, s) in slot.claims.iter().zip(&slot.sends) {
                // Acquire: pairs with the Release store of a later claim (or clear).
                if let Some(h) = w.load(Ordering::Acquire).checked_sub(1) {
                    if live {
                        live_at.push(h);
                    } else {
                        // Relaxed: the process is dead (as above). A hold's word, below
                        // `head`, is a claim of one record (see above).
                        let range = s.recv_span.load(Ordering::Relaxed);
                        dead_at.push((h, if range == ring::RANGE_HOLD { 0 } else { range }));
                    }
                }
                let pos = s.pos.load(Ordering::Acquire);
                if pos != 0 && pos != ring::RESERVING {
                    // A live claimer of the same cells, or another dead one that disagrees on
                    // how many (one of the two lost its claim): not this reaper's to settle.
                    let span = s.span.load(Ordering::Relaxed);
                    sends.retain(|&(_, p, own)| p != pos || (!live && own == span));
                }
            }
        }
        // A live thread's word naming the same record: a claim it lost, or it holds it.
        recvs.retain(|&(h, _)| !live_at.contains(&h));
        let mut deferred = recvs.len() + sends.len() < before;
        let mut progress = held;
        let mut seen = Vec::new();
        for &(h, _) in &recvs {
            if seen.contains(&h) {
                continue;
            }
            seen.push(h);
            let (p, settled) = settle_receives(&ring, h, head, &live_at, &dead_at);
            progress |= p;
            deferred |= !settled;
        }
        for &(w, pos, span) in &sends {
            // Relaxed: the process is dead (as above).
            ring.recover_send(pos, span, w.progress.load(Ordering::Relaxed));
            // Settled once: a later reap of this slot (if deferred) must not settle it again.
            w.pos.store(0, Ordering::Relaxed);
            progress = true;
        }
        (progress, deferred)
    }
}

/// The cells of a range word.
fn cells_of(range: u64) -> u64 {
    range & 0xFFFF_FFFF
}

/// The messages of a range word.
fn msgs_of(range: u64) -> u64 {
    (range >> 32) & !(ring::RANGE_COUNTED >> 32)
}

/// Settles what dead receivers' words say they claimed at `h` (`dead`: every dead
/// process's receive words, as `(h, range word)`), unless a live thread may hold part of
/// it (`live`: the positions live words name, loaded after `head`). Returns whether it
/// finished anything and whether it settled everything there (or left some for a later
/// reap).
///
/// All but one of the dead words naming `h` may be claims that lost their CAS, their
/// process killed before its words moved on; each says which records it would have taken
/// from `h`, and they agree unless records were published between their scans. Words that
/// agree (apart from whether the range is counted yet) name the winner's claim. Otherwise,
/// a counted range is the winner's (a loser never counts). Otherwise every claim of `h` is
/// a run of whole records from `h`, so the shortest is a prefix of the winner's: it is
/// finished, and what the longer claims say past it is settled the same way at the position
/// after it, where the winner's rest (no other word can name a position inside a claimed
/// range) or the next claim (whose claimer's word names it) is. A range with a word naming
/// a position inside it is left: it spans someone else's claim.
pub(super) fn settle_receives(
    ring: &Ring<'_>,
    mut h: u64,
    head: u64,
    live: &[u64],
    dead: &[(u64, u64)],
) -> (bool, bool) {
    let mut progress = false;
    // Claims of `h` derived from longer claims of an earlier position.
    let mut derived: Vec<u64> = Vec::new();
    loop {
        let mut claims = derived.clone();
        for &(x, range) in dead {
            if x == h {
                let Some(r) = (if range == 0 {
                    ring.single_range(h)
                } else {
                    Some(range)
                }) else {
                    return (progress, true); // nothing published at `h` is unfinished
                };
                claims.push(r);
            }
        }
        let Some(&first) = claims.first() else {
            return (progress, true);
        };
        let plain = |r: u64| r & !ring::RANGE_COUNTED;
        let counted = |r: u64| r & ring::RANGE_COUNTED != 0;
        let inside = |h: u64, cells: u64| {
            live.iter()
                .chain(dead.iter().map(|(x, _)| x))
                .any(|&x| x > h && x < h + cells)
        };
        if claims.iter().all(|&r| plain(r) == plain(first)) {
            let range = if claims.iter().any(|&r| counted(r)) {
                first | ring::RANGE_COUNTED
            } else {
                plain(first)
            };
            if !derived.is_empty() && inside(h, cells_of(range)) {
                return (progress, false);
            }
            let singles = derived.is_empty() && dead.iter().all(|&(x, r)| x != h || r == 0);
            let r = if singles {
                ring.recover(h)
            } else {
                ring.recover_range(h, range)
            };
            return (progress | r, true);
        }
        let mut winners: Vec<u64> = claims.iter().copied().filter(|&r| counted(r)).collect();
        winners.sort_unstable();
        winners.dedup();
        match winners[..] {
            [w] => return (progress | ring.recover_range(h, w), true),
            [_, _, ..] => return (progress, false), // cannot tell: left alone
            [] => {}
        }
        let Some(&short) = claims.iter().min_by_key(|&&r| cells_of(r)) else {
            return (progress, true);
        };
        let cells = cells_of(short);
        if cells == 0 || inside(h, cells) {
            return (progress, false);
        }
        progress |= ring.recover_range(h, short);
        let next = h + cells;
        derived = claims
            .iter()
            .filter(|&&r| cells_of(r) > cells)
            .map(|&r| (cells_of(r) - cells) | msgs_of(r).saturating_sub(msgs_of(short)) << 32)
            .collect();
        derived.sort_unstable();
        derived.dedup();
        if derived.is_empty() {
            return (progress, true);
        }
        if next >= head {
            return (progress, false); // not claimed yet: the longer claims are losers'
        }
        if ring.single_range(next).is_none() {
            return (progress, true); // nothing unfinished there
        }
        if live.contains(&next) {
            return (progress, false);
        }
        h = next;
    }
}
