//! # uniconc
//!
//! One API for concurrent programs — a Queue (channel), locks and friends, shared values,
//! `spawn` and a `Pool` — over three execution units that you switch with one line:
//!
//! | backend | unit | module | marker |
//! |---|---|---|---|
//! | process (feature `process`, Unix) | forked process, state in shared memory | `uniconc::process` | `uniconc::Process` |
//! | thread (feature `thread`, default) | OS thread | `uniconc::thread` | `uniconc::Thread` |
//! | tokio (feature `tokio`) | tokio task | `uniconc::tokio` | `uniconc::Tokio` |
//! | redis (feature `redis`, Unix) | forked local process, state on a Redis server | `uniconc::redis` | `uniconc::Redis` |
//!
//! Features are additive; [`Default`](type@Default) picks process, then tokio, then thread among the enabled
//! ones. The sections below use the thread backend; every example runs unchanged on the others
//! (the conformance suite in `tests/` runs each behaviour on all three).
//!
//! ## The one-line switch
//!
//! ```
//! use uniconc::prelude::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! type B = uniconc::Thread; // or uniconc::Process, or uniconc::Tokio
//! let (tx, rx) = B::channel::<u64>(64)?;
//! let h = B::spawn(move || rx.iter().sum::<u64>())?;
//! for i in 1..=10 {
//!     tx.send(i)?;
//! }
//! drop(tx); // the last sender gone: the receiver drains, then its iterator ends
//! assert_eq!(h.join()?, 55);
//! # Ok(())
//! # }
//! ```
//!
//! Generic code is written once against [`Backend`] (`fn run<B: Backend>()`); messages are
//! [`Message`]s (serde + `Send`), shared values hold [`Plain`] data. Each backend module also
//! exposes the same free functions (`uniconc::thread::channel`, `uniconc::process::pool`, ...).
//!
//! ## Channels
//!
//! Multi-producer multi-consumer FIFOs; both halves are `Clone`. A capacity of 0 is an error,
//! not a rendezvous. Every operation has a blocking, a `try_`, a `_timeout` and an `_async` form,
//! and every error says why and hands the unsent value back:
//!
//! ```
//! use std::time::Duration;
//! use uniconc::prelude::*;
//! use uniconc::{RecvTimeoutError, TryRecvError};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! type B = uniconc::Thread;
//! assert!(B::channel::<u8>(0).is_err());
//! let (tx, rx) = B::channel::<String>(1)?;
//! tx.try_send("first".into())?;
//! let refused = tx.try_send("second".into()).unwrap_err();
//! assert!(refused.is_full());
//! assert_eq!(refused.into_inner(), "second"); // the message comes back
//! assert_eq!(rx.recv()?, "first");
//! assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
//! assert_eq!(rx.recv_timeout(Duration::from_millis(10)), Err(RecvTimeoutError::Timeout));
//! tx.send("last".into())?;
//! tx.close(); // for everyone: receivers drain, then see Disconnected
//! assert_eq!(rx.recv()?, "last");
//! assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
//! # Ok(())
//! # }
//! ```
//! Messages are owned serde types (`String`, not `&str`): on the process backend they are
//! serialized into shared memory.
//!
//! ## Large byte payloads: `send_with` and `recv_with`
//!
//! On a channel of `Vec<u8>` (or `Box<[u8]>`), `send_with(len, |buf| ..)` lets you write the
//! message's bytes where the channel keeps them, and `recv_with(|bytes| ..)` lets you read
//! the next message where it lies, returning what your closure returns:
//!
//! ```
//! use uniconc::prelude::*;
//!
//! fn checksum(bytes: &[u8]) -> u64 {
//!     bytes.iter().map(|&b| u64::from(b)).sum()
//! }
//!
//! fn stream<B: Backend>(frame: Vec<u8>) -> Result<u64, Box<dyn std::error::Error>> {
//!     let (tx, rx) = B::channel::<Vec<u8>>(4)?;
//!     let producer = B::spawn(move || {
//!         for _ in 0..3 {
//!             // Write the bytes straight into the channel: no Vec to build first.
//!             tx.send_with(frame.len(), |buf| buf.copy_from_slice(&frame)).unwrap();
//!         }
//!     })?;
//!     let mut total = 0;
//!     while let Ok(sum) = rx.recv_with(checksum) {
//!         total += sum; // read in place: nothing copied out, nothing allocated
//!     }
//!     producer.join()?;
//!     Ok(total)
//! }
//!
//! assert_eq!(stream::<uniconc::Thread>(vec![1; 1000])?, 3000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Use them for large messages (tens of KiB and up) on the process backend: `send` of a
//! `Vec<u8>` costs building the `Vec`, then copying it into shared memory, and `recv` copies
//! it out into a new `Vec`; the closure forms write the bytes once and read them once, in the
//! shared memory itself (figures in `benches/README.md`). The costs are the closures' rules:
//! `send_with` has claimed the message's place before your closure runs, and `recv_with`
//! holds the message until yours returns, so both should only write or read (copy out what
//! must outlive the closure); the channel must also be able to hold the message (its byte
//! budget: `uniconc::process::ChannelBuilder::byte_budget`). On the thread and tokio backends
//! they fill and read an ordinary `Vec`, which those channels already move without a copy.
//!
//! ## Waiting on several channels: select
//!
//! [`select!`] blocks until one of several operations is ready and runs that arm: a worker
//! serving a job queue that also listens for a stop needs no polling loop. Each arm is
//! `recv(rx) -> result => ...` or `send(tx, value) -> result => ...`; a last `default => ...`
//! runs when nothing is ready now, `default(timeout) => ...` when nothing became ready in time.
//! Timers ([`select::after`], [`select::tick`], [`select::never`]) are receivers too.
//!
//! ```
//! use std::time::Duration;
//! use uniconc::prelude::*;
//! use uniconc::RecvError;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! type B = uniconc::Thread;
//! let (jobs_tx, jobs) = B::channel::<u64>(16)?;
//! let (stop_tx, stop) = B::channel::<()>(1)?;
//! let (done_tx, done) = B::channel::<u64>(16)?;
//! let worker = B::spawn(move || {
//!     loop {
//!         uniconc::select! {
//!             recv(jobs) -> job => match job {
//!                 Ok(n) => done_tx.send(n * n).unwrap(),
//!                 Err(RecvError::Disconnected) => return "no more producers".to_string(),
//!                 Err(e) => panic!("{e}"),
//!             },
//!             recv(stop) -> _ => return "stopped".to_string(),
//!             default(Duration::from_secs(30)) => return "idle too long".to_string(),
//!         }
//!     }
//! })?;
//! jobs_tx.send(3)?;
//! jobs_tx.send(4)?;
//! assert_eq!(done.recv()? + done.recv()?, 25);
//! stop_tx.close(); // closing the stop channel stops every worker listening on it
//! assert_eq!(worker.join()?, "stopped");
//! # Ok(())
//! # }
//! ```
//!
//! The operation that fires is performed exactly once and the others are untouched; the
//! choice among ready operations is random, so none starves. A receive whose channel is
//! disconnected fires with `Err(Disconnected)` — on the process backend also when the last
//! sender's process was killed. The [`select::Select`] builder does the same with indexes,
//! `try_select`, `select_timeout`, `ready` and `select_async`, and keeps an unsent value in a
//! slot you own. It works in generic code (`B::Receiver<T>` is selectable); the operations of
//! one select are of one backend, and mixing backends does not compile.
//!
//! In async code, `select_async` waits without blocking the executor, and `tokio::select!`
//! over `recv_async`/`send_async` works as well: those futures are cancel-safe, so the branch
//! that loses takes nothing.
//!
//! ## Locks, semaphores, events, barriers
//!
//! A holder that panicked (or, on the process backend, died) does not deadlock the next
//! locker: `lock()` returns `Err(LockError::Poisoned/OwnerDied(guard))` with the guard.
//!
//! ```
//! use uniconc::prelude::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! type B = uniconc::Thread;
//! let sem = B::semaphore(2)?;
//! let permit = sem.acquire(); // given back on drop
//! assert_eq!(sem.available(), 1);
//! drop(permit);
//!
//! let go = B::event()?;
//! let waiter = {
//!     let go = go.clone();
//!     B::spawn(move || {
//!         go.wait();
//!         String::from("released")
//!     })?
//! };
//! go.set();
//! assert_eq!(waiter.join()?, "released");
//!
//! let lock = B::lock()?;
//! let guard = lock.lock().unwrap_or_else(|e| e.into_guard());
//! assert!(lock.try_lock().is_err());
//! drop(guard);
//! # Ok(())
//! # }
//! ```
//!
//! ## Shared values and arrays
//!
//! Python's `Value` and `Array`: plain data with one lock; on the process backend they live in
//! shared memory. Whole-array reads run at memory speed.
//!
//! ```
//! use uniconc::prelude::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! type B = uniconc::Thread;
//! let counter = B::value(0u64)?;
//! let units: Vec<_> = (0..4)
//!     .map(|_| {
//!         let counter = counter.clone();
//!         B::spawn(move || for _ in 0..1000 { counter.update(|v| *v += 1) })
//!     })
//!     .collect::<Result<_, _>>()?;
//! for u in units {
//!     u.join()?;
//! }
//! assert_eq!(counter.load(), 4000);
//!
//! let a = <B as Backend>::Array::<f64>::from_slice(&[1.0, 2.0, 3.0])?;
//! a.set(1, 20.0)?;
//! assert!(a.set(3, 0.0).is_err()); // out of bounds: an error, nothing written
//! assert_eq!(a.to_vec(), vec![1.0, 20.0, 3.0]);
//! # Ok(())
//! # }
//! ```
//!
//! ## Shared dicts and lists
//!
//! Python's `Manager().dict()` and `Manager().list()`: a [`Map<K, V>`](Map) and a
//! [`List<T>`](List) hold any [`Message`] and grow. Reads return copies (elements are stored
//! encoded); every operation is atomic, and `update` runs a closure on one entry (or on the
//! whole list) with no other unit's operation in between. Snapshots (`to_vec`, `iter`, `keys`,
//! `values`) are taken under one lock. On the process backend they live in shared memory, with
//! no server process, and a process killed in the middle of an operation leaves it wholly
//! done or not done.
//!
//! ```
//! use uniconc::prelude::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! type B = uniconc::Thread;
//! let d = B::map::<String, u64>()?;
//! let l = B::list::<String>()?;
//! l.extend(["a".to_owned(), "b".to_owned()])?;
//! let units: Vec<_> = (0..4)
//!     .map(|_| {
//!         let d = d.clone();
//!         B::spawn(move || {
//!             for _ in 0..1000 {
//!                 d.update("hits".into(), |n| *n.get_or_insert(0) += 1).unwrap();
//!             }
//!         })
//!     })
//!     .collect::<Result<_, _>>()?;
//! let l2 = l.clone();
//! B::spawn(move || l2.reverse().unwrap())?.join()?; // Python: l.reverse() in a child
//! for u in units {
//!     u.join()?;
//! }
//! assert_eq!(d.get("hits")?, Some(4000)); // look up a String key with a &str
//! assert_eq!(l.to_vec()?, ["b", "a"]);
//! assert!(l.set(2, "c".into()).is_err()); // out of range: an error, nothing changed
//! # Ok(())
//! # }
//! ```
//!
//! A value that does not encode, or an index out of range, is an error that changes nothing;
//! so is a panicking `update` closure (the panic propagates).
//!
//! ## Spawning units
//!
//! `join` reports how a unit ended: its value, `Panicked(message)`, and on the process backend
//! `Killed(signal)` or `Exited(code)`.
//!
//! ```
//! use std::time::Duration;
//! use uniconc::prelude::*;
//! use uniconc::JoinError;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! type B = uniconc::Thread;
//! let h = B::spawn(|| -> u8 { panic!("boom") })?;
//! assert_eq!(h.join(), Err(JoinError::Panicked("boom".into())));
//!
//! let (tx, rx) = B::channel::<u8>(1)?;
//! let mut slow = B::spawn(move || rx.recv().unwrap())?;
//! assert_eq!(slow.join_timeout(Duration::from_millis(10)), Err(JoinError::Timeout));
//! tx.send(7)?;
//! assert_eq!(slow.join()?, 7);
//! # Ok(())
//! # }
//! ```
//!
//! ## Pools
//!
//! `map` keeps input order, `imap` is lazy (it works on an endless iterator), `imap_unordered`
//! yields results as they finish (`imap_with` takes that [`Order`] as an argument), a panicking
//! task fails only its own item, and on the process backend a worker that dies is reported
//! (`TaskError::WorkerDied`) and replaced.
//!
//! Each of `map`, `imap`, `imap_unordered`, `imap_with` and `submit` has a form that takes a
//! named [`task!`] instead of a closure — `map_task::<T>(items)`, `imap_task`,
//! `imap_unordered_task`, `imap_task_with`, `submit_task::<T>(arg)` — so code written with
//! tasks runs unchanged on every backend. On the process backend the task runs in
//! clean-started workers when the pool is built with `start(Start::Clean)`, or by default in
//! a program that called [`init()`]; otherwise in the pool's forked workers, as a `fn` item
//! does (see [`Start`]).
//!
//! ```
//! use uniconc::prelude::*;
//! use uniconc::{Order, Pool, PoolError, TaskError};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! type B = uniconc::Thread;
//! let pool = <B as Backend>::Pool::builder().workers(2).chunk_size(16).build()?;
//! assert_eq!(pool.map(square, 0..5u64)?, vec![0, 1, 4, 9, 16]);
//! let first: Vec<u64> = pool.imap(square, 0u64..).take(3).map(Result::unwrap).collect();
//! assert_eq!(first, vec![0, 1, 4]);
//! let done = pool.imap_with(square, 0..4u64, Order::Completion);
//! let mut done: Vec<u64> = done.map(Result::unwrap).collect();
//! done.sort(); // in the order they finished
//! assert_eq!(done, vec![0, 1, 4, 9]);
//! let r = pool.map(|x: u64| if x == 2 { panic!("bad item") } else { x }, 0..4u64);
//! assert!(matches!(r, Err(PoolError::Task { index: 2, error: TaskError::Panicked(_) })));
//! let h = pool.submit(square, 12)?;
//! assert_eq!(h.wait()?, 144);
//!
//! uniconc::task! {
//!     fn cube(x: u64) -> u64 { x * x * x }
//! }
//! assert_eq!(pool.map_task::<cube>(0..4u64)?, vec![0, 1, 8, 27]);
//! assert_eq!(pool.submit_task::<cube>(5)?.wait()?, 125);
//! pool.close();
//! pool.join()?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Async
//!
//! Every blocking call has an `_async` form returning a `Send` future that never blocks an
//! executor thread and is cancel-safe (dropping it loses no message and leaks no permit), on
//! every backend: write a program once in async style and run it on tasks, threads or processes.
//!
//! ```
//! use uniconc::prelude::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! type B = uniconc::Thread;
//! let (tx, rx) = B::channel::<u64>(8)?;
//! let consumer = B::spawn_async(async move {
//!     let mut sum = 0;
//!     while let Ok(v) = rx.recv_async().await {
//!         sum += v;
//!     }
//!     sum
//! })?;
//! for i in 0..10 {
//!     tx.send(i)?; // a sync producer, an async consumer
//! }
//! drop(tx);
//! assert_eq!(consumer.join()?, 45);
//! # Ok(())
//! # }
//! ```
//!
//! The blocking forms work inside a runtime too, with one exception: on the tokio backend, a
//! blocking call that has to wait on a task of a **current-thread** runtime panics (tokio's
//! `block_in_place` needs a multi-thread runtime); the thread and process backends block the
//! calling thread instead. Inside async code, use the `_async` forms.
//!
//! ## Tasks and clean starts
//!
//! A closure cannot leave its binary; a named task can. [`task!`] turns a plain `fn` with a
//! serde argument and result into a [`Task`] registered by name, and
//! [`Backend::spawn_task`] runs it on any backend. On the process backend, the task runs in
//! a **clean-started** worker — the binary re-executed, inheriting none of the caller's
//! threads, locks or runtime — which is what a multi-threaded program (tokio, rayon, a
//! logging thread) needs: a forked child can deadlock on a lock another thread held at the
//! fork. Call [`init()`] first thing in `main`; it turns a worker into the task's runner.
//!
//! ```
//! use uniconc::prelude::*;
//!
//! uniconc::task! {
//!     /// CPU work, runnable in another process.
//!     pub fn primes_below(n: u32) -> usize {
//!         (2..n).filter(|&k| (2..k).take_while(|d| d * d <= k).all(|d| k % d != 0)).count()
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! uniconc::init();
//! type B = uniconc::Thread; // or uniconc::Process: a clean worker process
//! assert_eq!(B::spawn_task::<primes_below>(20)?.join()?, 8);
//! # Ok(())
//! # }
//! ```
//!
//! [`Start`] chooses between `Clean` (the default for tasks) and `Fork`, for one unit
//! (`uniconc::process::spawn_task_with`) and for a pool (`Pool::builder().start(..)`: a clean
//! pool runs `map_task`, `submit_task`, ... in clean workers and refuses closures). An
//! unknown task name, a schema mismatch between two builds and an undecodable argument are
//! errors naming the task.
//!
//! ## Redis: beyond one machine
//!
//! With the feature `redis`, `type B = uniconc::Redis;` keeps the program and moves every
//! primitive onto a Redis server, shared by every process that can reach it, on this machine
//! or others. The server is named by `UNICONC_REDIS_URL` (default `redis://127.0.0.1:6379`;
//! a password or ACL user goes in the URL, `rediss://` needs the crate's `tls` feature).
//! `spawn` forks a local process whose primitives are remote, like Python's `Manager`: the
//! handles it inherits work in it and count as its own. A process that dies holding handles
//! counts as gone once its lease lapses (5 s): receivers see `Disconnected`, the next locker
//! gets `OwnerDied`. The pool runs named tasks on worker agents (`uniconc::redis::worker`),
//! which may run anywhere; closures are refused ([`POOL_CLOSURES`](Backend::POOL_CLOSURES) is
//! `false`). What a lost connection, a server restart or a failover does to messages and
//! locks is spelled out in the "Failure semantics" section of `uniconc::redis` (channels are
//! at-most-once; locks carry fencing tokens).
//!
//! ## Differences between backends
//!
//! The contract is the same on every backend; this table lists everything that is not, and
//! how generic code asks. The capability constants on [`Backend`] —
//! [`CAN_KILL`](Backend::CAN_KILL), [`CAN_CANCEL`](Backend::CAN_CANCEL),
//! [`TASK_TIMEOUT`](Backend::TASK_TIMEOUT), [`ISOLATED`](Backend::ISOLATED),
//! [`FORKS`](Backend::FORKS), [`ASYNC_TASKS`](Backend::ASYNC_TASKS) and
//! [`REMOTE`](Backend::REMOTE) — are the way to branch on a difference; never compare
//! `B::NAME`.
//!
//! | | process | thread | tokio | generic code asks |
//! |---|---|---|---|---|
//! | unit | a forked child process | an OS thread | `spawn`: a closure on tokio's blocking pool; `spawn_async`: a task | `ISOLATED` (separate address spaces: a crash stays in its unit; true only for process), `REMOTE` (false for all three) |
//! | `JoinHandle::kill` | SIGKILL: stops any unit; `join` then reports `Killed(9)` | `Unsupported` (a thread cannot be stopped from outside: signal it through a channel or an `Event`) | aborts a `spawn_async` task, and a `spawn` closure that has not started; `Unsupported` once the closure runs | `CAN_KILL` (stops any unit), `CAN_CANCEL` (stops a `spawn_async` unit) |
//! | how a unit can end | value, `Panicked(msg)`, `Killed(signal)`, `Exited(code)` | value, `Panicked(msg)` | value, `Panicked(msg)`, `Cancelled` after a kill | match on [`JoinError`] |
//! | pool `task_timeout`, `submit_with_timeout` | the overdue worker is killed and replaced; the task reports `DeadlineExceeded` | refused with `Unsupported` (a running thread cannot be stopped) | the task reports `DeadlineExceeded` at once; an async job is aborted, a blocking closure runs to its end in the background; needs a runtime with a time driver | `TASK_TIMEOUT` |
//! | pool `terminate` and drop | queued and running tasks report `Cancelled`; running ones are killed with their worker | queued tasks report `Cancelled`; running ones run to their end and deliver | queued and running tasks report `Cancelled`; async jobs are aborted, a running blocking closure runs on in the background | |
//! | worker dies mid-task | `TaskError::WorkerDied` for its task(s); the worker is replaced | cannot happen (a panic is `Panicked`) | cannot happen | |
//! | messages, results, pool items | [`Message`] (serde): encoded into shared memory | `Send + 'static` through `uniconc::thread`; [`Message`] through [`Backend`] | as thread | [`Message`] |
//! | largest message | the channel's byte budget: `capacity * 256` bytes, clamped to 1 MiB ..= 256 MiB, chosen with `uniconc::process::ChannelBuilder::byte_budget`; a larger one is refused with `SendError::Invalid(value, MessageError::TooLarge { .. })` | no limit (memory) | no limit (memory) | |
//! | a message that does not decode | `RecvError::Invalid(MessageError::Decode(..))`, the message is consumed | cannot happen | cannot happen | |
//! | unbounded channels | a ring of up to 1 GiB reserved in shared memory, committed as it fills; past 1 GiB queued, `try_send` says `Full` and `send` waits. A channel that never empties keeps up to 2 GiB resident (`uniconc::process::unbounded`) | unbounded (crossbeam's list) | unbounded (a `VecDeque`) | |
//! | where `Lock`, `Semaphore`, `Event`, `Barrier`, `Value`, `Array` live | `MAP_SHARED` memory mapped at creation: shared with every process forked *after* it (create first, then spawn) | the heap, shared by `Arc` | the heap, shared by `Arc` | |
//! | where `Map` and `List` live | shared memory mapped at creation, as above (create first, then spawn); a collection whose memory is used up refuses with `Full`; a process killed mid-operation leaves the operation wholly done or not done | the heap: a `Mutex` around a `HashMap` or `Vec` of encoded values, shared by `Arc`; grows with memory | as thread | |
//! | largest `Map`/`List` value | what the collection has room for, at most 256 MiB encoded; a larger one is `InvalidMessage` | 256 MiB encoded (the codec's limit), `InvalidMessage` past it | as thread | |
//! | a `Lock` holder that dies | a killed holder process: the next `lock()` gets `LockError::OwnerDied(guard)` | cannot happen separately (a thread's death is a panic) | as thread | |
//! | a `Lock` holder that panics | the rule of [`Lock`], on every backend | the same | the same | |
//! | units per primitive | a channel tracks at most `uniconc::process::MAX_PROCESSES` (4096) processes; `spawn` refuses to fork past that with an error | the OS's thread limit | `spawn` closures: tokio's blocking pool (512 at once, more wait); tasks: memory | |
//! | semaphore permits | at most `uniconc::process::MAX_PERMITS` (2^31 - 1) | `usize` | tokio's limit, `usize::MAX >> 3` | |
//! | handles that travel (a `Sender`, `Lock`, ... in a message, a `Map` or a task result) | work in any process of the user, also one that did not inherit them; an end in flight counts in the sending process until first read, or until that process ends; the same bytes read again are one more clone; a handle in a `spawn` result is gone (the child has ended), one from a pool task works; named objects' handles do not travel (send the name) | the channel carries the handle itself; through a codec (`Map`, task results) the bytes are read once | as thread | `TRAVEL` (true everywhere; on Redis a handle in flight is a lease of its serializer, released one lease after it is killed, and the same bytes read again are one more clone); bound `B::Sender<T>: Message` |
//! | fork | handles are copied into the child; a child that never uses a channel keeps the handles it inherited counted until it exits (`uniconc::process::forget_inherited_handles` drops them); forking from a multi-threaded program copies only the forking thread | does not fork | does not fork | |
//! | a unit killed by the OS (SIGKILL, OOM) | counts as having dropped its channel handles (peers notice within ~100 ms); a message it was sending or receiving at that instant is lost, nothing else | takes the whole program with it | takes the whole program with it | `ISOLATED` |
//! | blocking calls inside a runtime | block the calling thread | block the calling thread | `block_in_place` on a multi-thread runtime; **panic** on a current-thread runtime when they must wait | use the `_async` forms in async code |
//! | waiting | spins up to ~15 µs, yields, then sleeps on a futex | crossbeam's backoff, then parks | parks (no spin) | |
//! | `spawn_task` | a clean-started worker (the binary re-executed; needs `init()` in `main`); `Start::Fork` on request | `spawn` of `T::run` | `spawn` of `T::run` | |
//! | pool `start(Start)` | `Clean`: clean-started workers run tasks only (closures refused, `Unsupported`); `Fork`: forked workers run both; unset: closures forked, tasks clean once `init()` was called | ignored | ignored | |
//! | platforms | Unix only (Linux: futex; other Unixes: polling fallbacks) | every std target | every tokio target | |
//!
//! Per-unit costs (spawn, memory, channel throughput) differ by orders of magnitude: the
//! README's `compare` table measures them side by side.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![doc(test(attr(deny(warnings))))]

