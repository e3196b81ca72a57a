//! [`Schema`]: the shape of a command or a response, as serde sees it, told by
//! [`Describe`](super::Describe) so that a tool that does not link the command's type (the
//! fleet command line) can still write a call and read its answer.
//!
//! The shape is traced from the type's `Deserialize` (with `serde-reflection`, feature
//! `schemas`): no derive beyond serde's is needed. A schema is flat, its shapes in one
//! list that refers to itself by index (shape 0 is the type itself), so a recursive type
//! is told once and a reader walks it without recursion it does not control.

use serde::{Deserialize, Serialize};

/// The shape of one type, traced from its serde `Deserialize` (feature `schemas`): a flat
/// list of [`Shape`]s that refer to each other by index, `shapes[0]` the type itself, so a
/// recursive type is told once and a reader walks it without recursion it does not control.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// Every shape the type is made of; `shapes[0]` is the type itself, and a shape names
    /// others by their index here.
    pub shapes: Vec<Shape>,
}

/// One shape of a [`Schema`]: the serde data model, with other shapes named by index.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // the variants are serde's data model, named as serde names them
pub enum Shape {
    Unit,
    Bool,
    I8,
    I16,
    I32,
    I64,
    I128,
    U8,
    U16,
    U32,
    U64,
    U128,
    F32,
    F64,
    Char,
    Str,
    Bytes,
    /// `Option<T>`: the shape of `T`.
    Option(u32),
    /// A sequence (`Vec<T>`): the shape of `T`.
    Seq(u32),
    /// A map: the shapes of its keys and values.
    Map(u32, u32),
    /// A tuple: the shapes of its items.
    Tuple(Vec<u32>),
    /// An array `[T; len]`.
    Array(u32, u32),
    /// `struct Name;`
    UnitStruct(String),
    /// `struct Name(T);`
    NewtypeStruct(String, u32),
    /// `struct Name(A, B, …);`
    TupleStruct(String, Vec<u32>),
    /// `struct Name { field: T, … }`
    Struct(String, Vec<Field>),
    /// `enum Name { … }`: its variants in declaration order (their index is their tag).
    Enum(String, Vec<Variant>),
}

/// A named field of a struct or a struct variant.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The field's name as serde writes it.
    pub name: String,
    /// Its shape's index.
    pub shape: u32,
}

/// A variant of an enum.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// The variant's name as serde writes it.
    pub name: String,
    /// What it holds.
    pub holds: Holds,
}

/// What an enum variant holds.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Holds {
    /// Nothing: `Name`.
    Nothing,
    /// One value: `Name(T)`.
    Newtype(u32),
    /// Several: `Name(A, B)`.
    Tuple(Vec<u32>),
    /// Named fields: `Name { a: A }`.
    Struct(Vec<Field>),
}

impl Schema {
    /// The shape of `T`, traced from its `Deserialize`; an error says why it could not be
    /// (a type that deserializes "anything", as `serde_json::Value` does, has no fixed
    /// shape).
    pub fn of<T: serde::de::DeserializeOwned>() -> Result<Schema, String> {
        trace::schema_of::<T>()
    }

    /// The shape at `index`, if there is one.
    pub fn shape(&self, index: u32) -> Option<&Shape> {
        self.shapes.get(usize::try_from(index).ok()?)
    }
}

#[cfg(feature = "schemas")]
mod trace {
    use std::collections::BTreeMap;

    use serde_reflection::{
        ContainerFormat, Format, Named, Registry, Tracer, TracerConfig, VariantFormat,
    };

    use super::{Field, Holds, Schema, Shape, Variant};

    /// Tracings made anew at most: one more for each level of enums nested only in the
    /// variants of others.
    const MAX_RESTARTS: usize = 16;
    /// Passes over the type at most in one tracing: one per variant of its largest enum.
    const MAX_PASSES: usize = 1024;

