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
//!
//! Varint sequences are encoded and decoded in blocks of 8 elements: a block whose elements
//! are all of one length (random 64-bit values are almost all 9 bytes; counts are mostly 1)
//! is written or read at fixed offsets, with no branch per element and, on decoding, without
//! waiting on each element's length to find the next; a mixed block goes one element at a
//! time, each with one fixed-size store or load. Decoding accepts exactly what bincode
//! accepts, wider encodings than needed included (a differential test against bincode's own
//! decoder is in `codec.rs`).

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

/// The varint class of `v`: 0 (one byte, up to 250), 1 (marker and 2 bytes), 2 (marker and
/// 4 bytes) or 3 (marker and 8 bytes); comparisons summed, no branch.
#[inline(always)]
fn class(v: u64) -> usize {
    usize::from(v > SINGLE_BYTE_MAX)
        + usize::from(v > u64::from(u16::MAX))
        + usize::from(v > u64::from(u32::MAX))
}

/// The encoded length of each [`class`].
const CLASS_LEN: [usize; 4] = [1, 3, 5, 9];

/// The encoded length of `v` (`CLASS_LEN[class(v)]`, as arithmetic: no table lookup, so the
/// size pass over a sequence vectorises).
#[inline(always)]
pub(super) fn varint_len(v: u64) -> usize {
    1 + 2 * usize::from(v > SINGLE_BYTE_MAX)
        + 2 * usize::from(v > u64::from(u16::MAX))
        + 4 * usize::from(v > u64::from(u32::MAX))
}

