//! Channel behaviour: MPMC, sync/async interop, cancel safety, disconnection, blocking calls
//! inside a runtime.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{rt, scale, watchdog};
use uniconc_async::{channel, spawn_async, unbounded};
use uniconc_core::{JoinHandle as _, Receiver as _, RecvError, Sender as _, TryRecvError};

fn assert_send<T: Send>(_: &T) {}

#[test]
fn futures_are_send() {
    let (tx, rx) = channel::<Vec<u8>>(1).unwrap();
    let s = tx.send_async(vec![]);
    assert_send(&s);
    let r = rx.recv_async();
    assert_send(&r);
}

#[test]
fn sync_producer_async_consumers_outside_a_runtime() {
    watchdog(60, || {
        let n = scale(20_000) as u64;
        let (tx, rx) = channel::<u64>(16).unwrap();
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                spawn_async(async move {
                    let mut sum = 0u64;
                    let mut count = 0u64;
                    while let Ok(v) = rx.recv_async().await {
                        sum += v;
                        count += 1;
                    }
                    (sum, count)
                })
                .unwrap()
            })
            .collect();
        drop(rx);
        for i in 0..n {
            tx.send(i).unwrap();
        }
        drop(tx);
        let (sum, count) = consumers
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        assert_eq!(count, n);
        assert_eq!(sum, n * (n - 1) / 2);
    });
}

#[test]
fn mpmc_every_message_exactly_once() {
    watchdog(120, || {
        let per = scale(20_000);
        let producers = 4;
        let rt = rt();
        let (tx, rx) = channel::<usize>(8).unwrap();
        let seen = rt.block_on(async move {
            let mut ps = Vec::new();
            for p in 0..producers {
                let tx = tx.clone();
                ps.push(tokio::spawn(async move {
                    for i in 0..per {
                        tx.send_async(p * per + i).await.unwrap();
                    }
                }));
            }
            drop(tx);
            let mut cs = Vec::new();
            for _ in 0..4 {
                let rx = rx.clone();
                cs.push(tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Ok(v) = rx.recv_async().await {
                        got.push(v);
                    }
                    got
                }));
            }
            for p in ps {
                p.await.unwrap();
            }
            let mut all = Vec::new();
            for c in cs {
                all.extend(c.await.unwrap());
            }
            all
        });
        assert_eq!(seen.len(), producers * per);
        let set: HashSet<_> = seen.into_iter().collect();
        assert_eq!(set.len(), producers * per);
    });
}

#[test]
fn blocking_and_async_mixed_on_one_channel() {
    watchdog(60, || {
        let n = scale(5_000);
        let rt = rt();
        let (tx, rx) = channel::<usize>(4).unwrap();
        let sum = Arc::new(AtomicUsize::new(0));
        // Two blocking receivers on plain threads, two async ones on the runtime.
        let mut threads = Vec::new();
        for _ in 0..2 {
            let rx = rx.clone();
            let sum = sum.clone();
            threads.push(std::thread::spawn(move || {
                for v in rx.iter() {
                    sum.fetch_add(v, Ordering::Relaxed);
                }
            }));
        }
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let rx = rx.clone();
            let sum = sum.clone();
            tasks.push(rt.spawn(async move {
                while let Ok(v) = rx.recv_async().await {
                    sum.fetch_add(v, Ordering::Relaxed);
                }
            }));
        }
        drop(rx);
        let tx2 = tx.clone();
        let producer = rt.spawn(async move {
            for i in 0..n {
                tx2.send_async(i).await.unwrap();
            }
        });
        for i in 0..n {
            tx.send(i).unwrap();
        }
        rt.block_on(producer).unwrap();
        drop(tx);
        for t in threads {
            t.join().unwrap();
        }
        for t in tasks {
            rt.block_on(t).unwrap();
        }
        assert_eq!(sum.load(Ordering::Relaxed), 2 * (n * (n - 1) / 2));
    });
}

