//! What crosses the server: a chunk's body (its requests and the pool's task timeout) and a
//! task's outcome. Both are encoded with the core codec.

use serde::{Deserialize, Serialize};
use uniconc_core::TaskError;
use uniconc_core::codec;
use uniconc_core::task::TaskRequest;

/// The body of one queue entry: several calls of one task, from one pool. The task's name
/// and schema are carried once per chunk, not once per call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChunkBody {
    /// The pool's `task_timeout` per task, in ms (0: none).
    pub(crate) timeout_ms: u64,
    /// The task's name ([`TaskRequest::name`]).
    pub(crate) name: String,
    /// The task's schema fingerprint ([`TaskRequest::schema`]).
    pub(crate) schema: u64,
    /// Each call's index in its pool, and its encoded argument.
    pub(crate) items: Vec<(u64, Vec<u8>)>,
}

impl ChunkBody {
    /// A chunk of `items`, requests of one task (the first one's name and schema are kept).
    pub(crate) fn of(timeout_ms: u64, items: Vec<(u64, TaskRequest)>) -> Self {
        let (name, schema) = items
            .first()
            .map_or((String::new(), 0), |(_, r)| (r.name.clone(), r.schema));
        debug_assert!(
            items
                .iter()
                .all(|(_, r)| r.name == name && r.schema == schema)
        );
        Self {
            timeout_ms,
            name,
            schema,
            items: items.into_iter().map(|(i, r)| (i, r.arg)).collect(),
        }
    }

    /// The request of one call.
    pub(crate) fn request(&self, arg: Vec<u8>) -> TaskRequest {
        TaskRequest {
            name: self.name.clone(),
            schema: self.schema,
            arg,
        }
    }
}

/// Runs calls of the task `name`: looked up once; an unknown name or another schema gives
/// each call the registry's error, naming the task.
pub(crate) fn run_many(name: String, schema: u64, args: Vec<Vec<u8>>) -> Vec<Outcome> {
    match uniconc_core::task::lookup(&name) {
        Some(t) if t.schema() == schema => args.iter().map(|a| Outcome::of(t.run(a))).collect(),
        _ => args
            .into_iter()
            .map(|arg| {
                Outcome::of(
                    TaskRequest {
                        name: name.clone(),
                        schema,
                        arg,
                    }
                    .run(),
                )
            })
            .collect(),
    }
}

/// A task's outcome on the wire (`TaskError` itself is not serde).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The encoded result.
    Ok(Vec<u8>),
    /// The task panicked, with its message.
    Panicked(String),
    /// The task ran past the pool's `task_timeout`.
    DeadlineExceeded,
    /// Why the task could not run (unknown name, schema mismatch, argument not decoded).
    Failed(String),
}

impl Outcome {
    /// The outcome of running a request locally, as the registry reports it.
    pub(crate) fn of(r: Result<Vec<u8>, TaskError>) -> Self {
        match r {
            Ok(v) => Outcome::Ok(v),
            Err(TaskError::Panicked(m)) => Outcome::Panicked(m),
            Err(TaskError::DeadlineExceeded) => Outcome::DeadlineExceeded,
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    /// Back to the result a handle reports.
    pub(crate) fn into_result(self) -> Result<Vec<u8>, TaskError> {
        match self {
            Outcome::Ok(v) => Ok(v),
            Outcome::Panicked(m) => Err(TaskError::Panicked(m)),
            Outcome::DeadlineExceeded => Err(TaskError::DeadlineExceeded),
            Outcome::Failed(m) => Err(TaskError::Failed(m)),
        }
    }
}

/// Encodes `value` with the core codec.
pub(crate) fn encode<T: Serialize + 'static>(value: &T) -> Result<Vec<u8>, TaskError> {
    let fail = |e: uniconc_core::MessageError| TaskError::Failed(format!("redis pool: {e}"));
    let mut buf = vec![0u8; codec::encoded_size(value).map_err(fail)?];
    let n = codec::encode_into(value, &mut buf).map_err(fail)?;
    buf.truncate(n);
    Ok(buf)
}

/// Decodes a value written by [`encode`].
pub(crate) fn decode<T: serde::de::DeserializeOwned + 'static>(
    bytes: &[u8],
) -> Result<T, TaskError> {
    codec::decode(bytes).map_err(|e| TaskError::Failed(format!("redis pool: {e}")))
}

/// One task's result as read back: (task index, deliveries, result).
pub(crate) type Reported = (u64, u32, Result<Vec<u8>, TaskError>);

/// The results carried by one entry of a pool's result list, `<deliveries>:<payload>`:
/// (task index, deliveries, result) each. `None` for bytes no script of this crate writes.
pub(crate) fn parse_entry(raw: &[u8]) -> Option<Vec<Reported>> {
    let at = raw.iter().position(|&b| b == b':')?;
    let deliveries: u32 = std::str::from_utf8(&raw[..at]).ok()?.parse().ok()?;
    match raw[at + 1..].split_first()? {
        (b'R', rest) => {
            let items: Vec<(u64, Outcome)> = decode(rest).ok()?;
            Some(
                items
                    .into_iter()
                    .map(|(i, o)| (i, deliveries, o.into_result()))
                    .collect(),
            )
        }
        (b'D', rest) => {
            let why = format!(
                "the task was delivered {deliveries} times (the pool's max_deliveries) and \
                 the worker running it died each time (agent gone, or its worker process \
                 killed)"
            );
            std::str::from_utf8(rest)
                .ok()?
                .split(',')
                .map(|i| {
                    let i = i.parse().ok()?;
                    Some((i, deliveries, Err(TaskError::WorkerDied(why.clone()))))
                })
                .collect()
        }
        _ => None,
    }
}
