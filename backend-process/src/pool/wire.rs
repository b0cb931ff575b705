//! Reading a chunk's values back to back: postcard's format, with the primitives decoded
//! inline.
//!
//! A chunk holds thousands of values in a row, and for small ones (integers, floats, bools)
//! the decoding is a few instructions: what costs is the call around it. Through
//! `postcard::Deserializer`, `u64::deserialize` stayed an out-of-line call per value (its
//! 10-byte varint loop is past the inliner's budget) returning its `Result` through memory,
//! with the cursor kept in memory too. [`Reader`] decodes the primitives itself, in small
//! `#[inline(always)]` functions over a slice cursor, and hands everything else (strings,
//! sequences, maps, enums, options, structs, 128-bit integers, chars) to postcard on the
//! remaining bytes, so the format is postcard's exactly and every type decodes as before:
//! only the top-level primitives (and newtypes around them) take the short path.

use serde::de::{self, DeserializeOwned, Visitor};

use super::explain;

/// A cursor over postcard-encoded values written back to back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'de> {
    rest: &'de [u8],
}

impl<'de> Reader<'de> {
    pub(crate) fn new(bytes: &'de [u8]) -> Self {
        Self { rest: bytes }
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &'de [u8] {
        self.rest
    }

    /// Decodes the next value.
    ///
    /// # Errors
    /// As postcard's: the bytes end early or are not a valid `T`.
    #[inline(always)]
    pub(crate) fn read<T: DeserializeOwned>(&mut self) -> postcard::Result<T> {
        T::deserialize(Fast(self))
    }
}

/// Says why `bytes` (an encoded value, perhaps followed by more) could not be decoded as a
/// `T`: "{what} could not be decoded as a `T`: {postcard's message}", with the message of
/// the type's own `Deserialize` when it gave one (see [`explain`]).
#[cold]
#[inline(never)]
pub(crate) fn decode_failure<T: DeserializeOwned>(
    what: &str,
    bytes: &[u8],
    e: &postcard::Error,
) -> String {
    let ty = std::any::type_name::<T>();
    match explain::custom_message::<T>(bytes, e) {
        Some(msg) => format!("{what} could not be decoded as a `{ty}`: {msg}"),
        None => format!("{what} could not be decoded as a `{ty}`: {e}"),
    }
}

/// The `serde::Deserializer` of one value read from a [`Reader`].
struct Fast<'a, 'de>(&'a mut Reader<'de>);

impl Fast<'_, '_> {
    #[inline(always)]
    fn byte(&mut self) -> postcard::Result<u8> {
        let (&b, rest) = self
            .0
            .rest
            .split_first()
            .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
        self.0.rest = rest;
        Ok(b)
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self) -> postcard::Result<[u8; N]> {
        let (head, rest) = self
            .0
            .rest
            .split_first_chunk::<N>()
            .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
        self.0.rest = rest;
        Ok(*head)
    }
}

/// A LEB128 varint of at most `$max` bytes whose last byte is at most `$last` (postcard's
/// `try_take_varint_*`, with the same errors), a byte at a time: the general path, out of
/// line, behind [`Fast::short`]. A function of the bytes, returning the value and its
/// length: given a pointer to the cursor, the out-of-line call would make the optimiser keep
/// the cursor in memory (stored and reloaded for every value) in the hot loop too.
macro_rules! varint_slow {
    ($name:ident, $t:ty, $max:expr, $last:expr) => {
        #[cold]
        #[inline(never)]
        fn $name(bytes: &[u8]) -> postcard::Result<($t, usize)> {
            let mut out: $t = 0;
            for i in 0..$max {
                let b = *bytes
                    .get(i)
                    .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
                out |= <$t>::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    if i == $max - 1 && b > $last {
                        return Err(postcard::Error::DeserializeBadVarint);
                    }
                    return Ok((out, i + 1));
                }
            }
            Err(postcard::Error::DeserializeBadVarint)
        }
    };
}

