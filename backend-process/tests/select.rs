//! Selecting over process channels across processes: a select sleeps once for all its
//! channels and is woken by a child sending on any of them, sees a SIGKILLed sender as
//! `Disconnected`, sends into a channel a child drains, honours its deadline, and loses no
//! wake-up when messages land at random moments.

mod common;

use std::time::{Duration, Instant};

use common::{scale, serial, spawn};
use uniconc_core::select::Select;
use uniconc_core::{Receiver as _, RecvError, Sender as _};
use uniconc_process::{ProcSelector, channel};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn a_child_sending_on_one_of_two_channels_wakes_the_select() {
    let _s = serial("a_child_sending_on_one_of_two_channels_wakes_the_select");
    let (tx1, rx1) = channel::<u32>(4).unwrap();
    let (tx2, rx2) = channel::<u32>(4).unwrap();
    let (ack_tx, ack) = channel::<()>(1).unwrap();
    let child = spawn(move || {
        // Long enough for the parent to be asleep in the select.
        std::thread::sleep(Duration::from_millis(50));
        tx2.send(42).unwrap();
        // `tx1` stays until the parent has its message: were it dropped now, both operations
        // could be ready when the select looks, and its random start could pick either.
        ack.recv().unwrap();
        drop(tx1);
        0
    });
    let mut sel = Select::<ProcSelector>::new();
    let i1 = sel.recv(&rx1);
    let i2 = sel.recv(&rx2);
    let oper = sel.select_timeout(LIMIT).expect("woken by the child");
    assert_eq!(oper.index(), i2);
    assert_ne!(i1, i2);
    assert_eq!(oper.recv(&rx2), Ok(42));
    drop(sel);
    ack_tx.send(()).unwrap();
    assert_eq!(child.join(LIMIT), 0);
}

#[test]
fn a_sigkilled_sole_sender_makes_its_receive_fire_disconnected() {
    let _s = serial("a_sigkilled_sole_sender_makes_its_receive_fire_disconnected");
    let (tx, rx) = channel::<u32>(4).unwrap();
    let (ready_tx, ready) = channel::<u32>(1).unwrap();
    // Another channel, kept connected by our own sender: only `rx` can disconnect.
    let (_idle_tx, idle) = channel::<u32>(1).unwrap();
    let child = spawn(move || {
        let _tx = tx; // the only sender of `rx`
        ready_tx.send(1).unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    assert_eq!(ready.recv(), Ok(1));
    let pid = child.pid;
    let killer = std::thread::spawn(move || {
        // The select below is asleep by then.
        std::thread::sleep(Duration::from_millis(50));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    });
    let mut sel = Select::<ProcSelector>::new();
    let ii = sel.recv(&idle);
    let ir = sel.recv(&rx);
    let start = Instant::now();
    let oper = sel.select_timeout(LIMIT).expect("the kill is seen");
    assert_eq!(oper.index(), ir);
    assert_ne!(ii, ir);
    assert_eq!(oper.recv(&rx), Err(RecvError::Disconnected));
    eprintln!(
        "SIGKILLed sender seen by a select after {:?}",
        start.elapsed()
    );
    killer.join().unwrap();
    drop(child);
}

#[test]
fn a_send_arm_on_a_full_channel_fires_when_a_child_drains_it() {
    let _s = serial("a_send_arm_on_a_full_channel_fires_when_a_child_drains_it");
    let (tx, rx) = channel::<u32>(1).unwrap();
    let (_idle_tx, idle) = channel::<u32>(1).unwrap();
    tx.send(1).unwrap();
    let child = spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let first = rx.recv().unwrap();
        let second = rx.recv().unwrap();
        i32::from(!(first == 1 && second == 7))
    });
    let mut value = Some(7);
    {
        let mut sel = Select::<ProcSelector>::new();
        sel.recv(&idle);
        let is = sel.send(&tx, &mut value);
        let oper = sel.select_timeout(LIMIT).expect("room made by the child");
        assert_eq!(oper.index(), is);
        assert_eq!(oper.send(&tx), Ok(()));
    }
    assert_eq!(value, None, "the value was sent");
    assert_eq!(child.join(LIMIT), 0, "the child got 1 then 7");
}

