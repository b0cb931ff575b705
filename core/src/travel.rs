//! Handles that travel within one process: the serde form of the thread and tokio backends'
//! handles (`Sender`, `Receiver`, `Lock`, `Semaphore`, `Event`, `Barrier`).
//!
//! Those backends pass values themselves through their channels, so a handle is serialized
//! only where a codec stands in the way: a handle stored in a [`Map`](crate::Map) or
//! [`List`](crate::List), or returned from a named task (its result is encoded). Serializing
//! puts a clone of the handle in a process-wide registry under a fresh id and writes the id;
//! deserializing takes that clone out.
//!
//! # The rule of a handle in flight (the same on every backend)
//!
//! A serialized handle is held by the process that serialized it until it is deserialized, or
//! until that process ends. So a channel whose only sender is inside a message stays
//! connected, and a handle whose bytes are dropped unread is released when the process ends.
//! Here the process is the whole program, so such a handle stays counted until it exits:
//! deserialize what you serialize.
//!
//! Within one process, the bytes of a handle are read once: the first deserialization takes
//! the handle, and a later one of the same bytes fails (`NotFound`) — clone the handle instead.
//! (The process backend, where bytes are copied between processes, makes each later
//! deserialization one more clone while the object lives.) Bytes from another process fail
//! (`Unsupported`): these handles cannot leave the process that made them.
//!
//! A serializer may pass over a value more than once (a size pass, then the bytes): passes
//! over the same handle, at the same address, while its clone waits in the registry, share
//! one id, so they count once.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! #[derive(Clone)]
//! struct Handle(std::sync::Arc<u32>);
//! impl Serialize for Handle {
//!     fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
//!         uniconc_core::travel::serialize_local(self, std::sync::Arc::as_ptr(&self.0) as usize, s)
//!     }
//! }
//! impl<'de> Deserialize<'de> for Handle {
//!     fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
//!         uniconc_core::travel::deserialize_local(d)
//!     }
//! }
//! use uniconc_core::codec;
//! let h = Handle(std::sync::Arc::new(7));
//! let mut bytes = vec![0; codec::encoded_size(&h)?]; // a size pass, then the bytes
//! codec::encode_into(&h, &mut bytes)?;
//! let back: Handle = codec::decode(&bytes)?;
//! assert!(std::sync::Arc::ptr_eq(&h.0, &back.0));
//! assert!(codec::decode::<Handle>(&bytes).is_err()); // read once
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// A handle waiting in the registry. Invariant: `handle` is a clone of the serialized handle,
/// counted as a live handle of its object until it is taken.
struct Entry {
    handle: Box<dyn Any + Send>,
    /// Where the serialized handle was and which object it is: passes of one serializer
    /// over one handle share its entry.
    at: (usize, usize),
}

static ENTRIES: Mutex<Option<HashMap<u64, Entry>>> = Mutex::new(None);

/// Tells this process's bytes from another's: the pid, and an address of this process.
fn process_token() -> u64 {
    static TOKEN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TOKEN.get_or_init(|| {
        let here = &ENTRIES as *const _ as u64;
        (u64::from(std::process::id()) << 32) ^ here
    })
}

/// Serializes `handle` as an id of this process's registry, holding a clone of it there until
/// it is deserialized. `object` tells the handle's object (an `Arc`'s address).
///
/// # Errors
/// Only the serializer's own.
pub fn serialize_local<H, S>(handle: &H, object: usize, s: S) -> Result<S::Ok, S::Error>
where
    H: Clone + Send + 'static,
    S: Serializer,
{
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let at = (handle as *const H as usize, object);
    let id = {
        let mut entries = ENTRIES.lock().unwrap_or_else(|e| e.into_inner());
        let entries = entries.get_or_insert_with(HashMap::new);
        match entries.iter().find(|(_, e)| e.at == at) {
            Some((&id, _)) => id,
            None => {
                // Relaxed: only makes ids unique.
                let id = NEXT.fetch_add(1, Ordering::Relaxed);
                entries.insert(
                    id,
                    Entry {
                        handle: Box::new(handle.clone()),
                        at,
                    },
                );
                id
            }
        }
    };
    (process_token(), id).serialize(s)
}

