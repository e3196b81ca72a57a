//! A [`Schema`] at work: JSON written as the native wire body of the type it describes, and a
//! body read back as JSON (feature `json`), so a tool that does not link a command's type —
//! the fleet command line, a dashboard — calls it by name with JSON arguments.
//!
//! The JSON is what `serde_json` makes of the type: a struct an object by field name, a
//! newtype struct its inner value, a tuple an array, a unit variant its name as a string,
//! any other variant an object `{"Variant": …}`, bytes an array of numbers, a missing
//! `Option` field `null`. Both ways are bounded in depth ([`MAX_DEPTH`]), whatever the schema
//! or the bytes say, and refuse what does not fit with a [`JsonError`] saying where.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde::ser::{self, SerializeMap, SerializeSeq, SerializeTuple};
use serde::Serialize;
use serde_json::{Map, Number, Value};

use super::schema::{Field, Holds, Schema, Shape};

/// How deep a value may nest, both ways.
pub const MAX_DEPTH: u32 = 64;

/// Items read ahead of a sequence's or map's length from the wire, at most.
const PREALLOCATE: usize = 256;

/// A value did not fit a schema, or a body did not decode by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonError {
    message: String,
}

impl JsonError {
    fn new(message: impl fmt::Display) -> JsonError {
        JsonError {
            message: message.to_string(),
        }
    }

    /// What went wrong, and where.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JsonError {}

impl ser::Error for JsonError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        JsonError::new(message)
    }
}

impl de::Error for JsonError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        JsonError::new(message)
    }
}

impl Schema {
    /// `value` written as the native dialect's body of this schema's type (postcard), as the
    /// type itself would be.
    pub fn encode_json(&self, value: &Value) -> Result<Vec<u8>, JsonError> {
        let shaped = Shaped {
            schema: self,
            index: 0,
            value,
            depth: 0,
        };
        // Checked first: postcard's serializer keeps no error message.
        shaped.check()?;
        postcard::to_allocvec(&shaped).map_err(JsonError::new)
    }

    /// A native body of this schema's type, read as JSON. Bytes left over are an error.
    pub fn decode_json(&self, body: &[u8]) -> Result<Value, JsonError> {
        let mut deserializer = postcard::Deserializer::from_bytes(body);
        // postcard's errors keep no message: the first of ours is kept here.
        let why = RefCell::new(None);
        let seed = Seed {
            schema: self,
            index: 0,
            depth: 0,
            why: &why,
        };
        let value = seed.deserialize(&mut deserializer).map_err(|e| {
            let why = why.borrow_mut().take().unwrap_or_else(|| e.to_string());
            JsonError::new(format!("the body does not decode: {why}"))
        })?;
        match deserializer.finalize() {
            Ok([]) => Ok(value),
            _ => Err(JsonError::new("bytes left over after the value")),
        }
    }

    fn at(&self, index: u32) -> Result<&Shape, String> {
        self.shape(index)
            .ok_or_else(|| format!("the schema has no shape {index}"))
    }
}

/// A JSON value serialized as shape `index` of `schema`.
struct Shaped<'a> {
    schema: &'a Schema,
    index: u32,
    value: &'a Value,
    depth: u32,
}