#[cfg(all(feature = "process", not(unix)))]
compile_error!(
    "uniconc's `process` backend needs a Unix (fork and MAP_SHARED memory); \
     enable only `thread` and/or `tokio` on this target"
);

pub use uniconc_core::{
    Array, Backend, Barrier, ByteMessage, Error, ErrorKind, Event, IntoIter, Iter, JoinError,
    JoinHandle, List, Lock, LockError, Map, Message, MessageError, Order, Permit, Plain, Pool,
    PoolBuilder, PoolConfig, PoolError, Receiver, RecvError, RecvTimeoutError, Result, Semaphore,
    SendError, SendTimeoutError, Sender, Start, TaskError, TaskHandle, TryIter, TryLockError,
    TryRecvError, TrySendError, Value, WaitError,
};

pub use uniconc_core::select;
pub use uniconc_core::task;
pub use uniconc_core::{Task, TaskRequest};

pub use uniconc_core::named;
pub use uniconc_core::{Name, Named, OpenMode};

/// Call first thing in `main` in a program that runs named tasks in clean-started worker
/// processes (the process backend's default for [`Backend::spawn_task`]): in such a worker it
/// runs the requested task and exits without returning; in a normal run it returns at once.
/// Without the `process` backend it does nothing.
///
/// ```
/// // First thing in `main`: in a worker, nothing before it runs but task registrations.
/// uniconc::init();
/// // ... the program
/// ```
///
/// In a `#[test]`, call it at the top of the test fn; see `uniconc::process::start` for how a
/// test binary serves as a worker.
pub fn init() {
    // (Loom builds of the process backend model its ring only: no workers there.)
    #[cfg(all(feature = "process", unix, not(uniconc_loom)))]
    uniconc_process::init();
}

