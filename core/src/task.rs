//! Named tasks: a function with a name, a serde argument and a serde result, that any backend
//! can run — in a thread, a tokio task, a forked child, or a freshly started process that
//! shares nothing with the caller but the binary.
//!
//! A closure cannot leave its binary; a task can, because the worker finds it by its name.
//! Define one with [`task!`](crate::task!) (which registers it), then run it with
//! [`Backend::spawn_task`](crate::Backend::spawn_task):
//!
//! ```
//! use uniconc::{Backend, JoinHandle as _};
//!
//! uniconc::task! {
//!     /// Sums the squares of `1..=n`.
//!     pub fn sum_squares(n: u64) -> u64 {
//!         (1..=n).map(|i| i * i).sum()
//!     }
//! }
//!
//! type B = uniconc::Thread; // on the process backend, a clean-started worker process
//! let h = B::spawn_task::<sum_squares>(3)?;
//! assert_eq!(h.join()?, 14);
//! assert_eq!(sum_squares(3), 14); // still a plain function
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Names, registration and schemas
//!
//! - [`Task::NAME`] identifies the task across processes. `task!` uses the function's path
//!   (`module_path!()::name`), identical in every build of one binary.
//! - Registration is collected at link time (the `inventory` crate): every `task!` in the
//!   binary is known before `main` runs, so a re-executed worker finds it without any user
//!   code. [`register`] adds a task written by hand at run time (call it before
//!   `uniconc::init()`, so a re-executed worker registers it too).
//! - [`Task::schema`] is a fingerprint of the argument and result type names and of
//!   [`Task::VERSION`]: a worker refuses a request whose fingerprint differs from its own (two
//!   builds that disagree on the types), instead of decoding garbage. Type names do not see a
//!   field added to a struct: bump `VERSION` when the wire form of a type changes.
//!
//! Errors name the task: an unknown name, a schema mismatch and an argument that does not
//! decode are each a [`TaskError::Failed`] with the name in its message; a panic is
//! [`TaskError::Panicked`] with the panic message.

use std::any::{TypeId, type_name};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::backend::Message;
use crate::codec;
use crate::error::{Error, MessageError, TaskError};
use crate::unit::panic_message;

/// A named function with a serde argument and result, runnable on any backend and in a
/// process that did not inherit the caller's memory.
///
/// Write one with [`task!`](crate::task!), or by hand (and [`register`] it):
///
/// ```
/// use uniconc::task::{self, Task};
/// use uniconc::{Backend, JoinHandle as _};
///
/// /// Doubles a number.
/// struct Double;
///
/// impl Task for Double {
///     const NAME: &'static str = "example::double";
///     type Arg = i64;
///     type Output = i64;
///     fn run(arg: i64) -> i64 {
///         arg * 2
///     }
/// }
///
/// task::register::<Double>()?; // before `uniconc::init()` in `main`
/// assert_eq!(uniconc::Thread::spawn_task::<Double>(21)?.join()?, 42);
/// assert!(task::lookup("example::double").is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Task: Send + Sync + 'static {
    /// The name a worker looks the task up by: unique in the binary. `task!` uses the
    /// function's path.
    const NAME: &'static str;

    /// Bumped by hand when the wire form of `Arg` or `Output` changes without their type
    /// names changing (a field added): part of [`schema`](Task::schema). Default 0.
    const VERSION: u32 = 0;

    /// The argument (several arguments travel as a tuple).
    type Arg: Message;

    /// The result.
    type Output: Message;

    /// Runs the task.
    fn run(arg: Self::Arg) -> Self::Output;

    /// The fingerprint a worker compares with its own before it decodes the argument: a
    /// 64-bit FNV-1a hash of the type names of `Arg` and `Output` and of
    /// [`VERSION`](Task::VERSION).
    ///
    /// ```
    /// use uniconc::task::Task;
    ///
    /// uniconc::task! { fn len(s: String) -> usize { s.len() } }
    /// uniconc::task! { fn len2(s: String) -> usize { s.len() * 2 } }
    /// uniconc::task! { fn neg(x: i32) -> i32 { -x } }
    ///
    /// assert_eq!(len::schema(), len2::schema()); // same types: same schema
    /// assert_ne!(len::schema(), neg::schema());
    /// ```
    fn schema() -> u64 {
        let mut h = Fnv::new();
        h.write(type_name::<Self::Arg>().as_bytes());
        h.write(b" -> ");
        h.write(type_name::<Self::Output>().as_bytes());
        h.write(b" v");
        h.write(&Self::VERSION.to_le_bytes());
        h.0
    }
}

