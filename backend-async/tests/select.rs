//! Select over tokio channels: `select_async` from a task, the blocking forms from a `spawn`
//! closure and inside a runtime (and their panic on a current-thread runtime), send arms, and
//! the hand-on of a wake-up a select was given but did not use.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use common::watchdog;
use uniconc_async::{TokioParker, channel, spawn, spawn_async};
use uniconc_core::select::Select;
use uniconc_core::{JoinHandle as _, Receiver as _, RecvError, Sender as _};

/// A waker that counts its wake-ups.
fn counting_waker() -> (Waker, Arc<AtomicUsize>) {
    struct Count(Arc<AtomicUsize>);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let n = Arc::new(AtomicUsize::new(0));
    (Waker::from(Arc::new(Count(n.clone()))), n)
}

#[test]
fn select_async_from_a_task_takes_the_one_that_arrives() {
    watchdog(30, || {
        let (tx1, rx1) = channel::<u32>(1).unwrap();
        let (tx2, rx2) = channel::<String>(1).unwrap();
        let task = spawn_async(async move {
            let mut sel = Select::new();
            let one = sel.recv(&rx1);
            let two = sel.recv(&rx2);
            let oper = sel.select_async().await;
            assert_ne!(oper.index(), one);
            assert_eq!(oper.index(), two);
            let got = oper.recv(&rx2);
            // The other channel was left alone.
            (got, rx1.try_recv().unwrap_err().is_empty())
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        tx2.send("two".into()).unwrap();
        assert_eq!(task.join().unwrap(), (Ok("two".to_string()), true));
        drop(tx1);
    });
}

#[test]
fn blocking_select_from_a_spawned_closure() {
    watchdog(30, || {
        let (jobs_tx, jobs) = channel::<u64>(4).unwrap();
        let (stop_tx, stop) = channel::<()>(1).unwrap();
        let worker = spawn(move || {
            let mut sum = 0;
            loop {
                uniconc_core::select! {
                    recv(jobs) -> job => sum += job.unwrap(),
                    recv(stop) -> _ => break,
                }
            }
            sum
        })
        .unwrap();
        for i in 1..=3 {
            jobs_tx.send(i).unwrap();
        }
        // The stop can only overtake jobs still queued: wait until they are all taken.
        while !jobs_tx.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        stop_tx.send(()).unwrap();
        assert_eq!(worker.join().unwrap(), 6);
    });
}

/// The one worker of the runtime blocks in a select; the task that will wake it can only run
/// because the select sleeps inside `block_in_place`, which hands the worker's tasks on.
#[test]
fn blocking_select_on_a_runtime_s_only_worker_does_not_deadlock() {
    watchdog(30, || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = channel::<u32>(1).unwrap();
        let (_idle_tx, idle) = channel::<u32>(1).unwrap();
        let got = rt.block_on(async move {
            tokio::spawn(async move {
                // Spawned from the worker: it runs on that worker unless the select hands it
                // on.
                let sender = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    tx.send_async(5).await.unwrap();
                });
                let got = uniconc_core::select! {
                    recv(rx) -> v => v,
                    recv(idle) -> v => v,
                };
                sender.await.unwrap();
                got
            })
            .await
            .unwrap()
        });
        assert_eq!(got, Ok(5));
    });
}

#[test]
fn blocking_select_on_a_current_thread_runtime_panics_clearly() {
    watchdog(30, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (_tx, rx) = channel::<u32>(1).unwrap();
        let r = rt.block_on(async move {
            tokio::spawn(async move {
                let mut sel = Select::new();
                sel.recv(&rx);
                sel.select().recv(&rx)
            })
            .await
        });
        let msg = uniconc_core::panic_message(&*r.unwrap_err().into_panic());
        assert!(msg.contains("multi-threaded runtime"), "{msg}");
        // A select that need not wait works there, as the `try_` forms do.
        let (tx, rx) = channel::<u32>(1).unwrap();
        rt.block_on(async move {
            tx.send_async(3).await.unwrap();
            let mut sel = Select::new();
            sel.recv(&rx);
            assert_eq!(sel.select().recv(&rx), Ok(3));
            assert!(sel.try_select().is_err());
        });
    });
}

#[test]
fn a_send_arm_keeps_its_value_until_room_appears() {
    watchdog(30, || {
        let (full_tx, full_rx) = channel::<String>(1).unwrap();
        full_tx.send("first".into()).unwrap();
        let (other_tx, other_rx) = channel::<u32>(1).unwrap();
        other_tx.send(1).unwrap();
        let mut slot = Some("second".to_string());
        {
            let mut sel = Select::<TokioParker>::new();
            let send = sel.send(&full_tx, &mut slot);
            let recv = sel.recv(&other_rx);
            assert_eq!(sel.try_ready(), Ok(recv));
            let oper = sel.select();
            assert_ne!(oper.index(), send);
            assert_eq!(oper.recv(&other_rx), Ok(1));
        }
        assert_eq!(slot.as_deref(), Some("second"));
        // Room appears from another thread while the select sleeps.
        let drainer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            full_rx.recv().unwrap();
            full_rx
        });
        let mut sel = Select::<TokioParker>::new();
        let send = sel.send(&full_tx, &mut slot);
        sel.recv(&other_rx);
        let oper = sel.select_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(oper.index(), send);
        assert_eq!(oper.send(&full_tx), Ok(()));
        drop(sel);
        assert_eq!(slot, None);
        assert_eq!(drainer.join().unwrap().recv().unwrap(), "second");
    });
}

