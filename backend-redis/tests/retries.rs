//! Requests whose reply is lost after the server ran them: the connection is cut between the
//! script and its reply (by a proxy between the client and the server), and the call retries
//! the same request, which must neither run twice nor lose what it took.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Watchdog;
use uniconc_core::{Receiver as _, Sender as _, TryRecvError};
use uniconc_redis::testing::RedisServer;

/// A test's set-up: its watchdog, a server of its own, a proxy in front of it, and a
/// connection through the proxy (dropped in the reverse order).
fn through_a_proxy() -> (Watchdog, RedisServer, Proxy, uniconc_redis::Connection) {
    let w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let conn = uniconc_redis::connect(&proxy.url()).unwrap();
    (w, server, proxy, conn)
}

/// What the proxy cuts next (one-shot).
#[derive(Default)]
struct Cuts {
    /// Cut the reply to the next request containing these bytes.
    after_request: Option<Vec<u8>>,
    /// Cut the next reply containing these bytes, after holding it back this long.
    reply: Option<(Vec<u8>, Duration)>,
    /// Hold the next request containing these bytes back this long, then pass it on.
    request: Option<(Vec<u8>, Duration)>,
    /// Drop the next request containing these bytes, and its connection.
    lost: Option<Vec<u8>>,
}

/// A TCP proxy to a server that can drop a connection instead of passing a reply on.
struct Proxy {
    port: u16,
    cuts: Arc<Mutex<Cuts>>,
    done: Arc<AtomicUsize>,
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

impl Proxy {
    fn start(server_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cuts = Arc::new(Mutex::new(Cuts::default()));
        let done = Arc::new(AtomicUsize::new(0));
        let (c, d) = (cuts.clone(), done.clone());
        // The proxy's threads live as long as the test process.
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let cut_next = Arc::new(AtomicBool::new(false));
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (cuts, armed, done2) = (c.clone(), cut_next.clone(), d.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0; 1 << 16];
                    while let Ok(n) = c_in.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let hold = {
                            let mut cuts = cuts.lock().unwrap();
                            if cuts.lost.as_deref().is_some_and(|m| contains(&buf[..n], m)) {
                                cuts.lost = None;
                                done2.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            let held = cuts
                                .request
                                .as_ref()
                                .is_some_and(|(m, _)| contains(&buf[..n], m));
                            if cuts
                                .after_request
                                .as_deref()
                                .is_some_and(|m| contains(&buf[..n], m))
                            {
                                cuts.after_request = None;
                                // SeqCst: set before the request reaches the server, read when
                                // its reply comes back.
                                armed.store(true, Ordering::SeqCst);
                            }
                            if held {
                                cuts.request.take().map(|(_, h)| h)
                            } else {
                                None
                            }
                        };
                        if let Some(hold) = hold {
                            std::thread::sleep(hold);
                        }
                        if s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        if hold.is_some() {
                            // Passed on late: the server gets it on a connection still open
                            // (the client has given this one up meanwhile).
                            done2.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(500));
                        }
                    }
                    let _ = s_out.shutdown(Shutdown::Both);
                });
                let (mut s_in, mut c_out) = (server, client);
                let (cuts, done) = (c.clone(), d.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0; 1 << 16];
                    while let Ok(n) = s_in.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let cut = {
                            let mut cuts = cuts.lock().unwrap();
                            let hit = cuts
                                .reply
                                .as_ref()
                                .is_some_and(|(m, _)| contains(&buf[..n], m));
                            let hold = if hit {
                                cuts.reply.take().map(|(_, h)| h)
                            } else {
                                None
                            };
                            // SeqCst: see above.
                            (hit || cut_next.swap(false, Ordering::SeqCst)).then_some(hold)
                        };
                        if let Some(hold) = cut {
                            if let Some(hold) = hold {
                                std::thread::sleep(hold);
                            }
                            done.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_out.shutdown(Shutdown::Both);
                    let _ = s_in.shutdown(Shutdown::Both);
                });
            }
        });
        Self { port, cuts, done }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Cuts the connection that carries the next request containing `marker` once the server
    /// has answered it, instead of passing the answer on.
    fn cut_reply_to(&self, marker: &str) {
        self.cuts.lock().unwrap().after_request = Some(marker.as_bytes().to_vec());
    }

    /// Cuts the connection that carries the next reply containing `marker`.
    fn cut_reply_with(&self, marker: &str) {
        self.hold_and_cut_reply_with(marker, Duration::ZERO);
    }

    /// Holds back the next reply containing `marker` for `hold`, then cuts its connection.
    fn hold_and_cut_reply_with(&self, marker: &str, hold: Duration) {
        self.cuts.lock().unwrap().reply = Some((marker.as_bytes().to_vec(), hold));
    }

    /// Holds the next request containing `marker` back for `hold` before passing it on.
    fn hold_request_with(&self, marker: &str, hold: Duration) {
        self.cuts.lock().unwrap().request = Some((marker.as_bytes().to_vec(), hold));
    }

    /// Drops the next request containing `marker` (it never reaches the server) and cuts its
    /// connection.
    fn lose_request_with(&self, marker: &str) {
        self.cuts.lock().unwrap().lost = Some(marker.as_bytes().to_vec());
    }

    /// How many connections were cut (or requests passed on late) so far.
    fn cut(&self) -> usize {
        self.done.load(Ordering::SeqCst)
    }
}