/// 64-bit FNV-1a: a hash that is the same in every build and on every machine (std's
/// `DefaultHasher` promises neither).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The erased runner of a task: the encoded argument in, the encoded result (or why not) out.
pub type Runner = fn(&[u8]) -> Result<Vec<u8>, TaskError>;

/// A task in the registry, with its type erased: its name, schema and [`Runner`].
///
/// ```
/// uniconc::task! { fn triple(x: u32) -> u32 { x * 3 } }
///
/// use uniconc::task::{self, Task, TaskRequest};
///
/// let entry = task::lookup(<triple as Task>::NAME).unwrap();
/// let arg = TaskRequest::new::<triple>(&7)?.arg; // the encoded argument
/// let out = entry.run(&arg)?;
/// assert_eq!(task::decode_output::<triple>(&out)?, 21);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy)]
pub struct Registered {
    name: &'static str,
    schema: fn() -> u64,
    type_id: fn() -> TypeId,
    run: Runner,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("name", &self.name)
            .field("schema", &format_args!("{:#018x}", (self.schema)()))
            .finish_non_exhaustive()
    }
}

impl Registered {
    /// The registry entry of `T` (what `task!` submits at link time).
    pub const fn of<T: Task>() -> Self {
        Registered {
            name: T::NAME,
            schema: T::schema,
            type_id: TypeId::of::<T>,
            run: run_erased::<T>,
        }
    }

    /// The task's [`NAME`](Task::NAME).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The task's [`schema`](Task::schema) fingerprint.
    pub fn schema(&self) -> u64 {
        (self.schema)()
    }

    /// The erased runner.
    pub fn runner(&self) -> Runner {
        self.run
    }

    /// Decodes `arg`, runs the task (catching a panic) and encodes its result.
    ///
    /// # Errors
    /// `Panicked(message)` if the task panicked; `Failed` naming the task if `arg` does not
    /// decode as its argument or the result does not encode.
    pub fn run(&self, arg: &[u8]) -> Result<Vec<u8>, TaskError> {
        (self.run)(arg)
    }
}

inventory::collect!(Registered);

/// Tasks added at run time by [`register`].
static EXTRA: RwLock<Vec<Registered>> = RwLock::new(Vec::new());

/// Registers `T` at run time, for a task written by hand (`task!` registers at link time).
///
/// In a program that starts clean workers (the process backend), call it before
/// `uniconc::init()`: the worker is the same binary re-executed, and it registers the task
/// the same way before it looks it up. Registering the same task again does nothing.
///
/// ```
/// use uniconc::task::{self, Task};
///
/// struct Upper;
/// impl Task for Upper {
///     const NAME: &'static str = "example::upper";
///     type Arg = String;
///     type Output = String;
///     fn run(s: String) -> String {
///         s.to_uppercase()
///     }
/// }
///
/// task::register::<Upper>()?;
/// task::register::<Upper>()?; // again: fine
///
/// struct Impostor;
/// impl Task for Impostor {
///     const NAME: &'static str = "example::upper"; // taken
///     type Arg = ();
///     type Output = ();
///     fn run(_: ()) {}
/// }
/// assert!(task::register::<Impostor>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// `InvalidArgument` if another task is registered under the same name.
pub fn register<T: Task>() -> Result<(), Error> {
    let mut extra = EXTRA.write().unwrap_or_else(PoisonError::into_inner);
    let found = inventory::iter::<Registered>
        .into_iter()
        .copied()
        .chain(extra.iter().copied())
        .find(|r| r.name == T::NAME);
    match found {
        Some(r) if (r.type_id)() == TypeId::of::<T>() => Ok(()),
        Some(_) => Err(Error::invalid_argument(format!(
            "task name `{}` is already registered by another task",
            T::NAME
        ))),
        None => {
            extra.push(Registered::of::<T>());
            Ok(())
        }
    }
}