varint_slow!(varint_u16_slow, u16, 3, 0b11);
varint_slow!(varint_u32_slow, u32, 5, 0b1111);
varint_slow!(varint_u64_slow, u64, 10, 0b1);

impl Fast<'_, '_> {
    /// The common case, small enough to inline everywhere: a varint of 1 to 4 bytes (a
    /// value below 2^28) with at least 4 bytes left. Returns the value and its length
    /// without consuming it; `None` sends the caller to the general path. Unrolled, a
    /// byte at a time: for values of regular lengths the branches predict well (loading a
    /// word and packing its 7-bit groups without branches measured slower: its steps
    /// depend on each other).
    #[inline(always)]
    fn short(&self) -> Option<(u64, usize)> {
        let &[b0, b1, b2, b3] = self.0.rest.first_chunk::<4>()?;
        let v = u64::from(b0 & 0x7f);
        if b0 < 0x80 {
            return Some((v, 1));
        }
        let v = v | u64::from(b1 & 0x7f) << 7;
        if b1 < 0x80 {
            return Some((v, 2));
        }
        let v = v | u64::from(b2 & 0x7f) << 14;
        if b2 < 0x80 {
            return Some((v, 3));
        }
        let v = v | u64::from(b3 & 0x7f) << 21;
        if b3 < 0x80 {
            return Some((v, 4));
        }
        None
    }

    /// Consumes `len` bytes that [`short`](Self::short) read.
    #[inline(always)]
    fn advance(&mut self, len: usize) {
        self.0.rest = &self.0.rest[len..];
    }

    #[inline(always)]
    fn varint_u64(&mut self) -> postcard::Result<u64> {
        match self.short() {
            Some((v, len)) => {
                self.advance(len);
                Ok(v)
            }
            None => {
                let (v, len) = varint_u64_slow(self.0.rest)?;
                self.advance(len);
                Ok(v)
            }
        }
    }

    #[inline(always)]
    fn varint_u32(&mut self) -> postcard::Result<u32> {
        match self.short() {
            // At most 28 bits: always a u32.
            Some((v, len)) => {
                self.advance(len);
                Ok(v as u32)
            }
            None => {
                let (v, len) = varint_u32_slow(self.0.rest)?;
                self.advance(len);
                Ok(v)
            }
        }
    }

    #[inline(always)]
    fn varint_u16(&mut self) -> postcard::Result<u16> {
        match self.short() {
            // Up to 3 bytes, the 3rd holding at most 2 bits (as postcard checks); longer or
            // out of range: the general path gives postcard's error.
            Some((v, len)) if len <= 3 && v <= u64::from(u16::MAX) => {
                self.advance(len);
                Ok(v as u16)
            }
            _ => {
                let (v, len) = varint_u16_slow(self.0.rest)?;
                self.advance(len);
                Ok(v)
            }
        }
    }
}

