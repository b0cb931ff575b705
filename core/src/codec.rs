//! The one place that knows how values are encoded when they are stored or sent as bytes (the
//! process backend's channels, every backend's `Map` and `List`): bincode 2.0.1 with its standard
//! configuration (varint integers, little-endian), chosen by measurement against postcard and
//! bitcode (figures in `benches/README.md`).
//!
//! Encoding is two passes over the value and never allocates: [`encoded_size`] counts the bytes
//! (so a sender can claim exactly that much shared memory), then [`encode_into`] writes them
//! straight into it. [`decode`] reads straight from it.

use crate::MessageError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest message the codec decodes, in bytes; also the largest channel byte budget.
/// Decoding claims lengths against it before allocating, so a corrupt length prefix read from
/// shared memory is an error, never an allocation of the claimed size.
pub const LIMIT: usize = 256 << 20;

const CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<LIMIT>,
> = bincode::config::standard().with_limit::<LIMIT>();

/// The encoded size of `value` in bytes.
///
/// # Errors
/// `Encode` if the value cannot be serialized.
#[inline]
pub fn encoded_size<T: Serialize + ?Sized>(value: &T) -> Result<usize, MessageError> {
    let mut w = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut w, CONFIG)
        .map_err(|e| MessageError::Encode(e.to_string()))?;
    Ok(w.bytes_written)
}

/// Encodes `value` into `dst`, returning the bytes written.
///
/// # Errors
/// `Encode` if serialization fails or does not fit `dst`.
#[inline]
pub fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    dst: &mut [u8],
) -> Result<usize, MessageError> {
    bincode::serde::encode_into_slice(value, dst, CONFIG)
        .map_err(|e| MessageError::Encode(e.to_string()))
}

/// Decodes a `T` from exactly `src`.
///
/// # Errors
/// `Decode` if the bytes are not a valid `T`, or if bytes are left over.
#[inline]
pub fn decode<T: DeserializeOwned>(src: &[u8]) -> Result<T, MessageError> {
    let (v, used) = bincode::serde::decode_from_slice::<T, _>(src, CONFIG)
        .map_err(|e| MessageError::Decode(e.to_string()))?;
    if used != src.len() {
        return Err(MessageError::Decode(format!(
            "{} trailing bytes after the message (sent as another type?)",
            src.len() - used
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_size() {
        let v = (7u64, String::from("hello"), vec![1u8, 2, 3]);
        let n = encoded_size(&v).unwrap();
        let mut buf = vec![0u8; n];
        assert_eq!(encode_into(&v, &mut buf).unwrap(), n);
        let back: (u64, String, Vec<u8>) = decode(&buf).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn wrong_type_is_a_decode_error() {
        let mut buf = vec![0u8; 16];
        let n = encode_into(&u64::MAX, &mut buf).unwrap();
        assert!(matches!(
            decode::<String>(&buf[..n]),
            Err(MessageError::Decode(_))
        ));
        assert!(matches!(
            decode::<u8>(&buf[..n]),
            Err(MessageError::Decode(_))
        ));
        // A length prefix claiming far more than the limit: an error, not an allocation.
        let mut buf = vec![0u8; 16];
        let n = encode_into(&(u64::MAX - 1), &mut buf).unwrap();
        assert!(matches!(
            decode::<Vec<u8>>(&buf[..n]),
            Err(MessageError::Decode(_))
        ));
    }
}