#[test]
fn a_reply_lost_after_the_script_ran_neither_duplicates_a_send_nor_loses_a_receive() {
    let (_w, _server, proxy, conn) = through_a_proxy();
    let (tx, rx) = conn.channel::<String>(64).unwrap();
    // Every script used once, so that none is loaded while a cut is armed.
    tx.send("w".into()).unwrap();
    assert_eq!(tx.send_batch(["w".to_owned()]), Ok(1));
    assert_eq!(rx.recv().unwrap(), "w");
    let mut buf = Vec::new();
    assert_eq!(rx.recv_batch(&mut buf, 4), Ok(1));

    // A send whose reply is lost: retried, queued once.
    proxy.cut_reply_to("cut-send");
    tx.send("m0".into()).unwrap();
    tx.send("cut-send".into()).unwrap();
    assert_eq!(proxy.cut(), 1);
    // A receive whose reply is lost: retried, the message it took comes back.
    tx.send("cut-recv".into()).unwrap();
    proxy.cut_reply_with("cut-recv");
    assert_eq!(rx.recv().unwrap(), "m0");
    assert_eq!(rx.recv().unwrap(), "cut-send");
    assert_eq!(rx.recv().unwrap(), "cut-recv");
    assert_eq!(proxy.cut(), 2);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));

    // The same for batches.
    proxy.cut_reply_to("cut-batch");
    assert_eq!(
        tx.send_batch(["b0", "cut-batch", "b2"].map(str::to_owned)),
        Ok(3)
    );
    assert_eq!(proxy.cut(), 3);
    proxy.cut_reply_with("cut-batch");
    buf.clear();
    assert_eq!(rx.recv_batch(&mut buf, 10), Ok(3));
    assert_eq!(buf, ["b0", "cut-batch", "b2"]);
    assert_eq!(proxy.cut(), 4);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));

    // A `try_recv` does not retry: it reports the failure, and the message it took is put back
    // at the head of the queue by the next receive.
    tx.send("cut-try".into()).unwrap();
    tx.send("after".into()).unwrap();
    proxy.cut_reply_with("cut-try");
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(proxy.cut(), 5);
    let why = rx.last_failure().expect("a cause");
    assert!(why.contains("put back"), "{why}");
    assert_eq!(rx.recv().unwrap(), "cut-try");
    assert_eq!(rx.recv().unwrap(), "after");
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

