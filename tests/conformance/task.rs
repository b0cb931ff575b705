//! Named tasks: `spawn_task` on every backend (a clean-started worker process on the process
//! backend), results, panics, tasks from generic code.

use serde::{Deserialize, Serialize};
use uniconc::prelude::*;
use uniconc::{JoinError, Task};

use crate::support::LONG;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Job {
    pub(crate) id: u32,
    pub(crate) words: Vec<String>,
}

uniconc::task! {
    /// The job's id and its longest word.
    fn longest(job: Job) -> (u32, String) {
        let w = job.words.iter().max_by_key(|w| w.len()).cloned().unwrap_or_default();
        (job.id, w)
    }
}

uniconc::task! {
    fn mul_add(a: u64, b: u64, c: u64) -> u64 { a * b + c }
}

uniconc::task! {
    fn unit_task() {}
}

uniconc::task! {
    fn boom(n: u32) -> u32 { panic!("boom {n}") }
}

pub(crate) fn task_spawn_returns_result<B: Backend>() {
    let job = Job {
        id: 7,
        words: vec!["a".into(), "thumbnail".into(), "job".into()],
    };
    let mut h = B::spawn_task::<longest>(job).unwrap();
    assert_eq!(h.join_timeout(LONG), Ok((7, "thumbnail".to_string())));
    let mut h = B::spawn_task::<mul_add>((6, 7, 0)).unwrap();
    assert_eq!(h.join_timeout(LONG), Ok(42));
    let mut h = B::spawn_task::<unit_task>(()).unwrap();
    assert_eq!(h.join_timeout(LONG), Ok(()));
}

pub(crate) fn task_panic_is_panicked_with_its_message<B: Backend>() {
    let mut h = B::spawn_task::<boom>(7).unwrap();
    assert_eq!(
        h.join_timeout(LONG),
        Err(JoinError::Panicked("boom 7".into()))
    );
}

/// Runs `T` on each argument as its own unit of `B` and collects the results in order.
fn run_all<B: Backend, T: Task>(args: Vec<T::Arg>) -> Vec<T::Output> {
    let handles: Vec<_> = args
        .into_iter()
        .map(|a| B::spawn_task::<T>(a).unwrap())
        .collect();
    handles
        .into_iter()
        .map(|mut h| h.join_timeout(LONG).unwrap())
        .collect()
}

pub(crate) fn task_from_generic_code<B: Backend>() {
    let got = run_all::<B, mul_add>((0..4).map(|i| (i, i, 1)).collect());
    assert_eq!(got, [1, 2, 5, 10]);
    assert_eq!(<mul_add as Task>::NAME, "conformance::task::mul_add");
}
