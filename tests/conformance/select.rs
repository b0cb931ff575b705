//! Select: waiting on several channel operations of one backend at once — the builder
//! ([`Select`]), the [`select!`](uniconc::select!) macro, the timers, and the async answers
//! (`select_async`, `tokio::select!` over the `_async` forms).
//!
//! What every test checks in the end is the select contract: the operation reported is the
//! one performed, exactly once, and the others are untouched (a message stays queued, a send
//! arm's value stays in its slot).

use std::time::{Duration, Instant};

use uniconc::prelude::*;
use uniconc::select::{self, Select, SelectTimeoutError, TrySelectError};
use uniconc::{ErrorKind, JoinError, RecvError, SendError, TryRecvError};

use crate::support::{LONG, SHORT, block_on, pause, stress};

/// One operation of two ready: exactly one is performed, the other channel keeps its message;
/// then the one still ready is taken by the next select of the same builder.
pub(crate) fn select_takes_one_ready_and_leaves_the_others<B: Backend>() {
    let (tx_a, rx_a) = B::channel::<u32>(4).unwrap();
    let (tx_b, rx_b) = B::channel::<String>(4).unwrap();
    let (_tx_c, rx_c) = B::channel::<u64>(4).unwrap();

    // Only b ready: b is taken, a and c are untouched.
    tx_b.send("two".to_string()).unwrap();
    let mut sel = Select::new();
    let ia = sel.recv(&rx_a);
    let ib = sel.recv(&rx_b);
    let ic = sel.recv(&rx_c);
    let oper = sel.try_select().expect("b is ready");
    assert_eq!(oper.index(), ib);
    assert_eq!(oper.recv(&rx_b), Ok("two".to_string()));
    assert_eq!(rx_b.len(), 0);

    // Both a and b ready: exactly one message is taken.
    tx_a.send(1).unwrap();
    tx_b.send("three".to_string()).unwrap();
    let oper = sel.select_timeout(LONG).expect("two are ready");
    let first = oper.index();
    if first == ia {
        assert_eq!(oper.recv(&rx_a), Ok(1));
    } else {
        assert_eq!(first, ib, "c was never ready");
        assert_eq!(oper.recv(&rx_b), Ok("three".to_string()));
    }
    assert_eq!(rx_a.len() + rx_b.len(), 1, "exactly one message was taken");

    // The other is taken next; then nothing is left.
    let oper = sel.select_timeout(LONG).expect("one is still ready");
    assert_ne!(oper.index(), first);
    assert_ne!(oper.index(), ic);
    if oper.index() == ia {
        assert_eq!(oper.recv(&rx_a), Ok(1));
    } else {
        assert_eq!(oper.recv(&rx_b), Ok("three".to_string()));
    }
    assert_eq!(rx_a.len() + rx_b.len() + rx_c.len(), 0);
    assert_eq!(sel.try_select().unwrap_err(), TrySelectError);
}

/// Nothing ready: `try_select` and a `default` arm say so at once and take nothing; the
/// channels work as before.
pub(crate) fn select_try_select_on_nothing_ready<B: Backend>() {
    let (tx_a, rx_a) = B::channel::<u32>(1).unwrap();
    let (tx_b, rx_b) = B::channel::<u32>(1).unwrap();
    {
        let mut sel = Select::new();
        sel.recv(&rx_a);
        sel.recv(&rx_b);
        assert_eq!(sel.try_select().unwrap_err(), TrySelectError);
        let err: uniconc::Error = TrySelectError.into();
        assert_eq!(err.kind(), ErrorKind::WouldBlock);
    }
    let ran_default = uniconc::select! {
        recv(rx_a) -> _ => false,
        recv(rx_b) -> _ => false,
        default => true,
    };
    assert!(ran_default);
    tx_a.send(1).unwrap();
    tx_b.send(2).unwrap();
    assert_eq!(rx_a.try_recv(), Ok(1));
    assert_eq!(rx_b.try_recv(), Ok(2));
}