    pub(super) fn schema_of<T: serde::de::DeserializeOwned>() -> Result<Schema, String> {
        // serde-reflection completes the variants of the traced type's own enum by tracing
        // it again; an enum nested inside needs its name told to go on (`check_incomplete_enum`).
        // The names are learnt from a tracing that missed them, and the tracing made anew.
        let mut enums: Vec<String> = Vec::new();
        for _ in 0..MAX_RESTARTS {
            let mut tracer = Tracer::new(TracerConfig::default());
            let root = trace_all::<T>(&mut tracer, &enums)?;
            match tracer.registry() {
                Ok(registry) => return flatten(&root, &registry),
                Err(serde_reflection::Error::MissingVariants(missing))
                    if missing.iter().any(|name| !enums.contains(name)) =>
                {
                    for name in missing {
                        if !enums.contains(&name) {
                            enums.push(name);
                        }
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("enums nested too deep to trace".to_owned())
    }

    /// Traces `T` until none of `enums` has a variant left to see.
    fn trace_all<T: serde::de::DeserializeOwned>(
        tracer: &mut Tracer,
        enums: &[String],
    ) -> Result<Format, String> {
        for _ in 0..MAX_PASSES {
            let (root, _) = tracer.trace_simple_type::<T>().map_err(|e| e.to_string())?;
            let mut incomplete = false;
            for name in enums {
                incomplete |= tracer.check_incomplete_enum(name).is_some();
            }
            if !incomplete {
                return Ok(root);
            }
        }
        Err("an enum with too many variants to trace".to_owned())
    }

    fn flatten(root: &Format, registry: &Registry) -> Result<Schema, String> {
        let mut flat = Flattening {
            registry,
            shapes: Vec::new(),
            named: BTreeMap::new(),
        };
        // Shape 0 is the type itself: a slot kept for it before its parts are added, which
        // a recursive type's reference to itself finds.
        flat.shapes.push(Shape::Unit);
        if let Format::TypeName(name) = root {
            flat.named.insert(name.clone(), 0);
        }
        let shape = flat.shape_of(root)?;
        flat.shapes[0] = shape;
        Ok(Schema {
            shapes: flat.shapes,
        })
    }

    struct Flattening<'a> {
        registry: &'a Registry,
        shapes: Vec<Shape>,
        /// The index of each named type added, so a recursive type refers to itself.
        named: BTreeMap<String, u32>,
    }

    impl Flattening<'_> {
        /// Adds `format`'s shape and returns its index.
        fn add(&mut self, format: &Format) -> Result<u32, String> {
            if let Format::TypeName(name) = format {
                if let Some(&index) = self.named.get(name) {
                    return Ok(index);
                }
            }
            let index = self.next_index()?;
            self.shapes.push(Shape::Unit);
            if let Format::TypeName(name) = format {
                self.named.insert(name.clone(), index);
            }
            let shape = self.shape_of(format)?;
            self.shapes[index as usize] = shape;
            Ok(index)
        }

        fn next_index(&self) -> Result<u32, String> {
            u32::try_from(self.shapes.len()).map_err(|_| "a type of too many shapes".to_owned())
        }

        fn all(&mut self, formats: &[Format]) -> Result<Vec<u32>, String> {
            formats.iter().map(|format| self.add(format)).collect()
        }

        fn fields(&mut self, fields: &[Named<Format>]) -> Result<Vec<Field>, String> {
            fields
                .iter()
                .map(|field| {
                    Ok(Field {
                        name: field.name.clone(),
                        shape: self.add(&field.value)?,
                    })
                })
                .collect()
        }

        /// The shape of `format`, its parts added.
        fn shape_of(&mut self, format: &Format) -> Result<Shape, String> {
            Ok(match format {
                Format::Variable(_) => return Err("a shape left unknown by tracing".to_owned()),
                Format::TypeName(name) => {
                    let container = self
                        .registry
                        .get(name)
                        .ok_or_else(|| format!("type {name} not traced"))?;
                    self.container(name, container)?
                }
                Format::Unit => Shape::Unit,
                Format::Bool => Shape::Bool,
                Format::I8 => Shape::I8,
                Format::I16 => Shape::I16,
                Format::I32 => Shape::I32,
                Format::I64 => Shape::I64,
                Format::I128 => Shape::I128,
                Format::U8 => Shape::U8,
                Format::U16 => Shape::U16,
                Format::U32 => Shape::U32,
                Format::U64 => Shape::U64,
                Format::U128 => Shape::U128,
                Format::F32 => Shape::F32,
                Format::F64 => Shape::F64,
                Format::Char => Shape::Char,
                Format::Str => Shape::Str,
                Format::Bytes => Shape::Bytes,
                Format::Option(inner) => Shape::Option(self.add(inner)?),
                Format::Seq(inner) => Shape::Seq(self.add(inner)?),
                Format::Map { key, value } => Shape::Map(self.add(key)?, self.add(value)?),
                Format::Tuple(items) => Shape::Tuple(self.all(items)?),
                Format::TupleArray { content, size } => {
                    let size = u32::try_from(*size).map_err(|_| "an array too long")?;
                    Shape::Array(self.add(content)?, size)
                }
            })
        }

        fn container(&mut self, name: &str, container: &ContainerFormat) -> Result<Shape, String> {
            let name = name.to_owned();
            Ok(match container {
                ContainerFormat::UnitStruct => Shape::UnitStruct(name),
                ContainerFormat::NewTypeStruct(inner) => {
                    Shape::NewtypeStruct(name, self.add(inner)?)
                }
                ContainerFormat::TupleStruct(items) => Shape::TupleStruct(name, self.all(items)?),
                ContainerFormat::Struct(fields) => Shape::Struct(name, self.fields(fields)?),
                ContainerFormat::Enum(variants) => {
                    let mut all = Vec::with_capacity(variants.len());
                    for (tag, variant) in variants {
                        if *tag as usize != all.len() {
                            return Err(format!("enum {name} has a variant missing in tracing"));
                        }
                        let holds = match &variant.value {
                            VariantFormat::Variable(_) => {
                                return Err(format!("a variant of {name} left unknown"))
                            }
                            VariantFormat::Unit => Holds::Nothing,
                            VariantFormat::NewType(inner) => Holds::Newtype(self.add(inner)?),
                            VariantFormat::Tuple(items) => Holds::Tuple(self.all(items)?),
                            VariantFormat::Struct(fields) => Holds::Struct(self.fields(fields)?),
                        };
                        all.push(Variant {
                            name: variant.name.clone(),
                            holds,
                        });
                    }
                    Shape::Enum(name, all)
                }
            })
        }
    }
}

#[cfg(not(feature = "schemas"))]
mod trace {
    use super::Schema;

    // The same signature as with the feature, so callers need no `cfg` of their own.
    #[allow(clippy::extra_unused_type_parameters)]
    pub(super) fn schema_of<T>() -> Result<Schema, String> {
        Err("this node was built without the `schemas` feature".to_owned())
    }
}

#[cfg(all(test, feature = "schemas"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Reading {
        sensor: u8,
        celsius: Option<f32>,
        tags: Vec<String>,
    }