impl<'a> Shaped<'a> {
    fn child(&self, index: u32, value: &'a Value) -> Shaped<'a> {
        Shaped {
            schema: self.schema,
            index,
            value,
            depth: self.depth + 1,
        }
    }

    /// Checks the value against the schema without writing, for the error postcard's own
    /// serializer cannot carry (it keeps no message): the same walk as `serialize`.
    fn check(&self) -> Result<(), JsonError> {
        self.serialize(Checker).map(drop)
    }
}

/// What a value of the wrong kind is told.
fn expected(what: &str, value: &Value) -> String {
    let got = match value {
        Value::Null => "null".to_owned(),
        Value::Bool(_) => "a boolean".to_owned(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(a) => format!("an array of {}", a.len()),
        Value::Object(_) => "an object".to_owned(),
    };
    format!("expected {what}, got {got}")
}

impl Serialize for Shaped<'_> {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use ser::Error;
        if self.depth > MAX_DEPTH {
            return Err(S::Error::custom(format!("nested deeper than {MAX_DEPTH}")));
        }
        let shape = self.schema.at(self.index).map_err(S::Error::custom)?;
        let value = self.value;
        let wrong = |what: &str| S::Error::custom(expected(what, value));
        macro_rules! integer {
            ($as:ident, $ty:ty, $method:ident, $what:literal) => {{
                let n = value.$as().ok_or_else(|| wrong($what))?;
                let n = <$ty>::try_from(n).map_err(|_| wrong($what))?;
                serializer.$method(n)
            }};
        }
        match shape {
            Shape::Unit => match value {
                Value::Null => serializer.serialize_unit(),
                _ => Err(wrong("null")),
            },
            Shape::Bool => {
                serializer.serialize_bool(value.as_bool().ok_or_else(|| wrong("a boolean"))?)
            }
            Shape::I8 => integer!(as_i64, i8, serialize_i8, "an i8"),
            Shape::I16 => integer!(as_i64, i16, serialize_i16, "an i16"),
            Shape::I32 => integer!(as_i64, i32, serialize_i32, "an i32"),
            Shape::I64 => integer!(as_i64, i64, serialize_i64, "an i64"),
            Shape::U8 => integer!(as_u64, u8, serialize_u8, "a u8"),
            Shape::U16 => integer!(as_u64, u16, serialize_u16, "a u16"),
            Shape::U32 => integer!(as_u64, u32, serialize_u32, "a u32"),
            Shape::U64 => integer!(as_u64, u64, serialize_u64, "a u64"),
            Shape::I128 => serializer.serialize_i128(wide(value).ok_or_else(|| wrong("an i128"))?),
            Shape::U128 => {
                let n = match value {
                    Value::String(s) => s.parse().ok(),
                    _ => wide(value).and_then(|n| u128::try_from(n).ok()),
                };
                serializer.serialize_u128(n.ok_or_else(|| wrong("a u128"))?)
            }
            Shape::F32 => {
                let n = value.as_f64().ok_or_else(|| wrong("a number"))?;
                serializer.serialize_f32(n as f32)
            }
            Shape::F64 => {
                serializer.serialize_f64(value.as_f64().ok_or_else(|| wrong("a number"))?)
            }
            Shape::Char => {
                let mut chars = value.as_str().ok_or_else(|| wrong("a character"))?.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => serializer.serialize_char(c),
                    _ => Err(wrong("a string of one character")),
                }
            }
            Shape::Str => {
                serializer.serialize_str(value.as_str().ok_or_else(|| wrong("a string"))?)
            }
            Shape::Bytes => {
                let items = value.as_array().ok_or_else(|| wrong("an array of bytes"))?;
                let bytes = items
                    .iter()
                    .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                    .collect::<Option<Vec<u8>>>()
                    .ok_or_else(|| wrong("an array of bytes"))?;
                serializer.serialize_bytes(&bytes)
            }
            Shape::Option(inner) => match value {
                Value::Null => serializer.serialize_none(),
                some => serializer.serialize_some(&self.child(*inner, some)),
            },
            Shape::Seq(item) => {
                let items = value.as_array().ok_or_else(|| wrong("an array"))?;
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for each in items {
                    seq.serialize_element(&self.child(*item, each))?;
                }
                seq.end()
            }
            Shape::Map(key, item) => {
                let entries = value.as_object().ok_or_else(|| wrong("an object"))?;
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (name, each) in entries {
                    let name = key_value(self.schema.at(*key).map_err(S::Error::custom)?, name);
                    map.serialize_entry(&self.child(*key, &name), &self.child(*item, each))?;
                }
                map.end()
            }
            Shape::Tuple(items) | Shape::TupleStruct(_, items) => {
                self.items(items, value, serializer)
            }
            Shape::Array(item, len) => {
                let items = value.as_array().ok_or_else(|| wrong("an array"))?;
                if items.len() != *len as usize {
                    return Err(wrong(&format!("an array of {len}")));
                }
                let mut tuple = serializer.serialize_tuple(items.len())?;
                for each in items {
                    tuple.serialize_element(&self.child(*item, each))?;
                }
                tuple.end()
            }
            Shape::UnitStruct(_) => match value {
                Value::Null => serializer.serialize_unit(),
                Value::Object(fields) if fields.is_empty() => serializer.serialize_unit(),
                _ => Err(wrong("null")),
            },
            Shape::NewtypeStruct(_, inner) => self.child(*inner, value).serialize(serializer),
            Shape::Struct(name, fields) => self.fields(name, fields, value, serializer),
            Shape::Enum(name, variants) => {
                let (variant, inside) = match value {
                    Value::String(variant) => (variant.as_str(), None),
                    Value::Object(one) if one.len() == 1 => {
                        let (variant, inside) =
                            one.iter().next().ok_or_else(|| wrong("a variant"))?;
                        (variant.as_str(), Some(inside))
                    }
                    _ => return Err(wrong(&format!("a variant of {name}"))),
                };
                let (tag, chosen) = variants
                    .iter()
                    .enumerate()
                    .find(|(_, v)| v.name == variant)
                    .ok_or_else(|| {
                        S::Error::custom(format!("{name} has no variant {variant:?}"))
                    })?;
                let tag = u32::try_from(tag).map_err(S::Error::custom)?;
                // postcard writes a variant as its tag, then what it holds: as a tuple of it.
                let mut tuple = serializer.serialize_tuple(2)?;
                tuple.serialize_element(&VariantTag(tag))?;
                match (&chosen.holds, inside) {
                    (Holds::Nothing, None | Some(Value::Null)) => {}
                    (Holds::Newtype(inner), Some(inside)) => {
                        tuple.serialize_element(&self.child(*inner, inside))?;
                    }
                    (Holds::Tuple(items), Some(inside)) => {
                        tuple.serialize_element(&Items(self.child(0, inside), items))?;
                    }
                    (Holds::Struct(fields), Some(inside)) => {
                        tuple.serialize_element(&Fields(self.child(0, inside), name, fields))?;
                    }
                    _ => {
                        let what = format!("{name}::{variant} with what it holds");
                        return Err(S::Error::custom(expected(&what, value)));
                    }
                }
                tuple.end()
            }
        }
    }
}