/// The three ways a select stops waiting: `select_timeout`/`select_deadline`, a
/// `default(timeout)` arm, and an `after` timer arm. Each waits at least its time and takes
/// nothing; a deadline already past still performs an operation that is ready.
pub(crate) fn select_timeouts<B: Backend>() {
    let (tx, rx) = B::channel::<u32>(1).unwrap();
    let (_tx2, rx2) = B::channel::<u32>(1).unwrap();
    let mut sel = Select::new();
    let i = sel.recv(&rx);
    sel.recv(&rx2);

    let t0 = Instant::now();
    assert_eq!(sel.select_timeout(SHORT).unwrap_err(), SelectTimeoutError);
    assert!(t0.elapsed() >= SHORT, "select_timeout returned early");
    let err: uniconc::Error = SelectTimeoutError.into();
    assert_eq!(err.kind(), ErrorKind::Timeout);

    let t0 = Instant::now();
    assert!(sel.select_deadline(t0 + SHORT).is_err());
    assert!(t0.elapsed() >= SHORT, "select_deadline returned early");

    tx.send(7).unwrap();
    let oper = sel
        .select_deadline(Instant::now() - Duration::from_millis(1))
        .expect("a past deadline still performs what is ready");
    assert_eq!(oper.index(), i);
    assert_eq!(oper.recv(&rx), Ok(7));
    drop(sel);

    let t0 = Instant::now();
    let timed_out = uniconc::select! {
        recv(rx) -> _ => false,
        recv(rx2) -> _ => false,
        default(SHORT) => true,
    };
    assert!(timed_out);
    assert!(t0.elapsed() >= SHORT, "default(timeout) ran early");

    let t0 = Instant::now();
    let timeout = select::after(SHORT);
    let fired = uniconc::select! {
        recv(rx) -> _ => None,
        recv(timeout) -> at => Some(at.expect("a timer delivers the time")),
    };
    let at = fired.expect("the after arm fired");
    assert!(at >= t0 + SHORT, "after fired early");
    assert!(t0.elapsed() >= SHORT);

    // Nothing was taken by the timeouts.
    tx.send(8).unwrap();
    assert_eq!(rx.try_recv(), Ok(8));
}

/// A receive whose senders are all gone fires with `Disconnected` (after the queued messages),
/// when already disconnected and when the last sender goes while the select waits; `close()`
/// the same; a send to a channel without receivers fires with `Disconnected(value)`.
pub(crate) fn select_disconnection_is_a_result<B: Backend>() {
    let (_tx_idle, rx_idle) = B::channel::<u32>(1).unwrap();

    // Already gone: the queued message first, then Disconnected.
    let (tx, rx) = B::channel::<u32>(2).unwrap();
    tx.send(1).unwrap();
    drop(tx);
    let mut sel = Select::new();
    sel.recv(&rx_idle);
    let i = sel.recv(&rx);
    let oper = sel.select_timeout(LONG).unwrap();
    assert_eq!(oper.index(), i);
    assert_eq!(oper.recv(&rx), Ok(1));
    let oper = sel.select_timeout(LONG).unwrap();
    assert_eq!(oper.index(), i);
    assert_eq!(oper.recv(&rx), Err(RecvError::Disconnected));
    drop(sel);

    // The only sender is in another unit, which ends while the select waits.
    let (tx, rx) = B::channel::<u32>(1).unwrap();
    let unit = B::spawn(move || {
        pause();
        drop(tx);
    })
    .unwrap();
    let mut sel = Select::new();
    sel.recv(&rx_idle);
    let i = sel.recv(&rx);
    let oper = sel
        .select_timeout(LONG)
        .expect("the disconnection wakes the select");
    assert_eq!(oper.index(), i);
    assert_eq!(oper.recv(&rx), Err(RecvError::Disconnected));
    drop(sel);
    unit.join().unwrap();

    // close(): drains, then Disconnected, for the select as for recv.
    let (tx, rx) = B::channel::<u32>(2).unwrap();
    tx.send(5).unwrap();
    tx.close();
    let got = uniconc::select! {
        recv(rx_idle) -> _ => unreachable!("nothing was sent on it"),
        recv(rx) -> v => v,
    };
    assert_eq!(got, Ok(5));
    let got = uniconc::select! {
        recv(rx_idle) -> _ => unreachable!("nothing was sent on it"),
        recv(rx) -> v => v,
    };
    assert_eq!(got, Err(RecvError::Disconnected));

    // A send arm: a closed channel and one without receivers give the value back.
    let mut slot = Some(9);
    let mut sel = Select::new();
    sel.recv(&rx_idle);
    let i = sel.send(&tx, &mut slot);
    let oper = sel.select_timeout(LONG).unwrap();
    assert_eq!(oper.index(), i);
    assert!(matches!(oper.send(&tx), Err(SendError::Disconnected(9))));
    drop(sel);
    assert_eq!(slot, None, "the value went into the error");

    let (tx, rx) = B::channel::<u32>(1).unwrap();
    drop(rx);
    let got = uniconc::select! {
        recv(rx_idle) -> _ => None,
        send(tx, 3) -> r => Some(r),
    };
    assert!(matches!(got, Some(Err(SendError::Disconnected(3)))));
}