#[test]
fn a_select_with_a_deadline_times_out_and_keeps_the_value() {
    let _s = serial("a_select_with_a_deadline_times_out_and_keeps_the_value");
    let (tx, _rx) = channel::<u32>(1).unwrap();
    let (_idle_tx, idle) = channel::<u32>(1).unwrap();
    tx.send(0).unwrap();
    let mut value = Some(9);
    let mut sel = Select::<ProcSelector>::new();
    sel.recv(&idle);
    sel.send(&tx, &mut value);
    let start = Instant::now();
    let wait = Duration::from_millis(150); // longer than one slice between looks for dead peers
    assert!(sel.select_deadline(start + wait).is_err());
    assert!(start.elapsed() >= wait);
    drop(sel);
    assert_eq!(value, Some(9), "nothing sent on a timeout");
}

#[test]
fn a_select_over_more_channels_than_one_futex_waitv_takes_is_woken() {
    let _s = serial("a_select_over_more_channels_than_one_futex_waitv_takes_is_woken");
    let chans: Vec<_> = (0..130).map(|_| channel::<u32>(1).unwrap()).collect();
    let last = chans.last().unwrap().0.clone();
    let child = spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        last.send(5).unwrap();
        0
    });
    let mut sel = Select::<ProcSelector>::new();
    for (_, rx) in &chans {
        sel.recv(rx);
    }
    let oper = sel.select_timeout(LIMIT).expect("woken by the child");
    assert_eq!(oper.index(), 129);
    assert_eq!(oper.recv(&chans[129].1), Ok(5));
    assert_eq!(child.join(LIMIT), 0);
}

#[test]
fn select_async_is_woken_by_a_child() {
    let _s = serial("select_async_is_woken_by_a_child");
    let (_tx1, rx1) = channel::<u32>(1).unwrap();
    let (tx2, rx2) = channel::<u32>(1).unwrap();
    let child = spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        tx2.send(3).unwrap();
        0
    });
    let got = futures_lite::future::block_on(async {
        let mut sel = Select::<ProcSelector>::new();
        sel.recv(&rx1);
        let i2 = sel.recv(&rx2);
        let oper = sel.select_async().await;
        assert_eq!(oper.index(), i2);
        oper.recv(&rx2)
    });
    assert_eq!(got, Ok(3));
    assert_eq!(child.join(LIMIT), 0);
}

/// A small xorshift for the child's random pauses.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn no_wake_up_is_lost_when_messages_land_at_random_moments() {
    let _s = serial("no_wake_up_is_lost_when_messages_land_at_random_moments");
    let n = 2_000 * scale();
    // Capacity 1: the child waits for each message to be taken, the parent sleeps often.
    let (tx1, rx1) = channel::<u64>(1).unwrap();
    let (tx2, rx2) = channel::<u64>(1).unwrap();
    let child = spawn(move || {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for i in 0..n {
            match next(&mut x) % 4 {
                0 => {}
                1 => (0..next(&mut x) % 2000).for_each(|_| std::hint::spin_loop()),
                2 => std::thread::yield_now(),
                _ => std::thread::sleep(Duration::from_micros(next(&mut x) % 200)),
            }
            let tx = if next(&mut x) % 2 == 0 { &tx1 } else { &tx2 };
            tx.send(i).unwrap();
        }
        0
    });
    let (mut count, mut sum) = (0u64, 0u64);
    let mut sel = Select::<ProcSelector>::new();
    let i1 = sel.recv(&rx1);
    sel.recv(&rx2);
    while count < n {
        // A lost wake-up would leave the select asleep until the slice ends; the message
        // still arrives then, so the deadline is only a watchdog.
        let oper = sel
            .select_timeout(LIMIT)
            .expect("a message within the limit");
        let index = oper.index();
        let v = if index == i1 {
            oper.recv(&rx1)
        } else {
            oper.recv(&rx2)
        };
        match v {
            Ok(v) => {
                sum += v;
                count += 1;
            }
            // The child is done with that channel (exited): the rest is on the other one.
            Err(RecvError::Disconnected) => sel.remove(index),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(sum, n * (n - 1) / 2);
    assert_eq!(child.join(LIMIT), 0);
}
