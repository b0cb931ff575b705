//! The fast path for messages that are one number (`u64`, `f64`, ...) or one sequence of bytes
//! or numbers (`Vec<u8>`, `String`, `Vec<f64>`, `Vec<u64>`, ...): the same bytes bincode
//! writes, without serde's calls (one per element of a sequence).
//!
//! serde hands a sequence to the format one element at a time, so bincode pays a call and a
//! bounds check per byte of a `Vec<u8>` (under 1 GB/s), where a copy runs at memory speed. The
//! type of a message is known and `'static`, so its `TypeId` picks the path when the message
//! *is* such a sequence; a sequence inside a struct takes bincode's path. Both paths produce
//! and accept the same bytes (tested against bincode below), so which one ran never matters
//! to the reader.
//!
//! bincode's standard configuration writes a sequence as its length (a varint) and then its
//! elements: bytes and floats as they are (little-endian), integers wider than a byte as
//! varints (zigzag for signed ones): one byte up to 250, else a marker (251, 252, 253) and
//! 2, 4 or 8 little-endian bytes.

use std::any::{Any, TypeId};

use crate::MessageError;

const SINGLE_BYTE_MAX: u64 = 250;
const U16_BYTE: u8 = 251;
const U32_BYTE: u8 = 252;
const U64_BYTE: u8 = 253;

