//! The message a type's own `Deserialize` gave when decoding it failed.
//!
//! postcard's error keeps no text: whatever a `Deserialize` (serde's derive, or a hand-written
//! impl) reports through `de::Error::custom` — an enum variant index out of range, a failed
//! `try_from`, a validation — becomes `SerdeDeCustom`, displayed as "Serde Deserialization
//! Error". On that path (cold: the decode already failed), [`custom_message`] decodes the
//! value once more through wrappers that hand every `Deserialize` on the way an error type of
//! ours, [`Caught`], which keeps the message; postcard still reads the bytes. Where a message
//! has to cross postcard's own code (a field inside a struct postcard walks), it is parked in
//! a thread-local while postcard carries its text-less error, and picked up on the other side.

use std::cell::RefCell;
use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

thread_local! {
    /// The message of the last [`Caught`] handed to postcard's code as its own error.
    static PARKED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// If `e` is postcard's text-less "custom" error, decodes `bytes` as a `T` again and returns
/// the message the failing `Deserialize` gave; `None` otherwise.
pub(crate) fn custom_message<T: DeserializeOwned>(
    bytes: &[u8],
    e: &postcard::Error,
) -> Option<String> {
    if !matches!(e, postcard::Error::SerdeDeCustom) {
        return None;
    }
    PARKED.with(|p| p.borrow_mut().take());
    let mut de = postcard::Deserializer::from_bytes(bytes);
    let caught = T::deserialize(Capture(&mut de)).err();
    PARKED.with(|p| p.borrow_mut().take());
    caught.map(|Caught(msg)| msg)
}

/// An error that keeps its message.
#[derive(Debug)]
struct Caught(String);

impl fmt::Display for Caught {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Caught {}

impl de::Error for Caught {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        Caught(msg.to_string())
    }
}

/// An error from postcard's code: the parked message if it carries one, else its own text.
fn from_inner<E: fmt::Display>(e: E) -> Caught {
    PARKED
        .with(|p| p.borrow_mut().take())
        .map_or_else(|| Caught(e.to_string()), Caught)
}

/// Hands a [`Caught`] to postcard's code as postcard's error, its message parked.
fn to_inner<E: de::Error>(c: Caught) -> E {
    let e = E::custom(&c.0);
    PARKED.with(|p| *p.borrow_mut() = Some(c.0));
    e
}

/// A deserializer whose error is [`Caught`], reading through `D`.
struct Capture<D>(D);

macro_rules! capture_methods {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Caught> {
            self.0.$method($($arg,)* Wrap(visitor)).map_err(from_inner)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Capture<D> {
    type Error = Caught;

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }

    capture_methods! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
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

/// A visitor that postcard's code calls, running `V` with [`Caught`] errors.
struct Wrap<V>(V);

macro_rules! wrap_values {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.0.$method::<Caught>(v).map_err(to_inner)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    wrap_values! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_none::<Caught>().map_err(to_inner)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_unit::<Caught>().map_err(to_inner)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.visit_some(Capture(d)).map_err(to_inner)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.visit_newtype_struct(Capture(d)).map_err(to_inner)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
        self.0.visit_seq(Capture(a)).map_err(to_inner)
    }

    fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(Capture(a)).map_err(to_inner)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
        self.0.visit_enum(Capture(a)).map_err(to_inner)
    }
}

/// A seed that postcard's code calls, running `S` on a [`Capture`].
struct Seed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(Capture(d)).map_err(to_inner)
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Capture<A> {
    type Error = Caught;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Caught> {
        self.0.next_element_seed(Seed(seed)).map_err(from_inner)
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Capture<A> {
    type Error = Caught;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Caught> {
        self.0.next_key_seed(Seed(seed)).map_err(from_inner)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Caught> {
        self.0.next_value_seed(Seed(seed)).map_err(from_inner)
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Capture<A> {
    type Error = Caught;
    type Variant = Capture<A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Caught> {
        self.0
            .variant_seed(Seed(seed))
            .map(|(v, rest)| (v, Capture(rest)))
            .map_err(from_inner)
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Capture<A> {
    type Error = Caught;

    fn unit_variant(self) -> Result<(), Caught> {
        self.0.unit_variant().map_err(from_inner)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Caught> {
        self.0.newtype_variant_seed(Seed(seed)).map_err(from_inner)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Caught> {
        self.0.tuple_variant(len, Wrap(visitor)).map_err(from_inner)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Caught> {
        self.0
            .struct_variant(fields, Wrap(visitor))
            .map_err(from_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A type whose `Deserialize` refuses some values with a message of its own.
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    #[serde(try_from = "u32")]
    struct Even(u32);

    impl TryFrom<u32> for Even {
        type Error = String;
        fn try_from(v: u32) -> Result<Self, String> {
            if v % 2 == 0 {
                Ok(Even(v))
            } else {
                Err(format!("{v} is odd"))
            }
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    enum Two {
        A,
        B(Vec<Even>),
    }

    fn message<T: DeserializeOwned + fmt::Debug>(bytes: &[u8]) -> Option<String> {
        let e = postcard::from_bytes::<T>(bytes).unwrap_err();
        custom_message::<T>(bytes, &e)
    }

    #[test]
    fn keeps_the_message_at_any_depth() {
        let odd = postcard::to_allocvec(&3u32).unwrap();
        assert_eq!(message::<Even>(&odd).as_deref(), Some("3 is odd"));
        // In a struct, in a sequence, in an enum variant, in an option, in a map value.
        let nested = postcard::to_allocvec(&(1u8, vec![2u32, 4, 5])).unwrap();
        assert_eq!(
            message::<(u8, Vec<Even>)>(&nested).as_deref(),
            Some("5 is odd")
        );
        let variant = postcard::to_allocvec(&(1u8, vec![7u32])).unwrap();
        assert_eq!(message::<Two>(&variant).as_deref(), Some("7 is odd"));
        let opt = postcard::to_allocvec(&Some(9u32)).unwrap();
        assert_eq!(message::<Option<Even>>(&opt).as_deref(), Some("9 is odd"));
        let map: std::collections::BTreeMap<u8, u32> = [(1, 2), (2, 11)].into();
        let map = postcard::to_allocvec(&map).unwrap();
        assert_eq!(
            message::<std::collections::BTreeMap<u8, Even>>(&map).as_deref(),
            Some("11 is odd")
        );
        // serde's own messages too: a variant index out of range.
        let bad_variant = postcard::to_allocvec(&5u32).unwrap();
        let m = message::<Two>(&bad_variant).unwrap();
        assert!(m.contains("variant index"), "{m}");
    }

    #[test]
    fn other_errors_are_left_to_postcard() {
        // Not a custom error: postcard's own message says it all.
        let e = postcard::from_bytes::<u64>(&[]).unwrap_err();
        assert_eq!(custom_message::<u64>(&[], &e), None);
    }
}