/// Writes `v` as a varint at the start of `dst` (which has room: sized by [`varint_len`]),
/// returning the bytes written.
#[inline(always)]
pub(super) fn put_varint(dst: &mut [u8], v: u64) -> usize {
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

/// The length prefix of a byte sequence of `len` bytes (a `Vec<u8>`), written at the start of
/// `dst` (at least 9 bytes, or [`varint_len`] of it); returns the bytes written.
#[inline]
pub(super) fn put_len(dst: &mut [u8], len: usize) -> usize {
    put_varint(dst, len as u64)
}

/// The length of the prefix [`put_len`] writes.
#[inline]
pub(super) fn len_len(len: usize) -> usize {
    varint_len(len as u64)
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

/// Runs `$body` with `$s` bound to the slice inside `$ints`, whatever its element type.
macro_rules! with_varints {
    ($ints:expr, $s:ident => $body:expr) => {
        match $ints {
            Varints::U16($s) => $body,
            Varints::U32($s) => $body,
            Varints::U64($s) => $body,
            Varints::I16($s) => $body,
            Varints::I32($s) => $body,
            Varints::I64($s) => $body,
        }
    };
}

fn varints_len(ints: &Varints<'_>) -> usize {
    with_varints!(ints, s => ints_len(s))
}

/// The class of all of `w` if they have one: the class is monotonic in the value, so `w` is
/// of one class exactly when its least and greatest values are (no branch per element).
#[inline(always)]
fn block_class(w: &[u64; BLOCK]) -> Option<usize> {
    let lo = w.iter().fold(u64::MAX, |lo, &v| lo.min(v));
    if lo > u64::from(u32::MAX) {
        // The widest class, so all of `w` (random 64-bit values): no need for the greatest.
        return Some(3);
    }
    let hi = w.iter().fold(0, |hi, &v| hi.max(v));
    let c = class(lo);
    (c == class(hi)).then_some(c)
}

/// The encoded length of the varints of `s`: per block of [`BLOCK`], `BLOCK` times one length
/// when the block is of one class ([`block_class`]), else the sum of its lengths.
#[inline(always)]
fn ints_len<E: VarInt>(s: &[E]) -> usize {
    let blocks = s.chunks_exact(BLOCK);
    let mut total: usize = blocks
        .remainder()
        .iter()
        .map(|&x| varint_len(x.wide()))
        .sum();
    for b in blocks {
        let w: [u64; BLOCK] = std::array::from_fn(|k| b[k].wide());
        total += match block_class(&w) {
            Some(c) => BLOCK * CLASS_LEN[c],
            None => w.iter().map(|&v| varint_len(v)).sum::<usize>(),
        };
    }
    total
}

/// An integer type whose sequences bincode writes as varints.
trait VarInt: Copy {
    /// The type's width in bytes: the widest varint bincode reads for it (2: up to the
    /// [`U16_BYTE`] marker, 4: [`U32_BYTE`], 8: [`U64_BYTE`]).
    const WIDTH: usize;
    /// [`varint_lengths`] for this type.
    const LENGTHS: [u8; 256] = varint_lengths(Self::WIDTH);
    /// The value as bincode writes it: widened to `u64`, zigzagged if signed.
    fn wide(self) -> u64;
    /// The inverse of [`wide`](Self::wide), for a `v` read as a varint of at most
    /// [`WIDTH`](Self::WIDTH) bytes (so in range: the truncation keeps every bit).
    fn narrow(v: u64) -> Self;
}

macro_rules! var_int {
    ($($t:ty: $wide:expr, $narrow:expr;)*) => {$(
        impl VarInt for $t {
            const WIDTH: usize = size_of::<$t>();
            #[inline(always)]
            fn wide(self) -> u64 {
                $wide(self)
            }
            #[inline(always)]
            fn narrow(v: u64) -> Self {
                $narrow(v)
            }
        }
    )*};
}
var_int! {
    u16: u64::from, |v| v as u16;
    u32: u64::from, |v| v as u32;
    u64: |v| v, |v| v;
    i16: |v| zigzag(i64::from(v)), |v| unzigzag(v) as i16;
    i32: |v| zigzag(i64::from(v)), |v| unzigzag(v) as i32;
    i64: zigzag, unzigzag;
}

/// For each first byte of a varint, the varint's length in bytes, or 0 where bincode refuses
/// it for an integer `width` bytes wide: the markers 254 (a 16-byte integer) and 255
/// (reserved), and a marker wider than the type (bincode refuses a [`U64_BYTE`] for a `u32`
/// even when the value would fit). bincode accepts a wider encoding than needed (a
/// [`U16_BYTE`] and 2 bytes for the value 7), and so does this table.
const fn varint_lengths(width: usize) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b <= SINGLE_BYTE_MAX as usize {
        t[b] = 1;
        b += 1;
    }
    t[U16_BYTE as usize] = 3;
    if width >= 4 {
        t[U32_BYTE as usize] = 5;
    }
    if width >= 8 {
        t[U64_BYTE as usize] = 9;
    }
    t
}

/// Elements per block: the unit in which runs of one class are found.
const BLOCK: usize = 8;

/// The marker of a varint of `len` bytes (3, 5 or 9).
const fn marker(len: usize) -> u8 {
    match len {
        3 => U16_BYTE,
        5 => U32_BYTE,
        _ => U64_BYTE,
    }
}

/// The mask keeping the value bytes of a varint of `len` bytes (3, 5 or 9) from the 8 bytes
/// after its first.
const fn value_mask(len: usize) -> u64 {
    u64::MAX >> (72 - 8 * len)
}

/// Writes the 8 values `w`, all of the class whose varints are `L` bytes long, into `d`
/// (exactly `8 * L` bytes): at fixed offsets, so without a branch or a dependency between
/// elements.
#[inline(always)]
fn put_block<const L: usize>(w: &[u64; BLOCK], d: &mut [u8]) {
    let d = &mut d[..BLOCK * L];
    for (k, &v) in w.iter().enumerate() {
        let e = &mut d[k * L..k * L + L];
        if L == 1 {
            e[0] = v as u8;
        } else {
            e[0] = marker(L);
            e[1..].copy_from_slice(&v.to_le_bytes()[..L - 1]);
        }
    }
}

/// Writes one varint `v` at `at` in `dst`, returning its length, or `None` if `dst` is too
/// short. With `spill` (at least 8 more elements follow this one, so at least 8 more bytes
/// are written after it), all 8 bytes of `v` are stored after its first byte in one
/// fixed-size store, with no branch on its class: the bytes past its end are overwritten by
/// the elements that follow, never left past the end of the message.
#[inline(always)]
fn put_one(dst: &mut [u8], at: usize, v: u64, spill: bool) -> Option<usize> {
    let c = class(v);
    let first = if c == 0 {
        v as u8
    } else {
        SINGLE_BYTE_MAX as u8 + c as u8
    };
    if spill {
        let d = dst.get_mut(at..at + 9)?;
        d[0] = first;
        d[1..].copy_from_slice(&v.to_le_bytes());
        Some(CLASS_LEN[c])
    } else {
        let len = CLASS_LEN[c];
        let d = dst.get_mut(at..at + len)?;
        d[0] = first;
        d[1..].copy_from_slice(&v.to_le_bytes()[..len - 1]);
        Some(len)
    }
}

/// Writes `src` as varints at the start of `dst`, returning their length, or `None` if `dst`
/// is too short (checked as the elements are written: no size pass, the caller usually made
/// one already to size `dst`). No byte of `dst` past the returned length is written.
///
/// Blocks of [`BLOCK`] elements of one class (a run of random 64-bit values, or of small
/// counts) are written at fixed offsets ([`put_block`]); the elements of a mixed block one at
/// a time ([`put_one`]).
#[inline(always)]
fn put_varints<E: VarInt>(src: &[E], dst: &mut [u8]) -> Option<usize> {
    let n = src.len();
    let mut at = 0;
    let mut i = 0;
    while i + BLOCK <= n {
        let w: [u64; BLOCK] = std::array::from_fn(|k| src[i + k].wide());
        if let Some(c) = block_class(&w) {
            let len = CLASS_LEN[c];
            let d = dst.get_mut(at..at + BLOCK * len)?;
            match len {
                1 => put_block::<1>(&w, d),
                3 => put_block::<3>(&w, d),
                5 => put_block::<5>(&w, d),
                _ => put_block::<9>(&w, d),
            }
            at += BLOCK * len;
        } else {
            for (k, &v) in w.iter().enumerate() {
                at += put_one(dst, at, v, i + k + BLOCK < n)?;
            }
        }
        i += BLOCK;
    }
    for &x in &src[i..] {
        at += put_one(dst, at, x.wide(), false)?;
    }
    Some(at)
}

/// Reads 8 varints all `L` bytes long (all with `first`'s marker; for `L == 1`, all single
/// bytes) from the start of `b` (at least `8 * L + 8` bytes: each value is one fixed-size load
/// of 8 bytes, masked), or `None` if they are not all of that class. The 8 loads do not
/// depend on each other: a run is read without waiting on each element's length.
#[inline(always)]
fn get_block<const L: usize>(b: &[u8]) -> Option<[u64; BLOCK]> {
    let b = &b[..BLOCK * L + 8];
    if L == 1 {
        let same = b[..BLOCK].iter().all(|&t| u64::from(t) <= SINGLE_BYTE_MAX);
        return same.then(|| std::array::from_fn(|k| u64::from(b[k])));
    }
    if !(0..BLOCK).all(|k| b[k * L] == marker(L)) {
        return None;
    }
    Some(std::array::from_fn(|k| {
        let at = k * L + 1;
        u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes")) & value_mask(L)
    }))
}

/// The length of the varint starting with `first` (valid for `E`: at most its widest marker).
#[inline(always)]
fn len_of(first: u8) -> usize {
    if u64::from(first) <= SINGLE_BYTE_MAX {
        1
    } else {
        1 + (2 << (first - U16_BYTE))
    }
}

/// Reads exactly `n` varints of `E` from `src`, as bincode reads them (the same values from
/// the same bytes, and an error wherever bincode has one).
///
/// Every element takes at least one byte, so a count larger than `src` is refused before
/// allocating. Varints are read in blocks of [`BLOCK`] of one class where the next 8 are
/// ([`get_block`]); else one at a time, with one fixed-size load of the 8 bytes after the
/// first while 9 bytes are left, masked to the varint's width; the last elements with bounds
/// checked per byte. A varint's first byte is checked against what bincode accepts for `E`
/// ([`VarInt::LENGTHS`]: refused, a marker it does not read for `E`'s width, or 254 and 255).
#[inline(always)]
fn get_varints<E: VarInt>(src: &[u8], n: usize) -> Result<Vec<E>, MessageError> {
    if n > src.len() {
        return Err(decode_error("unexpected end of the message"));
    }
    let invalid = || decode_error("invalid integer encoding");
    let mut out = Vec::<E>::with_capacity(n);
    let slots = &mut out.spare_capacity_mut()[..n];
    let mut at = 0;
    let mut done = 0;
    while done < n {
        let Some(b) = src.get(at..at + BLOCK * 9 + 8) else {
            break;
        };
        let first = b[0];
        if E::LENGTHS[usize::from(first)] == 0 {
            return Err(invalid());
        }
        let len = len_of(first);
        let block = if n - done < BLOCK {
            None
        } else {
            match len {
                1 => get_block::<1>(b),
                3 => get_block::<3>(b),
                5 => get_block::<5>(b),
                _ => get_block::<9>(b),
            }
        };
        if let Some(w) = block {
            for (slot, v) in slots[done..done + BLOCK].iter_mut().zip(w) {
                slot.write(E::narrow(v));
            }
            at += BLOCK * len;
            done += BLOCK;
            continue;
        }
        // One element (then the block test again): its first byte was checked above.
        let rest = u64::from_le_bytes(b[1..9].try_into().expect("8 bytes"));
        let v = if len == 1 {
            u64::from(first)
        } else {
            rest & (u64::MAX >> ((72 - 8 * len) & 63))
        };
        slots[done].write(E::narrow(v));
        at += len;
        done += 1;
    }
    for slot in &mut slots[done..] {
        let (v, used) = get_varint(&src[at..], E::WIDTH)?;
        slot.write(E::narrow(v));
        at += used;
    }
    exact(&src[at..], Some(0))?;
    // SAFETY: `out` has capacity `n`, and its first `n` slots were all written above (the
    // first loop wrote `done` of them, the second the rest); `E` is a plain integer.
    unsafe { out.set_len(n) };
    Ok(out)
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
    let too_short = |dst: &[u8]| {
        MessageError::Encode(format!(
            "{} bytes do not fit the {} bytes given",
            size(seq),
            dst.len()
        ))
    };
    if let Seq::Varint(ints) = seq {
        // The room is checked as the elements are written: no second size pass.
        let n = seq_len(seq) as u64;
        if dst.len() < varint_len(n) {
            return Err(too_short(dst));
        }
        let head = put_varint(dst, n);
        return match with_varints!(ints, s => put_varints(s, &mut dst[head..])) {
            Some(body) => Ok(head + body),
            None => Err(too_short(dst)),
        };
    }
    let total = size(seq);
    let Some(dst) = dst.get_mut(..total) else {
        return Err(too_short(dst));
    };
    match seq {
        Seq::Int(v) => return Ok(put_varint(dst, *v)),
        Seq::Raw(le, n) => {
            dst.copy_from_slice(&le[..*n]);
            return Ok(*n);
        }
        _ => {}
    }
    let at = put_varint(dst, seq_len(seq) as u64);
    let body = &mut dst[at..];
    match seq {
        Seq::Int(_) | Seq::Raw(..) => unreachable!("handled above"),
        Seq::Bytes(b) => body.copy_from_slice(b),
        Seq::F32(f) => floats_to_le(f, body),
        Seq::F64(f) => floats_to_le(f, body),
        Seq::Varint(_) => unreachable!("handled above"),
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
        ($($t:ty),*) => {$(
            if id == TypeId::of::<Vec<$t>>() {
                done!(count(src).and_then(|(n, rest)| get_varints::<$t>(rest, n)));
            }
        )*};
    }
    ints!(u64, i64, u32, i32, u16, i16);
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
pub(super) fn bytes(src: &[u8]) -> Result<&[u8], MessageError> {
    let (n, rest) = count(src)?;
    exact(rest, Some(n))
}

/// A sequence of fixed-size elements: exactly `n * size` bytes after the length.
fn fixed(src: &[u8], size: usize) -> Result<&[u8], MessageError> {
    let (n, rest) = count(src)?;
    exact(rest, n.checked_mul(size))
}
