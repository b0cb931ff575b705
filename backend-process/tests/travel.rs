//! Handles that travel between processes that did not inherit them: a worker forked before the
//! channel existed receives its `Sender` through another channel and uses it; killing the
//! process holding the only deserialized sender disconnects the channel; a sender dropped in
//! flight stops counting when the process that serialized it ends; the same bytes
//! deserialized twice are two clones; a forged handle is refused with a clear error.

mod common;

use std::time::{Duration, Instant};

use common::{serial, spawn};
use uniconc_core::{
    Barrier as _, Event as _, Lock as _, Receiver as _, RecvError, RecvTimeoutError,
    Semaphore as _, Sender as _,
};
use uniconc_process::{Barrier, Event, Lock, Receiver, Semaphore, Sender, channel, unbounded};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_worker_forked_before_the_channel_uses_its_sender() {
    let _s = serial("a_worker_forked_before_the_channel_uses_its_sender");
    let (jobs_tx, jobs_rx) = unbounded::<Sender<u64>>().unwrap();
    let worker = spawn(move || {
        // Each job is a reply sender made after this process was forked.
        for (i, reply) in jobs_rx.iter().enumerate() {
            reply.send(i as u64 * 10).unwrap();
        }
        0
    });
    for i in 0..5u64 {
        let (tx, rx) = channel::<u64>(1).unwrap();
        jobs_tx.send(tx).unwrap();
        assert_eq!(rx.recv(), Ok(i * 10));
        // The worker dropped the only sender after replying.
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    }
    drop(jobs_tx);
    assert_eq!(worker.join(LIMIT), 0);
}

#[test]
fn a_worker_sends_back_a_sender_it_made() {
    let _s = serial("a_worker_sends_back_a_sender_it_made");
    let (back_tx, back_rx) = channel::<Sender<String>>(1).unwrap();
    let (done_tx, done_rx) = channel::<()>(1).unwrap();
    let worker = spawn(move || {
        let (tx, rx) = channel::<String>(4).unwrap();
        back_tx.send(tx).unwrap();
        let got: Vec<String> = rx.iter().collect();
        drop(done_rx);
        i32::from(got != ["a", "b"])
    });
    drop(done_tx);
    let tx = back_rx.recv().unwrap();
    tx.send("a".into()).unwrap();
    tx.send("b".into()).unwrap();
    drop(tx); // the worker's iterator ends: every sender is gone
    assert_eq!(worker.join(LIMIT), 0);
}

#[test]
fn killing_the_holder_of_the_only_deserialized_sender_disconnects() {
    let _s = serial("killing_the_holder_of_the_only_deserialized_sender_disconnects");
    let (jobs_tx, jobs_rx) = unbounded::<Sender<u64>>().unwrap();
    let worker = spawn(move || {
        let tx = jobs_rx.recv().unwrap();
        tx.send(1).unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let (tx, rx) = channel::<u64>(4).unwrap();
    jobs_tx.send(tx).unwrap();
    assert_eq!(rx.recv(), Ok(1));
    worker.kill();
    let start = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) if start.elapsed() < LIMIT => {}
            other => panic!("expected Disconnected, got {other:?}"),
        }
    }
}

#[test]
fn a_sender_dropped_in_flight_stops_counting_when_its_serializer_ends() {
    let _s = serial("a_sender_dropped_in_flight_stops_counting_when_its_serializer_ends");
    let (tx, rx) = channel::<u64>(4).unwrap();
    let (carrier_tx, carrier_rx) = unbounded::<Sender<u64>>().unwrap();
    let child = spawn(move || {
        // Serialize the only sender into a message nobody will read, then end.
        carrier_tx.send(tx).unwrap();
        0
    });
    assert_eq!(child.join(LIMIT), 0);
    // The message is still queued; the end it carries counted in the child's slot until the
    // child ended.
    assert_eq!(carrier_rx.len(), 1);
    let start = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) if start.elapsed() < LIMIT => {}
            other => panic!("expected Disconnected, got {other:?}"),
        }
    }
    // The bytes left in the queue name an ended process: a clear error, not a dead handle.
    let e = carrier_rx.recv().unwrap_err();
    assert!(format!("{e:?}").contains("ended"), "{e:?}");
}

