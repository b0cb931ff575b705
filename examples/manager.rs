//! A shared dict and list changed by a child unit and read by the parent: the `Manager`
//! example of Python's `multiprocessing` docs ("Sharing state between processes", server
//! process), with `Map` and `List`.
//!
//! ```python
//! def f(d, l):
//!     d[1] = '1'
//!     d['2'] = 2
//!     l.reverse()
//!
//! with Manager() as manager:
//!     d = manager.dict()
//!     l = manager.list(range(10))
//!     p = Process(target=f, args=(d, l)); p.start(); p.join()
//!     print(d)  # {1: '1', '2': 2}
//!     print(l)  # [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
//! ```
//!
//! Python's dict takes keys and values of any type; a `Map<K, V>` takes one type of each, so
//! the keys and values that mix integers and strings are enums here. Python's Manager runs a
//! server process that every access goes to; uniconc has no server: on the process backend the
//! `Map` and `List` live in shared memory mapped before the fork, and the child changes them
//! in place.
//!
//! Run: `cargo run --example manager -- --backend thread --size 10`.

// With no backend enabled the generic code has nobody to run it: say so instead of warning.
#![cfg_attr(
    not(any(feature = "thread", feature = "tokio", all(feature = "process", unix))),
    allow(dead_code)
)]

#[path = "common/mod.rs"]
#[macro_use]
mod common;

use common::DynResult;
use serde::{Deserialize, Serialize};
use uniconc::prelude::*;

/// A key of the dict: an integer or a string, as Python mixes them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum Key {
    /// `1`
    Int(i64),
    /// `'2'`
    Str(String),
}

/// A value of the dict.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum Val {
    /// `2`
    Int(i64),
    /// `'1'`
    Str(String),
}

/// What the parent reads back after the child ran.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// The dict's entries, sorted by key.
    pub(crate) dict: Vec<(Key, Val)>,
    /// The list, in order.
    pub(crate) list: Vec<i64>,
}

/// Creates a `Map` and a `List` of `len` integers, lets a child unit change them, and returns
/// what the parent sees afterwards.
pub(crate) fn run<B: Backend>(len: usize) -> DynResult<Outcome> {
    let d = B::map::<Key, Val>()?;
    let l = B::list::<i64>()?;
    l.extend(0..len as i64)?;

    // Handles are cheap clones of the same collection: give the child its own.
    let (d2, l2) = (d.clone(), l.clone());
    // The child's errors come back through `join()` as text (a result crosses processes).
    B::spawn(move || {
        let change = || -> Result<(), uniconc::Error> {
            d2.insert(Key::Int(1), Val::Str("1".into()))?; // d[1] = '1'
            d2.insert(Key::Str("2".into()), Val::Int(2))?; // d['2'] = 2
            l2.reverse() // l.reverse()
        };
        change().map_err(|e| e.to_string())
    })?
    .join()??;

    let mut dict = d.to_vec()?; // one consistent snapshot
    dict.sort();
    let out = Outcome {
        dict,
        list: l.to_vec()?,
    };
    println!("[{}] d = {:?}", B::NAME, out.dict);
    println!("[{}] l = {:?}", B::NAME, out.list);
    Ok(out)
}

fn main() {
    common::main_with(
        "manager: a shared Map and List changed by a child unit",
        |args| {
            let backend = args.backend()?;
            let _: Outcome = on_backend!(backend.as_str(), run(args.size_or(10, 10)))?;
            Ok(())
        },
    );
}