/// The registered task named `name`, if any: the tasks of every `task!` in the binary, then
/// those added by [`register`].
///
/// ```
/// uniconc::task! { fn hello() -> String { "hi".into() } }
///
/// assert!(uniconc::task::lookup(<hello as uniconc::task::Task>::NAME).is_some());
/// assert!(uniconc::task::lookup("no::such::task").is_none());
/// ```
pub fn lookup(name: &str) -> Option<Registered> {
    inventory::iter::<Registered>
        .into_iter()
        .copied()
        .find(|r| r.name == name)
        .or_else(|| {
            EXTRA
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .copied()
                .find(|r| r.name == name)
        })
}

/// Decodes the argument of `T`, runs it under `catch_unwind`, encodes the result.
fn run_erased<T: Task>(arg: &[u8]) -> Result<Vec<u8>, TaskError> {
    let arg: T::Arg = codec::decode(arg).map_err(|e| {
        TaskError::Failed(format!(
            "task `{}`: the argument could not be decoded as `{}`: {e}",
            T::NAME,
            type_name::<T::Arg>()
        ))
    })?;
    let out = catch_unwind(AssertUnwindSafe(|| T::run(arg)))
        .map_err(|p| TaskError::Panicked(panic_message(&*p)))?;
    encode(&out).map_err(|e| {
        TaskError::Failed(format!(
            "task `{}`: the result (a `{}`) could not be encoded: {e}",
            T::NAME,
            type_name::<T::Output>()
        ))
    })
}

/// Decodes the encoded result of `T` (what [`Registered::run`] and [`TaskRequest::run`]
/// return).
///
/// ```
/// uniconc::task! { fn shout(s: String) -> String { s.to_uppercase() } }
///
/// let out = uniconc::task::TaskRequest::new::<shout>(&"hey".into())?.run()?;
/// assert_eq!(uniconc::task::decode_output::<shout>(&out)?, "HEY");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// `Failed` naming the task if the bytes are not its `Output`.
pub fn decode_output<T: Task>(bytes: &[u8]) -> Result<T::Output, TaskError> {
    codec::decode(bytes).map_err(|e| {
        TaskError::Failed(format!(
            "task `{}`: the result could not be decoded as `{}`: {e}",
            T::NAME,
            type_name::<T::Output>()
        ))
    })
}

/// Encodes `value` with the [`codec`] into a new buffer.
fn encode<T: Serialize + ?Sized + 'static>(value: &T) -> Result<Vec<u8>, MessageError> {
    let mut buf = vec![0u8; codec::encoded_size(value)?];
    let n = codec::encode_into(value, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// What a caller sends to a worker to run a task: its name, its schema fingerprint and the
/// encoded argument. The wire form of a task between processes (and machines).
///
/// ```
/// use uniconc::task::{Task, TaskRequest};
///
/// uniconc::task! { fn add(a: u32, b: u32) -> u32 { a + b } }
///
/// let req = TaskRequest::new::<add>(&(2, 3))?;
/// let bytes = req.encode()?; // what crosses the wire
/// let back = TaskRequest::decode(&bytes)?;
/// assert_eq!(back.name, <add as Task>::NAME);
/// let out = back.run()?;
/// assert_eq!(uniconc::task::decode_output::<add>(&out)?, 5);
///
/// let unknown = TaskRequest { name: "nope".into(), ..back };
/// assert!(unknown.run().unwrap_err().to_string().contains("unknown task `nope`"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRequest {
    /// The task's [`NAME`](Task::NAME).
    pub name: String,
    /// The caller's [`schema`](Task::schema) of the task.
    pub schema: u64,
    /// The argument, encoded with the [`codec`].
    pub arg: Vec<u8>,
}

