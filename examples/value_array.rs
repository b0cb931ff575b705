//! A shared `Value` and `Array`, mutated by a child unit and read by the parent: the first
//! example of Python's `multiprocessing` docs ("Sharing state between processes").
//!
//! ```python
//! def f(n, a):
//!     n.value = 3.1415927
//!     for i in range(len(a)):
//!         a[i] = -a[i]
//!
//! num = Value('d', 0.0)
//! arr = Array('i', range(10))
//! p = Process(target=f, args=(num, arr)); p.start(); p.join()
//! print(num.value, arr[:])
//! ```
//!
//! Run: `cargo run --example value_array -- --backend thread --size 10`.
//! On the process backend the child is a forked process: it sees the parent's `Value` and
//! `Array` because they live in shared memory mapped before the fork.

// With no backend enabled the generic code has nobody to run it: say so instead of warning.
#![cfg_attr(
    not(any(feature = "thread", feature = "tokio", all(feature = "process", unix))),
    allow(dead_code)
)]

#[path = "common/mod.rs"]
#[macro_use]
mod common;

use common::DynResult;
use uniconc::LockError;
use uniconc::prelude::*;

/// What the parent reads back after the child ran.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// The shared `Value<f64>`.
    pub(crate) num: f64,
    /// The shared `Array<i32>`.
    pub(crate) arr: Vec<i32>,
}

/// Creates a `Value` and an `Array` of `len` elements, lets a child unit change them, and
/// returns what the parent sees afterwards.
pub(crate) fn run<B: Backend>(len: usize) -> DynResult<Outcome> {
    let num = B::value(0.0f64)?;
    let initial: Vec<i32> = (0..len as i32).collect();
    let arr = <B::Array<i32>>::from_slice(&initial)?;
    println!(
        "[{}] before: num = {}, arr = {}",
        B::NAME,
        num.load(),
        preview(&arr.to_vec())
    );

    // Handles are cheap clones of the same shared primitive: give the child its own.
    let (n, a) = (num.clone(), arr.clone());
    let child = B::spawn(move || {
        n.store(std::f64::consts::PI); // Python: n.value = 3.1415927
        // One lock for the whole loop; `get`/`set` would lock once per element.
        let mut elems = a.lock().unwrap_or_else(LockError::into_guard);
        for x in elems.iter_mut() {
            *x = -*x;
        }
        elems.len()
    })?;
    let touched = child.join()?;

    let out = Outcome {
        num: num.load(),
        arr: arr.to_vec(),
    };
    println!("[{}] child negated {touched} elements", B::NAME);
    println!(
        "[{}] after:  num = {}, arr = {}",
        B::NAME,
        out.num,
        preview(&out.arr)
    );
    Ok(out)
}

fn preview(v: &[i32]) -> String {
    if v.len() <= 12 {
        format!("{v:?}")
    } else {
        format!(
            "{:?} … {:?} ({} elements)",
            &v[..5],
            &v[v.len() - 3..],
            v.len()
        )
    }
}

fn main() {
    common::main_with(
        "value_array: a shared Value and Array changed by a child unit",
        |args| {
            let backend = args.backend()?;
            let _: Outcome = on_backend!(backend.as_str(), run(args.size_or(10, 10)))?;
            Ok(())
        },
    );
}
