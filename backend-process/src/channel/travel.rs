//! Channel ends that travel (`crate::travel` has the mechanism and the rule).
//!
//! Serializing an end in process A counts one more end of its side *in flight*, in A's slot
//! (`ProcSlot::travel`) and in the side's total, and keeps A's `Chan` (mapping, memory file,
//! slot) alive while A's slot has ends in flight. So the side stays connected while its only
//! end is inside a message.
//!
//! Deserializing in process B maps the channel (or finds B's own `Chan` of it), claims a slot
//! for B as a named opener does (B is then a member: its death is reaped), counts a new end in
//! B's slot, then tries to take over one of A's ends in flight: a CAS that decrements A's
//! `travel` while A's slot still holds A's identity. If it wins, A's unit leaves the total (the
//! end moved from A to B). If it loses — the same bytes deserialized again, or A died and a
//! reaper took A's units — the new end is one more clone, allowed only while the side still
//! has an end (a gone side is never reconnected: the deserialization fails).
//!
//! Exactly once: a unit of A's `travel` is removed either by one winning deserializer's CAS or
//! by the reaper's `swap(0)` (after it claimed A's slot), never both. A deserializer that
//! reads A's identity, then loses the slot to a reaper, fails its CAS (the value changed) and
//! then sees the slot is no longer A's.

use std::collections::HashMap;
use std::sync::Weak;

use crate::spin::SpinLock;

use serde::{Deserialize, Deserializer, Serializer};

use super::*;
use crate::named::Kind;
use crate::travel::{self as wire, Keep, Wire};

const SENDER_UNIT: u32 = 1;
const RECEIVER_UNIT: u32 = 1 << 16;
const SIDE_MASK: u32 = 0xffff;

/// Adds the ends in flight of a dead slot's `travel` word to its `(senders, receivers)`.
pub(super) fn add_in_flight(travel: u32, s: u32, r: u32) -> (u32, u32) {
    (s + (travel & SIDE_MASK), r + (travel >> 16))
}

fn unit(sender: bool) -> u32 {
    if sender { SENDER_UNIT } else { RECEIVER_UNIT }
}

fn in_flight(travel: u32, sender: bool) -> u32 {
    if sender {
        travel & SIDE_MASK
    } else {
        travel >> 16
    }
}

/// This process's `Chan` of each channel that travelled in or out, by memory file.
type Chans = HashMap<(u64, u64), Weak<Chan>>;

/// A spin lock the fork handlers take (`travel::hooked`), as the kept handles'.
static CHANS: SpinLock<Option<Chans>> = SpinLock::new(None);

/// The fork handlers' side of [`CHANS`]: taken before the fork, released after it on both
/// sides (the child's only thread is the one that took it).
pub(crate) fn travel_fork_lock() {
    CHANS.raw_lock(std::thread::yield_now);
}

/// See [`travel_fork_lock`].
pub(crate) fn travel_fork_unlock() {
    CHANS.raw_unlock();
}

fn remember(object: (u64, u64), chan: &Arc<Chan>) {
    crate::travel::hooked();
    CHANS.with(std::thread::yield_now, |m| {
        let m = m.get_or_insert_with(HashMap::new);
        // Dropping a dead `Weak` only frees its allocation: the `Chan` is gone already.
        m.retain(|_, w| w.strong_count() > 0);
        m.insert(object, Arc::downgrade(chan));
    });
}

fn known(object: (u64, u64)) -> Option<Arc<Chan>> {
    CHANS.with(std::thread::yield_now, |m| {
        m.as_ref()?.get(&object)?.upgrade()
    })
}

/// Keeps the serializing process's `Chan` while its slot has ends in flight.
struct KeepChan(Arc<Chan>, (u64, u64));

impl Keep for KeepChan {
    fn needed(&self) -> bool {
        // Relaxed: a hint; a stale non-zero only keeps the mapping a little longer.
        self.0.my_slot().travel.load(Ordering::Relaxed) != 0
    }
    fn object(&self) -> (u64, u64) {
        self.1
    }
}