impl TaskRequest {
    /// The request to run `T` on `arg`.
    ///
    /// # Errors
    /// `Encode` if `arg` does not serialize.
    pub fn new<T: Task>(arg: &T::Arg) -> Result<Self, MessageError> {
        Ok(TaskRequest {
            name: T::NAME.to_owned(),
            schema: T::schema(),
            arg: encode(arg)?,
        })
    }

    /// The request's bytes (the [`codec`]'s encoding).
    ///
    /// # Errors
    /// `Encode` if it does not serialize (it always does, short of memory).
    pub fn encode(&self) -> Result<Vec<u8>, MessageError> {
        encode(self)
    }

    /// A request from its bytes.
    ///
    /// # Errors
    /// `Decode` if the bytes are not a request.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        codec::decode(bytes)
    }

    /// Looks the task up in this binary's registry, checks the schema, and runs it: the
    /// encoded result.
    ///
    /// # Errors
    /// `Failed` naming the task if no task of that name is registered, if the schemas differ,
    /// or as [`Registered::run`]; `Panicked` if the task panicked.
    pub fn run(&self) -> Result<Vec<u8>, TaskError> {
        let Some(task) = lookup(&self.name) else {
            return Err(TaskError::Failed(format!(
                "unknown task `{}`: no task of that name is registered in this binary \
                 (define it with `uniconc::task!`, or call `uniconc::task::register` before \
                 `uniconc::init()`)",
                self.name
            )));
        };
        let mine = task.schema();
        if mine != self.schema {
            return Err(TaskError::Failed(format!(
                "task `{}`: schema mismatch: the caller's fingerprint is {:#018x}, this \
                 binary's {mine:#018x} (its argument or result types, or its VERSION, differ \
                 between the two binaries)",
                self.name, self.schema
            )));
        }
        task.run(&self.arg)
    }
}

/// Defines a function and a task that runs it, and registers the task at link time.
///
/// ```
/// use uniconc::{Backend, JoinError, JoinHandle as _};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// pub struct Job {
///     pub width: u32,
///     pub height: u32,
/// }
///
/// uniconc::task! {
///     /// The number of pixels of a job.
///     pub fn pixels(job: Job) -> u64 {
///         u64::from(job.width) * u64::from(job.height)
///     }
/// }
///
/// uniconc::task! {
///     /// Several arguments travel as a tuple.
///     fn scale(x: f64, by: f64) -> f64 { x * by }
/// }
///
/// uniconc::task! {
///     fn fail(why: String) { panic!("{why}") }
/// }
///
/// type B = uniconc::Thread;
/// assert_eq!(B::spawn_task::<pixels>(Job { width: 4, height: 3 })?.join()?, 12);
/// assert_eq!(B::spawn_task::<scale>((1.5, 2.0))?.join()?, 3.0);
/// let err = B::spawn_task::<fail>("no".into())?.join().unwrap_err();
/// assert_eq!(err, JoinError::Panicked("no".into()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// What it writes, for `fn name(a: A, ..) -> R { .. }`:
///
/// - the function itself, unchanged (its attributes and doc comments too);
/// - a type **of the same name** (`struct name {}`: types and functions live in separate
///   namespaces), implementing [`Task`] with `NAME = concat!(module_path!(), "::name")`,
///   `Arg` = `A` for one argument, `()` for none, the tuple `(A, B, ..)` for several, and
///   `Output = R` (`()` without `-> R`). Run it with `B::spawn_task::<name>(arg)`;
/// - its registration (the `inventory` crate), so every worker started from this binary knows
///   it.
///
/// Arguments are plain identifiers (`x: T`, not patterns); generic functions are not tasks
/// (a worker must know the concrete types).
#[macro_export]
macro_rules! task {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $out:ty)? $body:block
    ) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $out)? $body

        #[doc = concat!(
            "The task of [`", stringify!($name), "()`](", stringify!($name),
            "()): run it with `spawn_task::<", stringify!($name), ">(arg)`."
        )]
        #[allow(non_camel_case_types)]
        $vis struct $name {}

        impl $crate::task::Task for $name {
            const NAME: &'static str = concat!(module_path!(), "::", stringify!($name));
            type Arg = $crate::__task_parts!(arg_type; $($ty),*);
            type Output = $crate::__task_parts!(out_type; $($out)?);

            fn run(arg: Self::Arg) -> Self::Output {
                $crate::__task_parts!(bind arg; $($arg),*);
                $name($($arg),*)
            }
        }

        $crate::__private::inventory::submit! {
            $crate::task::Registered::of::<$name>()
        }
    };
}