/// Takes the handle `d` names out of this process's registry.
///
/// # Errors
/// `NotFound` if it was taken already; `Unsupported` for bytes from another process;
/// `Incompatible` if it is a handle of another type (it stays in the registry).
pub fn deserialize_local<'de, H, D>(d: D) -> Result<H, D::Error>
where
    H: Send + 'static,
    D: Deserializer<'de>,
{
    let (token, id) = <(u64, u64)>::deserialize(d)?;
    take::<H>(token, id).map_err(serde::de::Error::custom)
}

fn take<H: Send + 'static>(token: u64, id: u64) -> Result<H, Error> {
    if token != process_token() {
        return Err(Error::unsupported(
            "a handle of an in-process backend (thread, tokio) was read in another process: \
             such handles only travel within the process that made them",
        ));
    }
    let mut entries = ENTRIES.lock().unwrap_or_else(|e| e.into_inner());
    let entries = entries.get_or_insert_with(HashMap::new);
    let Some(entry) = entries.remove(&id) else {
        return Err(Error::not_found(
            "this handle's bytes were already deserialized once (within one process a \
             serialized handle is read once: clone the handle instead)",
        ));
    };
    match entry.handle.downcast::<H>() {
        Ok(h) => Ok(*h),
        Err(handle) => {
            entries.insert(
                id,
                Entry {
                    handle,
                    at: entry.at,
                },
            );
            Err(Error::incompatible(format!(
                "a travelling handle was read as a `{}`, which it is not",
                std::any::type_name::<H>()
            )))
        }
    }
}

/// Implements `Serialize` and `Deserialize` through [`serialize_local`] and
/// [`deserialize_local`] for a handle type whose field `$field` is the `Arc` of its object:
/// `travel_local!(Sender<T>, shared)`, `travel_local!(Lock, inner)`. Invoke it in the module
/// that defines the type. Not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! travel_local {
    ($ty:ident $(<$g:ident>)?, $field:ident) => {
        impl$(<$g: Send + 'static>)? $crate::__private::serde::Serialize for $ty$(<$g>)? {
            fn serialize<S: $crate::__private::serde::Serializer>(
                &self,
                s: S,
            ) -> Result<S::Ok, S::Error> {
                let object = std::sync::Arc::as_ptr(&self.$field) as *const () as usize;
                $crate::travel::serialize_local(self, object, s)
            }
        }

        impl<'de $(, $g: Send + 'static)?> $crate::__private::serde::Deserialize<'de>
            for $ty$(<$g>)?
        {
            fn deserialize<D: $crate::__private::serde::Deserializer<'de>>(
                d: D,
            ) -> Result<Self, D::Error> {
                $crate::travel::deserialize_local(d)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone)]
    struct H(Arc<u8>);

    fn encode(h: &H) -> Vec<u8> {
        let mut bytes = vec![0; crate::codec::encoded_size(h).unwrap()];
        crate::codec::encode_into(h, &mut bytes).unwrap();
        bytes
    }

    impl Serialize for H {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize_local(self, Arc::as_ptr(&self.0) as usize, s)
        }
    }

    impl<'de> Deserialize<'de> for H {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            deserialize_local(d)
        }
    }

    #[test]
    fn the_registry_holds_a_clone_until_it_is_read_once() {
        let h = H(Arc::new(1));
        let bytes = encode(&h);
        // Encoding sized and wrote the value: one clone waits.
        assert_eq!(Arc::strong_count(&h.0), 2);
        let back: H = crate::codec::decode(&bytes).unwrap();
        assert!(Arc::ptr_eq(&h.0, &back.0));
        assert_eq!(Arc::strong_count(&h.0), 2);
        assert!(crate::codec::decode::<H>(&bytes).is_err());
    }

    #[test]
    fn another_type_is_refused_and_loses_nothing() {
        let h = H(Arc::new(2));
        let bytes = encode(&h);
        let e = crate::codec::decode::<Lonely>(&bytes);
        assert!(e.is_err());
        let back: H = crate::codec::decode(&bytes).unwrap();
        assert_eq!(*back.0, 2);
    }

    #[derive(Clone)]
    struct Lonely;

    impl<'de> Deserialize<'de> for Lonely {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            deserialize_local(d)
        }
    }

    #[test]
    fn bytes_of_another_process_are_refused() {
        let e = take::<H>(process_token() ^ 1, 1).err().unwrap();
        assert_eq!(e.kind(), crate::ErrorKind::Unsupported);
    }
}
