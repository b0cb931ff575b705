//! The tokio backend's channel against its peers, same run: tokio mpsc (a receiver lock for
//! 2→2), async-channel and flume (async API), 1→1 and 2→2, on a 2-worker multi-thread runtime.
//! A third group, `main_consumer`, has one producer task and the consumer in
//! `Runtime::block_on` on the bench thread (the main thread drives the runtime and drains the
//! results): the consumer is not a worker, so waking it unparks a thread. `blocking_consumer`
//! is the same with each peer's blocking receive on the bench thread. There tokio mpsc is used
//! as it is (one consumer, no lock).
//!
//! `cargo bench -p uniconc-benches --bench tokio`. Throughput is messages per second; compare
//! the lines of one group with each other (ratios), not across machines.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

/// Messages per iteration.
const N: u64 = 100_000;
/// Channel bound.
const CAP: usize = 128;

/// One async MPMC channel under test.
trait Chan: Send + Sync + 'static {
    type Tx: Clone + Send + Sync + 'static;
    type Rx: Clone + Send + Sync + 'static;
    fn bounded(cap: usize) -> (Self::Tx, Self::Rx);
    fn send(tx: &Self::Tx, v: u64) -> impl Future<Output = ()> + Send;
    fn recv(rx: &Self::Rx) -> impl Future<Output = Option<u64>> + Send;
}

struct Uniconc;
impl Chan for Uniconc {
    type Tx = uniconc_async::Sender<u64>;
    type Rx = uniconc_async::Receiver<u64>;
    fn bounded(cap: usize) -> (Self::Tx, Self::Rx) {
        uniconc_async::channel(cap).unwrap()
    }
    async fn send(tx: &Self::Tx, v: u64) {
        tx.send_async(v).await.unwrap();
    }
    async fn recv(rx: &Self::Rx) -> Option<u64> {
        rx.recv_async().await.ok()
    }
}

struct TokioMpsc;
impl Chan for TokioMpsc {
    type Tx = tokio::sync::mpsc::Sender<u64>;
    /// tokio's receiver is single-consumer: shared behind an async lock.
    type Rx = Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<u64>>>;
    fn bounded(cap: usize) -> (Self::Tx, Self::Rx) {
        let (tx, rx) = tokio::sync::mpsc::channel(cap);
        (tx, Arc::new(tokio::sync::Mutex::new(rx)))
    }
    async fn send(tx: &Self::Tx, v: u64) {
        tx.send(v).await.unwrap();
    }
    async fn recv(rx: &Self::Rx) -> Option<u64> {
        rx.lock().await.recv().await
    }
}

struct AsyncChannel;
impl Chan for AsyncChannel {
    type Tx = async_channel::Sender<u64>;
    type Rx = async_channel::Receiver<u64>;
    fn bounded(cap: usize) -> (Self::Tx, Self::Rx) {
        async_channel::bounded(cap)
    }
    async fn send(tx: &Self::Tx, v: u64) {
        tx.send(v).await.unwrap();
    }
    async fn recv(rx: &Self::Rx) -> Option<u64> {
        rx.recv().await.ok()
    }
}

struct Flume;
impl Chan for Flume {
    type Tx = flume::Sender<u64>;
    type Rx = flume::Receiver<u64>;
    fn bounded(cap: usize) -> (Self::Tx, Self::Rx) {
        flume::bounded(cap)
    }
    async fn send(tx: &Self::Tx, v: u64) {
        tx.send_async(v).await.unwrap();
    }
    async fn recv(rx: &Self::Rx) -> Option<u64> {
        rx.recv_async().await.ok()
    }
}

/// `producers` tasks send `N` messages in all; `consumers` tasks receive until disconnected.
async fn run<C: Chan>(producers: u64, consumers: usize) {
    let (tx, rx) = C::bounded(CAP);
    let mut hs = Vec::new();
    for _ in 0..producers {
        let tx = tx.clone();
        hs.push(tokio::spawn(async move {
            for i in 0..N / producers {
                C::send(&tx, i).await;
            }
        }));
    }
    drop(tx);
    let mut cs = Vec::new();
    for _ in 0..consumers {
        let rx = rx.clone();
        cs.push(tokio::spawn(async move {
            let mut n = 0u64;
            while C::recv(&rx).await.is_some() {
                n += 1;
            }
            n
        }));
    }
    drop(rx);
    for h in hs {
        h.await.unwrap();
    }
    let mut total = 0;
    for c in cs {
        total += c.await.unwrap();
    }
    assert_eq!(total, N / producers * producers);
}

fn bench_shape(c: &mut Criterion, rt: &Runtime, name: &str, p: u64, q: usize) {
    let mut g = c.benchmark_group(format!("tokio/channel_{name}"));
    g.throughput(Throughput::Elements(N));
    g.bench_function(BenchmarkId::from_parameter("uniconc"), |b| {
        b.iter(|| rt.block_on(run::<Uniconc>(p, q)))
    });
    g.bench_function(BenchmarkId::from_parameter("tokio_mpsc"), |b| {
        b.iter(|| rt.block_on(run::<TokioMpsc>(p, q)))
    });
    g.bench_function(BenchmarkId::from_parameter("async_channel"), |b| {
        b.iter(|| rt.block_on(run::<AsyncChannel>(p, q)))
    });
    g.bench_function(BenchmarkId::from_parameter("flume"), |b| {
        b.iter(|| rt.block_on(run::<Flume>(p, q)))
    });
    g.finish();
}

