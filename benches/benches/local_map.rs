//! The in-process `Map` of the thread and tokio backends (one std `Mutex` around a `HashMap`)
//! against a lock-striped candidate written here (16 shards chosen by key hash, each its own
//! `Mutex<HashMap>` on its own cache line; a snapshot would lock all shards in order), in the
//! same run, to choose between them by measurement:
//!
//! - `get` and `insert` of `u64` → 32-byte `String` over 1024 keys, from 1, 2 and 4 threads;
//! - `update` of one key from 4 threads (every update contends).
//!
//! Both candidates do the same work per call (check the key encodes, encode or decode the
//! value), so the difference is the locking alone. Each figure is the median of interleaved
//! rounds (mutex, striped, mutex, striped, ...): load on the shared machine hits both alike.
//!
//! `cargo bench -p uniconc-benches --bench local_map`

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::hint::black_box;
use std::sync::{Barrier, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crossbeam_utils::CachePadded;
use uniconc::Map as _;
use uniconc_core::codec;

const KEYS: u64 = 1024;
const SHARDS: usize = 16;

/// The operations measured, over both candidates.
trait Candidate: Sync {
    fn get(&self, k: u64) -> Option<String>;
    fn insert(&self, k: u64, v: String) -> Option<String>;
    fn add(&self, k: u64);
}

impl Candidate for uniconc::thread::Map<u64, String> {
    fn get(&self, k: u64) -> Option<String> {
        uniconc::Map::get(self, &k).unwrap()
    }
    fn insert(&self, k: u64, v: String) -> Option<String> {
        uniconc::Map::insert(self, k, v).unwrap()
    }
    fn add(&self, k: u64) {
        self.update(k, |v| {
            let n: u64 = v.as_deref().map_or(0, |s| s.len() as u64);
            *v = Some("x".repeat((n % 32) as usize + 1));
        })
        .unwrap();
    }
}

/// One shard: keys as they are, values encoded, as in the real one.
type Shard = Mutex<HashMap<u64, Box<[u8]>>>;

/// The striped candidate.
struct Striped {
    hasher: RandomState,
    shards: Box<[CachePadded<Shard>]>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn encode<T: serde::Serialize + 'static>(v: &T) -> Box<[u8]> {
    let n = codec::encoded_size(v).unwrap();
    assert!(n <= codec::LIMIT);
    let mut b = vec![0u8; n].into_boxed_slice();
    codec::encode_into(v, &mut b).unwrap();
    b
}

impl Striped {
    fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(Mutex::new(HashMap::new())))
                .collect(),
        }
    }

    fn shard<Q: Hash>(&self, k: &Q) -> &Shard {
        // The top bits pick the shard; the map inside hashes again (its own hasher).
        let h = self.hasher.hash_one(k);
        &self.shards[(h >> 60) as usize % SHARDS]
    }
}

impl Candidate for Striped {
    fn get(&self, k: u64) -> Option<String> {
        codec::encoded_size(&k).unwrap();
        lock(self.shard(&k))
            .get(&k)
            .map(|b| codec::decode(b).unwrap())
    }
    fn insert(&self, k: u64, v: String) -> Option<String> {
        codec::encoded_size(&k).unwrap();
        let b = encode(&v);
        let old = lock(self.shard(&k)).insert(k, b);
        old.map(|b| codec::decode(&b).unwrap())
    }
    fn add(&self, k: u64) {
        codec::encoded_size(&k).unwrap();
        let mut m = lock(self.shard(&k));
        let v: Option<String> = m.get(&k).map(|b| codec::decode(b).unwrap());
        let n = v.as_deref().map_or(0, |s| s.len() as u64);
        m.insert(k, encode(&"x".repeat((n % 32) as usize + 1)));
    }
}

#[derive(Clone, Copy)]
enum Op {
    Get,
    Insert,
    Update,
}

/// Wall-clock nanoseconds per operation (all threads' operations counted) of `threads`
/// threads doing `per_thread` operations each, started together.
fn run(c: &dyn Candidate, op: Op, threads: usize, per_thread: u64) -> f64 {
    let value = "v".repeat(32);
    let start = Barrier::new(threads + 1);
    let t0 = std::thread::scope(|s| {
        for t in 0..threads as u64 {
            let (start, value) = (&start, &value);
            s.spawn(move || {
                start.wait();
                for i in 0..per_thread {
                    let k = (i.wrapping_mul(7919) + t * 131) % KEYS;
                    match op {
                        Op::Get => {
                            black_box(c.get(k));
                        }
                        Op::Insert => {
                            black_box(c.insert(k, value.clone()));
                        }
                        Op::Update => c.add(0),
                    }
                }
            });
        }
        start.wait();
        Instant::now()
    });
    t0.elapsed().as_nanos() as f64 / (threads as u64 * per_thread) as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read.
    let rounds = 9;
    let per_thread = 100_000;
    let mutex = <uniconc::thread::Map<u64, String> as uniconc::Map<u64, String>>::new().unwrap();
    let striped = Striped::new();
    for k in 0..KEYS {
        Candidate::insert(&mutex, k, "v".repeat(32));
        striped.insert(k, "v".repeat(32));
    }
    println!(
        "== local_map: one Mutex vs 16 striped shards, ns/op (median of {rounds} interleaved rounds) =="
    );
    let cases: [(&str, Op, usize); 7] = [
        ("get, 1 thread", Op::Get, 1),
        ("get, 2 threads", Op::Get, 2),
        ("get, 4 threads", Op::Get, 4),
        ("insert, 1 thread", Op::Insert, 1),
        ("insert, 2 threads", Op::Insert, 2),
        ("insert, 4 threads", Op::Insert, 4),
        ("update one key, 4 threads", Op::Update, 4),
    ];
    for (name, op, threads) in cases {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            a.push(run(&mutex, op, threads, per_thread));
            b.push(run(&striped, op, threads, per_thread));
        }
        let (a, b) = (median(a), median(b));
        println!(
            "{name:<27} mutex {a:>7.1} ns/op   striped {b:>7.1} ns/op   striped/mutex {:.2}",
            b / a
        );
    }
}
