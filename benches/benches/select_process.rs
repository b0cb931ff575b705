//! A select over two process channels against a plain `recv` on one, in the same run: what
//! waiting on a second, idle channel costs per message when the first one is busy.
//!
//! - stream: a child process sends u64s into a `channel(1024)` as fast as it can; the parent
//!   takes them with `recv`, with a `Select` built once and reused (`select()` per message),
//!   and with the `select!` macro (a new select per message), over that channel and an idle
//!   one.
//! - ping-pong: the parent sends one u64 to a child, which sends it back on a second channel
//!   (both `channel(1)`); the parent waits for the answer with `recv`, or with a reused
//!   `Select` over the answer channel and an idle one. Every message is a wake-up of a
//!   process that may be asleep, so this shows the spin before sleeping.
//!
//! `cargo bench -p uniconc-benches --bench select_process` prints, for each form, the median
//! over interleaved rounds (recv, select, recv, select …) of the cost per message and of the
//! per-round ratio select / recv (the target: at most 1.5 when one channel is busy).
//! `UNICONC_BENCH_ROUNDS` (default 7) sets the rounds, `UNICONC_BENCH_MESSAGES` (default
//! 1,000,000; a tenth of it for the ping-pong) the messages per measurement.

use std::time::{Duration, Instant};

use uniconc::select::Select;
use uniconc::{Receiver as _, Sender as _};
use uniconc_benches::{fork_child, reap};
use uniconc_process::ProcSelector;

/// How the parent waits for each message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `recv` on the busy channel.
    Recv,
    /// One `Select` over the busy and an idle channel, `select()` per message.
    Select,
    /// `uniconc::select!` over the two, per message.
    Macro,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Nanoseconds per message: a child streams `n` u64s, the parent takes them in `form`.
fn stream(n: u64, form: Form) -> f64 {
    let (tx, rx) = uniconc_process::channel::<u64>(1024).unwrap();
    let (idle_tx, idle) = uniconc_process::channel::<u64>(1).unwrap();
    let pid = fork_child(move || {
        for i in 0..n {
            tx.send(i).unwrap();
        }
    });
    let start = Instant::now();
    let mut sum = 0u64;
    match form {
        Form::Recv => {
            for _ in 0..n {
                sum += rx.recv().unwrap();
            }
        }
        Form::Select => {
            let mut sel = Select::<ProcSelector>::new();
            let busy = sel.recv(&rx);
            sel.recv(&idle);
            for _ in 0..n {
                let oper = sel.select();
                assert_eq!(oper.index(), busy);
                sum += oper.recv(&rx).unwrap();
            }
        }
        Form::Macro => {
            for _ in 0..n {
                uniconc::select! {
                    recv(rx) -> v => sum += v.unwrap(),
                    recv(idle) -> _ => unreachable!("the idle channel got a message"),
                }
            }
        }
    }
    let took = start.elapsed();
    assert_eq!(sum, n * (n - 1) / 2);
    reap(pid);
    drop(idle_tx);
    per_message(took, n)
}

/// Nanoseconds per round trip: the parent sends, a child answers on a second channel, and
/// the parent waits for the answer in `form`.
fn ping_pong(n: u64, form: Form) -> f64 {
    let (ping_tx, ping) = uniconc_process::channel::<u64>(1).unwrap();
    let (pong_tx, pong) = uniconc_process::channel::<u64>(1).unwrap();
    let (idle_tx, idle) = uniconc_process::channel::<u64>(1).unwrap();
    let pid = fork_child(move || {
        for v in ping.iter() {
            pong_tx.send(v).unwrap();
        }
    });
    let start = Instant::now();
    {
        let mut sel = Select::<ProcSelector>::new();
        let answer = sel.recv(&pong);
        sel.recv(&idle);
        for i in 0..n {
            ping_tx.send(i).unwrap();
            let got = match form {
                Form::Recv => pong.recv().unwrap(),
                Form::Select | Form::Macro => {
                    let oper = sel.select();
                    assert_eq!(oper.index(), answer);
                    oper.recv(&pong).unwrap()
                }
            };
            assert_eq!(got, i);
        }
    }
    let took = start.elapsed();
    drop(ping_tx);
    reap(pid);
    drop(idle_tx);
    per_message(took, n)
}

fn per_message(d: Duration, n: u64) -> f64 {
    d.as_nanos() as f64 / n as f64
}

/// Interleaved rounds of `recv` and `other`: medians of each cost and of the ratio.
fn paired(rounds: usize, mut f: impl FnMut(Form) -> f64, other: Form) -> [f64; 3] {
    let (mut a, mut b, mut r) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (x, y) = (f(Form::Recv), f(other));
        a.push(x);
        b.push(y);
        r.push(y / x);
    }
    [median(a), median(b), median(r)]
}

fn verdict(r: f64) -> &'static str {
    if r <= 1.5 {
        "target <= 1.5x met"
    } else {
        "target <= 1.5x NOT met"
    }
}

fn main() {
    let rounds = env("UNICONC_BENCH_ROUNDS", 7) as usize;
    let n = env("UNICONC_BENCH_MESSAGES", 1_000_000);
    let m = (n / 10).max(1);
    println!(
        "\n== select_process: u64, medians of {rounds} interleaved rounds (recv, select, …) =="
    );
    let [a, b, r] = paired(rounds, |f| stream(n, f), Form::Select);
    println!(
        "stream {n}, channel(1024): recv {a:6.1} ns/msg, Select over 2 (reused) {b:6.1} ns/msg: \
         {r:.2}x ({})",
        verdict(r)
    );
    let [a, b, r] = paired(rounds, |f| stream(n, f), Form::Macro);
    println!(
        "stream {n}, channel(1024): recv {a:6.1} ns/msg, select! over 2 {b:6.1} ns/msg: \
         {r:.2}x ({})",
        verdict(r)
    );
    let [a, b, r] = paired(rounds, |f| ping_pong(m, f), Form::Select);
    println!(
        "ping-pong {m}, channel(1): recv {a:8.1} ns/round trip, Select over 2 {b:8.1} ns/round \
         trip: {r:.2}x ({})",
        verdict(r)
    );
}
