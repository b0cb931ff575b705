//! Two separately started programs sharing one queue by name: a producer and a consumer,
//! started in either order.
//!
//! ```text
//! cargo run -p uniconc-process --example named_queue -- consumer jobs 1000 &
//! cargo run -p uniconc-process --example named_queue -- producer jobs 1000
//! ```
//!
//! The consumer prints how many numbers it received and their sum, then removes the name. A
//! consumer started first waits for the producer; a producer started first fills the queue
//! and waits for room. If the producer dies (even SIGKILL), the consumer's loop ends with
//! what it received; if the consumer dies, the producer's next send fails instead of waiting
//! forever.

#![allow(dead_code)] // `producer` and `consumer` are also used by this crate's tests

use uniconc::prelude::*;

type B = uniconc::Process;

/// Queue capacity: small, so a producer started first soon waits for the consumer.
pub(crate) const CAPACITY: usize = 16;

/// Sends `1..=n` to the queue `name`.
pub(crate) fn producer(name: &str, n: u64) -> uniconc::Result<()> {
    let tx = B::named(name).sender::<u64>(Some(CAPACITY))?;
    for i in 1..=n {
        tx.send(i)?;
    }
    Ok(())
}

/// Receives from the queue `name` until every producer is gone; returns (count, sum).
pub(crate) fn consumer(name: &str) -> uniconc::Result<(u64, u64)> {
    let rx = B::named(name).receiver::<u64>(Some(CAPACITY))?;
    let (mut count, mut sum) = (0, 0);
    for v in rx.iter() {
        count += 1;
        sum += v;
    }
    Ok((count, sum))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: named_queue (producer|consumer) NAME [N]";
    let (role, name) = match (args.first(), args.get(1)) {
        (Some(r), Some(n)) => (r.as_str(), n.as_str()),
        _ => return Err(usage.into()),
    };
    let n: u64 = args.get(2).map_or(Ok(1000), |s| s.parse())?;
    match role {
        "producer" => producer(name, n)?,
        "consumer" => {
            let (count, sum) = consumer(name)?;
            println!("received {count} sum {sum}");
            B::named(name).unlink()?;
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
