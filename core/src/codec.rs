//! The one place that knows how values are encoded when they are stored or sent as bytes (the
//! process backend's channels, every backend's `Map` and `List`): bincode 2.0.1 with its standard
//! configuration (varint integers, little-endian), chosen by measurement against postcard and
//! bitcode (figures in `benches/README.md`).
//!
//! Encoding is two passes over the value and never allocates: [`encoded_size`] counts the bytes
//! (so a sender can claim exactly that much shared memory), then [`encode_into`] writes them
//! straight into it. [`decode`] reads straight from it.
//!
//! A value that is one sequence of bytes or numbers (`Vec<u8>`, `String`, `Box<[u8]>`,
//! `Vec<f64>`, `Vec<f32>`, `Vec<u64>`, `Vec<i64>`, `Vec<u32>`, `Vec<i32>`, `Vec<u16>`,
//! `Vec<i16>`) is encoded and decoded without serde's call per element, at up to memory speed,
//! into exactly the bytes bincode writes.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::MessageError;

mod fast;

/// The largest message the codec decodes, in bytes; also the largest channel byte budget.
/// Decoding claims lengths against a limit before allocating: this, or for a message over
/// 15 MiB a wider one, up to 17 bytes per byte of it (bincode claims numbers at their size in
/// memory; see `decode_any`). A corrupt length prefix read from shared memory is an error, or
/// an allocation within that limit (up to 4.25 GiB for a 256 MiB message), never of the
/// claimed size.
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
pub fn encoded_size<T: Serialize + ?Sized + 'static>(value: &T) -> Result<usize, MessageError> {
    match fast::view(value) {
        // A single integer inline: its type is known here, so this is one branch.
        Some(fast::Seq::Int(v)) => Ok(fast::varint_len(v)),
        Some(seq) => Ok(fast::size(&seq)),
        None => encoded_size_any(value),
    }
}

/// The encoded size of `value`, for a type that may borrow (a map key looked up through
/// `Borrow`, such as a `&str` for `String` keys): the same size as [`encoded_size`], through
/// serde only.
///
/// # Errors
/// `Encode` if the value cannot be serialized.
pub fn encoded_size_any<T: Serialize + ?Sized>(value: &T) -> Result<usize, MessageError> {
    let mut w = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut w, CONFIG)
        .map_err(|e| MessageError::Encode(e.to_string()))?;
    Ok(w.bytes_written)
}

/// Encodes `value` into `dst` like [`encode_into`] (the same bytes), for a type that may
/// borrow; through serde only.
///
/// # Errors
/// `Encode` if serialization fails or does not fit `dst`.
pub fn encode_into_any<T: Serialize + ?Sized>(
    value: &T,
    dst: &mut [u8],
) -> Result<usize, MessageError> {
    bincode::serde::encode_into_slice(value, dst, CONFIG)
        .map_err(|e| MessageError::Encode(e.to_string()))
}

/// Encodes `value` into `dst`, returning the bytes written.
///
/// # Errors
/// `Encode` if serialization fails or does not fit `dst`.
#[inline]
pub fn encode_into<T: Serialize + ?Sized + 'static>(
    value: &T,
    dst: &mut [u8],
) -> Result<usize, MessageError> {
    match fast::view(value) {
        // A single integer inline, as in `encoded_size`.
        Some(fast::Seq::Int(v)) if dst.len() >= fast::varint_len(v) => Ok(fast::put_varint(dst, v)),
        Some(seq) => fast::encode(&seq, dst),
        None => encode_into_any(value, dst),
    }
}

/// The encoded size of a byte sequence (`Vec<u8>`, `Box<[u8]>`) of `len` bytes: its length
/// prefix and the bytes; `None` if that overflows `usize`.
///
/// A sender that writes the bytes itself (`Sender::send_with`) claims this much, writes the
/// prefix with [`put_bytes_header`], then the bytes after it.
#[inline]
pub fn bytes_encoded_size(len: usize) -> Option<usize> {
    len.checked_add(fast::len_len(len))
}

/// Writes the length prefix of a byte sequence of `len` bytes at the start of `dst`, as
/// [`encode_into`] writes it for a `Vec<u8>`; returns its length (at most 9 bytes). The bytes
/// go right after it.
///
/// # Panics
/// If `dst` is shorter than the prefix (`bytes_encoded_size(len) - len` bytes).
#[inline]
pub fn put_bytes_header(len: usize, dst: &mut [u8]) -> usize {
    fast::put_len(dst, len)
}

