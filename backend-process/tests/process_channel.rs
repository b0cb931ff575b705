//! The channel across forked processes: disconnection (including SIGKILL), bad messages,
//! MPMC counts and sums, async receive.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{fork_lock, scale, spawn};
use serde::{Deserialize, Deserializer, Serialize};
use uniconc_core::{
    MessageError, Receiver as _, RecvError, RecvTimeoutError, SendError, Sender as _, TryRecvError,
};
use uniconc_process::{ChannelBuilder, channel, unbounded};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn child_messages_arrive_and_its_exit_disconnects() {
    let _f = fork_lock();
    let (tx, rx) = channel::<String>(4).unwrap();
    let child = spawn(move || {
        for i in 0..100 {
            tx.send(format!("msg {i}")).unwrap();
        }
        0
    });
    // The parent's sender was copied into the child; drop ours.
    let rx2 = rx.clone();
    drop(rx);
    let got: Vec<String> = rx2.iter().collect();
    assert_eq!(got.len(), 100);
    assert_eq!(got[99], "msg 99");
    assert_eq!(child.join(LIMIT), 0);
    assert_eq!(rx2.recv(), Err(RecvError::Disconnected));
}

#[test]
fn sigkilled_producer_is_seen_as_disconnection() {
    let _f = fork_lock();
    let (tx, rx) = channel::<u64>(4).unwrap();
    let child = spawn(move || {
        tx.send(1).unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    // Our own sender must not keep the channel connected: only the child's copy does.
    // (The child's copy was registered at fork, so dropping ours now cannot disconnect.)
    assert_eq!(rx.recv_timeout(LIMIT), Ok(1));
    assert!(!rx.is_closed(), "the child still holds a sender");
    child.kill();
    let start = Instant::now();
    // Assert only that it IS seen (generous bound against a hang).
    assert_eq!(rx.recv_timeout(LIMIT), Err(RecvTimeoutError::Disconnected));
    eprintln!(
        "SIGKILLed producer seen as disconnection after {:?}",
        start.elapsed()
    );
    drop(child);
}

#[test]
fn parent_dropping_its_sender_right_after_fork_does_not_disconnect() {
    let _f = fork_lock();
    let (tx, rx) = channel::<u32>(2).unwrap();
    let child = spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        tx.send(42).unwrap();
        0
    });
    assert_eq!(rx.recv_timeout(LIMIT), Ok(42));
    assert_eq!(child.join(LIMIT), 0);
    assert_eq!(rx.recv_timeout(LIMIT), Err(RecvTimeoutError::Disconnected));
}

#[test]
fn sigkilled_consumer_is_seen_by_a_blocked_sender() {
    let _f = fork_lock();
    let (tx, rx) = channel::<u64>(1).unwrap();
    let child = spawn(move || {
        let _keep = rx;
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    tx.send(1).unwrap();
    child.kill();
    // Full, and the only receiver is dead: the blocked send must give the value back.
    match tx.send_timeout(2, LIMIT) {
        Err(e) => assert!(e.is_disconnected(), "{e:?}"),
        Ok(()) => panic!("sent into a channel without receivers"),
    }
}

/// Encodes like a `u32`, except that its second encoding in a process (into the ring's
/// cells, after the size pass) panics.
#[derive(Debug, Deserialize, PartialEq)]
struct PanicsInSend(u32);

static PANICS_IN_SEND: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Serialize for PanicsInSend {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if PANICS_IN_SEND.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 1 {
            panic!("a Serialize impl panics");
        }
        s.serialize_u32(self.0)
    }
}

/// A `Serialize` impl that panics while `send` writes it into the ring (cells claimed)
/// unwinds out of `send` and leaves no hole: the next message is received, from another
/// process too.
#[test]
fn a_send_whose_serialize_panics_leaves_the_channel_working() {
    let _f = fork_lock();
    let (tx, rx) = channel::<PanicsInSend>(1).unwrap();
    let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tx.send(PanicsInSend(1))));
    assert!(sent.is_err(), "the panic reaches the caller");
    let child = spawn(move || match tx.send(PanicsInSend(2)) {
        Ok(()) => 0,
        Err(_) => 1,
    });
    assert_eq!(child.join(LIMIT), 0);
    assert_eq!(rx.recv_timeout(LIMIT), Ok(PanicsInSend(2)));
}

/// Decodes like a `u32`, except [`Stall::FOREVER`], whose decoding never returns (after
/// setting [`STALLED`]): a receiver that gets it is stuck inside `recv`, holding the message.
#[derive(Debug, Serialize, PartialEq)]
struct Stall(u32);

impl Stall {
    const FOREVER: u32 = u32::MAX;
}