/// The thread backend: OS threads sharing memory. Its free functions take any `Send` value
/// (no serde bound).
///
/// ```
/// use uniconc::prelude::*;
///
/// let (tx, rx) = uniconc::thread::channel::<u32>(4)?;
/// let h = uniconc::thread::spawn(move || rx.recv().map_or(0, |v| v + 1))?;
/// tx.send(41)?;
/// assert_eq!(h.join()?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "thread")]
#[doc(inline)]
pub use uniconc_thread as thread;
#[cfg(feature = "thread")]
pub use uniconc_thread::Thread;

/// The process backend: forked processes sharing memory. A child sees the primitives created
/// before it was forked, and its writes to them are seen by the parent.
///
/// ```
/// use uniconc::prelude::*;
///
/// let counter = uniconc::process::value(0u64)?;
/// let c = counter.clone();
/// let child = uniconc::process::spawn(move || {
///     c.update(|v| {
///         *v += 1;
///         *v
///     })
/// })?; // a forked child process
/// assert_eq!(child.join()?, 1);
/// assert_eq!(counter.load(), 1); // the child's write, in shared memory
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(all(feature = "process", unix))]
#[doc(inline)]
pub use uniconc_process as process;
#[cfg(all(feature = "process", unix))]
pub use uniconc_process::Process;