/// Hands a value to postcard's own deserializer on the remaining bytes.
macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> postcard::Result<V::Value> {
            let mut de = postcard::Deserializer::from_bytes(self.0.rest);
            let value = de::Deserializer::$method(&mut de, $($arg,)* visitor)?;
            self.0.rest = de.finalize()?;
            Ok(value)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Fast<'_, 'de> {
    type Error = postcard::Error;

    fn is_human_readable(&self) -> bool {
        false
    }

    #[inline(always)]
    fn deserialize_bool<V: Visitor<'de>>(mut self, visitor: V) -> postcard::Result<V::Value> {
        match self.byte()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            _ => Err(postcard::Error::DeserializeBadBool),
        }
    }

    #[inline(always)]
    fn deserialize_u8<V: Visitor<'de>>(mut self, visitor: V) -> postcard::Result<V::Value> {
        visitor.visit_u8(self.byte()?)
    }

    #[inline(always)]
    fn deserialize_i8<V: Visitor<'de>>(mut self, visitor: V) -> postcard::Result<V::Value> {
        visitor.visit_i8(self.byte()? as i8)
    }

    #[inline(always)]
    fn deserialize_u16<V: Visitor<'de>>(mut self, visitor: V) -> postcard::Result<V::Value> {
        visitor.visit_u16(self.varint_u16()?)
    }

    #[inline(always)]
    fn deserialize_u32<V: Visitor<'de>>(mut self, visitor: V) -> postcard::Result<V::Value> {
        visitor.visit_u32(self.varint_u32()?)
    }

    #[inline(always)]
    fn deserialize_u64<V: Visitor<'de>>(mut self, visitor: V) -> postcard::Result<V::Value> {
        visitor.visit_u64(self.varint_u64()?)
    }

    // Zigzag, as postcard: 0, -1, 1, -2, ... are 0, 1, 2, 3, ...
    #[inline(always)]
    fn deserialize_i16<V: Visitor<'de>>(mut self, visitor: V) -> postcard::Result<V::Value> {
        let n = self.varint_u16()?;
        visitor.visit_i16(((n >> 1) as i16) ^ -((n & 1) as i16))
    }

    #[inline(always)]
    fn deserialize_i32<V: Visitor<'de>>(mut self, visitor: V) -> postcard::Result<V::Value> {
        let n = self.varint_u32()?;
        visitor.visit_i32(((n >> 1) as i32) ^ -((n & 1) as i32))
    }

    #[inline(always)]
    fn deserialize_i64<V: Visitor<'de>>(mut self, visitor: V) -> postcard::Result<V::Value> {
        let n = self.varint_u64()?;
        visitor.visit_i64(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    #[inline(always)]
    fn deserialize_f32<V: Visitor<'de>>(mut self, visitor: V) -> postcard::Result<V::Value> {
        visitor.visit_f32(f32::from_le_bytes(self.array()?))
    }

    #[inline(always)]
    fn deserialize_f64<V: Visitor<'de>>(mut self, visitor: V) -> postcard::Result<V::Value> {
        visitor.visit_f64(f64::from_le_bytes(self.array()?))
    }

    // Postcard writes a newtype as its content: keep the short path for the inner value.
    #[inline(always)]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> postcard::Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    forward! {
        deserialize_any();
        deserialize_i128();
        deserialize_u128();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }
}