static STALLED: std::sync::OnceLock<uniconc_process::Event> = std::sync::OnceLock::new();
/// The pid of the test process (the children's parent).
static TEST_PROCESS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// `signal` (created on first use), cleared: a test waits for its own child's signal, not
/// one an earlier test of this binary left set (a test that failed before clearing it, or
/// the same test run again).
fn fresh(
    signal: &'static std::sync::OnceLock<uniconc_process::Event>,
) -> &'static uniconc_process::Event {
    TEST_PROCESS.get_or_init(std::process::id);
    let event = signal.get_or_init(|| uniconc_process::event().unwrap());
    uniconc_core::Event::clear(event);
    event
}
/// How many receivers are stuck decoding a [`Stall::FOREVER`], in memory shared with the
/// children (for the tests that park several).
static STALLS: std::sync::OnceLock<&'static AtomicU32> = std::sync::OnceLock::new();

impl<'de> Deserialize<'de> for Stall {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if v == Stall::FOREVER {
            // The test process never takes a stall: one left in the ring means the child was
            // killed before it took it (the test did not wait for the child's own signal).
            assert_ne!(
                std::process::id(),
                *TEST_PROCESS.get().expect("set before the fork"),
                "the test process received the stall meant for its child"
            );
            if let Some(n) = STALLS.get() {
                n.fetch_add(1, Ordering::Relaxed);
            }
            uniconc_core::Event::set(STALLED.get().expect("set before the fork"));
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Ok(Stall(v))
    }
}

/// A receiver SIGKILLed while it decodes a message (claimed, not given back) loses only that
/// message: the ring's cells it held come back once a blocked sender finds it dead, so the
/// other receivers and the senders go round the ring many times after it.
#[test]
fn a_receiver_killed_while_decoding_loses_only_its_message() {
    receiver_killed_while_decoding();
}

/// The body of [`a_receiver_killed_while_decoding_loses_only_its_message`].
fn receiver_killed_while_decoding() {
    use uniconc_core::Sender as _;
    let _f = fork_lock();
    let (tx, rx) = small_ring::<Stall>();
    let stalled = fresh(&STALLED);
    let child = spawn({
        let rx = rx.clone();
        move || match rx.recv() {
            Ok(_) => 1,
            Err(_) => 2,
        }
    });
    tx.send(Stall(Stall::FOREVER)).unwrap();
    // Without the dead receiver's cells given back, the send after one lap blocks for good.
    kill_then_go_round(child, stalled, &tx, &rx, Stall);
}

/// How a receiver takes the message it gets stuck decoding.
#[derive(Clone, Copy, Debug)]
enum Take {
    /// `recv`: one record.
    One,
    /// `recv_batch`: a range of every record queued (its stall first).
    Range,
}

