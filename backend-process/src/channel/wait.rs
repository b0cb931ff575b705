//! Waiting: the wake handshake on the channel's wait words, the adaptive spin before a
//! sleep ([`Backoff`]), and the waits on a peer's half-finished work.

use super::*;

/// Raises the sleeper flag of `w` and returns the word's value to sleep on: the waiter half
/// of the handshake with [`Chan::notify`] (see "Waking" in the module docs). The caller then
/// re-checks its condition with a SeqCst load and sleeps on the returned value.
pub(super) fn register_sleeper(w: &WaitWords) -> u32 {
    // SeqCst inside: the store half of the handshake (`wake`, loom-checked).
    wake::register_sleeper(&w.word)
}

/// Sleep of a receiver that found a message claimed but not yet published (its producer is
/// mid-`send`, and may not see the sleeper flag), for the `n`th time in a row: 50 µs, doubling
/// up to [`SLICE`], so a producer that stalls there (descheduled, or killed mid-`send`, which
/// blocks the ring) does not keep its receivers polling.
pub(super) fn claimed_nap(n: u32) -> Duration {
    Duration::from_micros(50)
        .saturating_mul(1 << n.min(12))
        .min(SLICE)
}

/// How long `try_recv` waits for a message whose sender has claimed the front of the ring and
/// not published it yet (it is encoding it): long enough for a sender descheduled mid-`send`
/// to run again, short enough that `try_recv` stays a non-blocking call. A sender stopped there
/// for longer (SIGSTOP) makes `try_recv` report `Empty`; one killed there is settled by the
/// look for dead peers at the end of the wait (its message is lost, the ones behind it
/// arrive).
pub(super) const IN_FLIGHT_PATIENCE: Duration = SLICE;

/// `try_recv`'s wait for a message being written at the front of the ring: a short spin (its
/// publication is usually a few instructions away), a few yields, then naps of 20 µs doubling
/// up to 1 ms with a look for dead peers after each (at most one per [`SLICE`] and process),
/// for [`IN_FLIGHT_PATIENCE`] in all; then one look for dead peers that is not rate-limited,
/// so a sender killed mid-`send` is settled before `try_recv` gives up.
pub(super) struct InFlightWait {
    pub(super) polls: u32,
    pub(super) naps: u32,
    pub(super) start: Option<Instant>,
    pub(super) reaped: bool,
}

impl InFlightWait {
    pub(super) const POLLS: u32 = 256;
    pub(super) const YIELDS: u32 = 4;

    pub(super) fn new(chan: &Chan) -> Self {
        Self {
            // One usable CPU: spinning could only delay the sender.
            polls: if chan.single_cpu { Self::POLLS } else { 0 },
            naps: 0,
            start: None,
            reaped: false,
        }
    }

    /// Waits a little before the next look; `false` once the patience is spent.
    pub(super) fn wait(&mut self, chan: &Chan) -> bool {
        if self.polls < Self::POLLS {
            self.polls += 1;
            std::hint::spin_loop();
            return true;
        }
        if self.polls < Self::POLLS + Self::YIELDS {
            self.polls += 1;
            std::thread::yield_now();
            return true;
        }
        let start = *self.start.get_or_insert_with(Instant::now);
        if start.elapsed() < IN_FLIGHT_PATIENCE {
            let nap = Duration::from_micros(20).saturating_mul(1 << self.naps.min(6));
            std::thread::sleep(nap.min(Duration::from_millis(1)));
            self.naps += 1;
            chan.maybe_reap();
            return true;
        }
        if !self.reaped {
            self.reaped = true;
            chan.reap();
            return true;
        }
        false
    }
}

/// The sleeper flag of [`WaitWords::word`].
pub(super) const SLEEPERS: u32 = wake::SLEEPERS;

impl Chan {
    /// Wakes the sleepers on `w`, if any registered. The caller changed the condition first.
    ///
    /// The sleeper flag is a flag, not a count: the notifier clears it and wakes everyone, so while
    /// a woken sleeper is on its way back to the CPU, further sends make no syscall (a count
    /// would stay non-zero until then, costing a futex wake per message).
    ///
    /// The caller's condition change included a SeqCst read-modify-write (the `tail` CAS, the
    /// `recvd` increment and `done` CAS): with this SeqCst load it is the notifier half of the
    /// handshake in the module docs ("Waking").
    #[inline]
    pub(super) fn notify(&self, w: &WaitWords) {
        // SeqCst load, then the bump (`wake`, loom-checked).
        if wake::take_sleepers(&w.word) {
            platform::wake(&w.word, u32::MAX);
        }
    }

    pub(super) fn wake_everyone(&self) {
        for w in [&self.hdr().recv_wait, &self.hdr().send_wait] {
            // Release: as in `notify`; +2 bumps the sequence and keeps the flag.
            w.word.fetch_add(2, Ordering::Release);
            platform::wake(&w.word, u32::MAX);
        }
    }

    /// `true` if at most three quarters of a bounded channel's capacity is taken; always
    /// `true` for an unbounded one.
    pub(super) fn below_low_water(&self) -> bool {
        self.cap
            .is_none_or(|cap| self.ring().at_most_queued(cap - cap / 4))
    }