impl Chan {
    fn params(&self) -> [u64; 4] {
        [
            self.cap.unwrap_or(u64::MAX),
            (self.cells * CELL) as u64,
            self.soft_end,
            0,
        ]
    }

    /// Serializes one end of `sender`'s side held (through `gen_stamp`) in this process.
    ///
    /// A serializer may pass over a value several times (bincode sizes a message, then writes
    /// it): `pinned` (the handle's flag) makes one handle count one end in flight, until that
    /// end is taken over (this process's slot has none of this side left in flight), after
    /// which serializing the same handle again counts a new one.
    fn serialize_end<S: Serializer, T>(
        self: &Arc<Self>,
        gen_stamp: &AtomicU64,
        pinned: &AtomicBool,
        sender: bool,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        if self.named {
            return Err(wire::ser_err(Error::unsupported(
                "an end of a named channel does not travel: send the name and open it there",
            )));
        }
        // Serializing uses the handle: adopt it if fork copied it in.
        self.touch(gen_stamp, sender);
        let w = wire::describe(
            self.shm.region(),
            Kind::Channel,
            std::any::type_name::<T>(),
            self.params(),
            self.slot.load(Ordering::Relaxed),
        )
        .map_err(wire::ser_err)?;
        remember(w.object(), self);
        // Count the end in flight before the bytes exist. Relaxed for the counts: the
        // handle `gen_stamp` belongs to is counted in the total, which so stays above zero
        // (as in `add_new`); the slot word is read by CAS and swap only.
        let slot = self.my_slot();
        // Relaxed: the flag and the slot word are only read here, in this process, to avoid
        // counting one handle twice; a stale read counts one more end, released with this
        // process at the latest.
        let counted = pinned.load(Ordering::Relaxed)
            && in_flight(slot.travel.load(Ordering::Relaxed), sender) > 0;
        if !counted {
            // Count the end in the total first, so the total never lacks a unit the slot word
            // holds (a reaper subtracts what the word holds).
            self.conn_of(sender).fetch_add(1, Ordering::Relaxed);
            // Release: pairs with a deserializer's Acquire CAS (the count above first). A full
            // half (65535 ends of one side in flight from one process) is refused rather than
            // carried into the other half.
            let added = slot
                .travel
                .fetch_update(Ordering::Release, Ordering::Relaxed, |t| {
                    (in_flight(t, sender) < SIDE_MASK).then(|| t + unit(sender))
                });
            if added.is_err() {
                self.lower(self.conn_of(sender), 1);
                return Err(wire::ser_err(Error::full(format!(
                    "{SIDE_MASK} ends of this channel are already in flight from this process"
                ))));
            }
            pinned.store(true, Ordering::Relaxed);
            wire::keep(Box::new(KeepChan(self.clone(), w.object())));
        }
        serde::Serialize::serialize(&w, s)
    }

    /// Takes over one end in flight of `sender`'s side held by the process `w` names.
    fn take_in_flight(&self, w: &Wire, sender: bool) -> bool {
        let Some(slot) = self.hdr().procs.get(w.slot as usize) else {
            return false;
        };
        // Acquire: pairs with the Release store of a slot owner's pid (`claim_slot`).
        let mut t = slot.travel.load(Ordering::Acquire);
        loop {
            let still_theirs = slot.pid.load(Ordering::Acquire) == w.pid
                && slot.start.load(Ordering::Relaxed) == w.start;
            if !still_theirs || in_flight(t, sender) == 0 {
                return false;
            }
            // AcqRel: the unit moves between processes; the reaper swaps with AcqRel.
            match slot.travel.compare_exchange(
                t,
                t - unit(sender),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => t = now,
            }
        }
    }