#[test]
fn a_sender_in_flight_keeps_the_channel_connected() {
    let _s = serial("a_sender_in_flight_keeps_the_channel_connected");
    let (carrier_tx, carrier_rx) = unbounded::<Sender<u64>>().unwrap();
    let (tx, rx) = channel::<u64>(4).unwrap();
    let (go_tx, go_rx) = channel::<()>(1).unwrap();
    let worker = spawn(move || {
        go_rx.recv().unwrap();
        let tx = carrier_rx.recv().unwrap();
        tx.send(7).unwrap();
        0
    });
    drop(go_tx.clone());
    // Only the message holds a sender now.
    carrier_tx.send(tx).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(300)),
        Err(RecvTimeoutError::Timeout)
    );
    go_tx.send(()).unwrap();
    assert_eq!(rx.recv(), Ok(7));
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    assert_eq!(worker.join(LIMIT), 0);
}

#[test]
fn the_same_bytes_deserialized_twice_are_two_clones() {
    let _s = serial("the_same_bytes_deserialized_twice_are_two_clones");
    let (bytes_tx, bytes_rx) = channel::<Vec<u8>>(1).unwrap();
    let (step_tx, step_rx) = channel::<u8>(1).unwrap();
    let worker = spawn(move || {
        let bytes = bytes_rx.recv().unwrap();
        let a: Sender<u64> = bitcode::deserialize(&bytes).unwrap();
        let b: Sender<u64> = bitcode::deserialize(&bytes).unwrap();
        a.send(1).unwrap();
        b.send(2).unwrap();
        drop(a);
        step_rx.recv().unwrap(); // the parent saw no disconnection with `b` alive
        drop(b);
        0
    });
    let (tx, rx) = channel::<u64>(4).unwrap();
    bytes_tx.send(bitcode::serialize(&tx).unwrap()).unwrap();
    drop(tx);
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.recv(), Ok(2));
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(200)),
        Err(RecvTimeoutError::Timeout)
    );
    step_tx.send(0).unwrap();
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    assert_eq!(worker.join(LIMIT), 0);
}

#[test]
fn a_lock_and_an_event_travel_to_a_worker_forked_before_them() {
    let _s = serial("a_lock_and_an_event_travel_to_a_worker_forked_before_them");
    let (jobs_tx, jobs_rx) = channel::<(Lock, Event, Receiver<u64>)>(1).unwrap();
    let worker = spawn(move || {
        let (lock, event, rx) = jobs_rx.recv().unwrap();
        let g = lock.lock().unwrap();
        event.set();
        // Hold the lock until the parent saw the event.
        let _ = rx.recv();
        drop(g);
        0
    });
    let lock = Lock::new().unwrap();
    let event = Event::new().unwrap();
    let (tx, rx) = channel::<u64>(1).unwrap();
    jobs_tx.send((lock.clone(), event.clone(), rx)).unwrap();
    event.wait_timeout(LIMIT).unwrap();
    assert!(lock.try_lock().is_err(), "the worker holds the lock");
    drop(tx); // its receiver sees Disconnected and lets go
    drop(lock.lock().unwrap());
    assert_eq!(worker.join(LIMIT), 0);
}

#[test]
fn a_semaphore_and_a_barrier_travel_to_a_worker_forked_before_them() {
    let _s = serial("a_semaphore_and_a_barrier_travel_to_a_worker_forked_before_them");
    let (jobs_tx, jobs_rx) = channel::<(Semaphore, Barrier)>(1).unwrap();
    let worker = spawn(move || {
        let (sem, barrier) = jobs_rx.recv().unwrap();
        sem.release();
        barrier.wait();
        0
    });
    let sem = Semaphore::new(0).unwrap();
    let barrier = Barrier::new(2).unwrap();
    jobs_tx.send((sem.clone(), barrier.clone())).unwrap();
    let permit = sem.acquire_timeout(LIMIT).unwrap();
    permit.forget();
    barrier.wait();
    assert_eq!(worker.join(LIMIT), 0);
}

/// `v` in the library's own codec (bincode), whose errors keep their messages in release
/// builds (bitcode's are only "bitcode error" there).
fn to_bytes<T: serde::Serialize + 'static>(v: &T) -> Vec<u8> {
    let mut b = vec![0; uniconc_core::codec::encoded_size(v).unwrap()];
    uniconc_core::codec::encode_into(v, &mut b).unwrap();
    b
}

