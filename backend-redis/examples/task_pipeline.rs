//! Three programs over one Redis server: a producer that submits named tasks to a queue, a
//! worker agent that runs them (start as many as you like, on any machine), and a consumer
//! that receives the results through a Redis channel.
//!
//! ```text
//! redis-server &                                   # or any server: pass its URL
//! cargo run -p uniconc-redis --example task_pipeline -- worker redis://127.0.0.1:6379 demo &
//! cargo run -p uniconc-redis --example task_pipeline -- consumer redis://127.0.0.1:6379
//!     # prints `sender <id>`, then, once the producer is done, `sum <s> count <n>`
//! cargo run -p uniconc-redis --example task_pipeline -- producer redis://127.0.0.1:6379 demo <id> 100
//! ```
//!
//! The producer's tasks are delivered at least once: kill a worker mid-way and start another,
//! and every result still arrives once.

use std::io::Write as _;

use uniconc_core::{Pool as _, Receiver as _, Sender as _};

uniconc_core::task! {
    /// The work: the square of `x`, slowly enough to watch agents share it.
    fn slow_square(x: u64) -> u64 {
        std::thread::sleep(std::time::Duration::from_millis(5));
        x * x
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["worker", url, queue] => {
            eprintln!("worker agent serving queue `{queue}` on {url}");
            uniconc_redis::pool::worker(url)
                .queue(queue)
                .workers(2)
                .run()?;
        }
        ["consumer", url] => {
            let conn = uniconc_redis::connect(url)?;
            let (tx, rx) = conn.channel::<Option<u64>>(1024)?;
            println!("sender {}", tx.id());
            std::io::stdout().flush()?;
            let (mut sum, mut count) = (0u64, 0u64);
            // `None` ends the stream (the producer's last message).
            while let Some(v) = rx.recv().map_err(|e| format!("receiving: {e}"))? {
                sum += v;
                count += 1;
            }
            println!("sum {sum} count {count}");
        }
        ["producer", url, queue, sender, n] => {
            let conn = uniconc_redis::connect(url)?;
            let tx = conn.open_sender::<Option<u64>>(sender)?;
            let pool = uniconc_redis::pool::Pool::configure()
                .connection(&conn)
                .queue(queue)
                .workers(0) // only the agents started elsewhere
                .chunk_size(8)
                .build()?;
            for r in pool.imap_unordered_task::<slow_square>(0..n.parse::<u64>()?) {
                tx.send(Some(r?))
                    .map_err(|e| format!("sending a result: {e}"))?;
            }
            tx.send(None).map_err(|e| format!("sending the end: {e}"))?;
            eprintln!("producer: every result sent");
        }
        _ => {
            eprintln!(
                "usage: task_pipeline worker URL QUEUE | consumer URL | producer URL QUEUE \
                 SENDER_ID N"
            );
            std::process::exit(2);
        }
    }
    Ok(())
}