/// Two receivers die at once, each stuck decoding what it took (`first` takes the front of
/// the ring, `second` what is queued behind it); `second_forked_first` makes the holder of
/// the later records the lower process slot, so a reaper settles the later claim before the
/// earlier one. Both claims are settled and the channel goes round the ring many times.
fn two_receivers_killed_while_decoding(first: Take, second: Take, second_forked_first: bool) {
    let _f = fork_lock();
    let (tx, rx) = ChannelBuilder::new(Some(8))
        .byte_budget(4096)
        .build::<Stall>()
        .unwrap();
    let stalled = fresh(&STALLED);
    let stalls = *STALLS.get_or_init(|| &shared_counters(1)[0]);
    stalls.store(0, Ordering::Relaxed);
    let go = [
        uniconc_process::event().unwrap(),
        uniconc_process::event().unwrap(),
    ];
    let receiver = |take: Take, go: uniconc_process::Event| {
        let rx = rx.clone();
        spawn(move || {
            uniconc_core::Event::wait(&go);
            let mut buf = Vec::new();
            let got = match take {
                Take::One => rx.recv().map(drop),
                Take::Range => rx.recv_batch(&mut buf, 8).map(drop),
            };
            if got.is_ok() { 1 } else { 2 }
        })
    };
    let batch = |take: Take| match take {
        Take::One => vec![Stall(Stall::FOREVER)],
        Take::Range => vec![Stall(Stall::FOREVER), Stall(1), Stall(2)],
    };
    let (a, b) = if second_forked_first {
        let b = receiver(second, go[1].clone());
        (receiver(first, go[0].clone()), b)
    } else {
        let a = receiver(first, go[0].clone());
        (a, receiver(second, go[1].clone()))
    };
    for (i, take) in [first, second].into_iter().enumerate() {
        let items = batch(take);
        let n = items.len();
        assert_eq!(tx.send_batch(items), Ok(n));
        uniconc_core::Event::set(&go[i]);
        let start = Instant::now();
        while stalls.load(Ordering::Relaxed) as usize <= i {
            assert!(start.elapsed() < LIMIT, "receiver {i} never got stuck");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // Both at once: neither is seen dead before the other is.
    a.kill();
    kill_then_go_round(b, stalled, &tx, &rx, Stall);
    drop(a);
}

#[test]
fn two_receivers_killed_while_decoding_one_record_each() {
    two_receivers_killed_while_decoding(Take::One, Take::One, false);
    two_receivers_killed_while_decoding(Take::One, Take::One, true);
}

#[test]
fn two_receivers_killed_while_decoding_a_range_each() {
    two_receivers_killed_while_decoding(Take::Range, Take::Range, false);
    two_receivers_killed_while_decoding(Take::Range, Take::Range, true);
}

#[test]
fn two_receivers_killed_while_decoding_a_record_and_a_range() {
    two_receivers_killed_while_decoding(Take::One, Take::Range, false);
    two_receivers_killed_while_decoding(Take::One, Take::Range, true);
    two_receivers_killed_while_decoding(Take::Range, Take::One, false);
    two_receivers_killed_while_decoding(Take::Range, Take::One, true);
}

/// A channel of 4 messages over 64 cells, which `kill_then_go_round` goes round about five
/// times.
fn small_ring<T: uniconc_core::Message>()
-> (uniconc_process::Sender<T>, uniconc_process::Receiver<T>) {
    ChannelBuilder::new(Some(4))
        .byte_budget(4096)
        .build::<T>()
        .unwrap()
}

/// Once `stuck` says the child is stuck inside `send` or `recv`, SIGKILLs it, then sends and
/// receives 300 messages `wrap(i)` one by one, each within a 30 s watchdog, and checks that
/// nothing is left counted: the channel works on after a process died inside it.
fn kill_then_go_round<T: uniconc_core::Message + PartialEq + std::fmt::Debug>(
    child: common::Child,
    stuck: &uniconc_process::Event,
    tx: &uniconc_process::Sender<T>,
    rx: &uniconc_process::Receiver<T>,
    wrap: fn(u32) -> T,
) {
    uniconc_core::Event::wait_timeout(stuck, LIMIT).expect("the child got stuck");
    child.kill();
    let watchdog = Duration::from_secs(30);
    for i in 0..300 {
        tx.send_timeout(wrap(i), watchdog)
            .unwrap_or_else(|e| panic!("send {i}: {e:?}"));
        assert_eq!(rx.recv_timeout(watchdog), Ok(wrap(i)), "message {i}");
    }
    assert!(rx.is_empty(), "the lost message is counted as received");
}

/// Encodes like a `u32`, except [`Hang::FOREVER`]: its second encoding in a process (the
/// one into the ring's cells, after the size pass; the [`HANG_AT`]th from 0) never returns,
/// after setting [`HUNG`]. A sender that sends it is stuck inside `send`, holding claimed
/// cells.
#[derive(Debug, Deserialize, PartialEq)]
struct Hang(u32);

impl Hang {
    const FOREVER: u32 = u32::MAX;
}

static HUNG: std::sync::OnceLock<uniconc_process::Event> = std::sync::OnceLock::new();
/// How many senders got stuck encoding a [`Hang::FOREVER`], in memory shared with the
/// children.
static HANGS: std::sync::OnceLock<&'static AtomicU32> = std::sync::OnceLock::new();
static ENCODINGS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
/// Which encoding of [`Hang::FOREVER`] hangs: 1, or 0 for an item a batch packs (encoded
/// once, straight into its pack, without a size pass).
static HANG_AT: AtomicU32 = AtomicU32::new(1);

impl Serialize for Hang {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == Hang::FOREVER
            && ENCODINGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                == HANG_AT.load(Ordering::Relaxed)
        {
            if let Some(n) = HANGS.get() {
                n.fetch_add(1, Ordering::Relaxed);
            }
            uniconc_core::Event::set(HUNG.get().expect("set before the fork"));
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        s.serialize_u32(self.0)
    }
}

/// A sender SIGKILLed while it encodes a message into the ring (cells claimed, not
/// published) loses only that message: a blocked receiver finds it dead and the cells are
/// published in its place as a lost message, so the others' messages behind it arrive.
#[test]
fn a_sender_killed_while_encoding_loses_only_its_message() {
    sender_killed_while_encoding();
}

/// The body of [`a_sender_killed_while_encoding_loses_only_its_message`].
fn sender_killed_while_encoding() {
    let _f = fork_lock();
    let (tx, rx) = small_ring::<Hang>();
    let hung = fresh(&HUNG);
    let hangs = *HANGS.get_or_init(|| &shared_counters(1)[0]);
    let before = hangs.load(Ordering::Relaxed);
    let child = spawn({
        let tx = tx.clone();
        move || match tx.send(Hang(Hang::FOREVER)) {
            Ok(()) => 1,
            Err(_) => 2,
        }
    });
    // Without the dead sender's cells published, the first receive waits for good.
    kill_then_go_round(child, hung, &tx, &rx, Hang);
    assert_eq!(
        hangs.load(Ordering::Relaxed),
        before + 1,
        "the child was killed inside `send`, not before it"
    );
}

/// The kill tests wait for their own child's signal: run twice in one binary (as a test
/// runner that repeats tests does), the second run does not take the first one's signal
/// for its child's and kill the child before it is stuck.
#[test]
fn kill_tests_run_twice_in_one_binary() {
    for _ in 0..2 {
        receiver_killed_while_decoding();
        sender_killed_while_encoding();
    }
}

/// A receiver SIGKILLed while it decodes the second message of a batch it took at once (a
/// range claimed, not given back) loses only that batch: the range is counted and its cells
/// come back once a blocked sender finds the receiver dead.
#[test]
fn a_receiver_killed_inside_recv_batch_loses_only_its_batch() {
    use uniconc_core::Sender as _;
    let _f = fork_lock();
    let (tx, rx) = small_ring::<Stall>();
    let stalled = fresh(&STALLED);
    // Queued before the receiver starts, so it takes all three as one range.
    let batch = [Stall(1), Stall(Stall::FOREVER), Stall(2)];
    assert_eq!(tx.send_batch(batch), Ok(3));
    let child = spawn({
        let rx = rx.clone();
        move || {
            let mut buf = Vec::new();
            match rx.recv_batch(&mut buf, 8) {
                Ok(_) => 1,
                Err(_) => 2,
            }
        }
    });
    // Without the dead receiver's range completed, the sends after one lap block for good;
    // without it counted, the channel would hold three messages fewer from then on.
    kill_then_go_round(child, stalled, &tx, &rx, Stall);
}

/// A message too large for a pack (`ring::PACK_ITEM`), so a batch writes it as a record of
/// its own.
type Big = (Hang, Vec<u8>);

fn big(i: u32) -> Big {
    (Hang(i), vec![7; 200])
}

/// A sender SIGKILLed while it encodes the second item of a batch (a run of cells claimed,
/// the first record published) loses only the items it had not published: the first
/// arrives, the rest of its claim is passed over, its unused message slots come back.
#[test]
fn a_sender_killed_inside_send_batch_loses_only_the_unpublished_rest() {
    let _f = fork_lock();
    let (tx, rx) = small_ring::<Big>();
    let hung = fresh(&HUNG);
    let child = spawn({
        let tx = tx.clone();
        move || match tx.send_batch([big(7), big(Hang::FOREVER), big(8)]) {
            Ok(_) => 1,
            Err(_) => 2,
        }
    });
    uniconc_core::Event::wait_timeout(hung, LIMIT).expect("the child got stuck");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(30)),
        Ok(big(7)),
        "the item published before the kill arrives"
    );
    // Without the dead sender's claim padded, the next receive waits for good; without its
    // slots given back, the capacity would shrink for good.
    kill_then_go_round(child, hung, &tx, &rx, big);
}