/// A message seen as one of the sequences (or single numbers) with a fast path.
pub(super) enum Seq<'a> {
    /// One integer written as a varint (zigzag for signed ones), widened to `u64`.
    Int(u64),
    /// One value written as its little-endian bytes (`u8`, `i8`, `bool`, `f32`, `f64`).
    Raw([u8; 8], usize),
    Bytes(&'a [u8]),
    F32(&'a [f32]),
    F64(&'a [f64]),
    /// Integers written as varints, widened to `u64` (zigzag for signed ones), with the width
    /// of the element type in bytes.
    Varint(Varints<'a>),
}

/// A slice of integers, each written as a varint.
pub(super) enum Varints<'a> {
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
}

/// `value` as a sequence with a fast path, or `None`.
#[inline]
pub(super) fn view<T: ?Sized + 'static>(value: &T) -> Option<Seq<'_>> {
    macro_rules! as_ {
        ($ty:ty) => {
            if TypeId::of::<T>() == TypeId::of::<$ty>() {
                // SAFETY: `T` and `$ty` have the same `TypeId`, so they are the same type and
                // `value` points to a valid `$ty` (`$ty` is sized: the cast keeps the address).
                Some(unsafe { &*(value as *const T).cast::<$ty>() })
            } else {
                None
            }
        };
    }
    macro_rules! int {
        ($($ty:ty => $f:expr),*) => {$(
            if let Some(&v) = as_!($ty) {
                return Some(Seq::Int($f(v)));
            }
        )*};
    }
    int!(u64 => |v| v, u32 => u64::from, u16 => u64::from, usize => |v| v as u64,
         i64 => zigzag, i32 => |v| zigzag(i64::from(v)), i16 => |v| zigzag(i64::from(v)),
         isize => |v| zigzag(v as i64));
    macro_rules! raw {
        ($($ty:ty => $f:expr),*) => {$(
            if let Some(&v) = as_!($ty) {
                let bytes: &[u8] = &$f(v);
                let mut le = [0u8; 8];
                le[..bytes.len()].copy_from_slice(bytes);
                return Some(Seq::Raw(le, bytes.len()));
            }
        )*};
    }
    raw!(u8 => |v: u8| [v], i8 => |v: i8| [v as u8], bool => |v: bool| [u8::from(v)],
         f64 => f64::to_le_bytes, f32 => f32::to_le_bytes);
    if let Some(v) = as_!(Vec<u8>) {
        return Some(Seq::Bytes(v));
    }
    if let Some(v) = as_!(String) {
        return Some(Seq::Bytes(v.as_bytes()));
    }
    if let Some(v) = as_!(Box<[u8]>) {
        return Some(Seq::Bytes(v));
    }
    if let Some(v) = as_!(Vec<f64>) {
        return Some(Seq::F64(v));
    }
    if let Some(v) = as_!(Vec<f32>) {
        return Some(Seq::F32(v));
    }
    let ints = if let Some(v) = as_!(Vec<u64>) {
        Varints::U64(v)
    } else if let Some(v) = as_!(Vec<i64>) {
        Varints::I64(v)
    } else if let Some(v) = as_!(Vec<u32>) {
        Varints::U32(v)
    } else if let Some(v) = as_!(Vec<i32>) {
        Varints::I32(v)
    } else if let Some(v) = as_!(Vec<u16>) {
        Varints::U16(v)
    } else if let Some(v) = as_!(Vec<i16>) {
        Varints::I16(v)
    } else {
        return None;
    };
    Some(Seq::Varint(ints))
}

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[inline(always)]
fn varint_len(v: u64) -> usize {
    if v <= SINGLE_BYTE_MAX {
        1
    } else if v <= u64::from(u16::MAX) {
        3
    } else if v <= u64::from(u32::MAX) {
        5
    } else {
        9
    }
}

/// Writes `v` as a varint at the start of `dst` (which has room: sized by [`varint_len`]),
/// returning the bytes written.
#[inline(always)]
fn put_varint(dst: &mut [u8], v: u64) -> usize {
    if v <= SINGLE_BYTE_MAX {
        dst[0] = v as u8;
        1
    } else if v <= u64::from(u16::MAX) {
        dst[0] = U16_BYTE;
        dst[1..3].copy_from_slice(&(v as u16).to_le_bytes());
        3
    } else if v <= u64::from(u32::MAX) {
        dst[0] = U32_BYTE;
        dst[1..5].copy_from_slice(&(v as u32).to_le_bytes());
        5
    } else {
        dst[0] = U64_BYTE;
        dst[1..9].copy_from_slice(&v.to_le_bytes());
        9
    }
}

#[cold]
fn decode_error(what: &str) -> MessageError {
    MessageError::Decode(what.to_string())
}

/// Reads a varint from the front of `src`, accepting what bincode accepts for an integer of
/// `width` bytes; returns it and the bytes read.
#[inline(always)]
fn get_varint(src: &[u8], width: usize) -> Result<(u64, usize), MessageError> {
    // Fixed-size reads (no copy of a run-time length): this is the inner loop of a
    // `Vec<u64>`'s decoding.
    fn le<const N: usize>(src: &[u8]) -> Option<[u8; N]> {
        src.get(1..1 + N).and_then(|b| b.try_into().ok())
    }
    let short = || decode_error("unexpected end of the message");
    match *src.first().ok_or_else(short)? {
        b if u64::from(b) <= SINGLE_BYTE_MAX => Some((u64::from(b), 1)),
        U16_BYTE => le::<2>(src).map(|b| (u64::from(u16::from_le_bytes(b)), 3)),
        U32_BYTE if width >= 4 => le::<4>(src).map(|b| (u64::from(u32::from_le_bytes(b)), 5)),
        U64_BYTE if width >= 8 => le::<8>(src).map(|b| (u64::from_le_bytes(b), 9)),
        _ => return Err(decode_error("invalid integer encoding")),
    }
    .ok_or_else(short)
}

fn varints_len(ints: &Varints<'_>) -> usize {
    macro_rules! sum {
        ($s:expr, $f:expr) => {
            $s.iter().map(|&x| varint_len($f(x))).sum::<usize>()
        };
    }
    match ints {
        Varints::U16(s) => sum!(s, u64::from),
        Varints::U32(s) => sum!(s, u64::from),
        Varints::U64(s) => sum!(s, |x| x),
        Varints::I16(s) => sum!(s, |x| zigzag(i64::from(x))),
        Varints::I32(s) => sum!(s, |x| zigzag(i64::from(x))),
        Varints::I64(s) => sum!(s, zigzag),
    }
}

/// The element count of a sequence (unused for a single number).
fn seq_len(seq: &Seq<'_>) -> usize {
    match seq {
        Seq::Int(_) | Seq::Raw(..) => 1,
        Seq::Bytes(b) => b.len(),
        Seq::F32(f) => f.len(),
        Seq::F64(f) => f.len(),
        Seq::Varint(Varints::U16(s)) => s.len(),
        Seq::Varint(Varints::U32(s)) => s.len(),
        Seq::Varint(Varints::U64(s)) => s.len(),
        Seq::Varint(Varints::I16(s)) => s.len(),
        Seq::Varint(Varints::I32(s)) => s.len(),
        Seq::Varint(Varints::I64(s)) => s.len(),
    }
}

/// The encoded size of `seq`.
pub(super) fn size(seq: &Seq<'_>) -> usize {
    match seq {
        Seq::Int(v) => return varint_len(*v),
        Seq::Raw(_, n) => return *n,
        _ => {}
    }
    let n = seq_len(seq);
    varint_len(n as u64)
        + match seq {
            Seq::Bytes(b) => b.len(),
            Seq::F32(f) => f.len() * 4,
            Seq::F64(f) => f.len() * 8,
            Seq::Varint(ints) => varints_len(ints),
            Seq::Int(_) | Seq::Raw(..) => unreachable!("handled above"),
        }
}

/// Encodes `seq` into `dst`, returning the bytes written.
pub(super) fn encode(seq: &Seq<'_>, dst: &mut [u8]) -> Result<usize, MessageError> {
    let total = size(seq);
    let Some(dst) = dst.get_mut(..total) else {
        return Err(MessageError::Encode(format!(
            "{total} bytes do not fit the {} bytes given",
            dst.len()
        )));
    };
    match seq {
        Seq::Int(v) => return Ok(put_varint(dst, *v)),
        Seq::Raw(le, n) => {
            dst.copy_from_slice(&le[..*n]);
            return Ok(*n);
        }
        _ => {}
    }
    let mut at = put_varint(dst, seq_len(seq) as u64);
    let body = &mut dst[at..];
    match seq {
        Seq::Int(_) | Seq::Raw(..) => unreachable!("handled above"),
        Seq::Bytes(b) => body.copy_from_slice(b),
        Seq::F32(f) => floats_to_le(f, body),
        Seq::F64(f) => floats_to_le(f, body),
        Seq::Varint(ints) => {
            macro_rules! put {
                ($s:expr, $f:expr) => {
                    for &x in $s.iter() {
                        at += put_varint(&mut dst[at..], $f(x));
                    }
                };
            }
            match ints {
                Varints::U16(s) => put!(s, u64::from),
                Varints::U32(s) => put!(s, u64::from),
                Varints::U64(s) => put!(s, |x| x),
                Varints::I16(s) => put!(s, |x| zigzag(i64::from(x))),
                Varints::I32(s) => put!(s, |x| zigzag(i64::from(x))),
                Varints::I64(s) => put!(s, zigzag),
            }
            debug_assert_eq!(at, total);
        }
    }
    Ok(total)
}

/// Floats as little-endian bytes: one copy on a little-endian machine.
fn floats_to_le<F: bytemuck::Pod + ToLe>(src: &[F], dst: &mut [u8]) {
    if cfg!(target_endian = "little") {
        dst.copy_from_slice(bytemuck::cast_slice(src));
    } else {
        for (d, f) in dst.chunks_exact_mut(size_of::<F>()).zip(src) {
            f.write_le(d);
        }
    }
}

/// Floats from little-endian bytes (`src.len()` is a multiple of the float's size).
fn floats_from_le<F: bytemuck::Pod + ToLe>(src: &[u8]) -> Vec<F> {
    let mut out = vec![F::zeroed(); src.len() / size_of::<F>()];
    if cfg!(target_endian = "little") {
        bytemuck::cast_slice_mut::<F, u8>(&mut out).copy_from_slice(src);
    } else {
        for (o, s) in out.iter_mut().zip(src.chunks_exact(size_of::<F>())) {
            *o = F::read_le(s);
        }
    }
    out
}

trait ToLe: Sized {
    fn write_le(&self, dst: &mut [u8]);
    fn read_le(src: &[u8]) -> Self;
}

macro_rules! to_le {
    ($($t:ty),*) => {$(
        impl ToLe for $t {
            fn write_le(&self, dst: &mut [u8]) {
                dst.copy_from_slice(&self.to_le_bytes());
            }
            fn read_le(src: &[u8]) -> Self {
                let mut b = [0u8; size_of::<$t>()];
                b.copy_from_slice(src);
                <$t>::from_le_bytes(b)
            }
        }
    )*};
}
to_le!(f32, f64);

/// `Some(result)` if `T` has a fast path: the `T` decoded from exactly `src`.
#[inline]
pub(super) fn decode<T: 'static>(src: &[u8]) -> Option<Result<T, MessageError>> {
    let id = TypeId::of::<T>();
    macro_rules! done {
        ($v:expr) => {
            return Some($v.map(|v| {
                let mut slot = Some(v);
                (&mut slot as &mut dyn Any)
                    .downcast_mut::<Option<T>>()
                    .and_then(Option::take)
                    .expect("the TypeId matched")
            }))
        };
    }
    macro_rules! int {
        ($($t:ty, $width:expr => $from:expr);*) => {$(
            if id == TypeId::of::<$t>() {
                done!(one_varint(src, $width).and_then(|v| {
                    <$t>::try_from($from(v))
                        .map_err(|_| decode_error("integer out of range for its type"))
                }));
            }
        )*};
    }
    int!(u64, 8 => |v| v; u32, 4 => |v| v; u16, 2 => |v| v; usize, 8 => |v| v;
         i64, 8 => unzigzag; i32, 4 => unzigzag; i16, 2 => unzigzag; isize, 8 => unzigzag);
    macro_rules! raw {
        ($($t:ty, $n:expr => $from:expr);*) => {$(
            if id == TypeId::of::<$t>() {
                done!(exact(src, Some($n)).and_then(|b| {
                    let mut le = [0u8; $n];
                    le.copy_from_slice(b);
                    $from(le)
                }));
            }
        )*};
    }
    raw!(u8, 1 => |b: [u8; 1]| Ok(b[0]);
    i8, 1 => |b: [u8; 1]| Ok(b[0] as i8);
    f64, 8 => |b| Ok(f64::from_le_bytes(b));
    f32, 4 => |b| Ok(f32::from_le_bytes(b));
    bool, 1 => |b: [u8; 1]| match b[0] {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(decode_error("invalid bool")),
    });
    if id == TypeId::of::<Vec<u8>>() {
        done!(bytes(src).map(<[u8]>::to_vec));
    }
    if id == TypeId::of::<Box<[u8]>>() {
        done!(bytes(src).map(Box::<[u8]>::from));
    }
    if id == TypeId::of::<String>() {
        done!(bytes(src).and_then(|b| {
            std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|e| decode_error(&format!("invalid UTF-8 in a string: {e}")))
        }));
    }
    if id == TypeId::of::<Vec<f64>>() {
        done!(fixed(src, 8).map(floats_from_le::<f64>));
    }
    if id == TypeId::of::<Vec<f32>>() {
        done!(fixed(src, 4).map(floats_from_le::<f32>));
    }
    macro_rules! ints {
        ($t:ty, $width:expr, $from:expr) => {
            if id == TypeId::of::<Vec<$t>>() {
                done!(varints(src, $width, |v| <$t>::try_from($from(v)).ok()));
            }
        };
    }
    ints!(u64, 8, |v| v);
    ints!(i64, 8, unzigzag);
    ints!(u32, 4, |v| v);
    ints!(i32, 4, unzigzag);
    ints!(u16, 2, |v| v);
    ints!(i16, 2, unzigzag);
    None
}

