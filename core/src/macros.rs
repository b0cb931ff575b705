//! Macros a backend crate invokes so that the glue every backend needs is written once: the
//! handle types and constructors of its [`Backend`](crate::Backend) impl, and its free
//! constructor functions (`lock`, `semaphore`, ..., `map`, `list`, `pool`). A backend names only what differs: its
//! capability constants, and the documentation of its free functions.
//!
//! Both macros expect the backend crate's root to name its pieces as every backend does:
//! `Sender`, `Receiver`, `Lock`, `Semaphore`, `Event`, `Barrier`, `Value`, `Array`, `Pool`,
//! `Map`, `List`, `JoinHandle`, and the functions `channel`, `unbounded`, `spawn`, `spawn_async`.

/// The associated types and constructors of a backend's [`Backend`](crate::Backend) impl,
/// forwarding to the crate root's types and free functions. Invoke it inside the impl, after
/// the constants:
///
/// ```ignore
/// impl uniconc::Backend for Thread {
///     const NAME: &'static str = "thread";
///     // ... the capability constants ...
///     uniconc::backend_items!();
/// }
/// ```
#[macro_export]
macro_rules! backend_items {
    () => {
        type Sender<T: $crate::Message> = Sender<T>;
        type Receiver<T: $crate::Message> = Receiver<T>;
        type Lock = Lock;
        type Semaphore = Semaphore;
        type Event = Event;
        type Barrier = Barrier;
        type Value<T: $crate::Plain> = Value<T>;
        type Array<T: $crate::Plain> = Array<T>;
        type Map<K: $crate::Message + ::core::hash::Hash + Eq, V: $crate::Message> = Map<K, V>;
        type List<T: $crate::Message> = List<T>;
        type Pool = Pool;
        type JoinHandle<R: $crate::Message> = JoinHandle<R>;

        #[inline]
        fn channel<T: $crate::Message>(
            capacity: usize,
        ) -> ::core::result::Result<(Sender<T>, Receiver<T>), $crate::Error> {
            channel(capacity)
        }

        #[inline]
        fn unbounded<T: $crate::Message>()
        -> ::core::result::Result<(Sender<T>, Receiver<T>), $crate::Error> {
            unbounded()
        }

        #[inline]
        fn spawn<F, R>(f: F) -> ::core::result::Result<JoinHandle<R>, $crate::Error>
        where
            F: FnOnce() -> R + Send + 'static,
            R: $crate::Message,
        {
            spawn(f)
        }

        #[inline]
        fn spawn_async<Fut>(
            fut: Fut,
        ) -> ::core::result::Result<JoinHandle<Fut::Output>, $crate::Error>
        where
            Fut: ::core::future::Future + Send + 'static,
            Fut::Output: $crate::Message,
        {
            spawn_async(fut)
        }
    };
}

/// A backend's free constructor functions `lock`, `semaphore`, `event`, `barrier`, `value`,
/// `array`, `map`, `list` and `pool`, each the trait constructor of the crate root's type. The backend gives
/// each function's documentation (its own examples and error notes) before its name:
///
/// ```ignore
/// uniconc::backend_constructors! {
///     /// A new lock, not held.
///     lock;
///     /// A semaphore holding `permits` permits.
///     semaphore;
///     // ... event; barrier; value; array; map; list; pool; in this order
/// }
/// ```
#[macro_export]
macro_rules! backend_constructors {
    (
        $(#[$lock:meta])* lock;
        $(#[$semaphore:meta])* semaphore;
        $(#[$event:meta])* event;
        $(#[$barrier:meta])* barrier;
        $(#[$value:meta])* value;
        $(#[$array:meta])* array;
        $(#[$map:meta])* map;
        $(#[$list:meta])* list;
        $(#[$pool:meta])* pool;
    ) => {
        $(#[$lock])*
        pub fn lock() -> ::core::result::Result<Lock, $crate::Error> {
            <Lock as $crate::Lock>::new()
        }

        $(#[$semaphore])*
        pub fn semaphore(permits: usize) -> ::core::result::Result<Semaphore, $crate::Error> {
            <Semaphore as $crate::Semaphore>::new(permits)
        }

        $(#[$event])*
        pub fn event() -> ::core::result::Result<Event, $crate::Error> {
            <Event as $crate::Event>::new()
        }

        $(#[$barrier])*
        pub fn barrier(n: usize) -> ::core::result::Result<Barrier, $crate::Error> {
            <Barrier as $crate::Barrier>::new(n)
        }

        $(#[$value])*
        pub fn value<T: $crate::Plain>(value: T) -> ::core::result::Result<Value<T>, $crate::Error> {
            <Value<T> as $crate::Value<T>>::new(value)
        }

        $(#[$array])*
        pub fn array<T: $crate::Plain>(len: usize) -> ::core::result::Result<Array<T>, $crate::Error> {
            <Array<T> as $crate::Array<T>>::new(len)
        }

        $(#[$map])*
        pub fn map<K, V>() -> ::core::result::Result<Map<K, V>, $crate::Error>
        where
            K: $crate::Message + ::core::hash::Hash + Eq,
            V: $crate::Message,
        {
            <Map<K, V> as $crate::Map<K, V>>::new()
        }

        $(#[$list])*
        pub fn list<T: $crate::Message>() -> ::core::result::Result<List<T>, $crate::Error> {
            <List<T> as $crate::List<T>>::new()
        }

        $(#[$pool])*
        pub fn pool(workers: usize) -> ::core::result::Result<Pool, $crate::Error> {
            <Pool as $crate::Pool>::new(workers)
        }
    };
}