/// The Redis backend: primitives on a Redis server, shared by every process that reaches it,
/// on one machine or many. `spawn` forks a local process whose primitives are remote (the
/// handles it inherits work in it); the pool runs named tasks on worker agents. A program
/// started on another machine opens an object by name (`Redis::named("jobs")`), and handles
/// travel: a `Sender` sent through a channel works where it lands.
///
/// ```
/// use uniconc::prelude::*;
/// # let server = uniconc::redis::testing::RedisServer::start();
/// # uniconc::redis::set_default_url(&server.url())?;
///
/// // The server: UNICONC_REDIS_URL (default redis://127.0.0.1:6379).
/// let (tx, rx) = uniconc::Redis::channel::<u32>(4)?;
/// let child = uniconc::Redis::spawn(move || tx.send(7).is_ok())?; // a forked local process
/// assert!(child.join()?);
/// assert_eq!(rx.recv()?, 7); // through the server
///
/// // By name, from any program that reaches the server; a reply sender travels.
/// let jobs = uniconc::Redis::named("doc-facade-jobs").sender::<uniconc::redis::Sender<u32>>(Some(8))?;
/// let (reply_tx, reply_rx) = uniconc::Redis::channel::<u32>(1)?;
/// jobs.send(reply_tx)?;
/// let asked = uniconc::Redis::named("doc-facade-jobs").existing().receiver(Some(8))?;
/// let reply: uniconc::redis::Sender<u32> = asked.recv()?; // elsewhere, in the worker
/// reply.send(42)?;
/// assert_eq!(reply_rx.recv()?, 42);
/// uniconc::Redis::named("doc-facade-jobs").unlink()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(all(feature = "redis", unix))]
#[doc(inline)]
pub use uniconc_redis as redis;
#[cfg(all(feature = "redis", unix))]
pub use uniconc_redis::Redis;

