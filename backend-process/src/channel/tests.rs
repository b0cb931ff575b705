use super::*;
use uniconc_core::{Receiver as _, Sender as _};

/// Held by every test of this binary that forks: a fork takes a slot in every live
/// channel for the child, so a test that counts a channel's free slots must not overlap
/// another test's fork.
static FORKS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn forks() -> std::sync::MutexGuard<'static, ()> {
    FORKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A channel whose `MAX_PROCESSES` slots are all taken (by live processes: here, this
/// one) makes `spawn` refuse with a clear error instead of forking a child it could not
/// count; with three slots free, eight threads spawning at once get exactly three
/// children (the room check and the child's slot are one step: without that, two threads
/// could both see the last slot, though this test hits that window only rarely); with
/// slots free again, `spawn` forks. (One test: every fork checks every channel of the
/// process.)
/// Decodes as a unit, after setting [`SLEEPY_DECODING`] and sleeping for good: a receiver
/// stuck inside `recv`, holding the message.
#[derive(serde::Serialize)]
struct Sleepy;

static SLEEPY_DECODING: std::sync::OnceLock<crate::Event> = std::sync::OnceLock::new();

impl<'de> serde::Deserialize<'de> for Sleepy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        uniconc_core::Event::set(SLEEPY_DECODING.get().expect("set before the fork"));
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// A dead receiver's record that a live thread's claim word also names (a claim that lost
/// its CAS) is not finished, and the dead process's slot stays, counts zeroed, until a
/// later reap finds the word moved on; then the record is finished and the slot freed.
#[test]
fn a_recovery_a_live_word_holds_back_is_retried() {
    let _forks = forks();
    use uniconc_core::{JoinHandle as _, Sender as _};
    let (tx, rx) = channel::<Sleepy>(4).unwrap();
    let decoding = SLEEPY_DECODING.get_or_init(|| crate::event().unwrap());
    tx.send(Sleepy).unwrap();
    let child = crate::spawn(move || rx.recv().is_ok()).unwrap();
    uniconc_core::Event::wait(decoding);
    let chan = &*tx.chan;
    let slot_of = |pid: u32| {
        chan.hdr()
            .used_slots()
            .iter()
            .position(|s| s.pid.load(Ordering::Acquire) == pid)
    };
    let pid = child.id();
    let dead = slot_of(pid).expect("the child has a slot");
    let words = &chan.hdr().procs[dead].claims;
    assert!(
        words.iter().any(|w| w.load(Ordering::Acquire) == 1),
        "it holds record 0"
    );
    child.kill().unwrap();
    gone(pid);
    // This (live) thread's word names the same record, as after a lost CAS.
    let mine = &chan.my_slot().claims[claims::mine().unwrap()];
    mine.store(1, Ordering::Release);
    chan.reap();
    assert_eq!(tx.len(), 1, "held back: the record is not finished");
    assert_eq!(slot_of(pid), Some(dead), "the slot waits for a retry");
    mine.store(0, Ordering::Release);
    chan.reap();
    assert_eq!(tx.len(), 0, "finished by the retry");
    assert_eq!(slot_of(pid), None, "and the slot freed");
    drop(child);
}

#[test]
fn a_channel_with_every_process_slot_taken_refuses_a_fork() {
    let _forks = forks();
    use uniconc_core::{Event as _, JoinHandle as _};
    let (tx, _rx) = channel::<u8>(1).unwrap();
    let hdr = tx.chan.hdr();
    let mut taken = Vec::new();
    while let Some(i) = claim_slot(hdr, Identity::me(), false) {
        taken.push(i);
    }
    assert_eq!(taken.len(), MAX_PROCESSES - 1, "the creator holds one slot");
    let err = crate::spawn(|| 0u8).expect_err("no room for a child");
    assert!(err.to_string().contains("MAX_PROCESSES"), "{err}");
    // Release (here and below): as a reaped slot is freed.
    let free = |i: usize| hdr.procs[i].pid.store(SLOT_FREE, Ordering::Release);
    taken.drain(..3).for_each(free);
    let go = crate::event().unwrap();
    let children: Vec<_> = std::thread::scope(|s| {
        let spawns: Vec<_> = (0..8)
            .map(|_| {
                let go = go.clone();
                s.spawn(move || {
                    crate::spawn(move || {
                        go.wait();
                        7u8
                    })
                })
            })
            .collect();
        spawns.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let forked = children.iter().filter(|c| c.is_ok()).count();
    go.set();
    for c in children.into_iter().flatten() {
        assert_eq!(c.join(), Ok(7));
    }
    assert_eq!(forked, 3, "one child per free slot, none uncounted");
    taken.into_iter().for_each(free);
    assert_eq!(crate::spawn(|| 7u8).unwrap().join(), Ok(7));
}

/// A producer that has claimed cells but not published them (mid-`send`: here, stalled
/// inside the encoder) leaves receivers waiting: `recv_timeout` times out instead of
/// hanging, and the message arrives once published.
#[test]
fn a_claimed_unpublished_message_times_out_then_arrives() {
    let (tx, rx) = channel::<u64>(4).unwrap();
    let (claimed_tx, claimed_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let chan = tx.chan.clone();
    let writer = std::thread::spawn(move || {
        let size = codec::encoded_size(&7u64).unwrap();
        let pushed = chan.ring().try_push(
            size,
            chan.cap,
            &SendWords::default(),
            &AtomicU64::new(0),
            |buf| {
                claimed_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                codec::encode_into(&7u64, buf).is_ok_and(|n| n == size)
            },
        );
        chan.notify(&chan.hdr().recv_wait);
        pushed
    });
    claimed_rx.recv().unwrap();
    let start = Instant::now();
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(300)),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    go_tx.send(()).unwrap();
    assert_eq!(writer.join().unwrap(), Ok(true));
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(7));
    drop(tx);
}

/// An unbounded channel whose ring is full (here a small explicit budget; by default it
/// is a reservation sized to the machine) acts as a full bounded channel: `try_send`
/// says `Full`, `send_timeout` times out (neither loses the value), and room comes back
/// as messages are received.
#[test]
fn an_unbounded_channel_with_a_full_ring_acts_as_full() {
    let (tx, rx) = ChannelBuilder::new(None)
        .byte_budget(4096)
        .build::<Vec<u8>>()
        .unwrap();
    let mut sent = 0;
    while tx.try_send(vec![7; 1000]).is_ok() {
        sent += 1;
    }
    assert!(sent >= 3, "{sent} sent");
    match tx.try_send(vec![8; 1000]) {
        Err(TrySendError::Full(v)) => assert_eq!(v, vec![8; 1000]),
        other => panic!("{other:?}"),
    }
    match tx.send_timeout(vec![9; 1000], Duration::from_millis(30)) {
        Err(SendTimeoutError::Timeout(v)) => assert_eq!(v, vec![9; 1000]),
        other => panic!("{other:?}"),
    }
    assert_eq!(rx.recv().unwrap(), vec![7; 1000]);
    tx.try_send(vec![8; 1000]).unwrap();
    assert_eq!(rx.len(), sent);
}

#[test]
fn capacity_zero_is_an_error() {
    let e = channel::<u8>(0).unwrap_err();
    assert_eq!(e.kind(), uniconc_core::ErrorKind::InvalidArgument);
}

#[test]
fn bounded_fifo_full_and_len() {
    let (tx, rx) = channel::<u64>(3).unwrap();
    assert_eq!(tx.capacity(), Some(3));
    for i in 0..3 {
        tx.try_send(i).unwrap();
    }
    assert!(tx.try_send(9).unwrap_err().is_full());
    assert_eq!(rx.len(), 3);
    for i in 0..3 {
        assert_eq!(rx.try_recv().unwrap(), i);
    }
    assert!(rx.try_recv().unwrap_err().is_empty());
}

#[test]
fn disconnect_both_ways() {
    let (tx, rx) = channel::<String>(4).unwrap();
    tx.send("a".into()).unwrap();
    drop(tx);
    assert!(rx.is_closed());
    assert_eq!(rx.recv().unwrap(), "a");
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    let (tx, rx) = channel::<String>(4).unwrap();
    drop(rx);
    assert!(tx.send("x".into()).unwrap_err().is_disconnected());
}

#[test]
fn close_drains_then_disconnects() {
    let (tx, rx) = unbounded::<u32>().unwrap();
    assert_eq!(tx.capacity(), None);
    tx.send(1).unwrap();
    tx.close();
    assert!(tx.send(2).unwrap_err().is_disconnected());
    assert_eq!(rx.recv().unwrap(), 1);
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
}

#[test]
fn too_large_is_refused_with_the_value() {
    let (tx, rx) = ChannelBuilder::new(Some(2))
        .byte_budget(4096)
        .build::<Vec<u8>>()
        .unwrap();
    let big = vec![1u8; 10_000];
    match tx.send(big) {
        Err(SendError::Invalid(v, e @ MessageError::TooLarge { size, limit })) => {
            assert_eq!(v.len(), 10_000);
            assert!(size > limit);
            // The error says what to change.
            assert!(e.to_string().contains("ChannelBuilder::byte_budget"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // A message of the whole budget is still delivered.
    let fits = vec![2u8; 4096 - 3];
    tx.send(fits.clone()).unwrap();
    assert_eq!(rx.recv().unwrap(), fits);
}

#[test]
fn undecodable_is_an_error_and_consumed() {
    let (tx, _rx) = channel::<u64>(4).unwrap();
    // Same channel seen as another type: the bytes of a u64 are not a String.
    let rx2: Receiver<String> = Receiver {
        gen_stamp: tx.chan.add_new(false),
        chan: tx.chan.clone(),
        _m: PhantomData,
        travel: AtomicBool::new(false),
    };
    tx.send(u64::MAX).unwrap();
    assert!(matches!(
        rx2.try_recv(),
        Err(TryRecvError::Invalid(MessageError::Decode(_)))
    ));
    assert!(rx2.try_recv().unwrap_err().is_empty());
}

#[test]
fn timeouts() {
    let (tx, rx) = channel::<u8>(1).unwrap();
    assert!(
        rx.recv_timeout(Duration::from_millis(30))
            .unwrap_err()
            .is_timeout()
    );
    tx.send(1).unwrap();
    assert!(
        tx.send_timeout(2, Duration::from_millis(30))
            .unwrap_err()
            .is_timeout()
    );
}

#[test]
fn threads_mpmc_counts_and_sums() {
    let (tx, rx) = channel::<u64>(16).unwrap();
    let per = 20_000u64;
    let mut hs = Vec::new();
    for p in 0..2 {
        let tx = tx.clone();
        hs.push(std::thread::spawn(move || {
            for i in 0..per {
                tx.send(p * per + i).unwrap();
            }
            0
        }));
    }
    drop(tx);
    for _ in 0..2 {
        let rx = rx.clone();
        hs.push(std::thread::spawn(move || rx.iter().sum::<u64>()));
    }
    drop(rx);
    let total: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    let n = 2 * per;
    assert_eq!(total, n * (n - 1) / 2);
}

#[test]
fn async_recv_is_woken_by_a_thread() {
    let (tx, rx) = channel::<u32>(2).unwrap();
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        tx.send(5).unwrap();
    });
    let v = futures_lite::future::block_on(rx.recv_async()).unwrap();
    assert_eq!(v, 5);
    h.join().unwrap();
    assert_eq!(
        futures_lite::future::block_on(rx.recv_async()),
        Err(RecvError::Disconnected)
    );
}

#[test]
fn async_send_waits_for_room() {
    let (tx, rx) = channel::<u32>(1).unwrap();
    tx.send(1).unwrap();
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        (rx.recv().unwrap(), rx.recv().unwrap())
    });
    futures_lite::future::block_on(tx.send_async(2)).unwrap();
    assert_eq!(h.join().unwrap(), (1, 2));
}

/// Returns once the process `pid` is gone (a zombie counts as gone).
fn gone(pid: u32) {
    while procs::is_alive(Identity { pid, start: 0 }) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The pid of a child that ran and is gone: a process that is dead, for fake slots.
fn a_dead_pid() -> u32 {
    use uniconc_core::JoinHandle as _;
    let child = crate::spawn(|| ()).unwrap();
    let pid = child.id();
    child.join().unwrap();
    gone(pid);
    pid
}

/// Decodes as a `u8`, except that decoding 0 sets [`NAPPING`] and sleeps for good: a
/// receiver stuck inside `recv_batch`, holding the range it took.
#[derive(Debug, PartialEq, serde::Serialize)]
struct Nap(u8);

static NAPPING: std::sync::OnceLock<crate::Event> = std::sync::OnceLock::new();

impl<'de> serde::Deserialize<'de> for Nap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u8::deserialize(d)?;
        if v == 0 {
            uniconc_core::Event::set(NAPPING.get().expect("set before the fork"));
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Ok(Nap(v))
    }
}

/// A receiver dies holding a range of `held` records from position 0 while a second dead
/// process's words name position 0 with a range of `loser` records (a claim of the same
/// records that lost its CAS, the process killed before its words moved on; `loser` may be
/// longer or shorter). One reap settles the winner's range whichever it is: its messages
/// are counted, its cells come back, and the records after it arrive.
fn a_dead_range_with_a_dead_loser_naming_it(held: u8, loser: u64) {
    let _forks = forks();
    use uniconc_core::{Event as _, JoinHandle as _, Sender as _};
    let (tx, rx) = channel::<Nap>(8).unwrap();
    let napping = NAPPING.get_or_init(|| crate::event().unwrap());
    napping.clear();
    for v in 0..held {
        tx.send(Nap(v)).unwrap();
    }
    let child = crate::spawn({
        let rx = rx.clone();
        move || {
            let mut buf = Vec::new();
            rx.recv_batch(&mut buf, 8).is_ok()
        }
    })
    .unwrap();
    napping.wait();
    for v in held..4 {
        tx.send(Nap(v)).unwrap();
    }
    let pid = child.id();
    child.kill().unwrap();
    gone(pid);
    // The loser: another dead process whose words name position 0.
    let hdr = tx.chan.hdr();
    let fake = claim_slot(hdr, Identity { pid, start: 0 }, false).expect("a free slot");
    hdr.procs[fake].claims[0].store(1, Ordering::Relaxed);
    hdr.procs[fake].sends[0]
        .recv_span
        .store(loser | loser << 32, Ordering::Release);
    tx.chan.reap();
    assert_eq!(tx.len(), 4 - usize::from(held), "the dead range is counted");
    for v in held..4 {
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(Nap(v)));
    }
    // Round the ring: its cells came back.
    for v in 0..64u8 {
        tx.send(Nap(v | 1)).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(Nap(v | 1)));
    }
    drop(child);
}