/// An enum's tag, as postcard writes a variant index.
struct VariantTag(u32);

impl Serialize for VariantTag {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit_variant("", self.0, "")
    }
}

/// A tuple variant's items.
struct Items<'a>(Shaped<'a>, &'a [u32]);

impl Serialize for Items<'_> {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.items(self.1, self.0.value, serializer)
    }
}

/// A struct variant's fields.
struct Fields<'a>(Shaped<'a>, &'a str, &'a [Field]);

impl Serialize for Fields<'_> {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.fields(self.1, self.2, self.0.value, serializer)
    }
}

impl<'a> Shaped<'a> {
    fn items<S: ser::Serializer>(
        &self,
        shapes: &[u32],
        value: &'a Value,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        use ser::Error;
        let items = value
            .as_array()
            .filter(|items| items.len() == shapes.len())
            .ok_or_else(|| {
                S::Error::custom(expected(&format!("an array of {}", shapes.len()), value))
            })?;
        let mut tuple = serializer.serialize_tuple(items.len())?;
        for (shape, each) in shapes.iter().zip(items) {
            tuple.serialize_element(&self.child(*shape, each))?;
        }
        tuple.end()
    }

    fn fields<S: ser::Serializer>(
        &self,
        name: &str,
        fields: &[Field],
        value: &'a Value,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        use ser::Error;
        static NULL: Value = Value::Null;
        let object = value
            .as_object()
            .ok_or_else(|| S::Error::custom(expected(&format!("{name} as an object"), value)))?;
        if let Some(unknown) = object
            .keys()
            .find(|key| !fields.iter().any(|f| &f.name == *key))
        {
            return Err(S::Error::custom(format!("{name} has no field {unknown:?}")));
        }
        let mut tuple = serializer.serialize_tuple(fields.len())?;
        for field in fields {
            let each = match object.get(&field.name) {
                Some(each) => each,
                // A missing optional field is `None`, as serde's derive reads it.
                None if matches!(self.schema.shape(field.shape), Some(Shape::Option(_))) => &NULL,
                None => {
                    return Err(S::Error::custom(format!(
                        "{name} needs field {:?}",
                        field.name
                    )))
                }
            };
            tuple.serialize_element(&self.child(field.shape, each))?;
        }
        tuple.end()
    }
}