    #[derive(Serialize, Deserialize)]
    enum Led {
        Off,
        On(u8),
        Blink { on_ms: u16, off_ms: u16 },
    }

    #[derive(Serialize, Deserialize)]
    struct Tree {
        label: String,
        children: Vec<Tree>,
    }

    #[test]
    fn a_struct_is_its_fields_in_order_each_shape_told_once() {
        let schema = Schema::of::<Reading>().unwrap();
        let Shape::Struct(name, fields) = &schema.shapes[0] else {
            panic!("{schema:?}");
        };
        assert_eq!(name, "Reading");
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["sensor", "celsius", "tags"]);
        assert_eq!(schema.shape(fields[0].shape), Some(&Shape::U8));
        let Some(&Shape::Option(inner)) = schema.shape(fields[1].shape) else {
            panic!("{schema:?}");
        };
        assert_eq!(schema.shape(inner), Some(&Shape::F32));
        let Some(&Shape::Seq(item)) = schema.shape(fields[2].shape) else {
            panic!("{schema:?}");
        };
        assert_eq!(schema.shape(item), Some(&Shape::Str));
    }

    #[test]
    fn an_enum_lists_every_variant_in_tag_order() {
        let schema = Schema::of::<Led>().unwrap();
        let Shape::Enum(name, variants) = &schema.shapes[0] else {
            panic!("{schema:?}");
        };
        assert_eq!(name, "Led");
        let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["Off", "On", "Blink"]);
        assert_eq!(variants[0].holds, Holds::Nothing);
        let Holds::Newtype(on) = variants[1].holds else {
            panic!("{schema:?}");
        };
        assert_eq!(schema.shape(on), Some(&Shape::U8));
        let Holds::Struct(fields) = &variants[2].holds else {
            panic!("{schema:?}");
        };
        assert_eq!(fields.len(), 2);
    }

    #[test]
    fn a_recursive_type_refers_to_itself_by_index() {
        let schema = Schema::of::<Tree>().unwrap();
        let Shape::Struct(_, fields) = &schema.shapes[0] else {
            panic!("{schema:?}");
        };
        let Some(&Shape::Seq(child)) = schema.shape(fields[1].shape) else {
            panic!("{schema:?}");
        };
        assert_eq!(child, 0, "{schema:?}");
    }

    #[test]
    fn primitives_maps_and_tuples_have_their_shapes() {
        assert_eq!(Schema::of::<u64>().unwrap().shapes, [Shape::U64]);
        assert_eq!(Schema::of::<()>().unwrap().shapes, [Shape::Unit]);
        let map = Schema::of::<BTreeMap<String, i32>>().unwrap();
        assert_eq!(map.shapes, [Shape::Map(1, 2), Shape::Str, Shape::I32]);
        // serde writes an array as a tuple of its items.
        let tuple = Schema::of::<(bool, [u8; 2])>().unwrap();
        assert_eq!(
            tuple.shapes,
            [
                Shape::Tuple(vec![1, 2]),
                Shape::Bool,
                Shape::Tuple(vec![3, 4]),
                Shape::U8,
                Shape::U8
            ]
        );
    }

    /// A type that takes anything (as `serde_json::Value` does) has no shape to tell.
    struct Anything;

    impl<'de> Deserialize<'de> for Anything {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            serde::de::IgnoredAny::deserialize(deserializer).map(|_| Anything)
        }
    }

    #[test]
    fn a_type_of_no_fixed_shape_is_an_error_not_a_panic() {
        let error = Schema::of::<Anything>().unwrap_err();
        assert!(!error.is_empty());
    }
}
