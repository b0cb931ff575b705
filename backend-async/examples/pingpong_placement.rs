//! Ping-pong latency of the tokio backend next to tokio's own primitives, and where the kernel
//! put the two sides: why `compare`'s tokio ping-pong reads ~3 µs in one run and ~17 µs in
//! another on a 2-vCPU machine (see `README.md`, "Ping-pong and CPU placement").
//!
//! ```text
//! cargo run --release -p uniconc-async --example pingpong_placement -- [ROUNDS] [REPS] [SHAPE...]
//! PIN=same  cargo run ...   # driver and echo threads both on CPU 0
//! PIN=split cargo run ...   # driver on CPU 0, echo on CPU 1
//! ```
//!
//! Every repetition runs every shape once, in a rotating order (interleaved, so a change in the
//! machine's load hits all shapes alike). Shapes:
//!
//! | shape | driver | echo | channel |
//! |---|---|---|---|
//! | `uc-blk` | plain thread, blocking | `uniconc_async::spawn` (blocking pool), blocking | ours, `channel(1)` ×2 (= `compare`'s ping-pong on `Tokio`) |
//! | `tk-blk` | plain thread, `blocking_send`/`blocking_recv` | same runtime's blocking pool, same calls | `tokio::sync::mpsc::channel(1)` ×2 |
//! | `uc-mix` | plain thread, blocking | task (`spawn_async`), async | ours |
//! | `tk-mix` | plain thread, `blocking_*` | task, async | tokio mpsc |
//! | `uc-task` | task, async | task, async | ours |
//! | `tk-task` | task, async | task, async | tokio mpsc |
//! | `park` | plain thread | plain thread | an atomic slot each way, `park`/`unpark`: the floor of a parking hand-off |
//! | `park-spin` | plain thread | plain thread | the same, spinning first (crossbeam's `Backoff`: 127 spins, 4 yields), then parking |
//!
//! For each run it prints the mean µs per round trip, the median/p90/p99/max of single round
//! trips, and the share of round trips in which the echo side ran on the CPU the driver had
//! just sent from (`sched_getcpu`). `PIN` applies to the thread sides only (tasks run wherever
//! the runtime's workers run). Linux only.

#[cfg(target_os = "linux")]
mod linux {
    use std::future::Future;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    use uniconc_core::{JoinHandle as _, Receiver as _, Sender as _};

    /// The CPU the calling thread runs on.
    fn cpu() -> i32 {
        // SAFETY: `sched_getcpu` takes no arguments and only reports the calling thread's CPU.
        unsafe { libc::sched_getcpu() }
    }