/// Both operations always ready: over 10 000 selects each is chosen 40–60% of the time (the
/// random start; nothing timed).
pub(crate) fn select_fair_over_10k_rounds<B: Backend>() {
    let rounds = 10_000;
    let (tx_a, rx_a) = B::channel::<u32>(2).unwrap();
    let (tx_b, rx_b) = B::channel::<u32>(2).unwrap();
    tx_a.send(0).unwrap();
    tx_b.send(0).unwrap();
    let mut sel = Select::new();
    let ia = sel.recv(&rx_a);
    let ib = sel.recv(&rx_b);
    let mut counts = [0u32; 2];
    for round in 1..=rounds {
        let oper = sel.select_timeout(LONG).expect("both are ready");
        if oper.index() == ia {
            oper.recv(&rx_a).unwrap();
            tx_a.send(round).unwrap();
            counts[0] += 1;
        } else {
            assert_eq!(oper.index(), ib);
            oper.recv(&rx_b).unwrap();
            tx_b.send(round).unwrap();
            counts[1] += 1;
        }
    }
    let (lo, hi) = (rounds * 4 / 10, rounds * 6 / 10);
    assert!(
        counts.iter().all(|&c| (lo..=hi).contains(&c)),
        "not fair: {counts:?} of {rounds}"
    );
}

/// A send arm on a full channel: when another operation fires, its value stays in the slot
/// (nothing sent, nothing dropped); it fires once another unit makes room. The macro's send
/// arm loses to a `default` the same way.
pub(crate) fn select_send_arm_on_a_full_channel<B: Backend>() {
    let (tx_full, rx_full) = B::channel::<u32>(1).unwrap();
    let (tx_other, rx_other) = B::channel::<u32>(1).unwrap();
    tx_full.send(0).unwrap();
    tx_other.send(42).unwrap();

    let mut slot = Some(5);
    {
        let mut sel = Select::new();
        let is = sel.send(&tx_full, &mut slot);
        let ir = sel.recv(&rx_other);
        let oper = sel.select_timeout(LONG).unwrap();
        assert_eq!(oper.index(), ir, "the full channel's send cannot fire");
        assert_ne!(is, ir);
        assert_eq!(oper.recv(&rx_other), Ok(42));
        assert_eq!(sel.try_select().unwrap_err(), TrySelectError);
    }
    assert_eq!(slot, Some(5), "the unsent value stays in its slot");
    assert_eq!(rx_full.len(), 1);

    // Another unit takes the queued message after a while: the room wakes the select.
    let rx = rx_full.clone();
    let drainer = B::spawn(move || {
        pause();
        rx.recv_timeout(LONG).ok()
    })
    .unwrap();
    {
        let mut sel = Select::new();
        sel.recv(&rx_other);
        let is = sel.send(&tx_full, &mut slot);
        let oper = sel.select_timeout(LONG).expect("room appeared");
        assert_eq!(oper.index(), is);
        assert_eq!(oper.send(&tx_full), Ok(()));
    }
    assert_eq!(slot, None, "sent");
    assert_eq!(drainer.join().unwrap(), Some(0));
    assert_eq!(rx_full.recv_timeout(LONG), Ok(5));

    // The macro: a send arm that cannot fire loses to `default`; one that can, fires.
    tx_full.send(1).unwrap();
    let sent = uniconc::select! {
        send(tx_full, 2) -> r => r.is_ok(),
        default => false,
    };
    assert!(!sent);
    assert_eq!(rx_full.try_recv(), Ok(1));
    assert_eq!(
        rx_full.try_recv(),
        Err(TryRecvError::Empty),
        "2 was not sent"
    );
    let sent = uniconc::select! {
        send(tx_full, 3) -> r => r.is_ok(),
        default => false,
    };
    assert!(sent);
    assert_eq!(rx_full.try_recv(), Ok(3));
}