/// A map key as JSON has it (always a string) turned into the key's shape: a number for an
/// integer key.
fn key_value(shape: &Shape, name: &str) -> Value {
    let integer = matches!(
        shape,
        Shape::I8
            | Shape::I16
            | Shape::I32
            | Shape::I64
            | Shape::U8
            | Shape::U16
            | Shape::U32
            | Shape::U64
    );
    match integer {
        true => serde_json::from_str::<Number>(name)
            .map_or_else(|_| Value::String(name.to_owned()), Value::Number),
        false => Value::String(name.to_owned()),
    }
}

/// A 128-bit integer from a JSON number or a decimal string (JSON numbers stop at 64 bits).
fn wide(value: &Value) -> Option<i128> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Walks a value as postcard would write it and writes nothing: the checker behind
/// [`Shaped::check`], whose errors keep their message.
#[derive(Clone, Copy)]
struct Checker;

macro_rules! accept {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, _: $ty) -> Result<(), JsonError> { Ok(()) })*
    };
}

impl ser::Serializer for Checker {
    type Ok = ();
    type Error = JsonError;
    type SerializeSeq = Checker;
    type SerializeTuple = Checker;
    type SerializeTupleStruct = Checker;
    type SerializeTupleVariant = Checker;
    type SerializeMap = Checker;
    type SerializeStruct = Checker;
    type SerializeStructVariant = Checker;

    accept!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_none(self) -> Result<(), JsonError> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), JsonError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), JsonError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), JsonError> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Checker, JsonError> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Checker, JsonError> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Checker, JsonError> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Checker, JsonError> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Checker, JsonError> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Checker, JsonError> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Checker, JsonError> {
        Ok(self)
    }
}

impl ser::SerializeSeq for Checker {
    type Ok = ();
    type Error = JsonError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), JsonError> {
        Ok(())
    }
}

macro_rules! checker_compound {
    ($($trait:ident :: $method:ident),*) => {
        $(impl ser::$trait for Checker {
            type Ok = ();
            type Error = JsonError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
                value.serialize(*self)
            }
            fn end(self) -> Result<(), JsonError> {
                Ok(())
            }
        })*
    };
}

checker_compound!(
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Checker {
    type Ok = ();
    type Error = JsonError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), JsonError> {
        key.serialize(*self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), JsonError> {
        Ok(())
    }
}

impl ser::SerializeStruct for Checker {
    type Ok = ();
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), JsonError> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for Checker {
    type Ok = ();
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), JsonError> {
        Ok(())
    }
}

/// Reads shape `index` of `schema` from a postcard deserializer as JSON.
#[derive(Clone, Copy)]
struct Seed<'a> {
    schema: &'a Schema,
    index: u32,
    depth: u32,
    /// Why reading failed, said once.
    why: &'a RefCell<Option<String>>,
}

impl<'a> Seed<'a> {
    fn child(self, index: u32) -> Seed<'a> {
        Seed {
            index,
            depth: self.depth + 1,
            ..self
        }
    }

    /// An error that says `message`, kept for the caller (the first one only).
    fn fail<E: de::Error>(self, message: impl fmt::Display) -> E {
        let mut why = self.why.borrow_mut();
        let message = message.to_string();
        E::custom(why.get_or_insert(message))
    }
}