/// The pieces of [`task!`](crate::task!) that depend on the number of arguments. Not public
/// API.
#[doc(hidden)]
#[macro_export]
macro_rules! __task_parts {
    (arg_type;) => { () };
    (arg_type; $t:ty) => { $t };
    (arg_type; $($t:ty),+) => { ($($t,)+) };
    (out_type;) => { () };
    (out_type; $t:ty) => { $t };
    (bind $v:ident;) => { let () = $v; };
    (bind $v:ident; $a:ident) => { let $a = $v; };
    (bind $v:ident; $($a:ident),+) => { let ($($a,)+) = $v; };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::task! {
        fn square(x: u64) -> u64 { x * x }
    }

    crate::task! {
        fn boom(why: String) -> u8 { panic!("{why}") }
    }

    crate::task! {
        fn nothing() {}
    }

    #[test]
    fn registered_at_link_time_and_runs() {
        let t = lookup(<square as Task>::NAME).expect("registered by task!");
        assert_eq!(t.name(), "uniconc_core::task::tests::square");
        assert_eq!(t.schema(), square::schema());
        let out = t.run(&encode(&9u64).unwrap()).unwrap();
        assert_eq!(codec::decode::<u64>(&out).unwrap(), 81);
        let out = lookup(<nothing as Task>::NAME)
            .unwrap()
            .run(&encode(&()).unwrap())
            .unwrap();
        codec::decode::<()>(&out).unwrap();
    }

    #[test]
    fn errors_name_the_task() {
        let req = TaskRequest::new::<square>(&3).unwrap();
        let bytes = req.encode().unwrap();
        assert_eq!(TaskRequest::decode(&bytes).unwrap(), req);

        let unknown = TaskRequest {
            name: "a::b".into(),
            ..req.clone()
        };
        let e = unknown.run().unwrap_err().to_string();
        assert!(e.contains("unknown task `a::b`"), "{e}");

        let skewed = TaskRequest {
            schema: req.schema ^ 1,
            ..req.clone()
        };
        let e = skewed.run().unwrap_err().to_string();
        assert!(
            e.contains("task `uniconc_core::task::tests::square`: schema mismatch"),
            "{e}"
        );

        let garbage = TaskRequest {
            arg: vec![0xff; 3],
            ..req.clone()
        };
        let e = garbage.run().unwrap_err().to_string();
        assert!(
            e.contains("task `uniconc_core::task::tests::square`: the argument could not be decoded as `u64`"),
            "{e}"
        );

        let e = TaskRequest::new::<boom>(&"bad".into())
            .unwrap()
            .run()
            .unwrap_err();
        assert_eq!(e, TaskError::Panicked("bad".into()));
    }

    #[test]
    fn schema_follows_types_and_version() {
        struct V1;
        impl Task for V1 {
            const NAME: &'static str = "v";
            type Arg = u64;
            type Output = u64;
            fn run(x: u64) -> u64 {
                x
            }
        }
        struct V2;
        impl Task for V2 {
            const NAME: &'static str = "v";
            const VERSION: u32 = 1;
            type Arg = u64;
            type Output = u64;
            fn run(x: u64) -> u64 {
                x
            }
        }
        assert_eq!(V1::schema(), square::schema());
        assert_ne!(V1::schema(), V2::schema());
        assert_ne!(square::schema(), boom::schema());
    }
}