/// A receiver dropped after a receive it gave up puts the message back for the others.
#[test]
fn a_receiver_dropped_after_a_lost_reply_puts_the_message_back() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let direct = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = direct.channel::<String>(8).unwrap();
    let conn = uniconc_redis::connect(&proxy.url()).unwrap();
    let other = conn.open_receiver::<String>(rx.id()).unwrap();
    tx.send("w".into()).unwrap();
    assert_eq!(other.recv().unwrap(), "w");
    tx.send("cut-drop".into()).unwrap();
    proxy.cut_reply_with("cut-drop");
    assert_eq!(other.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(proxy.cut(), 1);
    drop(other);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        "cut-drop"
    );
}

/// The `_async` forms run on the multiplexed connection: the same holds there.
#[test]
fn async_forms_retry_the_same_request_too() {
    let (_w, _server, proxy, conn) = through_a_proxy();
    let (tx, rx) = conn.channel::<String>(64).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tx.send_async("w".into()).await.unwrap();
        assert_eq!(rx.recv_async().await.unwrap(), "w");
        proxy.cut_reply_to("cut-send");
        tx.send_async("cut-send".into()).await.unwrap();
        assert_eq!(proxy.cut(), 1);
        tx.send_async("cut-recv".into()).await.unwrap();
        proxy.cut_reply_with("cut-recv");
        assert_eq!(rx.recv_async().await.unwrap(), "cut-send");
        assert_eq!(rx.recv_async().await.unwrap(), "cut-recv");
        assert_eq!(proxy.cut(), 2);
    });
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

/// A receive that gives up (its deadline passed while its reply was held back) after the
/// server popped a message: the message goes back to the head of the queue with the next
/// receive.
#[test]
fn a_receive_given_up_after_the_server_ran_it_loses_nothing() {
    let (_w, _server, proxy, conn) = through_a_proxy();
    let (tx, rx) = conn.channel::<String>(8).unwrap();
    tx.send("held".into()).unwrap();
    tx.send("after".into()).unwrap();
    // Held back past the response timeout (2 s).
    proxy.hold_and_cut_reply_with("held", Duration::from_millis(2500));
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(300)),
        Err(uniconc_core::RecvTimeoutError::Timeout)
    );
    assert_eq!(rx.recv().unwrap(), "held");
    assert_eq!(rx.recv().unwrap(), "after");
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    // The reply held back was the one cut (the proxy cuts it once its hold is over).
    while proxy.cut() == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let why = rx.last_failure().expect("a cause");
    assert!(why.contains("put back"), "{why}");
}