/// What a [`Seed`] reads: its shape's values, told by the visit it gets.
struct Reading<'a> {
    seed: Seed<'a>,
    shape: &'a Shape,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(self.fail(format!("nested deeper than {MAX_DEPTH}")));
        }
        let shape = self.schema.at(self.index).map_err(|e| self.fail(e))?;
        let reading = Reading { seed: self, shape };
        match shape {
            Shape::Unit | Shape::UnitStruct(_) => deserializer.deserialize_unit(reading),
            Shape::Bool => deserializer.deserialize_bool(reading),
            Shape::I8 => deserializer.deserialize_i8(reading),
            Shape::I16 => deserializer.deserialize_i16(reading),
            Shape::I32 => deserializer.deserialize_i32(reading),
            Shape::I64 => deserializer.deserialize_i64(reading),
            Shape::I128 => deserializer.deserialize_i128(reading),
            Shape::U8 => deserializer.deserialize_u8(reading),
            Shape::U16 => deserializer.deserialize_u16(reading),
            Shape::U32 => deserializer.deserialize_u32(reading),
            Shape::U64 => deserializer.deserialize_u64(reading),
            Shape::U128 => deserializer.deserialize_u128(reading),
            Shape::F32 => deserializer.deserialize_f32(reading),
            Shape::F64 => deserializer.deserialize_f64(reading),
            Shape::Char => deserializer.deserialize_char(reading),
            Shape::Str => deserializer.deserialize_str(reading),
            Shape::Bytes => deserializer.deserialize_bytes(reading),
            Shape::Option(_) => deserializer.deserialize_option(reading),
            Shape::Seq(_) => deserializer.deserialize_seq(reading),
            Shape::Map(..) => deserializer.deserialize_map(reading),
            Shape::Tuple(items) | Shape::TupleStruct(_, items) => {
                deserializer.deserialize_tuple(items.len(), reading)
            }
            Shape::Array(_, len) => deserializer.deserialize_tuple(*len as usize, reading),
            Shape::NewtypeStruct(_, inner) => self.child(*inner).deserialize(deserializer),
            // postcard writes a struct as the tuple of its fields.
            Shape::Struct(_, fields) => deserializer.deserialize_tuple(fields.len(), reading),
            Shape::Enum(..) => deserializer.deserialize_enum("", &[], reading),
        }
    }
}

macro_rules! visit_number {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method<E: de::Error>(self, n: $ty) -> Result<Value, E> {
            Ok(Value::from(n))
        })*
    };
}