    /// `PIN=same`: every thread side on CPU 0; `PIN=split`: driver on 0, echo on 1; unset:
    /// wherever the kernel puts them.
    fn pin(echo: bool) {
        let cpu = match std::env::var("PIN").as_deref() {
            Ok("same") => 0,
            Ok("split") => usize::from(echo),
            _ => return,
        };
        // SAFETY: an all-zero `cpu_set_t` is a valid empty set; `CPU_SET` sets one bit inside
        // it (`cpu` < 2 < CPU_SETSIZE); `sched_setaffinity(0, ..)` applies to the calling
        // thread and reads exactly `size_of_val(&set)` bytes from `&set`, which is live.
        let rc = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set)
        };
        assert_eq!(rc, 0, "sched_setaffinity to CPU {cpu}");
    }

    /// One run of one shape.
    #[derive(Clone)]
    pub(crate) struct Run {
        mean_us: f64,
        p50_us: f64,
        p90_us: f64,
        p99_us: f64,
        max_us: f64,
        same_cpu: f64,
    }

    /// The timings of one run's round trips, as they are made (by a thread or a task).
    struct Samples {
        rt_ns: Vec<u64>,
        same: u64,
        start: Instant,
    }

    impl Samples {
        fn new(rounds: u64) -> Self {
            Self {
                rt_ns: Vec::with_capacity(rounds as usize),
                same: 0,
                start: Instant::now(),
            }
        }

        /// One round trip begun at `t`; `same_cpu` if the echo side ran on this CPU.
        fn round(&mut self, t: Instant, same_cpu: bool) {
            self.same += u64::from(same_cpu);
            self.rt_ns.push(t.elapsed().as_nanos() as u64);
        }

        fn finish(mut self) -> Run {
            let total_ns = self.start.elapsed().as_nanos() as u64;
            let n = self.rt_ns.len();
            let v = &mut self.rt_ns;
            v.sort_unstable();
            Run {
                mean_us: total_ns as f64 / n as f64 / 1e3,
                p50_us: v[n / 2] as f64 / 1e3,
                p90_us: v[n * 9 / 10] as f64 / 1e3,
                p99_us: v[n * 99 / 100] as f64 / 1e3,
                max_us: v[n - 1] as f64 / 1e3,
                same_cpu: self.same as f64 / n as f64,
            }
        }
    }

    /// The loop of the thread-driven shapes: `rt(i)` makes one round trip and returns the CPU
    /// the echo side ran on. One warm-up round trip first, as `compare` does.
    fn drive(rounds: u64, mut rt: impl FnMut(u64) -> i32) -> Run {
        pin(false);
        rt(u64::MAX >> 16);
        let mut samples = Samples::new(rounds);
        for i in 0..rounds {
            let t = Instant::now();
            let me = cpu();
            samples.round(t, rt(i) == me);
        }
        samples.finish()
    }

    /// The two channel APIs the shapes compare: ours and tokio's `mpsc`, each `channel(1)`.
    trait Api: 'static {
        type Tx<T: Send + 'static>: Send + 'static;
        type Rx<T: Send + 'static>: Send + 'static;
        fn pair<T: Send + 'static>() -> (Self::Tx<T>, Self::Rx<T>);
        /// `false` once the other side is gone.
        fn send_blocking<T: Send + 'static>(tx: &Self::Tx<T>, v: T) -> bool;
        fn recv_blocking<T: Send + 'static>(rx: &mut Self::Rx<T>) -> Option<T>;
        fn send<T: Send + 'static>(tx: &Self::Tx<T>, v: T) -> impl Future<Output = bool> + Send;
        fn recv<T: Send + 'static>(rx: &mut Self::Rx<T>) -> impl Future<Output = Option<T>> + Send;
    }

    /// Ours: `uniconc_async::channel`.
    struct Uc;

    impl Api for Uc {
        type Tx<T: Send + 'static> = uniconc_async::Sender<T>;
        type Rx<T: Send + 'static> = uniconc_async::Receiver<T>;
        fn pair<T: Send + 'static>() -> (Self::Tx<T>, Self::Rx<T>) {
            uniconc_async::channel(1).unwrap()
        }
        fn send_blocking<T: Send + 'static>(tx: &Self::Tx<T>, v: T) -> bool {
            tx.send(v).is_ok()
        }
        fn recv_blocking<T: Send + 'static>(rx: &mut Self::Rx<T>) -> Option<T> {
            rx.recv().ok()
        }
        async fn send<T: Send + 'static>(tx: &Self::Tx<T>, v: T) -> bool {
            tx.send_async(v).await.is_ok()
        }
        async fn recv<T: Send + 'static>(rx: &mut Self::Rx<T>) -> Option<T> {
            rx.recv_async().await.ok()
        }
    }

    /// Tokio's `mpsc`, with `blocking_send`/`blocking_recv` for the blocking sides.
    struct Tk;

    impl Api for Tk {
        type Tx<T: Send + 'static> = tokio::sync::mpsc::Sender<T>;
        type Rx<T: Send + 'static> = tokio::sync::mpsc::Receiver<T>;
        fn pair<T: Send + 'static>() -> (Self::Tx<T>, Self::Rx<T>) {
            tokio::sync::mpsc::channel(1)
        }
        fn send_blocking<T: Send + 'static>(tx: &Self::Tx<T>, v: T) -> bool {
            tx.blocking_send(v).is_ok()
        }
        fn recv_blocking<T: Send + 'static>(rx: &mut Self::Rx<T>) -> Option<T> {
            rx.blocking_recv()
        }
        async fn send<T: Send + 'static>(tx: &Self::Tx<T>, v: T) -> bool {
            tx.send(v).await.is_ok()
        }
        fn recv<T: Send + 'static>(rx: &mut Self::Rx<T>) -> impl Future<Output = Option<T>> + Send {
            rx.recv()
        }
    }

    /// The driver's side of a thread-driven shape: blocking round trips against `echo`, which
    /// ends once `ping_tx` is dropped.
    fn drive_blocking<A: Api>(
        rounds: u64,
        ping_tx: A::Tx<u64>,
        mut pong_rx: A::Rx<(u64, i32)>,
        echo: uniconc_async::JoinHandle<()>,
    ) -> Run {
        let r = drive(rounds, |i| {
            assert!(A::send_blocking(&ping_tx, i));
            let (back, c) = A::recv_blocking(&mut pong_rx).unwrap();
            assert_eq!(back, i);
            c
        });
        drop(ping_tx);
        echo.join().unwrap();
        r
    }

    /// `blk`: a plain thread against the runtime's blocking pool, both blocking (`uc-blk` is
    /// `compare`'s ping-pong on `Tokio`).
    fn blk<A: Api>(rounds: u64) -> Run {
        let (ping_tx, mut ping_rx) = A::pair::<u64>();
        let (pong_tx, pong_rx) = A::pair::<(u64, i32)>();
        let echo = uniconc_async::spawn(move || {
            pin(true);
            while let Some(x) = A::recv_blocking(&mut ping_rx) {
                if !A::send_blocking(&pong_tx, (x, cpu())) {
                    break;
                }
            }
        })
        .unwrap();
        drive_blocking::<A>(rounds, ping_tx, pong_rx, echo)
    }

    /// `mix`: a plain thread, blocking, against a task, async.
    fn mix<A: Api>(rounds: u64) -> Run {
        let (ping_tx, mut ping_rx) = A::pair::<u64>();
        let (pong_tx, pong_rx) = A::pair::<(u64, i32)>();
        let echo = uniconc_async::spawn_async(async move {
            while let Some(x) = A::recv(&mut ping_rx).await {
                if !A::send(&pong_tx, (x, cpu())).await {
                    break;
                }
            }
        })
        .unwrap();
        drive_blocking::<A>(rounds, ping_tx, pong_rx, echo)
    }

    /// Both sides tasks of the backend's runtime; the driver task times itself.
    fn task<A: Api>(rounds: u64) -> Run {
        uniconc_async::spawn_async(async move {
            let (ping_tx, mut ping_rx) = A::pair::<u64>();
            let (pong_tx, mut pong_rx) = A::pair::<(u64, i32)>();
            let echo = tokio::spawn(async move {
                while let Some(x) = A::recv(&mut ping_rx).await {
                    if !A::send(&pong_tx, (x, cpu())).await {
                        break;
                    }
                }
            });
            assert!(A::send(&ping_tx, u64::MAX).await);
            A::recv(&mut pong_rx).await.unwrap();
            let mut samples = Samples::new(rounds);
            for i in 0..rounds {
                let t = Instant::now();
                let me = cpu();
                assert!(A::send(&ping_tx, i).await);
                let (back, c) = A::recv(&mut pong_rx).await.unwrap();
                assert_eq!(back, i);
                samples.round(t, c == me);
            }
            let run = samples.finish();
            drop(ping_tx);
            echo.await.unwrap();
            run
        })
        .unwrap()
        .join()
        .unwrap()
    }

    /// "Nothing in the slot."
    const EMPTY: u64 = u64::MAX;
    /// Tells the echo thread to stop.
    const STOP: u64 = u64::MAX - 1;

    /// Takes the value out of `slot`, waiting for one: spinning first (crossbeam's `Backoff`:
    /// spins of 1, 2, ..., 64, then 4 yields) if `spin`, then parking.
    fn take(slot: &AtomicU64, spin: bool) -> u64 {
        let mut step = if spin { 0 } else { 11 };
        loop {
            // AcqRel: Acquire pairs with the writer's Release store, so what it wrote before
            // is visible; the Release half orders nothing we need but makes the swap one op.
            let x = slot.swap(EMPTY, Ordering::AcqRel);
            if x != EMPTY {
                return x;
            }
            match step {
                0..=6 => (0..1u32 << step).for_each(|_| std::hint::spin_loop()),
                7..=10 => std::thread::yield_now(),
                // A lost race (the value lands just after the swap) is caught: `unpark` leaves
                // the token set and `park` then returns at once.
                _ => std::thread::park(),
            }
            step += 1;
        }
    }

    /// The floor of a thread-to-thread hand-off: a value through an atomic each way, a
    /// `park`/`unpark` to wake the other side (after a spin if `spin`).
    fn park_floor(rounds: u64, spin: bool) -> Run {
        let ping = Arc::new(AtomicU64::new(EMPTY));
        let pong = Arc::new(AtomicU64::new(EMPTY));
        let driver = std::thread::current();
        let (ping2, pong2) = (ping.clone(), pong.clone());
        let echo = std::thread::spawn(move || {
            pin(true);
            loop {
                let x = take(&ping2, spin);
                if x == STOP {
                    break;
                }
                // The echo's CPU in the high 16 bits (round numbers stay below 2^48).
                // Release: the driver's Acquire swap sees this value.
                pong2.store(x | ((cpu() as u64) << 48), Ordering::Release);
                driver.unpark();
            }
        });
        let echo_thread = echo.thread().clone();
        let r = drive(rounds, |i| {
            // Release: pairs with the echo's Acquire swap.
            ping.store(i, Ordering::Release);
            echo_thread.unpark();
            let y = take(&pong, spin);
            assert_eq!(y & ((1 << 48) - 1), i);
            (y >> 48) as i32
        });
        // Release: pairs with the echo's Acquire swap.
        ping.store(STOP, Ordering::Release);
        echo_thread.unpark();
        echo.join().unwrap();
        r
    }

    fn park(rounds: u64) -> Run {
        park_floor(rounds, false)
    }

    fn park_spin(rounds: u64) -> Run {
        park_floor(rounds, true)
    }

    type Shape = (&'static str, fn(u64) -> Run);

    pub(crate) fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let rounds: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(2000);
        let reps: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
        let only = &args[args.len().min(2)..];
        let shapes: Vec<Shape> = [
            ("uc-blk", blk::<Uc> as fn(u64) -> Run),
            ("tk-blk", blk::<Tk>),
            ("uc-mix", mix::<Uc>),
            ("tk-mix", mix::<Tk>),
            ("uc-task", task::<Uc>),
            ("tk-task", task::<Tk>),
            ("park", park),
            ("park-spin", park_spin),
        ]
        .into_iter()
        .filter(|(n, _)| only.is_empty() || only.iter().any(|o| o == n))
        .collect();
        if shapes.is_empty() {
            eprintln!("no such shape in {only:?}");
            std::process::exit(2);
        }
        let pin = std::env::var("PIN").unwrap_or_else(|_| "unset".into());
        println!("{rounds} round trips per run, {reps} reps, PIN={pin}");
        let mut results: Vec<Vec<Run>> = vec![Vec::new(); shapes.len()];
        for rep in 0..reps {
            for k in 0..shapes.len() {
                let j = (k + rep) % shapes.len();
                let (name, f) = shapes[j];
                // A fresh plain thread per run, as `compare`'s watchdog does.
                let r = std::thread::spawn(move || f(rounds)).join().unwrap();
                println!(
                    "rep {rep} {name:>9}: mean {:7.2} µs  p50 {:7.2}  p90 {:7.2}  p99 {:8.2}  max {:9.1}  same CPU {:3.0}%",
                    r.mean_us,
                    r.p50_us,
                    r.p90_us,
                    r.p99_us,
                    r.max_us,
                    r.same_cpu * 100.0
                );
                results[j].push(r);
            }
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "\nper shape over the reps: median of the run means, median of the p50s, and each run's mean (same-CPU share)"
        );
        let mut medians = Vec::new();
        for ((name, _), rs) in shapes.iter().zip(&results) {
            let m = median(rs.iter().map(|r| r.mean_us).collect());
            let p50 = median(rs.iter().map(|r| r.p50_us).collect());
            let all = rs
                .iter()
                .map(|r| format!("{:.1} ({:.0}%)", r.mean_us, r.same_cpu * 100.0))
                .collect::<Vec<_>>()
                .join(" ");
            println!("{name:>9}: mean {m:7.2}  p50 {p50:7.2}   {all}");
            medians.push((*name, m, p50));
        }
        let get = |n: &str| medians.iter().find(|(k, _, _)| *k == n);
        println!("\nratios (>1: the first is slower)");
        for (a, b) in [
            ("uc-blk", "tk-blk"),
            ("uc-mix", "tk-mix"),
            ("uc-task", "tk-task"),
            ("uc-blk", "park"),
        ] {
            if let (Some((_, ma, pa)), Some((_, mb, pb))) = (get(a), get(b)) {
                println!("{a:>8} / {b:<8}: mean {:.2}x  p50 {:.2}x", ma / mb, pa / pb);
            }
        }
    }
}

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("pingpong_placement reads and pins CPUs with Linux calls: Linux only");
}