/// The same with small messages, which a batch packs several to a pack: an item is
/// published with its pack, so the one packed before the item being encoded is lost with
/// the sender too. Nothing of its batch arrives, and the channel goes on with its capacity.
#[test]
fn a_sender_killed_inside_a_packed_send_batch_loses_its_unpublished_pack() {
    let _f = fork_lock();
    let (tx, rx) = small_ring::<Hang>();
    let hung = fresh(&HUNG);
    HANG_AT.store(0, Ordering::Relaxed);
    let child = spawn({
        let tx = tx.clone();
        move || match tx.send_batch([Hang(7), Hang(Hang::FOREVER), Hang(8)]) {
            Ok(_) => 1,
            Err(_) => 2,
        }
    });
    HANG_AT.store(1, Ordering::Relaxed);
    // The first message received is the first sent after the kill (`Hang(0)`), not `Hang(7)`.
    kill_then_go_round(child, hung, &tx, &rx, Hang);
}

/// `try_recv` behind a message another process is writing (cells claimed, not published):
/// while that sender is alive but stuck it waits a bounded time, then says `Empty` rather than
/// hang; once the sender is SIGKILLed, its message is settled as lost within the wait and
/// `try_recv` returns the message queued behind it.
#[test]
fn try_recv_behind_a_stuck_then_killed_sender_does_not_hang() {
    let _f = fork_lock();
    let (tx, rx) = small_ring::<Hang>();
    let hung = fresh(&HUNG);
    let child = spawn({
        let tx = tx.clone();
        move || match tx.send(Hang(Hang::FOREVER)) {
            Ok(()) => 1,
            Err(_) => 2,
        }
    });
    uniconc_core::Event::wait_timeout(hung, LIMIT).expect("the child got stuck");
    tx.send(Hang(1)).unwrap();
    let look = |rx: &uniconc_process::Receiver<Hang>| {
        let rx = rx.clone();
        common::watchdog(LIMIT, move || rx.try_recv())
    };
    assert_eq!(
        look(&rx),
        Err(TryRecvError::Empty),
        "the stuck sender is alive"
    );
    child.kill();
    assert_eq!(
        look(&rx),
        Ok(Hang(1)),
        "the killed sender's message is passed over"
    );
    assert!(rx.is_empty(), "the lost message is counted as received");
    drop(child);
}

/// `try_recv` says `Empty` only when nothing is queued: four processes each send a message
/// and then `try_recv` one, many times over a small channel, and always find one, though the
/// front of the ring is often a message another process is still writing.
#[test]
fn try_recv_after_send_is_never_empty_across_processes() {
    let _f = fork_lock();
    let rounds = 20_000 * scale();
    let (tx, rx) = channel::<u64>(4).unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            let (tx, rx) = (tx.clone(), rx.clone());
            spawn(move || {
                for i in 0..rounds {
                    if tx.send(i).is_err() {
                        return 2;
                    }
                    match rx.try_recv() {
                        Ok(_) => {}
                        Err(TryRecvError::Empty) => {
                            eprintln!("round {i}: Empty with {} queued", rx.len());
                            return 1;
                        }
                        Err(_) => return 3,
                    }
                }
                0
            })
        })
        .collect();
    for c in children {
        assert_eq!(c.join(LIMIT), 0, "1: `Empty` while a message was queued");
    }
    assert!(rx.is_empty());
}