impl<'de> Visitor<'de> for Reading<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a value of shape {:?}", self.shape)
    }

    visit_number!(
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_bool(bool),
    );

    fn visit_i128<E: de::Error>(self, n: i128) -> Result<Value, E> {
        Ok(i64::try_from(n).map_or_else(|_| Value::String(n.to_string()), Value::from))
    }

    fn visit_u128<E: de::Error>(self, n: u128) -> Result<Value, E> {
        Ok(u64::try_from(n).map_or_else(|_| Value::String(n.to_string()), Value::from))
    }

    fn visit_f32<E: de::Error>(self, n: f32) -> Result<Value, E> {
        // The f32's own shortest decimal (0.13), not its f64 widening (0.12999999523…).
        let widened = n.to_string().parse().unwrap_or(f64::from(n));
        Ok(Number::from_f64(widened).map_or(Value::Null, Value::Number))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_char<E: de::Error>(self, c: char) -> Result<Value, E> {
        Ok(Value::String(c.to_string()))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Value, E> {
        Ok(Value::Array(
            bytes.iter().map(|&b| Value::from(b)).collect(),
        ))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self.shape {
            Shape::Option(inner) => self.seed.child(*inner).deserialize(deserializer),
            _ => Err(self.seed.fail("an option where none was expected")),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let next = |seq: &mut A, index: u32| -> Result<Value, A::Error> {
            seq.next_element_seed(self.seed.child(index))?
                .ok_or_else(|| self.seed.fail("fewer items than the shape has"))
        };
        match self.shape {
            Shape::Seq(item) => {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(PREALLOCATE));
                while let Some(each) = seq.next_element_seed(self.seed.child(*item))? {
                    items.push(each);
                }
                Ok(Value::Array(items))
            }
            Shape::Tuple(items) | Shape::TupleStruct(_, items) => items
                .iter()
                .map(|item| next(&mut seq, *item))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Shape::Array(item, len) => (0..*len)
                .map(|_| next(&mut seq, *item))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Shape::Struct(_, fields) => {
                let mut object = Map::new();
                for field in fields {
                    object.insert(field.name.clone(), next(&mut seq, field.shape)?);
                }
                Ok(Value::Object(object))
            }
            _ => Err(self.seed.fail("a sequence where none was expected")),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Shape::Map(key, item) = self.shape else {
            return Err(self.seed.fail("a map where none was expected"));
        };
        let mut object = Map::new();
        while let Some(name) = map.next_key_seed(self.seed.child(*key))? {
            let name = match name {
                Value::String(name) => name,
                other => other.to_string(),
            };
            object.insert(name, map.next_value_seed(self.seed.child(*item))?);
        }
        Ok(Value::Object(object))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let Shape::Enum(name, variants) = self.shape else {
            return Err(self.seed.fail("an enum where none was expected"));
        };
        let (tag, access) = data.variant::<u32>()?;
        let variant = variants
            .get(tag as usize)
            .ok_or_else(|| self.seed.fail(format!("{name} has no variant {tag}")))?;
        let inside = match &variant.holds {
            Holds::Nothing => {
                access.unit_variant()?;
                return Ok(Value::String(variant.name.clone()));
            }
            Holds::Newtype(inner) => access.newtype_variant_seed(self.seed.child(*inner))?,
            Holds::Tuple(items) => {
                let shape = Shape::Tuple(items.clone());
                let reading = Reading {
                    seed: self.seed,
                    shape: &shape,
                };
                access.tuple_variant(items.len(), reading)?
            }
            Holds::Struct(fields) => {
                let shape = Shape::Struct(name.clone(), fields.clone());
                let reading = Reading {
                    seed: self.seed,
                    shape: &shape,
                };
                // postcard reads a struct variant as the tuple of its fields.
                access.tuple_variant(fields.len(), reading)?
            }
        };
        let mut object = Map::new();
        object.insert(variant.name.clone(), inside);
        Ok(Value::Object(object))
    }
}

#[cfg(all(test, feature = "schemas"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Reading {
        sensor: u8,
        celsius: Option<f32>,
        tags: Vec<String>,
        by_hour: BTreeMap<u32, i64>,
        led: Led,
        pair: (bool, char),
        big: u128,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Led {
        Off,
        On(u8),
        Pwm(u8, u16),
        Blink { on_ms: u16, off_ms: u16 },
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Tree {
        label: String,
        children: Vec<Tree>,
    }

    fn sample() -> Reading {
        Reading {
            sensor: 3,
            celsius: Some(21.5),
            tags: vec!["roof".into(), "north".into()],
            by_hour: BTreeMap::from([(7, -2), (8, 40)]),
            led: Led::Blink {
                on_ms: 100,
                off_ms: 900,
            },
            pair: (true, 'é'),
            big: 5,
        }
    }

    #[test]
    fn json_is_written_as_the_type_itself_would_be_and_read_back_the_same() {
        let schema = Schema::of::<Reading>().unwrap();
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(
            schema.encode_json(&json).unwrap(),
            postcard::to_allocvec(&sample()).unwrap()
        );
        // A number past 64 bits is no JSON number serde_json keeps: it is given as text.
        let value = Reading {
            big: u128::MAX,
            ..sample()
        };
        let mut given = json.clone();
        given["big"] = Value::String(u128::MAX.to_string());
        let body = schema.encode_json(&given).unwrap();
        assert_eq!(body, postcard::to_allocvec(&value).unwrap());
        let back = schema.decode_json(&body).unwrap();
        assert_eq!(back, given);
        for led in [Led::Off, Led::On(9), Led::Pwm(1, 2)] {
            let schema = Schema::of::<Led>().unwrap();
            let json = serde_json::to_value(&led).unwrap();
            let body = schema.encode_json(&json).unwrap();
            assert_eq!(postcard::from_bytes::<Led>(&body).unwrap(), led);
            assert_eq!(schema.decode_json(&body).unwrap(), json);
        }
    }

    #[test]
    fn a_missing_optional_field_is_none_and_anything_else_that_does_not_fit_says_where() {
        let schema = Schema::of::<Reading>().unwrap();
        let mut json = serde_json::to_value(sample()).unwrap();
        json.as_object_mut().unwrap().remove("celsius");
        let body = schema.encode_json(&json).unwrap();
        assert_eq!(
            postcard::from_bytes::<Reading>(&body).unwrap().celsius,
            None
        );

        let cases = [
            (json!({"sensor": 300}), "expected a u8, got the number 300"),
            (json!({"sensor": "three"}), "expected a u8"),
            (json!([1, 2]), "Reading as an object"),
        ];
        for (wrong, says) in cases {
            let error = schema.encode_json(&wrong).unwrap_err();
            assert!(error.message().contains(says), "{wrong}: {error}");
        }
        let mut extra = serde_json::to_value(sample()).unwrap();
        extra["colour"] = json!("red");
        let error = schema.encode_json(&extra).unwrap_err();
        assert!(error.message().contains("no field \"colour\""), "{error}");
        let led = Schema::of::<Led>().unwrap();
        let error = led.encode_json(&json!("Strobe")).unwrap_err();
        assert!(error.message().contains("no variant \"Strobe\""), "{error}");
    }

    #[test]
    fn bodies_that_do_not_decode_are_errors_whatever_their_bytes() {
        let schema = Schema::of::<Reading>().unwrap();
        let body = postcard::to_allocvec(&sample()).unwrap();
        for cut in 0..body.len() {
            assert!(schema.decode_json(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(schema.decode_json(&longer).is_err());
        // A length far beyond the bytes: refused, not allocated.
        let tree = Schema::of::<Tree>().unwrap();
        assert!(tree
            .decode_json(&[0, 0xff, 0xff, 0xff, 0xff, 0x0f])
            .is_err());
    }

    #[test]
    fn nesting_is_bounded_both_ways() {
        let tree = Schema::of::<Tree>().unwrap();
        let mut deep = json!({"label": "leaf", "children": []});
        for _ in 0..200 {
            deep = json!({"label": "n", "children": [deep]});
        }
        let error = tree.encode_json(&deep).unwrap_err();
        assert!(error.message().contains("deeper"), "{error}");
        // 200 nested one-child nodes on the wire: a label of 0 bytes, one child, …
        let mut body = Vec::new();
        for _ in 0..200 {
            body.extend_from_slice(&[0, 1]);
        }
        body.extend_from_slice(&[0, 0]);
        let error = tree.decode_json(&body).unwrap_err();
        assert!(error.message().contains("deeper"), "{error}");
        let shallow = json!({"label": "a", "children": [{"label": "b", "children": []}]});
        let body = tree.encode_json(&shallow).unwrap();
        assert_eq!(tree.decode_json(&body).unwrap(), shallow);
    }

    #[test]
    fn a_schema_pointing_nowhere_is_an_error_not_a_panic() {
        let broken = Schema {
            shapes: vec![Shape::Seq(7)],
        };
        assert!(broken.encode_json(&json!([1])).is_err());
        assert!(broken.decode_json(&[1, 0]).is_err());
    }
}