    /// Sleeps until `w` moves on from `seq`, `deadline` or `slice`, whichever comes first,
    /// then looks for dead peers. The caller registered as a sleeper and re-checked its
    /// condition after reading `seq`.
    pub(super) fn sleep(
        &self,
        w: &WaitWords,
        seq: u32,
        deadline: Option<Instant>,
        slice: Duration,
        backoff: &mut Backoff<'_>,
    ) {
        if backoff.limit == 0 {
            // Nothing to learn (one CPU: never spins): spare the two clock reads.
            platform::wait_until(&w.word, seq, deadline, slice);
        } else {
            let start = Instant::now();
            platform::wait_until(&w.word, seq, deadline, slice);
            backoff.slept(start.elapsed());
        }
        self.maybe_reap();
    }
}

/// The spin phase before a futex sleep, adaptive per channel and process.
///
/// A spinning waiter re-checks its condition after *every* `pause`: a pause took about 30 ns
/// on the Sapphire Rapids Xeon this was tuned on (a loop of a million `pause`s, in C), so a batch of them between checks (crossbeam's exponential
/// `Backoff`, 2^6 pauses ≈ 2 µs) would add up to that much to every hand-over between two
/// active processes, ten times a cache-line round trip.
///
/// `learned` is the number of polls before sleeping, between [`Backoff::MIN_POLLS`] and
/// [`Backoff::MAX_POLLS`] (about 15 µs, less than a futex wake-up in a VM). It doubles when a
/// spin or a short sleep shows the peer answers quickly, and halves each time a wait had to
/// sleep long. With a single usable CPU it is 0: spinning could only delay the peer.
pub(super) struct Backoff<'a> {
    pub(super) polls: u32,
    pub(super) limit: u32,
    pub(super) yields: u32,
    pub(super) slept: bool,
    pub(super) learned: &'a AtomicU32,
}

impl<'a> Backoff<'a> {
    pub(super) const MAX_POLLS: u32 = 512;
    /// `sched_yield`s between the spin and the futex sleep.
    pub(super) const YIELDS: u32 = 4;
    pub(super) const MIN_POLLS: u32 = 16;
    /// A sleep shorter than this means the peer was active (a futex wake-up alone takes tens
    /// of microseconds in a VM): spin more next time.
    pub(super) const QUICK: Duration = Duration::from_micros(200);
    /// A sleep longer than this means the peer was idle: spin less next time.
    pub(super) const IDLE: Duration = Duration::from_millis(1);

    #[inline]
    pub(super) fn new(chan: &'a Chan) -> Self {
        // Relaxed: a heuristic.
        let limit = if chan.single_cpu {
            0
        } else {
            chan.spin_polls.load(Ordering::Relaxed)
        };
        Self {
            polls: 0,
            limit,
            yields: 0,
            slept: false,
            learned: &chan.spin_polls,
        }
    }

    /// After the spin: give the CPU away a few times before sleeping. A peer that is
    /// runnable on this CPU (always the case with a single CPU) then answers at the cost of a
    /// context switch, without a futex wake and wait on each side.
    #[inline]
    pub(super) fn yield_now(&mut self) -> bool {
        if self.yields >= Self::YIELDS {
            return false;
        }
        self.yields += 1;
        std::thread::yield_now();
        true
    }

    /// One pause before the next poll; `false` once the spin phase is over. For receivers: a
    /// message is taken as soon as it lands.
    #[inline]
    pub(super) fn snooze(&mut self) -> bool {
        if self.polls >= self.limit {
            return self.yield_now();
        }
        std::hint::spin_loop();
        self.polls += 1;
        true
    }

    /// Exponentially spaced polls (1, 2, 4 … 64 pauses apart) over the same time budget. For
    /// senders waiting for room: a full channel has plenty queued, so reacting late costs
    /// nothing, while each poll reads the line every receive writes (`recvd`) and would slow
    /// the receivers down.
    #[inline]
    pub(super) fn snooze_spaced(&mut self) -> bool {
        if self.polls >= self.limit {
            return self.yield_now();
        }
        // 1, 2, 4 … pauses: the gap doubles with each poll, up to 64.
        let n = (self.polls + 1).next_power_of_two().min(64);
        for _ in 0..n {
            std::hint::spin_loop();
        }
        self.polls += n;
        true
    }

    pub(super) fn learn(&self, f: impl FnOnce(u32) -> u32) {
        // Relaxed: a heuristic; a lost update between racing waiters does no harm.
        let v = self.learned.load(Ordering::Relaxed);
        let v = f(v).clamp(Self::MIN_POLLS, Self::MAX_POLLS);
        self.learned.store(v, Ordering::Relaxed);
    }

    /// The wait ended during the spin phase.
    #[inline]
    pub(super) fn succeeded(&self) {
        if self.polls > 0 && self.yields == 0 && !self.slept && self.limit < Self::MAX_POLLS {
            self.learn(|v| v.saturating_mul(2));
        }
    }

    /// The wait slept for `slept`.
    pub(super) fn slept(&mut self, slept: Duration) {
        self.slept = true;
        if slept < Self::QUICK {
            self.learn(|v| v.saturating_mul(4));
        } else if slept > Self::IDLE {
            self.learn(|v| v / 2);
        }
    }
}

/// The async twin of [`Chan::sleep`]: until `w` moves on from `seq` (or one [`SLICE`], the
/// waiter pool's bound), then a look for dead peers.
pub(super) async fn sleep_async(chan: &Arc<Chan>, w: &WaitWords, seq: u32) {
    let keep: Arc<dyn std::any::Any + Send + Sync> = chan.clone();
    // SAFETY: `w.word` lives in the mapping `keep` keeps alive.
    unsafe { WaitWord::new(&w.word, seq, None, keep) }.await;
    chan.maybe_reap();
}