/// 20,000 pseudo-random `u64`s of every varint length from 1 to 10 bytes (an LCG), for the
/// codec tests here and in `sys.rs`.
#[cfg(test)]
pub(crate) fn wide_values() -> Vec<u64> {
    let mut x = 1u64;
    (0..20_000)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            x >> (x % 64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    /// Checks both halves of the pool's codec against postcard on `values`: our encoder
    /// (`sys::Encoder`) writes postcard's bytes, and [`Reader`] reads them back, as they are (the
    /// last bytes take the byte-by-byte path) and followed by padding (every value takes the
    /// one-word path where it applies).
    fn same<T>(values: &[T])
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let mut bytes = Vec::new();
        for v in values {
            bytes.extend(postcard::to_stdvec(v).unwrap());
        }
        let mut ours = Vec::new();
        let mut enc = crate::os::Encoder::new(&mut ours);
        for v in values {
            enc.push(v).unwrap();
        }
        assert_eq!(ours, bytes, "our encoder");
        let mut r = Reader::new(&bytes);
        for v in values {
            assert_eq!(&r.read::<T>().unwrap(), v);
        }
        assert!(r.rest.is_empty());
        // Past the end: an error, except for values of no bytes (`()`), as with postcard.
        assert_eq!(
            r.read::<T>().is_err(),
            postcard::from_bytes::<T>(&[]).is_err()
        );
        let padding = [0xa5u8; 9];
        bytes.extend_from_slice(&padding);
        let mut r = Reader::new(&bytes);
        for v in values {
            assert_eq!(&r.read::<T>().unwrap(), v);
        }
        assert_eq!(r.rest, padding);
    }

    /// Our result and postcard's on `bytes`, alone and followed by padding.
    fn agree<T>(bytes: &[u8])
    where
        T: DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let mut padded = bytes.to_vec();
        padded.extend_from_slice(&[0u8; 9]);
        for b in [bytes, &padded[..]] {
            let ours = Reader::new(b).read::<T>();
            let theirs = postcard::take_from_bytes::<T>(b).map(|(v, _)| v);
            assert_eq!(ours, theirs, "{b:?}");
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Meters(u64);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Dot,
        Circle(f64),
        Pair(i8, u16),
        Rect { w: u32, h: i16 },
    }

    #[test]
    fn primitives_match_postcard_at_their_edges() {
        same(&[
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ]);
        same(&[0u32, 127, 128, u32::MAX]);
        same(&[0u16, 127, 128, 16_384, u16::MAX]);
        same(&[0u8, 1, 255]);
        same(&[0i64, -1, 1, -64, 64, i64::MIN, i64::MAX]);
        same(&[0i32, -1, i32::MIN, i32::MAX]);
        same(&[0i16, -1, i16::MIN, i16::MAX]);
        same(&[0i8, -1, i8::MIN, i8::MAX]);
        same(&[true, false]);
        same(&[0.0f64, -1.5, f64::MAX, f64::MIN_POSITIVE]);
        same(&[0.0f32, 3.25, f32::MIN]);
        same(&[usize::MAX, 0, 300]);
        same(&[isize::MIN, -3]);
        same(&[i128::MIN, 0, i128::MAX]);
        same(&[u128::MAX, 5]);
        same(&['a', 'é', '🦀']);
    }

    #[test]
    fn compound_values_match_postcard() {
        same(&[Meters(3), Meters(u64::MAX)]);
        same(&[String::new(), "hello".to_string()]);
        same(&[vec![1u64, 2, 3], vec![]]);
        same(&[Some(7u32), None]);
        same(&[(1u8, -2i64, "x".to_string()), (0, 0, String::new())]);
        same(&[
            Shape::Dot,
            Shape::Circle(2.5),
            Shape::Pair(-1, 300),
            Shape::Rect { w: 3, h: -4 },
        ]);
        same(&[BTreeMap::from([(1u16, "a".to_string())]), BTreeMap::new()]);
        same(&[(), ()]);
        same(&[[1u32, 2, 3], [4, 5, 6]]);
    }

    #[test]
    fn malformed_input_is_postcards_error() {
        let cases: &[&[u8]] = &[
            &[],
            &[0x80],
            &[0x80, 0x00],
            &[0xff; 7],
            &[0xff; 8],
            &[0xff; 10],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
            &[0xff; 11],
            &[0xff, 0xff, 0x03],
            &[0xff, 0xff, 0x04],
            &[0xff, 0xff, 0xff, 0xff, 0x0f],
            &[0xff, 0xff, 0xff, 0xff, 0x10],
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x00],
        ];
        for &bytes in cases {
            agree::<u64>(bytes);
            agree::<i64>(bytes);
            agree::<u32>(bytes);
            agree::<i32>(bytes);
            agree::<u16>(bytes);
            agree::<i16>(bytes);
        }
        assert_eq!(
            Reader::new(&[2]).read::<bool>().err(),
            Some(postcard::Error::DeserializeBadBool)
        );
        assert!(Reader::new(&[1, 2, 3]).read::<f64>().is_err());
        // A string announcing more bytes than there are.
        assert!(Reader::new(&[5, b'a']).read::<String>().is_err());
    }

    #[test]
    fn every_u16_and_many_wider_values_decode_as_postcard() {
        let all: Vec<u16> = (0..=u16::MAX).collect();
        same(&all);
        let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        same(&all);
        let wide = wide_values();
        same(&wide);
        same(&wide.iter().map(|&v| v as i64).collect::<Vec<_>>());
        same(&wide.iter().map(|&v| v as u32).collect::<Vec<_>>());
        same(&wide.iter().map(|&v| (v >> 3) as i32).collect::<Vec<_>>());
        same(&wide.iter().map(|&v| v as i32).collect::<Vec<_>>());
        same(&wide.iter().map(|&v| v as i16).collect::<Vec<_>>());
    }
}