/// The tokio backend: tokio tasks, on the caller's runtime, or outside one on a runtime the
/// backend starts on first use.
///
/// ```
/// use uniconc::prelude::*;
///
/// // Outside a runtime: blocking calls work, tasks run on the backend's own runtime.
/// let (tx, rx) = uniconc::tokio::channel::<u32>(4)?;
/// let task = uniconc::tokio::spawn_async(async move {
///     rx.recv_async().await.map_or(0, |v| v * 2)
/// })?;
/// tx.send(21)?;
/// assert_eq!(task.join()?, 42);
///
/// // Inside a runtime (here a current-thread one): await the `_async` forms.
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// let got = rt.block_on(async {
///     let (tx, rx) = uniconc::tokio::channel::<u32>(1)?;
///     tx.send_async(5).await?;
///     Ok::<_, Box<dyn std::error::Error>>(rx.recv_async().await?)
/// })?;
/// assert_eq!(got, 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "tokio")]
#[doc(inline)]
pub use uniconc_async as tokio;
#[cfg(feature = "tokio")]
pub use uniconc_async::Tokio;

/// The README's Rust examples, compiled and run by `cargo test --doc` (they use the process
/// backend and serde's derive, a dev-dependency here as in a user's crate).
#[cfg(all(doctest, feature = "process", unix))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The docs of [`Default`](type@Default), written once for the three cfg arms below.
#[cfg(any(all(feature = "process", unix), feature = "tokio", feature = "thread"))]
macro_rules! default_docs {
    () => {
        r#"The backend picked among the enabled ones: process, then tokio, then thread.

Code written against it runs on whichever backend the build enables:

```
use uniconc::prelude::*;

type B = uniconc::Default;
assert!(["process", "tokio", "thread"].contains(&B::NAME));
let (tx, rx) = B::channel::<String>(1)?;
tx.send("on any backend".to_string())?;
assert_eq!(rx.recv()?, "on any backend");
# Ok::<(), Box<dyn std::error::Error>>(())
```"#
    };
}

