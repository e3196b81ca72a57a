//! A nesting limit for decoding: a body may nest values at most [`MAX_NESTING`] deep.
//!
//! postcard decodes a recursive type (a boxed expression tree, a list of lists) by
//! recursion, one stack frame or more per level, and sets no limit: 256 KiB of nested enum
//! tags overflow any thread's stack and abort the process, which `catch_unwind` cannot
//! stop. [`decode_body`](crate::frame::decode_body) therefore decodes through
//! a serde adapter that counts how deep the value being built is (every
//! sequence, map, enum, option and newtype entered is a level) and fails the decode past
//! the limit, before the stack runs out. Bounded types never come near it; only a value
//! nested deeper than any sane command is refused, as [`DecodeError::TooDeep`].
//!
//! [`DecodeError::TooDeep`]: crate::DecodeError::TooDeep

use core::cell::Cell;
use core::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// How deep a decoded value may nest: sequences, maps, enums, options and newtypes, each a
/// level. Far above any command a device would declare (a struct of a list of structs is
/// three), far below what overflows a 64 KiB stack.
pub const MAX_NESTING: usize = 64;

/// Decodes with `inner`, failing once the value nests more than `left` levels deeper; sets
/// `tripped` when it does, so the caller can tell this failure from the format's own.
pub(crate) struct Nesting<'t, D> {
    inner: D,
    left: usize,
    tripped: &'t Cell<bool>,
}

impl<'t, D> Nesting<'t, D> {
    /// `inner`, allowed [`MAX_NESTING`] levels.
    pub(crate) fn new(inner: D, tripped: &'t Cell<bool>) -> Self {
        Nesting {
            inner,
            left: MAX_NESTING,
            tripped,
        }
    }
}

/// A visitor (or seed, or access) at `left` levels from the limit.
struct Level<'t, T> {
    inner: T,
    left: usize,
    tripped: &'t Cell<bool>,
}

impl<'t, T> Level<'t, T> {
    fn wrap<U>(&self, inner: U) -> Level<'t, U> {
        Level {
            inner,
            left: self.left,
            tripped: self.tripped,
        }
    }

    /// One level deeper, or the error that the value nests too deep.
    fn deeper<E: de::Error>(&self) -> Result<usize, E> {
        self.left.checked_sub(1).ok_or_else(|| {
            self.tripped.set(true);
            E::custom(format_args!("value nests deeper than {MAX_NESTING} levels"))
        })
    }

    fn nesting<D>(&self, inner: D, left: usize) -> Nesting<'t, D> {
        Nesting {
            inner,
            left,
            tripped: self.tripped,
        }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                let visitor = Level { inner: visitor, left: self.left, tripped: self.tripped };
                self.inner.$method($($arg,)* visitor)
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Nesting<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any(), deserialize_bool(), deserialize_i8(), deserialize_i16(),
        deserialize_i32(), deserialize_i64(), deserialize_i128(), deserialize_u8(),
        deserialize_u16(), deserialize_u32(), deserialize_u64(), deserialize_u128(),
        deserialize_f32(), deserialize_f64(), deserialize_char(), deserialize_str(),
        deserialize_string(), deserialize_bytes(), deserialize_byte_buf(),
        deserialize_option(), deserialize_unit(),
        deserialize_unit_struct(name: &'static str),
        deserialize_newtype_struct(name: &'static str),
        deserialize_seq(), deserialize_tuple(len: usize),
        deserialize_tuple_struct(name: &'static str, len: usize),
        deserialize_map(),
        deserialize_struct(name: &'static str, fields: &'static [&'static str]),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
        deserialize_identifier(), deserialize_ignored_any(),
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                self.inner.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Level<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool), visit_i8(i8), visit_i16(i16), visit_i32(i32), visit_i64(i64),
        visit_i128(i128), visit_u8(u8), visit_u16(u16), visit_u32(u32), visit_u64(u64),
        visit_u128(u128), visit_f32(f32), visit_f64(f64), visit_char(char), visit_str(&str),
        visit_borrowed_str(&'de str), visit_bytes(&[u8]), visit_borrowed_bytes(&'de [u8]),
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let left = self.deeper()?;
        let nested = self.nesting(d, left);
        self.inner.visit_some(nested)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let left = self.deeper()?;
        let nested = self.nesting(d, left);
        self.inner.visit_newtype_struct(nested)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let left = self.deeper()?;
        let seq = Level {
            inner: seq,
            left,
            tripped: self.tripped,
        };
        self.inner.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let left = self.deeper()?;
        let map = Level {
            inner: map,
            left,
            tripped: self.tripped,
        };
        self.inner.visit_map(map)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let left = self.deeper()?;
        let data = Level {
            inner: data,
            left,
            tripped: self.tripped,
        };
        self.inner.visit_enum(data)
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Level<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        let nested = self.nesting(d, self.left);
        self.inner.deserialize(nested)
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Level<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let seed = self.wrap(seed);
        self.inner.next_element_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Level<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let seed = self.wrap(seed);
        self.inner.next_key_seed(seed)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        let seed = self.wrap(seed);
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'t, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Level<'t, A> {
    type Error = A::Error;
    type Variant = Level<'t, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let seed = self.wrap(seed);
        let (value, variant) = self.inner.variant_seed(seed)?;
        Ok((
            value,
            Level {
                inner: variant,
                left: self.left,
                tripped: self.tripped,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Level<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.wrap(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let visitor = self.wrap(visitor);
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = self.wrap(visitor);
        self.inner.struct_variant(fields, visitor)
    }
}