/// Exactly one varint of an integer `width` bytes wide.
#[inline]
fn one_varint(src: &[u8], width: usize) -> Result<u64, MessageError> {
    let (v, used) = get_varint(src, width)?;
    exact(&src[used..], Some(0))?;
    Ok(v)
}

/// The element count at the front of `src`, and the rest.
fn count(src: &[u8]) -> Result<(usize, &[u8]), MessageError> {
    let (n, used) = get_varint(src, 8)?;
    let n = usize::try_from(n).map_err(|_| decode_error("sequence length overflows"))?;
    Ok((n, &src[used..]))
}

#[inline]
fn exact(rest: &[u8], bytes: Option<usize>) -> Result<&[u8], MessageError> {
    match bytes {
        Some(b) if b == rest.len() => Ok(rest),
        Some(b) if b < rest.len() => Err(MessageError::Decode(format!(
            "{} trailing bytes after the message (sent as another type?)",
            rest.len() - b
        ))),
        _ => Err(decode_error("unexpected end of the message")),
    }
}

/// A byte sequence: its length, then exactly that many bytes.
fn bytes(src: &[u8]) -> Result<&[u8], MessageError> {
    let (n, rest) = count(src)?;
    exact(rest, Some(n))
}

/// A sequence of fixed-size elements: exactly `n * size` bytes after the length.
fn fixed(src: &[u8], size: usize) -> Result<&[u8], MessageError> {
    let (n, rest) = count(src)?;
    exact(rest, n.checked_mul(size))
}

/// A sequence of varints of elements `width` bytes wide, each narrowed by `narrow` (`None`:
/// out of range for the type, an error as in bincode).
fn varints<E>(
    src: &[u8],
    width: usize,
    narrow: impl Fn(u64) -> Option<E>,
) -> Result<Vec<E>, MessageError> {
    let (n, mut rest) = count(src)?;
    // Every element takes at least one byte: a count larger than what is left is corrupt, and
    // is refused before allocating.
    if n > rest.len() {
        return Err(decode_error("unexpected end of the message"));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (v, used) = get_varint(rest, width)?;
        out.push(narrow(v).ok_or_else(|| decode_error("integer out of range for its type"))?);
        rest = &rest[used..];
    }
    exact(rest, Some(0))?;
    Ok(out)
}