cfg_if::cfg_if! {
    if #[cfg(all(feature = "process", unix))] {
        #[doc = default_docs!()]
        pub type Default = Process;
    } else if #[cfg(feature = "tokio")] {
        #[doc = default_docs!()]
        pub type Default = Tokio;
    } else if #[cfg(feature = "thread")] {
        #[doc = default_docs!()]
        pub type Default = Thread;
    }
}

/// Everything generic code needs in scope: [`Backend`], the handle traits (imported for
/// their methods), [`Message`] and [`Plain`].
///
/// ```
/// use uniconc::prelude::*; // one import: every method of every handle
///
/// fn tally<B: Backend>(words: &[&str]) -> Result<u64, Box<dyn std::error::Error>> {
///     let (tx, rx) = B::channel::<String>(words.len())?;
///     let count = B::value(0u64)?;
///     for w in words {
///         tx.send(w.to_string())?; // Sender
///     }
///     drop(tx);
///     for w in rx.iter() {
///         count.update(|c| *c += w.len() as u64); // Receiver, Value
///     }
///     Ok(count.load())
/// }
///
/// assert_eq!(tally::<uniconc::Thread>(&["one", "three"])?, 8);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub mod prelude {
    pub use crate::{
        Array as _, Backend, Barrier as _, Event as _, JoinHandle as _, List as _, Lock as _,
        Map as _, Message, Plain, Pool as _, Receiver as _, Semaphore as _, Sender as _,
        TaskHandle as _, Value as _,
    };
}
