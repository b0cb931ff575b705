//! The chunk codec: a chunk's items encoded into a job frame, its results decoded back.

use super::*;

/// Encodes one item into a frame under construction.
pub(super) fn encode_item<T: Serialize>(v: &mut Vec<u8>, item: &T) -> Result<(), TaskError> {
    sys::Encoder::new(v).push(item).map_err(arg_error::<T>)
}

pub(super) fn arg_error<T>(e: postcard::Error) -> TaskError {
    let ty = std::any::type_name::<T>();
    TaskError::Failed(format!(
        "the argument could not be serialized (a `{ty}`): {e}"
    ))
}

/// Encodes up to `chunk` items from `items` onto `v` (the hot loop of `map` and `imap`, kept
/// out of line so that it is compiled tight): how many were encoded, and why the next one
/// could not be.
///
/// It stops at the first item that cannot be serialized: that item is taken from `items`
/// (and dropped) but not counted, and none of its bytes stay in `v`, so `v` holds exactly the
/// `count` items before it, a job that can still run. The caller gives the unencodable item
/// its own result, right after those (index `count` in the chunk).
#[inline(never)]
pub(super) fn encode_items<T: Serialize>(
    v: &mut Vec<u8>,
    items: &mut impl Iterator<Item = T>,
    chunk: usize,
) -> (usize, Option<TaskError>) {
    let mut enc = sys::Encoder::new(v);
    let mut count = 0;
    for item in items.by_ref().take(chunk) {
        if let Err(e) = enc.push(&item) {
            return (count, Some(arg_error::<T>(e)));
        }
        count += 1;
    }
    (count, None)
}

/// `true` if a chunk's outcome holds a failure: no results at all, or failure records (a
/// result that cannot be decoded is found only by decoding it).
pub(super) fn failed(outcome: &Outcome) -> bool {
    match outcome {
        Err(_) => true,
        Ok(r) => r
            .body()
            .get(8..16)
            .is_none_or(|w| w.iter().any(|&b| b != 0)),
    }
}

/// Decodes a `map` chunk's outcome onto the end of `out` (out of line, as
/// [`encode_items`]): the frame's buffer for reuse, and the chunk's first failure (its index
/// in the chunk), if any.
#[inline(never)]
pub(super) fn decode_into<R: Message>(
    outcome: Outcome,
    items: usize,
    out: &mut Vec<R>,
) -> (Option<Vec<u8>>, Option<(usize, TaskError)>) {
    let start = out.len();
    let mut failed = None;
    let spent = decode::<R>(outcome, items, |r| match r {
        Ok(v) => out.push(v),
        // Every item before the first failure was pushed: its index is the count so far.
        Err(e) => {
            if failed.is_none() {
                failed = Some((out.len() - start, e));
            }
        }
    });
    (spent, failed)
}

/// Decodes a job's outcome into `items` results, in item order, and hands back the frame's
/// buffer for reuse.
pub(super) fn decode<R: Message>(
    outcome: Outcome,
    items: usize,
    mut push: impl FnMut(Result<R, TaskError>),
) -> Option<Vec<u8>> {
    match outcome {
        Ok(results) => {
            decode_frame(results.body(), items, &mut push);
            match results {
                Results::Inline(frame) => Some(frame),
                // Dropping the guard releases the slot: its bytes were read.
                Results::InSlot(..) => None,
            }
        }
        Err(e) => {
            for _ in 0..items {
                push(Err(e.clone()));
            }
            None
        }
    }
}

/// Decodes a result frame body (format in `pool/worker.rs`). The bytes come from a worker
/// process, so they are checked: anything malformed fails the items it cannot account for,
/// never more results than `items` are produced, and exactly `items` are always produced.
pub(super) fn decode_frame<R: Message>(
    body: &[u8],
    items: usize,
    push: &mut impl FnMut(Result<R, TaskError>),
) {
    use serde::Deserialize as _;
    // Generic, not `dyn`: a `dyn` call would take the address of `push` (and of what it
    // captures, the output's length included), which keeps those in memory in the hot loop.
    fn fail_rest<R>(
        push: &mut impl FnMut(Result<R, TaskError>),
        from: usize,
        items: usize,
        e: TaskError,
    ) {
        for _ in from..items {
            push(Err(e.clone()));
        }
    }
    let word = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(body.get(at..at + 8)?.try_into().ok()?))
    };
    let layout = word(0).zip(word(8)).and_then(|(len, failures)| {
        let end = worker::RESULT_HEADER.checked_add(usize::try_from(len).ok()?)?;
        (end <= body.len()).then_some((end, failures))
    });
    let Some((results_end, failures)) = layout else {
        let e = TaskError::Failed("the worker sent a malformed result".into());
        return fail_rest(push, 0, items, e);
    };
    // Failure records, in index order (usually none).
    let mut fails: Vec<(u64, u8, String)> = Vec::new();
    if failures > 0 {
        let mut de = postcard::Deserializer::from_bytes(&body[results_end..]);
        for _ in 0..failures.min(items as u64) {
            match <(u64, u8, String)>::deserialize(&mut de) {
                Ok(f) => fails.push(f),
                Err(_) => break,
            }
        }
        if fails.len() as u64 != failures || fails.windows(2).any(|w| w[0].0 >= w[1].0) {
            let e = TaskError::Failed("the worker sent a malformed failure list".into());
            return fail_rest(push, 0, items, e);
        }
    }
    let mut de = wire::Reader::new(&body[worker::RESULT_HEADER..results_end]);
    let mut i = 0;
    for (at, tag, msg) in fails.into_iter().chain([(items as u64, 0, String::new())]) {
        // The results before the next failure, back to back.
        let at = usize::try_from(at).unwrap_or(items).min(items);
        if let Err((done, bytes, e)) = decode_run(&mut de, at - i, push) {
            // The stream is out of step: fail the rest.
            let e = TaskError::Failed(wire::decode_failure::<R>("the result", bytes, &e));
            return fail_rest(push, i + done, items, e);
        }
        i = at;
        if i == items {
            return;
        }
        match tag {
            worker::PANICKED => push(Err(TaskError::Panicked(msg))),
            worker::FAILED => push(Err(TaskError::Failed(msg))),
            worker::FAILED_REST => return fail_rest(push, i, items, TaskError::Failed(msg)),
            t => {
                let e = TaskError::Failed(format!("the worker sent an unknown failure tag {t}"));
                return fail_rest(push, i, items, e);
            }
        }
        i += 1;
    }
}

/// Decodes `n` results in a row (the hot loop of a `map`); on error, how many were decoded
/// and the bytes from the one that failed.
#[inline(always)]
pub(super) fn decode_run<'de, R: Message>(
    de: &mut wire::Reader<'de>,
    n: usize,
    push: &mut impl FnMut(Result<R, TaskError>),
) -> Result<(), (usize, &'de [u8], postcard::Error)> {
    for k in 0..n {
        let at = de.rest();
        match de.read::<R>() {
            Ok(r) => push(Ok(r)),
            Err(e) => return Err((k, at, e)),
        }
    }
    Ok(())
}