#[test]
fn a_dead_range_is_settled_though_a_dead_loser_names_it_with_a_longer_range() {
    a_dead_range_with_a_dead_loser_naming_it(2, 3);
}

#[test]
fn a_dead_range_is_settled_though_a_dead_loser_names_it_with_a_shorter_range() {
    a_dead_range_with_a_dead_loser_naming_it(3, 2);
}

/// A sender killed inside its `send_with` closure, half the payload written: the record it
/// claimed is settled as lost by the reaper (never shown half-written), the messages before
/// and after it arrive once each, in order, and the capacity comes back whole.
#[test]
fn a_sender_killed_inside_send_with_loses_only_its_message() {
    let _forks = forks();
    use uniconc_core::{Event as _, JoinError, JoinHandle as _};
    let (tx, rx) = channel::<Vec<u8>>(3).unwrap();
    let writing = crate::event().unwrap();
    tx.send(vec![1; 100]).unwrap();
    let child = crate::spawn({
        let (tx, writing) = (tx.clone(), writing.clone());
        move || {
            let _ = tx.send_with(200_000, |buf| {
                buf[..100_000].fill(0xee);
                writing.set();
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
        }
    })
    .unwrap();
    writing
        .wait_timeout(Duration::from_secs(30))
        .expect("the child started writing");
    child.kill().unwrap();
    assert_eq!(child.join(), Err(JoinError::Killed(9)));
    tx.send_with(3, |buf| buf.fill(2)).unwrap();
    let long = Duration::from_secs(30);
    assert_eq!(rx.recv_timeout(long), Ok(vec![1; 100]));
    assert_eq!(rx.recv_with_timeout(long, |b| b.to_vec()), Ok(vec![2; 3]));
    assert_eq!(
        rx.try_recv(),
        Err(TryRecvError::Empty),
        "no half-written message"
    );
    for i in 0..3u8 {
        tx.send_timeout(vec![i; 10], long).unwrap();
    }
    for i in 0..3u8 {
        assert_eq!(rx.recv_timeout(long), Ok(vec![i; 10]));
    }
}

/// A receiver killed inside its `recv_with` closure is a receiver killed mid-receive: its
/// message is gone (not handed out again), the ones behind it arrive once each, and the
/// reaper gives back its room, so senders fill the whole capacity again.
#[test]
fn a_receiver_killed_inside_recv_with_is_settled() {
    let _forks = forks();
    use uniconc_core::{Event as _, JoinError, JoinHandle as _};
    let (tx, rx) = channel::<Vec<u8>>(2).unwrap();
    let reading = crate::event().unwrap();
    tx.send_with(300_000, |buf| buf.fill(1)).unwrap();
    tx.send_with(5, |buf| buf.fill(2)).unwrap();
    let child = crate::spawn({
        let (rx, reading) = (rx.clone(), reading.clone());
        move || {
            let _ = rx.recv_with(|_| {
                reading.set();
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
        }
    })
    .unwrap();
    reading
        .wait_timeout(Duration::from_secs(30))
        .expect("the child is reading");
    child.kill().unwrap();
    assert_eq!(child.join(), Err(JoinError::Killed(9)));
    let long = Duration::from_secs(30);
    assert_eq!(rx.recv_with_timeout(long, |b| b.to_vec()), Ok(vec![2; 5]));
    assert_eq!(
        rx.try_recv(),
        Err(TryRecvError::Empty),
        "the dead one's message is not handed out again"
    );
    // Room for the whole capacity: a blocked sender finds the dead receiver and settles it.
    for i in 0..2u8 {
        tx.send_with_timeout(300_000, long, |buf| buf.fill(i))
            .unwrap();
    }
    for i in 0..2u8 {
        assert_eq!(
            rx.recv_with_timeout(long, |b| b.len() == 300_000 && b.iter().all(|&x| x == i)),
            Ok(true)
        );
    }
    assert_eq!(tx.len(), 0);
}

/// With the default byte budget (1 MiB for a small channel), a 1 MiB `Vec<u8>` (1 MiB and
/// its length prefix) and a 1 MiB `send_with` are refused, naming the builder method that
/// raises it; the channel is unchanged.
#[test]
fn a_message_past_the_default_budget_names_byte_budget() {
    let (tx, rx) = channel::<Vec<u8>>(8).unwrap();
    let named = |e: &MessageError| {
        assert!(matches!(e, MessageError::TooLarge { size, limit: 1_048_576 } if *size > 1 << 20));
        assert!(e.to_string().contains("ChannelBuilder::byte_budget"), "{e}");
    };
    match tx.send(vec![0; 1 << 20]) {
        Err(SendError::Invalid(v, e)) => {
            assert_eq!(v.len(), 1 << 20, "the value comes back");
            named(&e);
        }
        other => panic!("{other:?}"),
    }
    match tx.send_with(1 << 20, |_| panic!("called for a message that cannot go")) {
        Err(SendError::Invalid((), e)) => named(&e),
        other => panic!("{other:?}"),
    }
    assert!(rx.is_empty());
    let (tx, rx) = ChannelBuilder::new(Some(8))
        .byte_budget(2 << 20)
        .build::<Vec<u8>>()
        .unwrap();
    tx.send_with(1 << 20, |buf| buf.fill(3)).unwrap();
    assert_eq!(rx.recv_with(|b| b.len()), Ok(1 << 20));
}

/// A send or receive on a channel from inside its own `send_with`/`recv_with` closure is a
/// clear panic (it would take the claim words naming the outer message, and could wait for
/// that message), which leaves the channel working; another channel may be used there.
#[test]
fn an_operation_inside_its_own_channels_closure_is_refused() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let (tx, rx) = channel::<Vec<u8>>(4).unwrap();
    let (otx, orx) = channel::<Vec<u8>>(4).unwrap();
    let message = |r: Result<(), Box<dyn std::any::Any + Send>>| {
        let e = r.expect_err("a nested operation panics");
        e.downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .unwrap_or_default()
    };
    let e = message(catch_unwind(AssertUnwindSafe(|| {
        let _ = tx.send_with(3, |buf| {
            buf.fill(1);
            let _ = tx.try_send(vec![9]);
        });
    })));
    assert!(e.contains("send_with/recv_with closure"), "{e}");
    // The outer message was published as padding: the channel goes on.
    tx.send(vec![2]).unwrap();
    let e = message(catch_unwind(AssertUnwindSafe(|| {
        let _ = rx.recv_with(|_| {
            let _ = rx.try_recv();
        });
    })));
    assert!(e.contains("send_with/recv_with closure"), "{e}");
    // Another channel inside a closure is fine, and the mark is gone once it returns.
    tx.send_with(2, |buf| {
        buf.fill(3);
        otx.send(vec![4]).unwrap();
    })
    .unwrap();
    assert_eq!(
        rx.recv_with(|b| (b.to_vec(), orx.recv().unwrap())).unwrap(),
        (vec![3, 3], vec![4])
    );
    tx.send(vec![5]).unwrap();
    assert_eq!(rx.recv().unwrap(), [5]);
}

/// A process killed while it holds a pack of a batch (taking messages from it: here the
/// words of a dead process's slot and the pack's stamp say so, as they would): the next
/// receive finds the pack held, looks for dead peers, lets go of it for the dead holder, and
/// gets the messages it had not taken, in order; their count and the ring's cells come back.
#[test]
fn a_pack_held_by_a_dead_process_is_let_go() {
    let _forks = forks();
    let (tx, rx) = channel::<u8>(16).unwrap();
    assert_eq!(tx.send_batch([1u8, 2, 3, 4]), Ok(4));
    let pid = a_dead_pid();
    let hdr = tx.chan.hdr();
    let dead = claim_slot(hdr, Identity { pid, start: 0 }, false).expect("a free slot");
    let slot = &hdr.procs[dead];
    let taker = Taker {
        intent: &slot.claims[3],
        range: &slot.sends[3].recv_span,
        owner: holder_id(dead, 3),
    };
    ring::tests::DIE_HOLDING.set(true);
    let took = tx.chan.ring().try_pop_batch(&taker, 2, |_| ());
    ring::tests::DIE_HOLDING.set(false);
    assert_eq!(took, 0, "the holder died before it read");
    let long = Duration::from_secs(30);
    assert_eq!(rx.try_recv(), Ok(3), "let go within try_recv's wait");
    assert_eq!(rx.recv_timeout(long), Ok(4));
    assert!(rx.is_empty(), "the dead holder's two messages are counted");
    for v in 0..64u8 {
        assert_eq!(tx.send_batch([v, v]), Ok(2));
        assert_eq!(rx.recv_timeout(long), Ok(v));
        assert_eq!(rx.recv_timeout(long), Ok(v));
    }
}

/// A slot reserved for a child being forked is reaped after `PENDING_GRACE` only if the
/// child will not take it over: kept, past the grace, while the child whose pid the parent
/// noted lives (it has only not had a CPU yet: on a loaded machine a child of a burst of
/// forks waits seconds, and reaping its slot disconnected a channel it still held), reaped
/// once that child is gone. The counts it carries go with it.
#[test]
fn a_pending_slot_is_kept_while_its_child_lives() {
    let _forks = forks();
    let (tx, _rx) = channel::<u8>(1).unwrap();
    let hdr = tx.chan.hdr();
    let me = Identity {
        pid: procs::my_pid(),
        start: 0,
    };
    let i = claim_slot(hdr, me, true).expect("a free slot");
    let slot = &hdr.procs[i];
    slot.inh_senders.store(1, Ordering::Relaxed);
    hdr.conn.senders.fetch_add(1, Ordering::Relaxed);
    // Reserved long ago, for a child that is alive (this test's parent, as a stand-in).
    slot.pending_since.store(0, Ordering::Relaxed);
    slot.pending
        .store(std::os::unix::process::parent_id(), Ordering::Relaxed);
    tx.chan.reap();
    assert_eq!(
        slot.pid.load(Ordering::Relaxed),
        me.pid,
        "kept while it lives"
    );
    assert_eq!(hdr.conn.senders.load(Ordering::Relaxed), 2);
    let dead = a_dead_pid();
    slot.pending.store(dead, Ordering::Relaxed);
    tx.chan.reap();
    assert_ne!(
        slot.pid.load(Ordering::Relaxed),
        me.pid,
        "reaped once it is gone"
    );
    assert_eq!(hdr.conn.senders.load(Ordering::Relaxed), 1);
}