/// Messages per iteration of the `main_consumer` group.
const MAIN_N: u64 = 2_000_000;
/// Channel bound of the `main_consumer` group.
const MAIN_CAP: usize = 1024;

/// A channel with one consumer that owns its receiver (tokio mpsc without a lock).
trait OneConsumer {
    type Tx: Send + 'static;
    type Rx: Send + 'static;
    fn bounded(cap: usize) -> (Self::Tx, Self::Rx);
    fn send(tx: &Self::Tx, v: u64) -> impl Future<Output = ()> + Send;
    fn recv(rx: &mut Self::Rx) -> impl Future<Output = Option<u64>> + Send;
    /// The blocking receive, for a consumer on a thread outside the runtime.
    fn recv_blocking(rx: &mut Self::Rx) -> Option<u64>;
}

/// The `Chan`s, as they are, with their blocking receive.
macro_rules! one_consumer_from_chan {
    ($($c:ty => $blocking:expr),*) => {$(
        impl OneConsumer for $c {
            type Tx = <$c as Chan>::Tx;
            type Rx = <$c as Chan>::Rx;
            fn bounded(cap: usize) -> (Self::Tx, Self::Rx) {
                <$c as Chan>::bounded(cap)
            }
            fn send(tx: &Self::Tx, v: u64) -> impl Future<Output = ()> + Send {
                <$c as Chan>::send(tx, v)
            }
            fn recv(rx: &mut Self::Rx) -> impl Future<Output = Option<u64>> + Send {
                <$c as Chan>::recv(rx)
            }
            fn recv_blocking(rx: &mut Self::Rx) -> Option<u64> {
                let recv: fn(&Self::Rx) -> Option<u64> = $blocking;
                recv(rx)
            }
        }
    )*};
}
one_consumer_from_chan!(
    Uniconc => |rx| uniconc_core::Receiver::recv(rx).ok(),
    AsyncChannel => |rx| rx.recv_blocking().ok(),
    Flume => |rx| rx.recv().ok()
);

/// tokio mpsc with its receiver owned by the one consumer.
struct TokioMpscOwned;
impl OneConsumer for TokioMpscOwned {
    type Tx = tokio::sync::mpsc::Sender<u64>;
    type Rx = tokio::sync::mpsc::Receiver<u64>;
    fn bounded(cap: usize) -> (Self::Tx, Self::Rx) {
        tokio::sync::mpsc::channel(cap)
    }
    async fn send(tx: &Self::Tx, v: u64) {
        tx.send(v).await.unwrap();
    }
    async fn recv(rx: &mut Self::Rx) -> Option<u64> {
        rx.recv().await
    }
    fn recv_blocking(rx: &mut Self::Rx) -> Option<u64> {
        rx.blocking_recv()
    }
}

/// One producer task sends `MAIN_N` messages; the consumer is the future of `rt.block_on`.
fn run_main_consumer<C: OneConsumer>(rt: &Runtime) {
    let (tx, mut rx) = C::bounded(MAIN_CAP);
    let producer = rt.spawn(async move {
        for i in 0..MAIN_N {
            C::send(&tx, i).await;
        }
    });
    let received = rt.block_on(async move {
        let mut n = 0u64;
        while C::recv(&mut rx).await.is_some() {
            n += 1;
        }
        n
    });
    assert_eq!(received, MAIN_N);
    rt.block_on(producer).unwrap();
}

/// As [`run_main_consumer`], with the blocking receive on the bench thread (outside the
/// runtime) instead of `rt.block_on`.
fn run_blocking_consumer<C: OneConsumer>(rt: &Runtime) {
    let (tx, mut rx) = C::bounded(MAIN_CAP);
    let producer = rt.spawn(async move {
        for i in 0..MAIN_N {
            C::send(&tx, i).await;
        }
    });
    let mut received = 0u64;
    while C::recv_blocking(&mut rx).is_some() {
        received += 1;
    }
    assert_eq!(received, MAIN_N);
    rt.block_on(producer).unwrap();
}

fn bench_main_consumer(c: &mut Criterion, rt: &Runtime, name: &str, run: fn(&Runtime, usize)) {
    let mut g = c.benchmark_group(format!("tokio/{name}"));
    g.throughput(Throughput::Elements(MAIN_N));
    g.sample_size(10);
    for (i, peer) in ["uniconc", "tokio_mpsc", "async_channel", "flume"]
        .into_iter()
        .enumerate()
    {
        g.bench_function(BenchmarkId::from_parameter(peer), |b| b.iter(|| run(rt, i)));
    }
    g.finish();
}

/// Runs one iteration of `shape` for the peer numbered in `bench_main_consumer`'s list.
macro_rules! by_peer {
    ($shape:ident) => {
        |rt: &Runtime, peer: usize| match peer {
            0 => $shape::<Uniconc>(rt),
            1 => $shape::<TokioMpscOwned>(rt),
            2 => $shape::<AsyncChannel>(rt),
            _ => $shape::<Flume>(rt),
        }
    };
}

fn channels(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    bench_shape(c, &rt, "1to1", 1, 1);
    bench_shape(c, &rt, "2to2", 2, 2);
    bench_main_consumer(c, &rt, "main_consumer", by_peer!(run_main_consumer));
    bench_main_consumer(c, &rt, "blocking_consumer", by_peer!(run_blocking_consumer));
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = channels
}
criterion_main!(benches);