/// `n` counters in memory shared with the children forked after this (leaked: the test's).
fn shared_counters(n: usize) -> &'static [AtomicU32] {
    use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous};
    let len = std::num::NonZeroUsize::new(n * 4).expect("n > 0");
    // SAFETY: a fresh anonymous mapping of `len` bytes, never unmapped; zeroed memory is valid
    // `AtomicU32`s, and MAP_SHARED makes the children's increments visible here.
    let p = unsafe {
        mmap_anonymous(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
        )
    }
    .expect("mmap");
    // SAFETY: `len` bytes, suitably aligned (page), alive for the rest of the process.
    unsafe { std::slice::from_raw_parts(p.as_ptr().cast::<AtomicU32>(), n) }
}

/// Receivers SIGKILLed (and replaced) ten times, and two senders once, at moments picked by
/// progress while ~1 KB messages stream through a ring that holds a few dozen (the processes
/// spend much of their time inside `send` and `recv`, encoding and decoding): the others
/// never hang, every message that arrives is whole, none arrives twice, and of the messages
/// whose `send` returned at most one per killed receiver is missing (the one it held or had
/// just taken).
#[test]
fn random_sigkills_lose_only_what_the_killed_held() {
    random_sigkills(1, 1, false, Size::Kb);
}

/// The same with ~20 KB messages through a 16 MiB ring, where records go back to its first
/// cells while others are still queued (`ring::WARM_REACH`): the consumers pass those skips
/// as SIGKILLs land around them.
#[test]
fn random_sigkills_with_large_messages_lose_only_what_the_killed_held() {
    random_sigkills(1, 1, false, Size::Large);
}

/// The same with `send_batch` and `recv_batch` of 8: a killed receiver loses at most the
/// batch it held, a killed sender only the items of its batch it had not published.
#[test]
fn random_sigkills_inside_batches_lose_only_what_the_killed_held() {
    random_sigkills(8, 1, false, Size::Kb);
}

/// The same with messages of up to 75 bytes, which `send_batch` packs several to a pack
/// (`ring`'s packs): receivers hold a pack while they take messages from it, and are killed
/// holding one, or with messages taken from it.
#[test]
fn random_sigkills_inside_packed_batches_lose_only_what_the_killed_held() {
    random_sigkills(8, 1, false, Size::Small);
}

/// Packed batches taken apart by receivers that receive one by one and in batches, killed
/// two at once.
#[test]
fn random_sigkills_of_two_receivers_at_once_taking_packs_apart() {
    random_sigkills(8, 2, true, Size::Small);
}

/// The size of [`random_sigkills`]'s messages.
#[derive(Clone, Copy)]
enum Size {
    /// Up to 75 bytes: packed by `send_batch`.
    Small,
    /// About 1 KB.
    Kb,
    /// About 20 KB, in a 16 MiB ring.
    Large,
}

/// Receivers SIGKILLed two at once (so both are found dead by the same reap, their claims
/// settled together), half the processes sending and receiving one by one and half in
/// batches of 8, so single claims and ranges meet at the same positions.
#[test]
fn random_sigkills_of_two_receivers_at_once_with_mixed_batches() {
    random_sigkills(8, 2, true, Size::Kb);
}

