//! Per-process handle counting: each process counts its senders and receivers in its own
//! slot, adopts the handles a fork copied in when it first uses them, and claims a slot.

use super::*;

impl Chan {
    #[inline]
    pub(super) fn receivers_gone(&self) -> bool {
        let c = &self.hdr().conn;
        // SeqCst (Acquire would do for the data: it pairs with the decrements and `close`, so
        // everything sent before is seen): the load half of the disconnection handshake
        // (module docs, "Waking"). A plain load on x86.
        c.closed.load(Ordering::SeqCst) != 0
            || (c.receivers.load(Ordering::SeqCst) == 0 && self.side_left(false))
    }

    #[inline]
    pub(super) fn senders_gone(&self) -> bool {
        let c = &self.hdr().conn;
        // SeqCst: as in `receivers_gone`.
        c.closed.load(Ordering::SeqCst) != 0
            || (c.senders.load(Ordering::SeqCst) == 0 && self.side_left(true))
    }

    /// With no handle of one side counted: `true` if that side is gone. An anonymous
    /// channel's side is gone at once; a named channel's once it was seen (`Conn::seen`).
    #[inline]
    fn side_left(&self, sender: bool) -> bool {
        if !self.named {
            return true;
        }
        let bit = if sender { SEEN_SENDER } else { SEEN_RECEIVER };
        // SeqCst: the bit first, then the count again (see `Conn::seen`).
        self.hdr().conn.seen.load(Ordering::SeqCst) & bit != 0
            && self.conn_of(sender).load(Ordering::SeqCst) == 0
    }

    pub(super) fn conn_of(&self, sender: bool) -> &AtomicU32 {
        let c = &self.hdr().conn;
        if sender { &c.senders } else { &c.receivers }
    }

    /// This process's slot's count of `sender`'s side.
    pub(super) fn slot_count_of(&self, sender: bool) -> &AtomicU32 {
        let slot = self.my_slot();
        if sender {
            &slot.senders
        } else {
            &slot.receivers
        }
    }

    pub(super) fn local_of(&self, sender: bool) -> &AtomicU32 {
        if sender {
            &self.senders
        } else {
            &self.receivers
        }
    }

    /// Lowers a total; wakes everyone if it reached zero, or if someone sleeps (so a peer
    /// whose own inherited handles were all that was left re-checks at once).
    pub(super) fn lower(&self, total: &AtomicU32, by: u32) {
        if by == 0 {
            return;
        }
        // SeqCst (AcqRel for the data: everything sent through the dropped handles
        // happens-before a peer's load that sees the lower total), and SeqCst flag loads: the
        // disconnection handshake of the module docs.
        let before = total.fetch_sub(by, Ordering::SeqCst);
        let hdr = self.hdr();
        if before == by
            || hdr.recv_wait.word.load(Ordering::SeqCst) & SLEEPERS != 0
            || hdr.send_wait.word.load(Ordering::SeqCst) & SLEEPERS != 0
        {
            self.wake_everyone();
        }
    }

    /// Counts a new handle created (or cloned) in this process; returns its generation stamp.
    pub(super) fn add_new(&self, sender: bool) -> AtomicU64 {
        self.local_of(sender).fetch_add(1, Ordering::Relaxed);
        self.slot_count_of(sender).fetch_add(1, Ordering::Relaxed);
        self.conn_of(sender).fetch_add(1, Ordering::Relaxed);
        if self.named {
            let bit = if sender { SEEN_SENDER } else { SEEN_RECEIVER };
            // SeqCst (a release): after the count above (see `Conn::seen`).
            self.hdr().conn.seen.fetch_or(bit, Ordering::SeqCst);
        }
        AtomicU64::new(procs::fork_gen())
    }

    /// Adopts a handle copied in by fork when it is first used here.
    #[inline]
    pub(super) fn touch(&self, gen_stamp: &AtomicU64, sender: bool) {
        let now = procs::fork_gen();
        // Relaxed: the stamp is only compared with this process's generation.
        if gen_stamp.load(Ordering::Relaxed) != now {
            self.adopt(gen_stamp, sender, now);
        }
    }