#[test]
fn disconnection_wakes_a_sleeping_select() {
    watchdog(30, || {
        let (tx, rx) = channel::<u32>(1).unwrap();
        let (_idle_tx, idle) = channel::<u32>(1).unwrap();
        let dropper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(tx);
        });
        let mut sel = Select::new();
        let i = sel.recv(&rx);
        sel.recv(&idle);
        let oper = sel.select();
        assert_eq!(oper.index(), i);
        assert_eq!(oper.recv(&rx), Err(RecvError::Disconnected));
        dropper.join().unwrap();
        // A disconnected receive stays ready.
        let oper = sel.select_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(oper.index(), i);
        assert_eq!(oper.recv(&rx), Err(RecvError::Disconnected));
    });
}

/// Two waiters on one channel: a `select_async` (first in line) and a `recv_async`. A message
/// wakes the select only; the select is then dropped without being polled again. Its wake-up
/// must go on to the receive, or the receive sleeps beside a message.
#[test]
fn a_cancelled_select_async_passes_a_receive_wake_up_on() {
    let (tx, rx) = channel::<u32>(4).unwrap();
    let (_other_tx, other) = channel::<u32>(4).unwrap();
    let (select_waker, select_woken) = counting_waker();
    let (recv_waker, recv_woken) = counting_waker();
    let mut recv = pin!(rx.recv_async());
    {
        let mut sel = Select::new();
        sel.recv(&rx);
        sel.recv(&other);
        let mut fut = pin!(sel.select_async());
        let poll = fut.as_mut().poll(&mut Context::from_waker(&select_waker));
        assert!(poll.is_pending());
        assert!(
            recv.as_mut()
                .poll(&mut Context::from_waker(&recv_waker))
                .is_pending()
        );
        tx.send(7).unwrap();
        assert_eq!(select_woken.load(Ordering::SeqCst), 1, "the first waiter");
        assert_eq!(recv_woken.load(Ordering::SeqCst), 0);
    } // the select future is dropped here, woken but unpolled
    assert_eq!(
        recv_woken.load(Ordering::SeqCst),
        1,
        "the dropped select swallowed the wake-up"
    );
    assert_eq!(
        recv.as_mut().poll(&mut Context::from_waker(&recv_waker)),
        Poll::Ready(Ok(7))
    );
}

/// The same on the sending side: room freed on a full channel wakes the select's send arm,
/// which is cancelled; the waiting `send_async` must get the wake-up.
#[test]
fn a_cancelled_select_async_passes_a_send_wake_up_on() {
    let (tx, rx) = channel::<u32>(1).unwrap();
    tx.send(0).unwrap();
    let (_other_tx, other) = channel::<u32>(1).unwrap();
    let (select_waker, select_woken) = counting_waker();
    let (send_waker, send_woken) = counting_waker();
    let mut send = pin!(tx.send_async(2));
    let mut slot = Some(1);
    {
        let mut sel = Select::new();
        sel.send(&tx, &mut slot);
        sel.recv(&other);
        let mut fut = pin!(sel.select_async());
        let poll = fut.as_mut().poll(&mut Context::from_waker(&select_waker));
        assert!(poll.is_pending());
        assert!(
            send.as_mut()
                .poll(&mut Context::from_waker(&send_waker))
                .is_pending()
        );
        assert_eq!(rx.try_recv().unwrap(), 0);
        assert_eq!(select_woken.load(Ordering::SeqCst), 1, "the first waiter");
        assert_eq!(send_woken.load(Ordering::SeqCst), 0);
    }
    assert_eq!(slot, Some(1), "a cancelled select sends nothing");
    assert_eq!(
        send_woken.load(Ordering::SeqCst),
        1,
        "the dropped select swallowed the wake-up"
    );
    assert_eq!(
        send.as_mut().poll(&mut Context::from_waker(&send_waker)),
        Poll::Ready(Ok(()))
    );
    assert_eq!(rx.try_recv().unwrap(), 2);
}

/// A select woken for one channel that performs another operation (both became ready before
/// it looked) leaves the first channel's message to the next receiver and wakes it. The
/// select's random start decides which it takes; over 32 rounds it takes the other one at
/// least once (all but certainly), and every such round checks the hand-on.
#[test]
fn a_select_that_fires_elsewhere_passes_the_wake_up_on() {
    let mut checked = 0;
    for _ in 0..32 {
        let (tx, rx) = channel::<u32>(4).unwrap();
        let (other_tx, other) = channel::<u32>(4).unwrap();
        let (recv_waker, recv_woken) = counting_waker();
        let (select_waker, _) = counting_waker();
        let mut recv = pin!(rx.recv_async());
        let mut sel = Select::new();
        sel.recv(&rx);
        let o = sel.recv(&other);
        let mut fut = pin!(sel.select_async());
        assert!(
            fut.as_mut()
                .poll(&mut Context::from_waker(&select_waker))
                .is_pending()
        );
        assert!(
            recv.as_mut()
                .poll(&mut Context::from_waker(&recv_waker))
                .is_pending()
        );
        tx.send(1).unwrap(); // wakes the select (first in line) and only it
        other_tx.send(2).unwrap();
        assert_eq!(recv_woken.load(Ordering::SeqCst), 0);
        let Poll::Ready(oper) = fut.as_mut().poll(&mut Context::from_waker(&select_waker)) else {
            panic!("both are ready");
        };
        if oper.index() == o {
            assert_eq!(oper.recv(&other), Ok(2));
            assert_eq!(
                recv_woken.load(Ordering::SeqCst),
                1,
                "wake-up not passed on"
            );
            assert_eq!(
                recv.as_mut().poll(&mut Context::from_waker(&recv_waker)),
                Poll::Ready(Ok(1))
            );
            checked += 1;
        } else {
            assert_eq!(oper.recv(&rx), Ok(1));
        }
    }
    assert!(
        checked > 0,
        "the select never started at `other` in 32 rounds"
    );
}