/// A select blocked on two channels is woken by a message another unit sends (on the process
/// backend, a child process); then many messages sent at arbitrary moments on either channel
/// each wake the select once, in order, none lost.
pub(crate) fn select_woken_by_another_unit<B: Backend>() {
    let (tx_a, rx_a) = B::channel::<u64>(4).unwrap();
    let (tx_b, rx_b) = B::channel::<u64>(4).unwrap();
    let unit = {
        let tx_b = tx_b.clone();
        B::spawn(move || {
            pause();
            tx_b.send(11).is_ok()
        })
        .unwrap()
    };
    {
        let mut sel = Select::new();
        sel.recv(&rx_a);
        let ib = sel.recv(&rx_b);
        let oper = sel
            .select_timeout(LONG)
            .expect("the unit's send wakes the select");
        assert_eq!(oper.index(), ib);
        assert_eq!(oper.recv(&rx_b), Ok(11));
    }
    assert_eq!(unit.join(), Ok(true));

    // No lost wake-up: the unit sends n messages, alternating channels in runs of varying
    // length; the select takes each once, in each channel's order.
    let n = stress(2_000) as u64;
    let unit = B::spawn(move || {
        for i in 0..n {
            let tx = if (i / (1 + i % 7)) % 2 == 0 {
                &tx_a
            } else {
                &tx_b
            };
            tx.send(i).unwrap();
            if i % 97 == 0 {
                std::thread::yield_now();
            }
        }
    })
    .unwrap();
    let mut sel = Select::new();
    let ia = sel.recv(&rx_a);
    let ib = sel.recv(&rx_b);
    let (mut last_a, mut last_b, mut sum, mut count) = (None, None, 0u64, 0);
    let mut open = 2;
    while open > 0 {
        let oper = sel.select_timeout(LONG).expect("no lost wake-up");
        let i = oper.index();
        let (got, last) = if i == ia {
            (oper.recv(&rx_a), &mut last_a)
        } else {
            assert_eq!(i, ib);
            (oper.recv(&rx_b), &mut last_b)
        };
        match got {
            Ok(v) => {
                assert!(
                    last.is_none_or(|l| l < v),
                    "out of order: {v} after {last:?}"
                );
                *last = Some(v);
                sum += v;
                count += 1;
            }
            // The unit ended: a drained channel without senders is ready, with this result.
            Err(RecvError::Disconnected) => {
                sel.remove(i);
                open -= 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(count, n, "every message once");
    assert_eq!(sum, n * (n - 1) / 2);
    unit.join().unwrap();
}

/// Several units selecting over the same two channels: every message is taken exactly once.
/// Each consumer removes an operation whose channel is disconnected and ends when both are.
pub(crate) fn select_mpmc_exactly_once<B: Backend>() {
    let per_channel = stress(5_000) as u64;
    let (tx_a, rx_a) = B::channel::<u64>(8).unwrap();
    let (tx_b, rx_b) = B::channel::<u64>(8).unwrap();
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let (rx_a, rx_b) = (rx_a.clone(), rx_b.clone());
            B::spawn(move || {
                let (mut count, mut sum) = (0u64, 0u64);
                let mut sel = Select::new();
                let ia = sel.recv(&rx_a);
                let ib = sel.recv(&rx_b);
                let mut open = 2;
                while open > 0 {
                    let oper = sel
                        .select_timeout(LONG)
                        .expect("a watchdog on the consumer");
                    let i = oper.index();
                    let got = if i == ia {
                        oper.recv(&rx_a)
                    } else {
                        oper.recv(&rx_b)
                    };
                    match got {
                        Ok(v) => {
                            count += 1;
                            sum += v;
                        }
                        Err(RecvError::Disconnected) => {
                            sel.remove(i);
                            open -= 1;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                let _ = ib;
                (count, sum)
            })
            .unwrap()
        })
        .collect();
    drop((rx_a, rx_b));
    for i in 0..per_channel {
        tx_a.send(i).unwrap();
        tx_b.send(per_channel + i).unwrap();
    }
    drop((tx_a, tx_b));
    let (mut count, mut sum) = (0, 0);
    for c in consumers {
        let (c, s) = c.join().unwrap();
        count += c;
        sum += s;
    }
    let total = 2 * per_channel;
    assert_eq!(count, total, "every message once");
    assert_eq!(sum, total * (total - 1) / 2);
}

/// The only sender of a channel is in a unit that goes away while a select waits on the
/// channel: where units can be killed (`CAN_KILL`), it is killed (SIGKILL on the process
/// backend); elsewhere `kill` is refused and the unit is told to end. Either way the select
/// wakes with `Disconnected` for that operation.
pub(crate) fn select_peer_killed_wakes_with_disconnected<B: Backend>() {
    let (_tx_idle, rx_idle) = B::channel::<u32>(1).unwrap();
    let (tx, rx) = B::channel::<u32>(1).unwrap();
    let (started, stop) = (B::event().unwrap(), B::event().unwrap());
    let unit = {
        let (started, stop) = (started.clone(), stop.clone());
        B::spawn(move || {
            let _only_sender = tx;
            started.set();
            stop.wait_timeout(LONG).is_ok()
        })
        .unwrap()
    };
    started.wait_timeout(LONG).unwrap();
    std::thread::scope(|s| {
        let stopper = s.spawn(move || {
            pause(); // let the select below go to sleep first (not needed for the outcome)
            if B::CAN_KILL {
                unit.kill().expect("CAN_KILL: a running unit can be killed");
                assert_eq!(unit.join(), Err(JoinError::Killed(9)));
            } else {
                let err = unit
                    .kill()
                    .expect_err("without CAN_KILL, kill() is refused");
                assert_eq!(err.kind(), ErrorKind::Unsupported);
                stop.set();
                assert_eq!(unit.join(), Ok(true));
            }
        });
        let mut sel = Select::new();
        sel.recv(&rx_idle);
        let i = sel.recv(&rx);
        let oper = sel
            .select_timeout(LONG)
            .expect("the sender's end wakes the select");
        assert_eq!(oper.index(), i);
        assert_eq!(oper.recv(&rx), Err(RecvError::Disconnected));
        stopper.join().unwrap();
    });
}

/// `select_async` in a unit started with `spawn_async`: woken by a send from the test, with a
/// timer arm, and cancelled (dropped) without taking anything.
pub(crate) fn select_async_in_spawn_async<B: Backend>() {
    let (tx_a, rx_a) = B::channel::<u32>(1).unwrap();
    let (tx_b, rx_b) = B::channel::<u32>(1).unwrap();
    let unit = B::spawn_async(async move {
        let mut sel = Select::new();
        let ia = sel.recv(&rx_a);
        let ib = sel.recv(&rx_b);
        let oper = sel.select_async().await;
        let i = oper.index();
        let v = if i == ia {
            oper.recv(&rx_a)
        } else {
            oper.recv(&rx_b)
        };
        (i == ib, v.ok())
    })
    .unwrap();
    pause();
    tx_b.send(5).unwrap();
    assert_eq!(unit.join(), Ok((true, Some(5))));
    drop(tx_a);

    // A timer arm, and a cancelled select that takes nothing.
    let (tx, rx) = B::channel::<u32>(1).unwrap();
    let (timer_fired, after_cancel) = block_on(async {
        let timer = select::after(SHORT);
        let fired = {
            let mut sel = Select::new();
            sel.recv(&rx);
            let it = sel.recv(&timer);
            let oper = sel.select_async().await;
            oper.index() == it && oper.recv(&timer).is_ok()
        };
        {
            let mut sel = Select::new();
            sel.recv(&rx);
            let cancelled = tokio::time::timeout(SHORT, sel.select_async()).await;
            assert!(cancelled.is_err(), "nothing was ready");
        }
        tx.send_async(6).await.unwrap();
        (fired, rx.recv_async().await)
    });
    assert!(timer_fired);
    assert_eq!(after_cancel, Ok(6), "the cancelled select took nothing");
}

/// The async answer: `tokio::select!` over `recv_async` futures of several channels loses no
/// message — the branch that loses is dropped before it takes one (the `_async` forms are
/// cancel-safe). Both channels ready every round: each round takes exactly one.
pub(crate) fn select_tokio_select_over_async_forms_loses_nothing<B: Backend>() {
    let rounds = 200u32;
    let (tx_a, rx_a) = B::channel::<u32>(rounds as usize).unwrap();
    let (tx_b, rx_b) = B::channel::<u32>(rounds as usize).unwrap();
    for i in 0..rounds {
        tx_a.send(i).unwrap();
        tx_b.send(i).unwrap();
    }
    let (from_a, from_b) = block_on(async {
        let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            tokio::select! {
                v = rx_a.recv_async() => from_a.push(v.unwrap()),
                v = rx_b.recv_async() => from_b.push(v.unwrap()),
            }
        }
        (from_a, from_b)
    });
    assert_eq!(from_a.len() + from_b.len(), rounds as usize);
    assert_eq!(
        rx_a.len() + rx_b.len(),
        rounds as usize,
        "the losers took nothing"
    );
    // Each channel's messages came in order, and the rest are still queued after them.
    let rest_a: Vec<u32> = rx_a.try_iter().collect();
    let rest_b: Vec<u32> = rx_b.try_iter().collect();
    assert_eq!([from_a, rest_a].concat(), (0..rounds).collect::<Vec<_>>());
    assert_eq!([from_b, rest_b].concat(), (0..rounds).collect::<Vec<_>>());
}

/// The macro: recv, send and default arms; its value is the arm's; `break` and `?` work in
/// arms.
pub(crate) fn select_macro_arms<B: Backend>() {
    let (tx_in, rx_in) = B::channel::<u32>(4).unwrap();
    let (tx_out, rx_out) = B::channel::<u32>(1).unwrap();
    tx_out.send(0).unwrap(); // full

    // A recv arm wins over a send arm that cannot fire.
    tx_in.send(7).unwrap();
    let got = uniconc::select! {
        recv(rx_in) -> v => v.unwrap(),
        send(tx_out, 100) -> _ => unreachable!("the channel is full"),
        default => 99,
    };
    assert_eq!(got, 7);

    // Nothing ready: default.
    let got = uniconc::select! {
        recv(rx_in) -> v => v.unwrap(),
        send(tx_out, 100) -> _ => unreachable!("the channel is full"),
        default => 99,
    };
    assert_eq!(got, 99);

    // Room: the send arm fires; block bodies need no comma.
    assert_eq!(rx_out.recv(), Ok(0));
    let got = uniconc::select! {
        recv(rx_in) -> _ => { 0 }
        send(tx_out, 100) -> r => { r.unwrap(); 1 }
    };
    assert_eq!(got, 1);
    assert_eq!(rx_out.recv(), Ok(100));

    // `break` out of a loop, `?` in an arm.
    fn drain<B: Backend>(rx: &B::Receiver<u32>, stop: &B::Receiver<()>) -> Result<u32, RecvError> {
        let mut sum = 0;
        loop {
            uniconc::select! {
                recv(rx) -> v => sum += v?,
                recv(stop) -> _ => break,
            }
        }
        Ok(sum)
    }
    let (tx_stop, rx_stop) = B::channel::<()>(1).unwrap();
    tx_in.send(1).unwrap();
    tx_in.send(2).unwrap();
    tx_stop.send(()).unwrap();
    // The stop may be taken before, between or after the jobs: what was summed is what left
    // the job channel.
    let sum = drain::<B>(&rx_in, &rx_stop).expect("stopped by the stop channel");
    let left: u32 = rx_in.try_iter().sum();
    assert_eq!(sum + left, 3);
    assert_eq!(rx_stop.len(), 0, "the stop was taken once");
    // Every job sender gone: `?` returns the disconnection from inside the arm.
    drop(tx_in);
    assert_eq!(drain::<B>(&rx_in, &rx_stop), Err(RecvError::Disconnected));
}

/// `ready` and its forms say which operation is ready without performing it.
pub(crate) fn select_ready_forms<B: Backend>() {
    let (tx_a, rx_a) = B::channel::<u32>(1).unwrap();
    let (tx_b, rx_b) = B::channel::<u32>(1).unwrap();
    let mut sel = Select::new();
    let ia = sel.recv(&rx_a);
    let ib = sel.recv(&rx_b);
    assert_eq!(sel.try_ready(), Err(TrySelectError));
    let t0 = Instant::now();
    assert_eq!(sel.ready_timeout(SHORT), Err(SelectTimeoutError));
    assert!(t0.elapsed() >= SHORT);
    assert!(sel.ready_deadline(Instant::now() + SHORT).is_err());

    tx_a.send(1).unwrap();
    assert_eq!(sel.try_ready(), Ok(ia));
    assert_eq!(sel.ready(), ia);
    assert_eq!(rx_a.len(), 1, "ready performs nothing");
    assert_eq!(rx_a.try_recv(), Ok(1));

    // Woken by another unit.
    let unit = B::spawn(move || {
        pause();
        tx_b.send(2).is_ok()
    })
    .unwrap();
    assert_eq!(sel.ready_timeout(LONG), Ok(ib));
    assert_eq!(rx_b.try_recv(), Ok(2));
    assert_eq!(unit.join(), Ok(true));
    drop(tx_a);
}

/// Timers in a select with channels: `tick` fires repeatedly while the channel is quiet,
/// `never` never fires, an `after` fires once; the channel's message is taken when it comes.
pub(crate) fn select_timers_with_channels<B: Backend>() {
    let (tx, rx) = B::channel::<u32>(1).unwrap();
    let ticker = select::tick(Duration::from_millis(5));
    let off = select::never();
    let t0 = Instant::now();
    let mut ticks = 0;
    while ticks < 3 {
        uniconc::select! {
            recv(rx) -> _ => unreachable!("nothing was sent"),
            recv(off) -> _ => unreachable!("never fires"),
            recv(ticker) -> at => {
                assert!(at.unwrap() >= t0);
                ticks += 1;
            }
        }
    }
    assert!(t0.elapsed() >= Duration::from_millis(15), "3 ticks of 5 ms");

    let once = select::after(Duration::ZERO);
    let mut sel = Select::new();
    let ir = sel.recv(&rx);
    let io = sel.recv(&once);
    sel.recv(&off);
    let oper = sel.select_timeout(LONG).unwrap();
    assert_eq!(oper.index(), io);
    assert!(oper.recv(&once).is_ok());
    assert!(sel.select_timeout(SHORT).is_err(), "after fires once");
    tx.send(3).unwrap();
    let oper = sel.select_timeout(LONG).unwrap();
    assert_eq!(oper.index(), ir);
    assert_eq!(oper.recv(&rx), Ok(3));
}