fn from_bytes<T: serde::de::DeserializeOwned + 'static>(
    b: &[u8],
) -> Result<T, uniconc_core::MessageError> {
    uniconc_core::codec::decode(b)
}

#[test]
fn a_forged_handle_is_refused() {
    let _s = serial("a_forged_handle_is_refused");
    // A process that does not have the channel, to read the forged bytes.
    let (bytes_tx, bytes_rx) = channel::<Vec<u8>>(1).unwrap();
    let reader = spawn(move || {
        let bytes = bytes_rx.recv().unwrap();
        let e = from_bytes::<Sender<u64>>(&bytes).unwrap_err();
        i32::from(!e.to_string().contains("has ended"))
    });
    let (tx, _rx) = channel::<u64>(1).unwrap();
    let good = to_bytes(&tx);
    // Another element type.
    let e = from_bytes::<Sender<String>>(&good).unwrap_err();
    assert!(e.to_string().contains("element type"), "{e}");
    // Another kind of object.
    let e = from_bytes::<Lock>(&good).unwrap_err();
    assert!(e.to_string().contains("a channel"), "{e}");
    // A holder that is not alive.
    let dead = spawn(|| 0);
    let pid = dead.pid.as_raw() as u32;
    assert_eq!(dead.join(LIMIT), 0);
    let mut w: Wire = from_bytes(&good).unwrap();
    w.pid = pid;
    bytes_tx.send(to_bytes(&w)).unwrap();
    assert_eq!(reader.join(LIMIT), 0);
}

/// The wire form, as a forger would write it (the fields of `travel::Wire`, in order).
#[derive(serde::Serialize, serde::Deserialize)]
struct Wire {
    kind: u32,
    type_hash: u64,
    pid: u32,
    start: u64,
    fd: i32,
    dev: u64,
    ino: u64,
    len: u64,
    params: [u64; 4],
    slot: u32,
}

#[test]
fn a_handle_returned_from_spawn_works_or_is_a_clear_error() {
    let _s = serial("a_handle_returned_from_spawn_works_or_is_a_clear_error");
    // The child ends right after it reports: its handle in flight ends with it unless the
    // parent read it first. Either way: no hang, no dead handle.
    let h = uniconc_process::spawn(|| channel::<u64>(1).unwrap()).unwrap();
    match uniconc_core::JoinHandle::join(h) {
        Ok((tx, rx)) => {
            tx.send(3).unwrap();
            assert_eq!(rx.recv(), Ok(3));
        }
        Err(e) => {
            eprintln!("a handle returned from spawn: {e}");
            assert!(e.to_string().contains("ended"), "{e}");
        }
    }
}

/// Forks while another thread keeps sending handles (which takes the process's travel
/// tables' locks): every child sends a handle of its own, so a lock the fork had caught held
/// by the other thread would hang it (the fork handlers take and release those locks).
#[test]
fn forking_while_another_thread_sends_handles_never_hangs_the_child() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let _s = serial("forking_while_another_thread_sends_handles_never_hangs_the_child");
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = unbounded::<Sender<u8>>().unwrap();
    let busy = {
        let (stop, tx) = (stop.clone(), tx.clone());
        std::thread::spawn(move || {
            // Relaxed: a flag polled until set; nothing else is published through it.
            while !stop.load(Ordering::Relaxed) {
                tx.send(channel::<u8>(1).unwrap().0).unwrap();
            }
        })
    };
    // A handle whose serializing child has ended by the time it is read is refused
    // (`Invalid`, see `Backend::TRAVEL`): counted apart, the drain goes on.
    let drain = std::thread::spawn(move || {
        let (mut read, mut refused) = (0u64, 0u64);
        loop {
            match rx.recv() {
                Ok(_) => read += 1,
                Err(RecvError::Invalid(_)) => refused += 1,
                Err(RecvError::Disconnected) => break read + refused,
            }
        }
    });
    let rounds = 200 * common::scale();
    for _ in 0..rounds {
        let tx = tx.clone();
        let child = spawn(move || {
            tx.send(channel::<u8>(1).unwrap().0).unwrap();
            0
        });
        assert_eq!(child.join(LIMIT), 0);
    }
    // Relaxed: as above.
    stop.store(true, Ordering::Relaxed);
    busy.join().unwrap();
    drop(tx);
    assert!(drain.join().unwrap() >= rounds);
}
