//! Named channels: a channel's region in a named file (see `crate::named`), opened by any
//! process of the user.
//!
//! An opener claims a process slot like a forked child does, so disconnection and dead-peer
//! recovery (`reap`) treat it as any member: a SIGKILLed opener's handles are subtracted by
//! the next blocked peer. A side of a named channel is gone only once it was seen
//! (`Conn::seen`), so a receiver opened before any sender waits instead of seeing
//! `Disconnected`.
//!
//! Parameters stored in the file: `[capacity (u64::MAX: unbounded), ring bytes, soft end in
//! cells, 0]`; an opener checks them all (capacity equal to the one asked for, ring a power of
//! two within the limits, soft end within the ring, and equal to the byte budget asked for, if
//! one was: `Name::byte_budget`) and takes them into its private `Chan`.

use super::*;
use crate::named::{self as names, Kind, Spec};
use uniconc_core::Name;

const UNBOUNDED: u64 = u64::MAX;

/// The halves asked for of the channel named `name`.
#[allow(clippy::type_complexity)]
pub(crate) fn named_channel<T: Message>(
    name: &Name,
    capacity: Option<usize>,
    sender: bool,
    receiver: bool,
) -> Result<(Option<Sender<T>>, Option<Receiver<T>>), Error> {
    if let Some(c) = capacity {
        uniconc_core::validate::channel_capacity(c)?;
    }
    // The ring asked for, rounded as for an unnamed channel (`new_chan`).
    let asked = name.byte_budget().map(budget_ring).transpose()?;
    let (ring_bytes, soft_end) = match (asked, capacity) {
        // A budget, bounded or not: the whole ring is usable, as for an unnamed channel.
        (Some(ring), _) => (ring, (ring / CELL) as u64),
        (None, Some(c)) => {
            let budget = c.saturating_mul(256).clamp(MIN_BUDGET, MAX_BUDGET);
            let ring = budget.checked_next_power_of_two().unwrap_or(MAX_BUDGET);
            (ring, (ring / CELL) as u64)
        }
        (None, None) => (MIN_UNBOUNDED_RING, UNBOUNDED_SOFT_END),
    };
    let cap_param = capacity.map_or(UNBOUNDED, |c| c as u64);
    let show = |c: u64| {
        if c == UNBOUNDED {
            "unbounded".to_string()
        } else {
            format!("capacity {c}")
        }
    };
    let spec = Spec {
        kind: Kind::Channel,
        type_name: std::any::type_name::<T>(),
        params: [cap_param, ring_bytes as u64, soft_end, 0],
        len: chan_layout(ring_bytes).2,
    };
    let attached = names::attach(
        name,
        &spec,
        |_| Ok(()), // all-zero is an empty channel with no member
        |p| {
            if p[0] != cap_param {
                return Err(Error::incompatible(format!(
                    "the named channel {name} has {}, not {}",
                    show(p[0]),
                    show(cap_param)
                )));
            }
            let max_ring = if p[0] == UNBOUNDED {
                MAX_UNBOUNDED_RING as usize
            } else {
                MAX_BUDGET.max(codec::LIMIT)
            };
            let ring = usize::try_from(p[1]).unwrap_or(usize::MAX);
            if !ring.is_power_of_two() || !(4096..=max_ring).contains(&ring) {
                return Err(Error::incompatible(format!(
                    "the named channel {name} has a ring of {ring} bytes: corrupted"
                )));
            }
            if p[2] == 0 || p[2] > (ring / CELL) as u64 {
                return Err(Error::incompatible(format!(
                    "the named channel {name} has a soft end of {} cells: corrupted",
                    p[2]
                )));
            }
            if let Some(asked) = asked
                && asked != ring
            {
                return Err(Error::incompatible(format!(
                    "the named channel {name} has a byte budget of {ring} bytes, not {asked} \
                     (budgets are rounded up to a power of two, at least 4096)"
                )));
            }
            Ok(chan_layout(ring).2)
        },
    )?;
    let (ring_bytes, soft_end) = (attached.params[1] as usize, attached.params[2]);
    // The file stays open with the mapping: the holder locks go through it (`hold_slot`).
    let fd = attached.file;
    let region = attached.region.with_file(fd.0);
    std::mem::forget(fd); // owned by the region from here
    let shm = ShmBox::<ChanHeader>::from_region(region)?;
    let chan = Arc::new(chan_on(shm, capacity, ring_bytes, soft_end, true));
    let me = Identity::me();
    let slot = claim_slot(chan.hdr(), me, false).or_else(|| {
        chan.reap();
        claim_slot(chan.hdr(), me, false)
    });
    let Some(slot) = slot else {
        return Err(Error::full(format!(
            "the named channel {name} already counts {MAX_PROCESSES} processes \
             (uniconc_process::MAX_PROCESSES)"
        )));
    };
    chan.slot.store(slot as u32, Ordering::Relaxed);
    chan.hold_slot(slot);
    let tx = sender.then(|| Sender {
        gen_stamp: chan.add_new(true),
        chan: chan.clone(),
        _m: PhantomData,
        travel: AtomicBool::new(false),
    });
    let rx = receiver.then(|| Receiver {
        gen_stamp: chan.add_new(false),
        chan: chan.clone(),
        _m: PhantomData,
        travel: AtomicBool::new(false),
    });
    registry::register(&chan);
    Ok((tx, rx))
}