    /// A new end of `sender`'s side in this process, from the wire `w`: takes over an end in
    /// flight, or is one more clone while the side has an end. Returns its generation stamp.
    fn end_from_wire(&self, w: &Wire, sender: bool) -> Result<AtomicU64, Error> {
        self.local_of(sender).fetch_add(1, Ordering::Relaxed);
        self.slot_count_of(sender).fetch_add(1, Ordering::Relaxed);
        // SeqCst: the side's total is read with SeqCst by the disconnection checks.
        let before = self.conn_of(sender).fetch_add(1, Ordering::SeqCst);
        if self.take_in_flight(w, sender) {
            // The end moved here: the unit in flight leaves the total.
            self.lower(self.conn_of(sender), 1);
        } else if before == 0 {
            // Not the first deserialization and nobody holds an end any more: the side is
            // gone; undo rather than reconnect it.
            self.local_of(sender).fetch_sub(1, Ordering::Relaxed);
            self.slot_count_of(sender).fetch_sub(1, Ordering::Relaxed);
            self.lower(self.conn_of(sender), 1);
            return Err(Error::closed(format!(
                "every {} of this channel was dropped before this travelling one was \
                 deserialized",
                if sender { "sender" } else { "receiver" }
            )));
        }
        Ok(AtomicU64::new(procs::fork_gen()))
    }
}

/// This process's `Chan` of the channel `w` names: the one it has, or a new mapping with a
/// slot claimed for this process.
fn chan_of<T>(w: &Wire) -> Result<Arc<Chan>, Error> {
    wire::check(w, Kind::Channel, std::any::type_name::<T>())?;
    if let Some(c) = known(w.object()) {
        return Ok(c);
    }
    let region = wire::open(w, Kind::Channel, std::any::type_name::<T>())?;
    let [cap, ring, soft_end, _] = w.params;
    let max_ring = if cap == u64::MAX {
        MAX_UNBOUNDED_RING as usize
    } else {
        MAX_BUDGET.max(codec::LIMIT)
    };
    let ring = usize::try_from(ring).unwrap_or(usize::MAX);
    let bad = !ring.is_power_of_two()
        || !(4096..=max_ring).contains(&ring)
        || soft_end == 0
        || soft_end > (ring / CELL) as u64
        || cap == 0
        || chan_layout(ring).2 != region.len();
    if bad {
        return Err(Error::incompatible(
            "a travelling channel end names a layout its memory does not have: corrupted",
        ));
    }
    let capacity = (cap != u64::MAX).then(|| usize::try_from(cap).unwrap_or(usize::MAX));
    let shm = ShmBox::<ChanHeader>::from_region(region)?;
    let chan = Arc::new(chan_on(shm, capacity, ring, soft_end, false));
    let me = Identity::me();
    let slot = claim_slot(chan.hdr(), me, false).or_else(|| {
        chan.reap();
        claim_slot(chan.hdr(), me, false)
    });
    let Some(slot) = slot else {
        return Err(Error::full(format!(
            "the channel of a travelling end already counts {MAX_PROCESSES} processes \
             (uniconc_process::MAX_PROCESSES)"
        )));
    };
    chan.slot.store(slot as u32, Ordering::Relaxed);
    chan.hold_slot(slot);
    registry::register(&chan);
    remember(w.object(), &chan);
    Ok(chan)
}

impl<T> serde::Serialize for Sender<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.chan
            .serialize_end::<S, T>(&self.gen_stamp, &self.travel, true, s)
    }
}

impl<T> serde::Serialize for Receiver<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.chan
            .serialize_end::<S, T>(&self.gen_stamp, &self.travel, false, s)
    }
}

impl<'de, T> Deserialize<'de> for Sender<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        let chan = chan_of::<T>(&w).map_err(wire::de_err)?;
        let gen_stamp = chan.end_from_wire(&w, true).map_err(wire::de_err)?;
        wire::sweep();
        Ok(Sender {
            chan,
            gen_stamp,
            _m: PhantomData,
            travel: AtomicBool::new(false),
        })
    }
}

impl<'de, T> Deserialize<'de> for Receiver<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        let chan = chan_of::<T>(&w).map_err(wire::de_err)?;
        let gen_stamp = chan.end_from_wire(&w, false).map_err(wire::de_err)?;
        wire::sweep();
        Ok(Receiver {
            chan,
            gen_stamp,
            _m: PhantomData,
            travel: AtomicBool::new(false),
        })
    }
}