/// The bytes of an encoded byte sequence (`Vec<u8>`, `Box<[u8]>`), borrowed from `src`
/// without a copy.
///
/// # Errors
/// `Decode` if `src` is not exactly a length prefix and that many bytes.
#[inline]
pub fn bytes_payload(src: &[u8]) -> Result<&[u8], MessageError> {
    fast::bytes(src)
}

/// Decodes a `T` from exactly `src`.
///
/// # Errors
/// `Decode` if the bytes are not a valid `T`, or if bytes are left over.
#[inline]
pub fn decode<T: DeserializeOwned + 'static>(src: &[u8]) -> Result<T, MessageError> {
    if let Some(v) = fast::decode::<T>(src) {
        return v;
    }
    let (v, used) = decode_any::<T>(src).map_err(|e| MessageError::Decode(e.to_string()))?;
    if used != src.len() {
        return Err(MessageError::Decode(format!(
            "{} trailing bytes after the message (sent as another type?)",
            src.len() - used
        )));
    }
    Ok(v)
}

/// How much a message of `src.len()` bytes may claim while it is decoded: bincode counts every
/// number read at its size in memory (8 bytes for a `u64` however short its varint) and every
/// string or byte buffer at its length, against the configuration's limit, and allocates a
/// string's bytes before reading them. Each byte read claims at most 16 (a `u128` in one byte)
/// and a string at most the bytes it covers, so a valid message never claims more than
/// `17 * src.len()`; a limit of that size refuses no valid message (a `Vec<u64>` of 40 million
/// small numbers inside a struct is 40 MB encoded, 320 MB claimed) while a corrupt length
/// prefix still cannot make the decoder allocate more than the limit.
fn decode_any<T: DeserializeOwned>(src: &[u8]) -> Result<(T, usize), bincode::error::DecodeError> {
    use bincode::config::standard;
    use bincode::serde::decode_from_slice;
    const WIDER: usize = LIMIT.saturating_mul(4);
    const WIDEST: usize = LIMIT.saturating_mul(17);
    let claims = src.len().saturating_mul(17);
    if claims <= LIMIT {
        decode_from_slice(src, CONFIG)
    } else if claims <= WIDER {
        decode_from_slice(src, standard().with_limit::<WIDER>())
    } else {
        decode_from_slice(src, standard().with_limit::<WIDEST>())
    }
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

    /// A byte message written by hand (the prefix, then the bytes) is exactly what encoding
    /// the `Vec<u8>` writes, at every varint class of its length, and reads back in place.
    #[test]
    fn hand_written_byte_messages_are_vec_u8s() {
        for len in [0, 1, 250, 251, 65_535, 65_536, 100_000] {
            let v: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let size = bytes_encoded_size(len).unwrap();
            assert_eq!(size, encoded_size(&v).unwrap(), "len {len}");
            let mut buf = vec![0u8; size];
            let at = put_bytes_header(len, &mut buf);
            buf[at..].copy_from_slice(&v);
            let mut want = vec![0u8; size];
            encode_into(&v, &mut want).unwrap();
            assert_eq!(buf, want, "len {len}");
            assert_eq!(bytes_payload(&buf).unwrap(), &v[..]);
            assert_eq!(
                decode::<Box<[u8]>>(&buf).unwrap(),
                v.clone().into_boxed_slice()
            );
            assert!(bytes_payload(&buf[..size - 1]).is_err());
        }
        assert_eq!(bytes_encoded_size(usize::MAX), None);
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

    /// Numbers inside a struct are claimed at their size in memory while decoding (8 bytes a
    /// `u64`, whatever its varint): a message far below the byte limit that decodes to more
    /// than it is still received.
    #[test]
    fn a_small_message_that_decodes_large_is_received() {
        #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Wrapped(Vec<u128>);
        // 17M zeros: 17 MB encoded, 272 MB claimed (above `LIMIT`).
        let v = Wrapped(vec![0u128; (LIMIT / 16) + (1 << 20)]);
        let n = encoded_size(&v).unwrap();
        assert!(n < LIMIT / 8);
        let mut buf = vec![0u8; n];
        encode_into(&v, &mut buf).unwrap();
        assert_eq!(decode::<Wrapped>(&buf).unwrap(), v);
        // A corrupt length prefix inside such a message is still refused without allocating
        // what it claims (`u64::MAX / 2` bytes would abort the process).
        let mut bad = vec![0u8; 16];
        let k = encode_into(&(u64::MAX / 2), &mut bad).unwrap();
        bad.truncate(k);
        bad.extend(std::iter::repeat_n(0u8, 20 << 20));
        assert!(matches!(
            decode::<String>(&bad),
            Err(MessageError::Decode(_))
        ));
    }

    /// A small deterministic generator (xorshift): the tests need no random crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// A value around every varint boundary, or anywhere.
        fn int(&mut self) -> u64 {
            let edges = [
                0,
                1,
                250,
                251,
                252,
                0xffff,
                0x1_0000,
                0xffff_ffff,
                1 << 32,
                u64::MAX,
            ];
            match self.next() % 3 {
                0 => {
                    edges[(self.next() % edges.len() as u64) as usize].wrapping_add(self.next() % 3)
                }
                1 => self.next() % 1000,
                _ => self.next() >> (self.next() % 64),
            }
        }
    }

    /// The bytes bincode itself writes (the path every other type takes).
    fn bincode_bytes<T: Serialize>(v: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(v, CONFIG).unwrap()
    }

    fn bincode_decode<T: DeserializeOwned>(b: &[u8]) -> T {
        bincode::serde::decode_from_slice(b, CONFIG).unwrap().0
    }

    /// The fast path writes bincode's bytes and reads them back, for `v`.
    fn same_as_bincode<T>(v: &T)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + 'static,
    {
        assert!(
            fast::view(v).is_some(),
            "{} has a fast path",
            std::any::type_name::<T>()
        );
        let want = bincode_bytes(v);
        assert_eq!(encoded_size(v).unwrap(), want.len());
        let mut got = vec![0u8; want.len()];
        assert_eq!(encode_into(v, &mut got).unwrap(), want.len());
        assert_eq!(got, want, "{}", std::any::type_name::<T>());
        // A longer buffer: nothing written past the message.
        let mut long = vec![0xa5u8; want.len() + 16];
        assert_eq!(encode_into(v, &mut long).unwrap(), want.len());
        assert_eq!(long[..want.len()], want[..]);
        assert!(
            long[want.len()..].iter().all(|&b| b == 0xa5),
            "written past the end"
        );
        // A shorter one: an error, never a panic.
        if let Some(short) = want.len().checked_sub(1) {
            assert!(matches!(
                encode_into(v, &mut long[..short]),
                Err(MessageError::Encode(_))
            ));
        }
        assert_eq!(&decode::<T>(&want).unwrap(), v);
        assert_eq!(&bincode_decode::<T>(&got), v);
    }

    #[test]
    fn fast_path_writes_and_reads_exactly_bincodes_bytes() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let n = match round % 4 {
                0 => 0,
                1 => (rng.next() % 8) as usize,
                2 => (rng.next() % 300) as usize,
                _ => 250 + (rng.next() % 70_000) as usize / 64,
            };
            let ints: Vec<u64> = (0..n).map(|_| rng.int()).collect();
            same_as_bincode(&ints.iter().map(|&x| x as u8).collect::<Vec<u8>>());
            same_as_bincode(
                &ints
                    .iter()
                    .map(|&x| x as u8)
                    .collect::<Vec<u8>>()
                    .into_boxed_slice(),
            );
            same_as_bincode(
                &ints
                    .iter()
                    .map(|&x| char::from(b'a' + (x % 26) as u8))
                    .collect::<String>(),
            );
            same_as_bincode(&"héllo wörld ✓".repeat(n % 7));
            same_as_bincode(&ints);
            same_as_bincode(&ints.iter().map(|&x| x as i64).collect::<Vec<i64>>());
            same_as_bincode(&ints.iter().map(|&x| x as u32).collect::<Vec<u32>>());
            same_as_bincode(&ints.iter().map(|&x| x as i32).collect::<Vec<i32>>());
            same_as_bincode(&ints.iter().map(|&x| x as u16).collect::<Vec<u16>>());
            same_as_bincode(&ints.iter().map(|&x| x as i16).collect::<Vec<i16>>());
            same_as_bincode(
                &ints
                    .iter()
                    .map(|&x| f64::from_bits(x))
                    .filter(|f| !f.is_nan())
                    .collect::<Vec<f64>>(),
            );
            same_as_bincode(&ints.iter().map(|&x| x as f32 * 0.5).collect::<Vec<f32>>());
        }
        for _ in 0..2000 {
            let x = rng.int();
            same_as_bincode(&x);
            same_as_bincode(&(x as usize));
            same_as_bincode(&(x as i64));
            same_as_bincode(&(x as isize));
            same_as_bincode(&(x as u32));
            same_as_bincode(&(x as i32));
            same_as_bincode(&(x as u16));
            same_as_bincode(&(x as i16));
            same_as_bincode(&(x as u8));
            same_as_bincode(&(x as i8));
            same_as_bincode(&(x % 2 == 0));
            same_as_bincode(&(x as f32));
            if !f64::from_bits(x).is_nan() {
                same_as_bincode(&f64::from_bits(x));
            }
        }
        for v in [i64::MIN, i64::MAX, -1, 0, 1, -125, 125, -126, 126] {
            same_as_bincode(&vec![v]);
            same_as_bincode(&vec![v as i32]);
            same_as_bincode(&vec![v as i16]);
        }
    }

    #[test]
    fn other_types_take_bincodes_path() {
        assert!(fast::view(&(1u8, 2u8)).is_none());
        assert!(fast::view(&vec![vec![1u8]]).is_none());
        assert!(fast::view(&vec![1u8; 3][..]).is_none()); // a slice, not a message type
        assert!(fast::view(&7u128).is_none());
        assert!(fast::view(&'c').is_none());
    }

    #[test]
    fn fast_decoding_refuses_corrupt_input() {
        let bytes = bincode_bytes(&vec![1u64, 300, 70_000, 1 << 40]);
        // Cut anywhere: an error, never a panic or a short vector.
        for cut in 0..bytes.len() {
            assert!(decode::<Vec<u64>>(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // Trailing bytes, as on bincode's path.
        let mut long = bincode_bytes(&String::from("ab"));
        long.push(0);
        assert!(
            matches!(decode::<String>(&long), Err(MessageError::Decode(m)) if m.contains("trailing"))
        );
        // A length far beyond what follows: refused before allocating.
        let mut huge = vec![U64_MARK];
        huge.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        for d in [
            decode::<Vec<u8>>(&huge).err(),
            decode::<Vec<f64>>(&huge).err(),
            decode::<Vec<u64>>(&huge).err(),
        ] {
            assert!(matches!(d, Some(MessageError::Decode(_))));
        }
        // Invalid UTF-8, an integer too wide for its type, an unknown marker.
        assert!(decode::<String>(&[2, 0xff, 0xfe]).is_err());
        assert!(decode::<Vec<u16>>(&[1, 252, 0, 0, 1, 0]).is_err());
        assert!(decode::<Vec<u64>>(&[1, 254]).is_err());
        // Single numbers: too short, too long, too wide, not a bool.
        assert!(decode::<u64>(&[]).is_err());
        assert!(decode::<u64>(&[1, 2]).is_err());
        assert!(decode::<u32>(&[U64_MARK, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        assert!(decode::<f64>(&[0; 7]).is_err());
        assert!(decode::<bool>(&[2]).is_err());
        // A float sequence whose bytes are not a whole number of floats.
        assert!(decode::<Vec<f64>>(&[1, 0, 0, 0]).is_err());
    }

    /// bincode's marker for an 8-byte integer.
    const U64_MARK: u8 = 253;

    /// Values at and around every varint boundary (one byte up to 250, then 2, 4 and 8 bytes
    /// after a marker) and the extremes.
    const BOUNDARIES: [u64; 14] = [
        0,
        1,
        250,
        251,
        255,
        256,
        0xffff,
        0x1_0000,
        0xffff_ffff,
        1 << 32,
        (1 << 32) + 1,
        1 << 63,
        u64::MAX - 1,
        u64::MAX,
    ];

    /// A value of varint class `class` (0: one byte, 1: 2 bytes, 2: 4 bytes, 3: 8 bytes).
    fn of_class(rng: &mut Rng, class: u64) -> u64 {
        let (lo, hi) = match class {
            0 => (0, 250),
            1 => (251, 0xffff),
            2 => (0x1_0000, 0xffff_ffff),
            _ => (1 << 32, u64::MAX),
        };
        lo + rng.next() % (hi - lo) + u64::from(rng.next() % 2 == 0 && hi == u64::MAX)
    }

    /// Every integer element type with a fast path, from the same widened values (truncated,
    /// and for the signed types also negated, so that zigzag meets every class too).
    fn every_int_type(wide: &[u64]) {
        same_as_bincode(&wide.to_vec());
        same_as_bincode(&wide.iter().map(|&x| x as i64).collect::<Vec<_>>());
        same_as_bincode(
            &wide
                .iter()
                .map(|&x| (x as i64).wrapping_neg())
                .collect::<Vec<_>>(),
        );
        same_as_bincode(&wide.iter().map(|&x| x as u32).collect::<Vec<_>>());
        same_as_bincode(&wide.iter().map(|&x| x as i32).collect::<Vec<_>>());
        same_as_bincode(
            &wide
                .iter()
                .map(|&x| (x as i32).wrapping_neg())
                .collect::<Vec<_>>(),
        );
        same_as_bincode(&wide.iter().map(|&x| x as u16).collect::<Vec<_>>());
        same_as_bincode(&wide.iter().map(|&x| x as i16).collect::<Vec<_>>());
        same_as_bincode(
            &wide
                .iter()
                .map(|&x| (x as i16).wrapping_neg())
                .collect::<Vec<_>>(),
        );
    }

    #[test]
    fn varint_sequences_are_bincodes_bytes_for_every_class_and_run() {
        // The boundaries alone, in every type (signed: as themselves and negated, which
        // covers -1, i64::MIN, -125 / -126 around zigzag's one-byte edge, ...).
        for &b in &BOUNDARIES {
            every_int_type(&[b]);
            every_int_type(&[b; 20]);
        }
        every_int_type(&BOUNDARIES);
        for v in [
            i64::MIN,
            i64::MAX,
            -1,
            -125,
            -126,
            -127,
            -32_768,
            -32_769,
            i64::from(i32::MIN),
        ] {
            same_as_bincode(&vec![v; 11]);
            same_as_bincode(&vec![v as i32; 11]);
            same_as_bincode(&vec![v as i16; 11]);
        }
        // Runs of one class, of mixed classes, and a run of one class ending at every
        // distance from the end of the message (where the encoder and decoder switch from
        // fixed-size stores to exact ones).
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for round in 0..400u64 {
            let n = (rng.next() % 40) as usize + (round as usize % 3) * 300;
            let wide: Vec<u64> = match round % 4 {
                0 => {
                    let c = rng.next() % 4;
                    (0..n).map(|_| of_class(&mut rng, c)).collect()
                }
                1 => (0..n)
                    .map(|_| {
                        let c = rng.next() % 4;
                        of_class(&mut rng, c)
                    })
                    .collect(),
                2 => (0..n)
                    .map(|i| of_class(&mut rng, (i / (1 + round as usize % 9)) as u64 % 4))
                    .collect(),
                _ => {
                    let (big, small) = (rng.next() % 4, rng.next() % 4);
                    let tail = (round / 4 % 12) as usize;
                    (0..n)
                        .map(|i| of_class(&mut rng, if i + tail >= n { small } else { big }))
                        .collect()
                }
            };
            every_int_type(&wide);
        }
    }

    /// `T` decoded from `src` by bincode's own path (`Err(())` where it refuses the bytes,
    /// trailing bytes included, as [`decode`] does on that path).
    fn bincode_path<T: DeserializeOwned>(src: &[u8]) -> Result<T, ()> {
        match bincode::serde::decode_from_slice::<T, _>(src, CONFIG) {
            Ok((v, used)) if used == src.len() => Ok(v),
            _ => Err(()),
        }
    }

    /// The fast path and bincode's agree on `src` as a `T`: the same value (compared by
    /// its encoding, so NaNs compare), or both refuse it.
    fn decodes_as_bincode<T: Serialize + DeserializeOwned + 'static>(src: &[u8]) {
        assert!(fast::decode::<T>(src).is_some(), "a fast path");
        let fast = decode::<T>(src).map(|v| bincode_bytes(&v));
        let slow = bincode_path::<T>(src).map(|v| bincode_bytes(&v));
        assert_eq!(
            fast.as_ref().ok(),
            slow.as_ref().ok(),
            "{} from {src:?}: fast {fast:?}",
            std::any::type_name::<T>()
        );
    }

    /// Bytes shaped like a varint sequence (a count, then elements under every marker,
    /// 0..=255), with the count sometimes off by one and the end sometimes cut or extended:
    /// mostly near-valid input, where a decoder's edge cases are.
    fn varint_soup(rng: &mut Rng) -> Vec<u8> {
        let n = (rng.next() % 120) as usize;
        let mut b = Vec::new();
        let count = match rng.next() % 8 {
            0 => n + 1,
            1 => n.saturating_sub(1),
            _ => n,
        } as u64;
        let mut lead = vec![0u8; 9];
        let used = fast::encode(&fast::Seq::Int(count), &mut lead).unwrap();
        b.extend_from_slice(&lead[..used]);
        // In runs of one kind of first byte (what the decoder reads in blocks), of 1 to 20.
        let (mut kind, mut run) = (0, 0);
        for _ in 0..n {
            if run == 0 {
                kind = rng.next() % 6;
                run = 1 + rng.next() % 20;
            }
            run -= 1;
            let first = match kind {
                0 => 251,
                1 => 252,
                2 => 253,
                3 if rng.next() % 8 == 0 => 254 + (rng.next() % 2) as u8,
                _ => (rng.next() % 251) as u8,
            };
            b.push(first);
            let extra = match first {
                251 => 2,
                252 => 4,
                253 => 8,
                254 => 16,
                _ => 0,
            };
            for _ in 0..extra {
                // Small values under a wide marker too (non-canonical, which bincode reads).
                b.push(if rng.next() % 3 == 0 {
                    0
                } else {
                    rng.next() as u8
                });
            }
        }
        match rng.next() % 6 {
            0 if !b.is_empty() => {
                let cut = (rng.next() as usize) % b.len();
                b.truncate(cut);
            }
            1 => b.push(rng.next() as u8),
            _ => {}
        }
        b
    }

    #[test]
    fn fast_path_decodes_what_bincode_decodes_and_refuses_what_it_refuses() {
        let mut rng = Rng(0xd1b5_4a32_d192_ed03);
        for _ in 0..5_000 {
            let src = varint_soup(&mut rng);
            decodes_as_bincode::<Vec<u64>>(&src);
            decodes_as_bincode::<Vec<i64>>(&src);
            decodes_as_bincode::<Vec<u32>>(&src);
            decodes_as_bincode::<Vec<i32>>(&src);
            decodes_as_bincode::<Vec<u16>>(&src);
            decodes_as_bincode::<Vec<i16>>(&src);
            decodes_as_bincode::<Vec<u8>>(&src);
            decodes_as_bincode::<Box<[u8]>>(&src);
            decodes_as_bincode::<String>(&src);
            decodes_as_bincode::<Vec<f32>>(&src);
            decodes_as_bincode::<Vec<f64>>(&src);
            let one = &src[..src.len().min(1 + (rng.next() % 10) as usize)];
            decodes_as_bincode::<u64>(one);
            decodes_as_bincode::<i64>(one);
            decodes_as_bincode::<u32>(one);
            decodes_as_bincode::<i32>(one);
            decodes_as_bincode::<u16>(one);
            decodes_as_bincode::<i16>(one);
            decodes_as_bincode::<usize>(one);
            decodes_as_bincode::<isize>(one);
            decodes_as_bincode::<u8>(one);
            decodes_as_bincode::<i8>(one);
            decodes_as_bincode::<bool>(one);
            decodes_as_bincode::<f32>(one);
            decodes_as_bincode::<f64>(one);
        }
        // Non-canonical encodings (a wider marker than the value needs) are read as bincode
        // reads them; a marker wider than the type is refused even when the value fits.
        for src in [
            &[1, 251, 7, 0][..],
            &[1, 252, 7, 0, 0, 0],
            &[1, U64_MARK, 7, 0, 0, 0, 0, 0, 0, 0],
            &[251, 1, 0, 5],
            &[2, 251, 0, 1, 252, 0, 0, 1, 0],
        ] {
            decodes_as_bincode::<Vec<u64>>(src);
            decodes_as_bincode::<Vec<u32>>(src);
            decodes_as_bincode::<Vec<u16>>(src);
            decodes_as_bincode::<Vec<i16>>(src);
        }
        assert_eq!(decode::<Vec<u16>>(&[1, 251, 7, 0]).unwrap(), [7]);
        assert!(decode::<Vec<u16>>(&[1, 252, 7, 0, 0, 0]).is_err());
        assert!(decode::<Vec<u32>>(&[1, U64_MARK, 7, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
