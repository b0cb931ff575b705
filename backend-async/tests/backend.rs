//! The backend through the generic `Backend` trait, as the conformance suite uses it.

mod common;

use common::watchdog;
use uniconc_async::Tokio;
use uniconc_core::{
    Array as _, Backend, Barrier as _, Event as _, JoinHandle as _, Lock as _, Pool as _,
    Receiver as _, Semaphore as _, Sender as _, Value as _,
};

fn generic_program<B: Backend>() -> u64 {
    let (tx, rx) = B::channel::<u64>(4).unwrap();
    let lock = B::lock().unwrap();
    let total = B::value(0u64).unwrap();
    let (l2, t2) = (lock.clone(), total.clone());
    let consumer = B::spawn(move || {
        let mut n = 0;
        for v in rx.iter() {
            let _g = l2.lock().unwrap();
            t2.update(|t| *t += v);
            n += 1;
        }
        n
    })
    .unwrap();
    for i in 1..=100 {
        tx.send(i).unwrap();
    }
    drop(tx);
    assert_eq!(consumer.join().unwrap(), 100);
    let sem = B::semaphore(1).unwrap();
    drop(sem.acquire());
    let ev = B::event().unwrap();
    ev.set();
    ev.wait();
    let b = B::barrier(1).unwrap();
    assert!(b.wait());
    let arr = B::array::<u32>(3).unwrap();
    arr.set(0, 1).unwrap();
    assert_eq!(arr.to_vec(), vec![1, 0, 0]);
    let pool = B::pool(2).unwrap();
    assert_eq!(pool.map(|x: u64| x + 1, [1, 2]).unwrap(), vec![2, 3]);
    let h = B::spawn_async(async { 5u64 }).unwrap();
    assert_eq!(h.join().unwrap(), 5);
    total.load()
}

#[test]
fn runs_generic_code() {
    assert_eq!(Tokio::NAME, "tokio");
    assert_eq!(watchdog(60, generic_program::<Tokio>), 5050);
}

#[test]
fn public_types_have_the_expected_auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<uniconc_async::Sender<Vec<u8>>>();
    send_sync::<uniconc_async::Receiver<Vec<u8>>>();
    send_sync::<uniconc_async::Lock>();
    send::<uniconc_async::LockGuard<'static>>();
    send_sync::<uniconc_async::Semaphore>();
    send_sync::<uniconc_async::Event>();
    send_sync::<uniconc_async::Barrier>();
    send_sync::<uniconc_async::Value<u64>>();
    send_sync::<uniconc_async::Array<u64>>();
    send_sync::<uniconc_async::Pool>();
    send::<uniconc_async::JoinHandle<u8>>();
    send::<uniconc_async::TaskHandle<u8>>();
}

#[test]
fn marker_derives_what_every_backend_marker_derives() {
    use std::collections::HashSet;
    fn derives<M: Clone + Copy + std::fmt::Debug + Default + Eq + std::hash::Hash>() {}
    derives::<Tokio>();
    let set: HashSet<Tokio> = [Tokio, Tokio].into_iter().collect();
    assert_eq!(set.len(), 1);
}