/// Races `recv_async` against a timer many times: every message is received exactly once,
/// and with an empty channel the timer wins (the future was pending, not blocking).
#[test]
fn cancelled_recv_loses_nothing() {
    watchdog(120, || {
        let n = scale(2_000);
        let rt = rt();
        rt.block_on(async move {
            let (tx, rx) = channel::<usize>(4).unwrap();
            let producer = tokio::spawn(async move {
                for i in 0..n {
                    tx.send_async(i).await.unwrap();
                    if i % 7 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            });
            let mut got = Vec::new();
            let mut timer_wins = 0usize;
            loop {
                tokio::select! {
                    r = rx.recv_async() => match r {
                        Ok(v) => got.push(v),
                        Err(RecvError::Disconnected) => break,
                        Err(e) => panic!("{e}"),
                    },
                    () = tokio::time::sleep(Duration::from_micros(50)) => timer_wins += 1,
                }
            }
            producer.await.unwrap();
            assert_eq!(
                got,
                (0..n).collect::<Vec<_>>(),
                "lost, duplicated or reordered"
            );
            // Not asserted: `timer_wins` depends on scheduling.
            let _ = timer_wins;

            // Empty channel: the timer must win, every time.
            let (_tx, rx) = channel::<u8>(1).unwrap();
            for _ in 0..20 {
                tokio::select! {
                    _ = rx.recv_async() => panic!("received from an empty channel"),
                    () = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
            }
            assert!(rx.is_empty());
        });
    });
}

#[test]
fn cancelled_send_drops_only_its_value() {
    watchdog(30, || {
        let rt = rt();
        rt.block_on(async {
            let (tx, rx) = channel::<u32>(1).unwrap();
            tx.send_async(1).await.unwrap();
            tokio::select! {
                _ = tx.send_async(2) => panic!("sent into a full channel"),
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
            // The cancelled send held no slot: after one recv there is room for exactly one.
            assert_eq!(rx.recv_async().await.unwrap(), 1);
            tx.try_send(3).unwrap();
            assert!(tx.try_send(4).unwrap_err().is_full());
            assert_eq!(rx.try_recv().unwrap(), 3);
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        });
    });
}

/// A woken receiver that is cancelled before it takes its message passes the wake-up on:
/// the other waiting receiver still gets the message.
#[test]
fn wakeup_is_passed_on_by_a_cancelled_receiver() {
    watchdog(30, || {
        let rt = rt();
        rt.block_on(async {
            let (tx, rx) = channel::<u32>(1).unwrap();
            let rx2 = rx.clone();
            let waiter = tokio::spawn(async move { rx2.recv_async().await });
            // Register a first waiter by polling once, by hand.
            let mut first = Box::pin(rx.recv_async());
            let waker = futures_noop_waker();
            let mut cx = std::task::Context::from_waker(&waker);
            assert!(first.as_mut().poll(&mut cx).is_pending());
            tokio::time::sleep(Duration::from_millis(10)).await; // let `waiter` register
            tx.send_async(9).await.unwrap(); // wakes `first` (the first in line)
            drop(first); // ... which is dropped without taking it
            assert_eq!(waiter.await.unwrap().unwrap(), 9);
        });
    });
}

fn futures_noop_waker() -> std::task::Waker {
    std::task::Waker::noop().clone()
}

use std::future::Future as _;

#[test]
fn disconnect_wakes_async_receivers_and_senders() {
    watchdog(30, || {
        let rt = rt();
        rt.block_on(async {
            let (tx, rx) = channel::<u32>(1).unwrap();
            let rx2 = rx.clone();
            let r = tokio::spawn(async move { rx2.recv_async().await });
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(tx);
            assert_eq!(r.await.unwrap(), Err(RecvError::Disconnected));

            let (tx, rx) = channel::<u32>(1).unwrap();
            tx.send_async(1).await.unwrap();
            let tx2 = tx.clone();
            let s = tokio::spawn(async move { tx2.send_async(2).await });
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(rx);
            assert_eq!(s.await.unwrap().unwrap_err().into_inner(), 2);
            assert!(tx.is_closed());
        });
    });
}

#[test]
fn close_wakes_everyone_and_drains() {
    watchdog(30, || {
        let (tx, rx) = unbounded::<u32>().unwrap();
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        let rx2 = rx.clone();
        rx2.recv().unwrap();
        tx.close();
        assert!(tx.is_closed() && rx.is_closed());
        assert!(tx.send(3).unwrap_err().is_disconnected());
        assert_eq!(rx.recv().unwrap(), 2);
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
        assert_eq!(tx.capacity(), None);
    });
}

#[test]
fn blocking_recv_inside_a_multi_thread_runtime_does_not_deadlock() {
    watchdog(30, || {
        let rt = rt();
        rt.block_on(async {
            let (tx, rx) = channel::<u32>(1).unwrap();
            // A task that blocks (block_in_place) while another task sends.
            let consumer = tokio::spawn(async move { rx.recv().unwrap() });
            tokio::time::sleep(Duration::from_millis(10)).await;
            tx.send_async(5).await.unwrap();
            assert_eq!(consumer.await.unwrap(), 5);
        });
    });
}

#[test]
fn blocking_recv_on_a_current_thread_runtime_panics_clearly() {
    watchdog(30, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (_tx, rx) = channel::<u32>(1).unwrap();
        let r = rt.block_on(async move { tokio::spawn(async move { rx.recv() }).await });
        let e = r.unwrap_err();
        assert!(e.is_panic());
        let msg = uniconc_core::panic_message(&*e.into_panic());
        assert!(msg.contains("multi-threaded runtime"), "{msg}");
        // The `try_` forms never wait, so they work there.
        let (tx, rx) = channel::<u32>(1).unwrap();
        rt.block_on(async move {
            tx.try_send(1).unwrap();
            assert_eq!(rx.try_recv().unwrap(), 1);
            assert!(rx.recv_timeout(Duration::ZERO).unwrap_err().is_timeout());
        });
    });
}

#[test]
fn queued_messages_are_dropped_when_the_last_receiver_goes() {
    let marker = Arc::new(());
    let (tx, rx) = unbounded::<Arc<()>>().unwrap();
    tx.send(marker.clone()).unwrap();
    assert_eq!(Arc::strong_count(&marker), 2);
    drop(rx);
    assert_eq!(Arc::strong_count(&marker), 1);
    // And a failed send hands the value back.
    let back = tx.send(marker.clone()).unwrap_err().into_inner();
    assert!(Arc::ptr_eq(&back, &marker));
}

#[test]
fn works_inside_a_user_runtime() {
    watchdog(30, || {
        let rt = rt();
        let v = rt.block_on(async {
            let (tx, rx) = channel::<u32>(2).unwrap();
            let h = spawn_async(async move { rx.recv_async().await.unwrap() }).unwrap();
            tx.send_async(11).await.unwrap();
            let mut h = h;
            h.join_async().await.unwrap()
        });
        assert_eq!(v, 11);
    });
}

/// Many consumers, each racing `recv_async` against a short timer, many producers with small
/// capacity (senders wait too): every message arrives exactly once and nothing hangs, so no
/// wake-up is lost to a cancelled future (the pass-on rule).
#[test]
fn cancellation_stress_many_consumers() {
    watchdog(120, || {
        let per = scale(5_000);
        let rt = rt();
        let all = rt.block_on(async move {
            let (tx, rx) = channel::<usize>(2).unwrap();
            let mut ps = Vec::new();
            for p in 0..3 {
                let tx = tx.clone();
                ps.push(tokio::spawn(async move {
                    for i in 0..per {
                        // Senders are cancelled too: a cancelled send drops its own copy
                        // (`usize` is `Copy`), and the loop sends the value again.
                        loop {
                            tokio::select! {
                                r = tx.send_async(p * per + i) => { r.unwrap(); break; }
                                () = tokio::time::sleep(Duration::from_micros(20)) => {}
                            }
                        }
                    }
                }));
            }
            drop(tx);
            let mut cs = Vec::new();
            for _ in 0..4 {
                let rx = rx.clone();
                cs.push(tokio::spawn(async move {
                    let mut got = Vec::new();
                    loop {
                        tokio::select! {
                            r = rx.recv_async() => match r {
                                Ok(v) => got.push(v),
                                Err(_) => break,
                            },
                            () = tokio::time::sleep(Duration::from_micros(30)) => {}
                        }
                    }
                    got
                }));
            }
            drop(rx);
            for p in ps {
                p.await.unwrap();
            }
            let mut all = Vec::new();
            for c in cs {
                all.extend(c.await.unwrap());
            }
            all
        });
        assert_eq!(all.len(), 3 * per);
        let set: HashSet<_> = all.into_iter().collect();
        assert_eq!(set.len(), 3 * per);
    });
}

/// Thousands of receivers wait on one channel; half are cancelled (aborted); each of the
/// others still gets exactly one message (removal from the middle of the waiter list).
#[test]
fn many_waiters_on_one_channel_half_cancelled() {
    watchdog(120, || {
        let n = scale(1_000);
        let rt = rt();
        rt.block_on(async move {
            let (tx, rx) = channel::<usize>(n).unwrap();
            let mut keep = Vec::new();
            let mut cancel = Vec::new();
            for i in 0..2 * n {
                let rx = rx.clone();
                let h = tokio::spawn(async move { rx.recv_async().await.unwrap() });
                if i % 2 == 0 {
                    keep.push(h)
                } else {
                    cancel.push(h)
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // let them all wait
            for h in &cancel {
                h.abort();
            }
            for h in cancel {
                assert!(h.await.unwrap_err().is_cancelled());
            }
            for i in 0..n {
                tx.send_async(i).await.unwrap();
            }
            let mut got = HashSet::new();
            for h in keep {
                assert!(got.insert(h.await.unwrap()));
            }
            assert_eq!(got.len(), n);
            assert!(rx.is_empty());
        });
    });
}

/// Wraps a future: counts its polls and the wake-ups of the wakers it was polled with.
struct Counted<F> {
    inner: F,
    polls: Arc<AtomicUsize>,
    wakes: Arc<AtomicUsize>,
}

/// The waker handed to the inner future: counts, then wakes the real one.
struct CountingWaker {
    inner: std::task::Waker,
    wakes: Arc<AtomicUsize>,
}

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.inner.wake_by_ref();
    }
}

impl<F: std::future::Future + Unpin> std::future::Future for Counted<F> {
    type Output = F::Output;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        let waker = std::task::Waker::from(Arc::new(CountingWaker {
            inner: cx.waker().clone(),
            wakes: self.wakes.clone(),
        }));
        std::pin::Pin::new(&mut self.inner).poll(&mut std::task::Context::from_waker(&waker))
    }
}

/// Runs `fut` (which must wait) on a current-thread runtime with no time or I/O driver, while
/// a plain thread runs `other` once `fut` has been polled (so is waiting); returns `fut`'s
/// output, its polls and its wake-ups. With no timer in the runtime, only `other` can wake
/// `fut`: a lost wake-up hangs (the watchdog fails the test), a timer panics ("timers are
/// disabled"), and a self-wake or yield shows as extra polls.
fn woken_from_a_plain_thread<F, O>(
    fut: F,
    other: impl FnOnce() + Send + 'static,
) -> (O, usize, usize)
where
    F: std::future::Future<Output = O> + Unpin,
{
    let polls = Arc::new(AtomicUsize::new(0));
    let wakes = Arc::new(AtomicUsize::new(0));
    let seen = polls.clone();
    let thread = std::thread::spawn(move || {
        // Only this side waits for time: the future under test never does.
        while seen.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        other();
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let out = rt.block_on(Counted {
        inner: fut,
        polls: polls.clone(),
        wakes: wakes.clone(),
    });
    thread.join().unwrap();
    (
        out,
        polls.load(Ordering::SeqCst),
        wakes.load(Ordering::SeqCst),
    )
}

/// The wake path the tokio ping-pong of `compare` depends on: a message sent from a plain
/// thread wakes the async receiver exactly once, with no timer, no yield and no extra poll
/// (first poll: empty, registers; the send wakes it; second poll: takes the message).
#[test]
fn a_send_from_a_plain_thread_wakes_the_async_receiver_once_without_a_timer() {
    watchdog(30, || {
        let (tx, rx) = channel::<u32>(1).unwrap();
        let (got, polls, wakes) =
            woken_from_a_plain_thread(rx.recv_async(), move || tx.send(7).unwrap());
        assert_eq!(got, Ok(7));
        assert_eq!((polls, wakes), (2, 1), "(polls, wake-ups) of the receiver");
    });
}

/// The other direction: a receive on a plain thread frees the slot a waiting async sender
/// needs, and wakes it exactly once.
#[test]
fn a_recv_from_a_plain_thread_wakes_the_async_sender_once_without_a_timer() {
    watchdog(30, || {
        let (tx, rx) = channel::<u32>(1).unwrap();
        tx.try_send(1).unwrap(); // full
        let rx2 = rx.clone();
        let (sent, polls, wakes) = woken_from_a_plain_thread(tx.send_async(2), move || {
            assert_eq!(rx2.recv(), Ok(1));
        });
        assert!(sent.is_ok());
        assert_eq!((polls, wakes), (2, 1), "(polls, wake-ups) of the sender");
        assert_eq!(rx.try_recv(), Ok(2));
    });
}