/// [`random_sigkills_lose_only_what_the_killed_held`], sending and receiving in batches of
/// `batch` (1: one by one; with `mixed`, only the odd-numbered senders and the receivers
/// started at odd rounds), killing `together` receivers at once in each round, with
/// messages of `size`.
fn random_sigkills(batch: usize, together: usize, mixed: bool, size: Size) {
    let _f = fork_lock();
    let (producers, consumers) = (4usize, 3usize);
    let (consumer_kills, producer_kills) = (10usize, 2usize);
    let (per, size, cap, budget) = match size {
        Size::Small => (20_000 * scale() as usize, 0, 64, 64 << 10),
        Size::Kb => (5_000 * scale() as usize, 1000, 64, 64 << 10),
        Size::Large => (2_000 * scale() as usize, 20_000, 16, 16 << 20),
    };
    let (tx, rx) = ChannelBuilder::new(Some(cap))
        .byte_budget(budget)
        .build::<(u32, u32, Vec<u8>)>()
        .unwrap();
    let seen = shared_counters(producers * per);
    let sent = shared_counters(producers);
    let payload = move |i: usize| vec![i as u8; size + i % 64];
    let mut prods: Vec<_> = (0..producers)
        .map(|p| {
            let tx = tx.clone();
            let batch = if mixed && p % 2 == 0 { 1 } else { batch };
            spawn(move || {
                let mut i = 0;
                while i < per {
                    let end = (i + batch).min(per);
                    if batch == 1 {
                        tx.send((p as u32, i as u32, payload(i))).unwrap();
                    } else {
                        let items = (i..end).map(|i| (p as u32, i as u32, payload(i)));
                        assert_eq!(tx.send_batch(items), Ok(end - i));
                    }
                    i = end;
                    sent[p].store(i as u32, Ordering::Relaxed);
                }
                0
            })
        })
        .collect();
    drop(tx);
    let consumer = |k: usize| {
        let rx = rx.clone();
        let batch = if mixed && k % 2 == 0 { 1 } else { batch };
        spawn(move || {
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let got = if batch == 1 {
                    rx.recv().map(|m| buf.push(m))
                } else {
                    rx.recv_batch(&mut buf, batch).map(drop)
                };
                if got.is_err() {
                    return 0;
                }
                for (p, i, v) in buf.drain(..) {
                    if v != payload(i as usize) {
                        return 3;
                    }
                    seen[p as usize * per + i as usize].fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let mut cons: Vec<_> = (0..consumers).map(consumer).collect();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.subsec_nanos() as usize);
    eprintln!("kill schedule seed {seed}");
    let total = || {
        sent.iter()
            .map(|s| s.load(Ordering::Relaxed) as usize)
            .sum::<usize>()
    };
    for round in 0..consumer_kills {
        // Reachable by the senders never killed alone.
        let goal = (round + 1) * (producers - producer_kills) * per / (consumer_kills + 2);
        let start = Instant::now();
        while total() < goal {
            assert!(start.elapsed() < LIMIT, "stalled at {} of {goal}", total());
            std::thread::sleep(Duration::from_micros(50 + (seed >> round) as u64 % 200));
        }
        let killed: Vec<_> = (0..together)
            .map(|k| cons.remove((seed >> (round + k)) % cons.len()))
            .collect();
        killed.iter().for_each(common::Child::kill);
        // Reaped at once (dropping a `Child` waits for it): without /proc (the portable
        // fallback) a zombie of another process's child counts as alive.
        drop(killed);
        if round % (consumer_kills / producer_kills) == 1 {
            let p = prods.remove((seed >> (round + 7)) % prods.len());
            p.kill();
            drop(p);
        }
        cons.extend((0..together).map(|k| consumer(round + k + 1)));
    }
    drop(rx);
    for c in prods.into_iter().chain(cons) {
        assert_eq!(c.join(LIMIT), 0, "a survivor failed (3: a torn message)");
    }
    let mut missing = 0;
    for p in 0..producers {
        let upto = sent[p].load(Ordering::Relaxed) as usize;
        for i in 0..per {
            let n = seen[p * per + i].load(Ordering::Relaxed);
            assert!(n <= 1, "message {p}/{i} arrived {n} times");
            // A killed sender may have published part of the batch it was in.
            assert!(
                n == 0 || i < upto + batch,
                "message {p}/{i} arrived but was never sent"
            );
            missing += usize::from(n == 0 && i < upto);
        }
    }
    let killed = consumer_kills * together;
    assert!(
        missing <= killed * batch,
        "{missing} sent messages missing, {killed} receivers killed (batches of {batch})"
    );
    eprintln!("{missing} sent messages missing, {killed} receivers killed (batches of {batch})");
}

#[test]
fn oversized_message_is_refused_in_a_child_too() {
    let _f = fork_lock();
    let (tx, rx) = ChannelBuilder::new(Some(4))
        .byte_budget(8192)
        .build::<Vec<u8>>()
        .unwrap();
    let child = spawn(move || match tx.send(vec![0u8; 100_000]) {
        Err(SendError::Invalid(v, MessageError::TooLarge { .. })) if v.len() == 100_000 => {
            tx.send(vec![1, 2, 3]).map(|_| 0).unwrap_or(2)
        }
        _ => 1,
    });
    assert_eq!(child.join(LIMIT), 0);
    assert_eq!(rx.recv().unwrap(), vec![1, 2, 3]);
}

/// Serializes any `u32`; deserializes only even ones.
#[derive(Debug, Serialize, PartialEq)]
struct Even(u32);

impl<'de> Deserialize<'de> for Even {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if v % 2 == 0 {
            Ok(Even(v))
        } else {
            Err(serde::de::Error::custom("odd"))
        }
    }
}

#[test]
fn undecodable_message_is_an_error_and_the_next_one_arrives() {
    let _f = fork_lock();
    let (tx, rx) = channel::<Even>(4).unwrap();
    let child = spawn(move || {
        tx.send(Even(3)).unwrap();
        tx.send(Even(4)).unwrap();
        0
    });
    assert_eq!(child.join(LIMIT), 0);
    match rx.recv() {
        Err(RecvError::Invalid(MessageError::Decode(m))) => assert!(m.contains("odd"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(rx.recv().unwrap(), Even(4));
}

#[test]
fn mpmc_across_processes_loses_and_duplicates_nothing() {
    let _f = fork_lock();
    let producers = 4u64;
    let consumers = 3u64;
    let n = 100_000 * scale();
    let per = n / producers;
    let total = per * producers;
    let (tx, rx) = channel::<u64>(256).unwrap();
    let (res_tx, res_rx) = unbounded::<(u64, u64, u128)>().unwrap();
    let mut children = Vec::new();
    for p in 0..producers {
        let tx = tx.clone();
        children.push(spawn(move || {
            for i in 0..per {
                tx.send(p * per + i).unwrap();
            }
            0
        }));
    }
    for _ in 0..consumers {
        let rx = rx.clone();
        let res_tx = res_tx.clone();
        children.push(spawn(move || {
            let (mut count, mut sum, mut squares) = (0u64, 0u64, 0u128);
            for v in rx.iter() {
                count += 1;
                sum += v;
                squares += u128::from(v) * u128::from(v);
            }
            res_tx.send((count, sum, squares)).unwrap();
            0
        }));
    }
    drop((tx, rx, res_tx));
    let results: Vec<_> = res_rx.iter().collect();
    for c in children {
        assert_eq!(c.join(LIMIT), 0);
    }
    assert_eq!(results.len() as u64, consumers);
    let count: u64 = results.iter().map(|r| r.0).sum();
    let sum: u64 = results.iter().map(|r| r.1).sum();
    let squares: u128 = results.iter().map(|r| r.2).sum();
    let t = u128::from(total);
    assert_eq!(count, total);
    assert_eq!(u128::from(sum), t * (t - 1) / 2);
    assert_eq!(squares, (t - 1) * t * (2 * t - 1) / 6);
}

/// Inline and data-cell records (0 to ~300 bytes) through a small ring that wraps often, with
/// several producers and consumers: every message arrives once and whole (a consumer reading
/// a larger record pins its cells while the others go on).
#[test]
fn mpmc_mixed_sizes_across_processes_arrive_whole() {
    let _f = fork_lock();
    let (producers, consumers) = (3u64, 3u64);
    let per = 20_000 * scale();
    let (tx, rx) = ChannelBuilder::new(Some(16))
        .byte_budget(4096)
        .build::<Vec<u8>>()
        .unwrap();
    let (res_tx, res_rx) = unbounded::<(u64, u64)>().unwrap();
    let mut children = Vec::new();
    for p in 0..producers {
        let tx = tx.clone();
        children.push(spawn(move || {
            for i in 0..per {
                let id = p * per + i;
                tx.send(vec![id as u8; (id % 101) as usize * 3]).unwrap();
            }
            0
        }));
    }
    for _ in 0..consumers {
        let rx = rx.clone();
        let res_tx = res_tx.clone();
        children.push(spawn(move || {
            let (mut count, mut bytes) = (0u64, 0u64);
            for v in rx.iter() {
                assert!(v.iter().all(|&b| b == v[0]), "a torn message");
                count += 1;
                bytes += v.len() as u64;
            }
            res_tx.send((count, bytes)).unwrap();
            0
        }));
    }
    drop((tx, rx, res_tx));
    let results: Vec<_> = res_rx.iter().collect();
    for c in children {
        assert_eq!(c.join(LIMIT), 0, "a child failed (a torn message?)");
    }
    let total = producers * per;
    let bytes: u64 = (0..total).map(|id| (id % 101) * 3).sum();
    assert_eq!(results.iter().map(|r| r.0).sum::<u64>(), total);
    assert_eq!(results.iter().map(|r| r.1).sum::<u64>(), bytes);
}

#[test]
fn variable_size_messages_across_processes() {
    let _f = fork_lock();
    let (tx, rx) = channel::<Vec<u32>>(8).unwrap();
    let child = spawn(move || {
        for len in 0..300u32 {
            tx.send((0..len * 7).collect()).unwrap();
        }
        0
    });
    for len in 0..300u32 {
        let v = rx.recv().unwrap();
        assert_eq!(v.len() as u32, len * 7);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32));
    }
    assert_eq!(child.join(LIMIT), 0);
}

#[test]
fn async_recv_from_a_child_and_cancel_safety() {
    let _f = fork_lock();
    let (tx, rx) = channel::<u64>(8).unwrap();
    // A pending recv_async dropped before anything is sent loses nothing.
    {
        let fut = rx.recv_async();
        let polled = futures_lite::future::block_on(futures_lite::future::poll_once(fut));
        assert!(polled.is_none(), "nothing was sent yet");
    }
    let child = spawn(move || {
        for i in 0..1000 {
            tx.send(i).unwrap();
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        0
    });
    let (n, sum) = common::watchdog(LIMIT, move || {
        futures_lite::future::block_on(async move {
            let (mut n, mut sum) = (0u64, 0u64);
            let mut take = |r: Result<u64, RecvError>| match r {
                Ok(v) => {
                    n += 1;
                    sum += v;
                    true
                }
                Err(RecvError::Disconnected) => false,
                Err(e) => panic!("{e}"),
            };
            loop {
                // A receive that is polled once and dropped: if it was pending, the message
                // it would have taken must still arrive through the next one.
                if let Some(r) = futures_lite::future::poll_once(rx.recv_async()).await {
                    if !take(r) {
                        break;
                    }
                }
                if !take(rx.recv_async().await) {
                    break;
                }
            }
            (n, sum)
        })
    });
    assert_eq!(n, 1000, "every message exactly once");
    assert_eq!(sum, 999 * 1000 / 2);
    assert_eq!(child.join(LIMIT), 0);
}

#[test]
fn child_receiver_is_not_kept_connected_by_the_parents_sender_copied_into_it() {
    // The design's hello-world: the child inherits the parent's `tx` as well as `rx`.
    let _f = fork_lock();
    let (tx, rx) = channel::<u64>(64).unwrap();
    let (res_tx, res_rx) = channel::<u64>(1).unwrap();
    let child = spawn(move || {
        let sum: u64 = rx.iter().sum();
        res_tx.send(sum).map(|_| 0).unwrap_or(3)
    });
    for i in 1..=10 {
        tx.send(i).unwrap();
    }
    drop(tx);
    assert_eq!(res_rx.recv_timeout(LIMIT), Ok(55));
    assert_eq!(child.join(LIMIT), 0);
}

#[test]
fn a_child_that_has_not_run_yet_keeps_its_sender_counted() {
    let _f = fork_lock();
    let (tx, rx) = channel::<u64>(4).unwrap();
    let tx2 = tx.clone();
    let child = spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        tx2.send(7).map(|_| 0).unwrap_or(4)
    });
    drop(tx);
    assert_eq!(rx.recv_timeout(LIMIT), Ok(7));
    assert_eq!(child.join(LIMIT), 0);
    assert_eq!(rx.recv_timeout(LIMIT), Err(RecvTimeoutError::Disconnected));
}

#[test]
fn forget_inherited_handles_lets_a_long_lived_child_not_keep_channels_connected() {
    let _f = fork_lock();
    let (tx, rx) = channel::<u64>(4).unwrap();
    let (stop_tx, stop_rx) = channel::<()>(1).unwrap();
    // A long-lived child forked while `tx` exists, which never uses this channel.
    let child = spawn(move || {
        // Used first, so it stays counted (the parent sends on it as soon as `tx` is
        // forgotten, maybe before this child's `recv`).
        let _ = stop_rx.try_recv();
        uniconc_process::forget_inherited_handles();
        let _ = stop_rx.recv();
        0
    });
    tx.send(1).unwrap();
    drop(tx);
    assert_eq!(rx.recv_timeout(LIMIT), Ok(1));
    assert_eq!(rx.recv_timeout(LIMIT), Err(RecvTimeoutError::Disconnected));
    stop_tx.send(()).unwrap();
    assert_eq!(child.join(LIMIT), 0);
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn unbounded_channels_do_not_commit_their_capacity() {
    let before = resident_bytes();
    let chans: Vec<_> = (0..8).map(|_| unbounded::<u64>().unwrap()).collect();
    for (tx, rx) in &chans {
        tx.send(1).unwrap();
        assert_eq!(rx.recv().unwrap(), 1);
    }
    let after = resident_bytes();
    // 8 rings sized to the machine (GiBs each) were mapped; only touched pages count.
    assert!(
        after.saturating_sub(before) < 64 << 20,
        "resident grew by {} bytes",
        after - before
    );
    // Forking copies no page tables of the shared reservations: print what it costs.
    let _f = fork_lock();
    let start = Instant::now();
    let child = spawn(|| 0);
    let forked = start.elapsed();
    assert_eq!(child.join(LIMIT), 0);
    eprintln!("fork with 8 unbounded channels mapped: {forked:?}");
}

/// Traffic through an unbounded channel commits pages for what was queued at the most, not
/// for all the traffic: 64 MiB of ~1 KB messages go through, in bursts of up to ~4 MiB
/// queued that the receiver drains, and the ring goes back to its first pages whenever it is
/// empty past them (without that it would walk 64 MiB of ring and as many control lines,
/// all committed).
#[test]
fn unbounded_traffic_commits_what_was_queued_not_what_went_through() {
    let (tx, rx) = unbounded::<String>().unwrap();
    let msg = |i: u32| format!("{i:0>1000}");
    let before = resident_bytes();
    let mut next = 0u32;
    for i in 0..64 * 1024u32 {
        tx.try_send(msg(i))
            .unwrap_or_else(|e| panic!("{i} {next} {e:?}"));
        // A backlog of up to 4096 messages (~4 MiB, past the ring's first 1 MiB) now and
        // then, drained between.
        let keep = if i % 16384 < 4096 { i % 16384 } else { 0 };
        while i + 1 - next > keep {
            assert_eq!(rx.try_recv(), Ok(msg(next)));
            next += 1;
        }
    }
    while let Ok(v) = rx.try_recv() {
        assert_eq!(v, msg(next));
        next += 1;
    }
    assert_eq!(next, 64 * 1024);
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 24 << 20, "resident grew by {grown} bytes");
}