/// A send given up whose request reaches the server only after the caller sent the message
/// again: the late copy finds the request settled and queues nothing.
#[test]
fn a_send_given_up_and_sent_again_is_queued_once_when_the_first_copy_comes_late() {
    let (_w, _server, proxy, conn) = through_a_proxy();
    let (tx, rx) = conn.channel::<String>(8).unwrap();
    tx.send("w".into()).unwrap();
    assert_eq!(rx.recv().unwrap(), "w");
    // Held back past the response timeout (2 s) and past the send below.
    proxy.hold_request_with("late", Duration::from_millis(4000));
    let Err(e) = tx.send_timeout("late".into(), Duration::from_millis(300)) else {
        panic!("a send whose request is held back succeeded")
    };
    let why = tx.last_failure().expect("a cause");
    assert!(why.contains("may have been queued"), "{why}");
    // The caller sends it again, which settles the request given up first.
    tx.send(e.into_inner()).unwrap();
    while proxy.cut() == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The late copy has reached the server (and its connection is still open).
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(rx.recv().unwrap(), "late");
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

/// A lock acquisition whose reply is lost after the server gave it the lock: the retry under
/// the same token gets that acquisition back (the next fencing token, no `OwnerDied` from
/// waiting out its own lease).
#[test]
fn a_lock_whose_reply_is_lost_is_taken_once() {
    use uniconc_core::{Lock as _, TryLockError};
    let (_w, _server, proxy, conn) = through_a_proxy();
    let lock = conn.lock().unwrap();
    // The scripts loaded, and the first fencing token used.
    drop(lock.lock());
    proxy.cut_reply_to(&format!("uc:{{{}}}:m", lock.id()));
    let guard = match lock.lock_checked(None).unwrap() {
        Ok(g) => g,
        Err(TryLockError::OwnerDied(_)) => panic!("the retry waited out its own lease"),
        Err(e) => panic!("{e:?}"),
    };
    assert_eq!(proxy.cut(), 1);
    assert_eq!(guard.fencing_token(), 2);
    drop(guard);
    assert!(lock.try_lock().is_ok());
}

/// A permit take whose reply is lost after the server took it: the retry under the call's
/// marker takes no second permit.
#[test]
fn a_permit_whose_reply_is_lost_is_taken_once() {
    use uniconc_core::Semaphore as _;
    let (_w, _server, proxy, conn) = through_a_proxy();
    let sem = conn.semaphore(2).unwrap();
    assert!(sem.take_deadline(None));
    sem.release();
    proxy.cut_reply_to(&format!("uc:{{{}}}:t:", sem.id()));
    assert!(sem.take_deadline(None));
    assert_eq!(proxy.cut(), 1);
    assert_eq!(sem.available(), 1);
    sem.release();
    assert_eq!(sem.available(), 2);
}

/// The fields of a channel's reply store (`r`), read on the server.
fn replies_kept(server: &RedisServer, id: &str) -> usize {
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("HLEN")
        .arg(format!("uc:{{{id}}}:r"))
        .query(&mut raw)
        .unwrap()
}

/// A handle dropped with the reply of its last receive still kept deletes it, also while
/// another handle of the same side stays open in the process; a queue made again after it
/// emptied has the object's expiry.
#[test]
fn a_dropped_handle_leaves_no_kept_reply_and_no_key_without_expiry() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<String>(8).unwrap();
    let other = conn.open_receiver::<String>(rx.id()).unwrap();
    tx.send("a".into()).unwrap();
    assert_eq!(other.recv().unwrap(), "a");
    // The placeholder, the kept reply of the send (deleted by the sender's next script) and
    // that of the receive.
    assert_eq!(replies_kept(&server, rx.id()), 3);
    drop(other);
    let start = std::time::Instant::now();
    while replies_kept(&server, rx.id()) > 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the dropped handle's kept reply stayed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The queue emptied (Redis deleted it) and is made again by this send.
    tx.send("b".into()).unwrap();
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("uc:{{{}}}:q", rx.id()))
        .query(&mut raw)
        .unwrap();
    assert!(ttl > 0, "the queue has no expiry ({ttl})");
    assert_eq!(rx.recv().unwrap(), "b");
}

/// A `recv_async` dropped while its receive was on the wire, whose put-back request is lost
/// on the way (the server never sees it): the put-back is retried, and the message comes back
/// once.
#[test]
fn a_lost_put_back_of_a_cancelled_recv_async_is_retried_once() {
    let (_w, _server, proxy, conn) = through_a_proxy();
    let (tx, rx) = conn.channel::<String>(8).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tx.send_async("w".into()).await.unwrap();
        assert_eq!(rx.recv_async().await.unwrap(), "w");
    });
    tx.send("put-back".into()).unwrap();
    // The receive reaches the server after the future is gone; its put-back (the only request
    // from now on that carries the message) never does.
    // (Held for less than the response timeout, 2 s; the future is dropped well after the
    // request went out, and well before its reply comes.)
    proxy.hold_request_with(
        &format!("uc:{{{}}}:q", rx.id()),
        Duration::from_millis(1500),
    );
    proxy.lose_request_with("put-back");
    rt.block_on(async {
        let r = tokio::time::timeout(Duration::from_millis(700), rx.recv_async()).await;
        assert!(r.is_err(), "the receive was held back");
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).unwrap(),
        "put-back"
    );
    assert_eq!(proxy.cut(), 2, "the receive was held and the put-back lost");
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}