    #[cold]
    pub(super) fn adopt(&self, gen_stamp: &AtomicU64, sender: bool, now: u64) {
        let _g = registry::lock();
        let old = gen_stamp.load(Ordering::Relaxed);
        if old == now {
            return;
        }
        gen_stamp.store(now, Ordering::Relaxed);
        let slot = self.my_slot();
        let (adopted, inh) = if sender {
            (&slot.senders, &slot.inh_senders)
        } else {
            (&slot.receivers, &slot.inh_receivers)
        };
        // Count the adopted handle first, so the total never dips to zero on the way.
        self.conn_of(sender).fetch_add(1, Ordering::Relaxed);
        adopted.fetch_add(1, Ordering::Relaxed);
        inh.fetch_sub(1, Ordering::Relaxed);
        if slot.engaged.load(Ordering::Relaxed) == 0 {
            // Still counted as inherited until now: remove the one just adopted.
            self.lower(self.conn_of(sender), 1);
            self.engage(slot);
        }
    }

    /// Stops counting this process's unused inherited handles. Registry lock held.
    pub(super) fn engage(&self, slot: &ProcSlot) {
        if slot.engaged.swap(1, Ordering::Relaxed) != 0 {
            return;
        }
        let hdr = self.hdr();
        self.lower(&hdr.conn.senders, slot.inh_senders.load(Ordering::Relaxed));
        self.lower(
            &hdr.conn.receivers,
            slot.inh_receivers.load(Ordering::Relaxed),
        );
    }

    /// Uncounts a handle dropped in this process.
    pub(super) fn remove(&self, gen_stamp: &AtomicU64, sender: bool) {
        self.local_of(sender).fetch_sub(1, Ordering::Relaxed);
        let slot = self.my_slot();
        if gen_stamp.load(Ordering::Relaxed) == procs::fork_gen() {
            if sender {
                &slot.senders
            } else {
                &slot.receivers
            }
            .fetch_sub(1, Ordering::Relaxed);
            self.lower(self.conn_of(sender), 1);
        } else {
            let _g = registry::lock();
            if sender {
                &slot.inh_senders
            } else {
                &slot.inh_receivers
            }
            .fetch_sub(1, Ordering::Relaxed);
            if slot.engaged.load(Ordering::Relaxed) == 0 {
                self.lower(self.conn_of(sender), 1);
            }
        }
    }
}

impl Chan {
    /// The memory file's descriptor, if it is an open file description of this process's
    /// own (see `Chan::file_owner`): the one holder locks are taken and tested through.
    /// Async-signal-safe.
    pub(super) fn own_file(&self) -> Option<libc::c_int> {
        let (fd, _) = self.shm.region().file();
        // Relaxed: written by this process only (creation, or the atfork child handler).
        (fd >= 0 && self.file_owner.load(Ordering::Relaxed) == procs::my_pid()).then_some(fd)
    }

    /// Locks slot `i`'s byte of the memory file for this process, its owner, so that the
    /// process is seen gone once it execs another program (`crate::holder`). If the lock
    /// cannot be taken (no file of its own, or a stale holder), `holder_lock` stays zero and
    /// the process is told alive by its pid alone. Async-signal-safe.
    pub(super) fn hold_slot(&self, i: usize) {
        let Some(fd) = self.own_file() else {
            return;
        };
        if crate::holder::lock(fd, i as u32) {
            // Release: a reaper that sees the flag (Acquire) tests a lock already taken.
            self.hdr().procs[i % MAX_PROCESSES]
                .holder_lock
                .store(1, Ordering::Release);
        }
    }
}

pub(super) fn epoch_nanos() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Claims a free slot (reaping dead ones if none is free) for `id`, async-signal-safe when
/// `may_reap` is false. Returns its index.
pub(super) fn claim_slot(hdr: &ChanHeader, id: Identity, pending: bool) -> Option<usize> {
    for (i, slot) in hdr.procs.iter().enumerate() {
        if slot.pid.load(Ordering::Relaxed) != SLOT_FREE {
            continue;
        }
        if slot
            .pid
            .compare_exchange(SLOT_FREE, SLOT_BUSY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            slot.start.store(id.start, Ordering::Relaxed);
            let token = if pending {
                super::registry::reservation()
            } else {
                0
            };
            slot.pending.store(token, Ordering::Relaxed);
            if pending {
                slot.pending_since
                    .store(procs::monotonic_nanos(), Ordering::Relaxed);
            }
            slot.engaged.store(0, Ordering::Relaxed);
            // Relaxed: published by the Release store of the pid below; set again only by the
            // new owner once it holds the lock (`Chan::hold_slot`).
            slot.holder_lock.store(0, Ordering::Relaxed);
            // Relaxed: see `ChanHeader::used_slots`.
            hdr.used.fetch_max(i as u32 + 1, Ordering::Relaxed);
            // Release: the fields above are visible to whoever reads this pid.
            slot.pid.store(id.pid, Ordering::Release);
            return Some(i);
        }
    }
    None
}
