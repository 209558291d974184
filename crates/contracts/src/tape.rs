//! A JSON document laid out flat ("a tape"): what `decode` and `encode` validate on their fast
//! paths instead of a [`serde_json::Value`]. Parsed from bytes it borrows its strings from them;
//! built from a typed message ([`Document::of`], for `encode`) its keys are the type's own
//! `&'static str` field names.
//!
//! Why: building a `Value` allocates every key, every string and a `BTreeMap` per object, and was
//! the largest part of what `decode` and `encode` cost beyond plain serde (BENCHMARKS.md). The
//! tape is one `Vec` of slots filled by serde_json's own parser (the same tokenizer, number
//! parsing, escapes and depth limit as `serde_json::from_slice::<Value>`), read by the
//! `jsonschema` crate through its custom-representation traits ([`Tape`]), and read again by
//! serde to build the typed message ([`Tape::deserialize`]), without a `Value` in between.
//!
//! What keeps acceptance exactly as before: the tape is only ever a fast way to say "yes".
//! Anything it cannot mirror exactly (duplicate keys, which a `Value` resolves last-wins) makes
//! [`Document::parse`] report it, and the codec then takes the reference path; every refusal is
//! decided, and its error built, by the reference path (parse to `Value`, validate, deserialize),
//! so errors are the same text as ever. `tests/differential.rs` checks the two paths against
//! each other on generated and mutated messages of every contract.

use std::borrow::Cow;
use std::fmt;

use jsonschema::json::{Array, Json, Node, NodeIdentity, Object};
use jsonschema::JsonType;
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Map, Number, Value};

/// One node of the document. A container is followed by its members (an object's as key slot,
/// value subtree, key slot, …); `end` is the index just past its last descendant.
#[derive(Debug, Clone, PartialEq)]
enum Slot<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(Cow<'a, str>),
    Array { end: u32, len: u32 },
    Object { end: u32, len: u32 },
}

/// A parsed document; strings without escapes borrow from the bytes.
#[derive(Debug)]
pub(crate) struct Document<'a> {
    slots: Vec<Slot<'a>>,
    /// Some object repeats a key: a `Value` keeps the last, which the tape does not mirror.
    duplicate_keys: bool,
}

impl<'a> Document<'a> {
    /// Parses `bytes` exactly as `serde_json::from_slice::<Value>` would (same parser, same
    /// trailing-characters check), or fails where it fails.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        let mut slots = Vec::with_capacity(bytes.len() / 8 + 1);
        let mut duplicate_keys = false;
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        Builder {
            slots: &mut slots,
            duplicate_keys: &mut duplicate_keys,
        }
        .deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(Self {
            slots,
            duplicate_keys,
        })
    }

    /// Whether the tape reads exactly as the `Value` of the same bytes would.
    pub(crate) fn mirrors_value(&self) -> bool {
        !self.duplicate_keys && self.slots.len() < u32::MAX as usize
    }

    /// The root node, for the validator.
    pub(crate) fn root(&self) -> TapeNode<'_> {
        TapeNode {
            slots: &self.slots,
            at: 0,
        }
    }

    /// Deserializes `T` from the document as `serde_json::from_value` would from the `Value`
    /// after [`crate::integral_floats_to_integers`].
    pub(crate) fn deserialize<T: de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(TapeDeserializer {
            slots: &self.slots,
            at: 0,
        })
    }

    /// The `Value` of the root object's member `name`, if the root is an object that has it.
    pub(crate) fn member(&self, name: &str) -> Option<Value> {
        self.root()
            .as_object()?
            .members()
            .find(|(member, _)| *member == name)
            .map(|(_, value)| value_at(value.slots, value.at))
    }

    /// The `Value` the same bytes parse to (for tests).
    #[cfg(test)]
    fn to_value(&self) -> Value {
        self.root().to_value().into_owned()
    }
}

/// Index just past the subtree starting at `at`.
fn skip(slots: &[Slot<'_>], at: usize) -> usize {
    match slots[at] {
        Slot::Array { end, .. } | Slot::Object { end, .. } => end as usize,
        _ => at + 1,
    }
}

fn key<'s, 'a>(slots: &'s [Slot<'a>], at: usize) -> &'s Cow<'a, str> {
    match &slots[at] {
        Slot::Str(key) => key,
        other => unreachable!("an object member starts with its key, found {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Building the tape with serde_json's parser
// ---------------------------------------------------------------------------------------------

struct Builder<'s, 'a> {
    slots: &'s mut Vec<Slot<'a>>,
    duplicate_keys: &'s mut bool,
}

impl<'a> DeserializeSeed<'a> for Builder<'_, 'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'a> Visitor<'a> for Builder<'_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.slots.push(Slot::Bool(v));
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.slots.push(Slot::Number(v.into()));
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.slots.push(Slot::Number(v.into()));
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // As `Value`'s visitor: a float with no JSON number (never produced by the parser) is null.
        self.slots
            .push(Number::from_f64(v).map_or(Slot::Null, Slot::Number));
        Ok(())
    }

    fn visit_borrowed_str<E>(self, v: &'a str) -> Result<(), E> {
        self.slots.push(Slot::Str(Cow::Borrowed(v)));
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.slots.push(Slot::Str(Cow::Owned(v.to_owned())));
        Ok(())
    }

    fn visit_string<E>(self, v: String) -> Result<(), E> {
        self.slots.push(Slot::Str(Cow::Owned(v)));
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.slots.push(Slot::Null);
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        self.slots.push(Slot::Null);
        Ok(())
    }

    fn visit_some<D: Deserializer<'a>>(self, deserializer: D) -> Result<(), D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<(), A::Error> {
        let start = self.slots.len();
        self.slots.push(Slot::Array { end: 0, len: 0 });
        let mut len = 0u32;
        while seq
            .next_element_seed(Builder {
                slots: self.slots,
                duplicate_keys: self.duplicate_keys,
            })?
            .is_some()
        {
            len = len.saturating_add(1);
        }
        let end = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots[start] = Slot::Array { end, len };
        Ok(())
    }

    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        let start = self.slots.len();
        self.slots.push(Slot::Object { end: 0, len: 0 });
        // Where the first keys are, to find a repeated one as each key arrives (no allocation:
        // most objects have fewer; a larger one is checked whole at its end).
        let mut keys = [0u32; SCANNED_KEYS];
        let mut len = 0u32;
        while let Some(name) = map.next_key_seed(KeySeed)? {
            let at = self.slots.len();
            if (len as usize) < SCANNED_KEYS {
                let seen = &keys[..len as usize];
                if seen.iter().any(|&k| **key(self.slots, k as usize) == *name) {
                    *self.duplicate_keys = true;
                }
                keys[len as usize] = u32::try_from(at).unwrap_or(u32::MAX);
            }
            self.slots.push(Slot::Str(name));
            map.next_value_seed(Builder {
                slots: self.slots,
                duplicate_keys: self.duplicate_keys,
            })?;
            len = len.saturating_add(1);
        }
        let end = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots[start] = Slot::Object { end, len };
        if len as usize > SCANNED_KEYS && !*self.duplicate_keys {
            *self.duplicate_keys = repeats_a_key(self.slots, start);
        }
        Ok(())
    }
}

/// Keys of one object checked for repeats as they arrive.
const SCANNED_KEYS: usize = 16;

/// Whether the object at `object` names a key twice.
fn repeats_a_key(slots: &[Slot<'_>], object: usize) -> bool {
    let end = skip(slots, object);
    let mut names: Vec<&str> = Vec::new();
    let mut at = object + 1;
    while at < end {
        names.push(key(slots, at));
        at = skip(slots, at + 1);
    }
    names.sort_unstable();
    names.windows(2).any(|pair| pair[0] == pair[1])
}

struct KeySeed;

impl<'a> DeserializeSeed<'a> for KeySeed {
    type Value = Cow<'a, str>;

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<Cow<'a, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'a> Visitor<'a> for KeySeed {
    type Value = Cow<'a, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'a str) -> Result<Cow<'a, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cow<'a, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Cow<'a, str>, E> {
        Ok(Cow::Owned(v))
    }
}

// ---------------------------------------------------------------------------------------------
// Building the tape from a typed message (encode)
// ---------------------------------------------------------------------------------------------

impl Document<'static> {
    /// The document of `message` as `serde_json::to_value` would build it, and whether
    /// `serde_json::to_vec(message)` writes exactly the bytes `serde_json::to_vec` of that
    /// `Value` would: every object's keys arrive in the `Value`'s (sorted) order, none twice
    /// (otherwise [`Document::in_value_order`] writes them; a repeated key is reported by
    /// [`Document::mirrors_value`]). An error where this serializer does not follow `to_value`
    /// (`f32`, bytes, non-string map keys) only means the caller must take the reference path.
    pub(crate) fn of<T: serde::Serialize + ?Sized>(
        message: &T,
    ) -> Result<(Self, bool), Unsupported> {
        let mut document = Document {
            slots: Vec::with_capacity(64),
            duplicate_keys: false,
        };
        let mut in_order = true;
        message.serialize(SlotSerializer {
            slots: &mut document.slots,
            in_order: &mut in_order,
            duplicate_keys: &mut document.duplicate_keys,
        })?;
        Ok((document, in_order))
    }
}

/// The document as serde_json writes the `Value` of it: object members in key order.
pub(crate) struct InValueOrder<'d, 'a>(&'d [Slot<'a>], usize);

impl<'a> Document<'a> {
    /// The document to serialize as its `Value` would be.
    pub(crate) fn in_value_order(&self) -> InValueOrder<'_, 'a> {
        InValueOrder(&self.slots, 0)
    }
}

impl serde::Serialize for InValueOrder<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        let InValueOrder(slots, at) = *self;
        match &slots[at] {
            Slot::Null => serializer.serialize_unit(),
            Slot::Bool(value) => serializer.serialize_bool(*value),
            Slot::Number(number) => number.serialize(serializer),
            Slot::Str(text) => serializer.serialize_str(text),
            Slot::Array { end, len } => {
                let mut seq = serializer.serialize_seq(Some(*len as usize))?;
                let mut i = at + 1;
                while i < *end as usize {
                    seq.serialize_element(&InValueOrder(slots, i))?;
                    i = skip(slots, i);
                }
                seq.end()
            }
            Slot::Object { len, .. } => {
                // The members' key slots, sorted by key (on the stack for most objects).
                let mut few = [0usize; 16];
                let mut many = Vec::new();
                let members: &mut [usize] = if *len as usize <= few.len() {
                    &mut few[..*len as usize]
                } else {
                    many.resize(*len as usize, 0);
                    &mut many
                };
                let mut i = at + 1;
                for member in members.iter_mut() {
                    *member = i;
                    i = skip(slots, i + 1);
                }
                members.sort_unstable_by(|a, b| key(slots, *a).cmp(key(slots, *b)));
                let mut map = serializer.serialize_map(Some(members.len()))?;
                for &i in members.iter() {
                    map.serialize_entry(&**key(slots, i), &InValueOrder(slots, i + 1))?;
                }
                map.end()
            }
        }
    }
}

/// Something the tape's serializer leaves to `serde_json::to_value`.
#[derive(Debug)]
pub(crate) struct Unsupported(String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

impl serde::ser::Error for Unsupported {
    fn custom<M: fmt::Display>(message: M) -> Self {
        Unsupported(message.to_string())
    }
}

fn unsupported<T>(what: &str) -> Result<T, Unsupported> {
    Err(Unsupported(format!(
        "{what} is left to serde_json::to_value"
    )))
}

struct SlotSerializer<'s> {
    slots: &'s mut Vec<Slot<'static>>,
    in_order: &'s mut bool,
    duplicate_keys: &'s mut bool,
}

impl<'s> SlotSerializer<'s> {
    fn push(self, slot: Slot<'static>) -> Result<(), Unsupported> {
        self.slots.push(slot);
        Ok(())
    }

    fn flags(self) -> Flags<'s> {
        (self.slots, self.in_order, self.duplicate_keys)
    }
}

/// An array or object being filled; `start` is its slot.
struct Container<'s, 'k> {
    slots: &'s mut Vec<Slot<'static>>,
    in_order: &'s mut bool,
    start: usize,
    len: u32,
    /// The slot of the previous key (objects), to check the order and repeats.
    last_key: Option<usize>,
    /// A variant wrapping this container: `{"variant": …}`, closed with it.
    wrapped: Option<usize>,
    /// Some key came after a greater or equal one.
    unordered: bool,
    /// Set when an object repeats a key.
    duplicate_keys: &'s mut bool,
    _keys: std::marker::PhantomData<&'k ()>,
}

fn begin<'s>(
    (slots, in_order, duplicate_keys): Flags<'s>,
    object: bool,
    variant: Option<&'static str>,
) -> Container<'s, 'static> {
    let wrapped = variant.map(|name| {
        let at = slots.len();
        slots.push(Slot::Object { end: 0, len: 1 });
        slots.push(Slot::Str(Cow::Borrowed(name)));
        at
    });
    let start = slots.len();
    slots.push(if object {
        Slot::Object { end: 0, len: 0 }
    } else {
        Slot::Array { end: 0, len: 0 }
    });
    Container {
        slots,
        in_order,
        start,
        len: 0,
        last_key: None,
        wrapped,
        unordered: false,
        duplicate_keys,
        _keys: std::marker::PhantomData,
    }
}

impl Container<'_, '_> {
    fn element<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        self.len += 1;
        value.serialize(SlotSerializer {
            slots: self.slots,
            in_order: self.in_order,
            duplicate_keys: self.duplicate_keys,
        })
    }

    fn key(&mut self, name: Cow<'static, str>) {
        if let Some(last) = self.last_key {
            // Strictly ascending, as a `BTreeMap` iterates; otherwise the object is checked for
            // repeats when it closes.
            if **key(self.slots, last) >= *name {
                *self.in_order = false;
                self.unordered = true;
            }
        }
        self.last_key = Some(self.slots.len());
        self.slots.push(Slot::Str(name));
    }

    fn close(self) -> Result<(), Unsupported> {
        let end = u32::try_from(self.slots.len()).map_err(|_| Unsupported("size".into()))?;
        self.slots[self.start] = match self.slots[self.start] {
            Slot::Object { .. } => Slot::Object { end, len: self.len },
            _ => Slot::Array { end, len: self.len },
        };
        if let Some(at) = self.wrapped {
            self.slots[at] = Slot::Object { end, len: 1 };
        }
        if self.unordered && repeats_a_key(self.slots, self.start) {
            *self.duplicate_keys = true;
        }
        Ok(())
    }
}

/// What a serializer of the tape writes to.
type Flags<'s> = (&'s mut Vec<Slot<'static>>, &'s mut bool, &'s mut bool);

impl<'s> serde::Serializer for SlotSerializer<'s> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Container<'s, 'static>;
    type SerializeTuple = Container<'s, 'static>;
    type SerializeTupleStruct = Container<'s, 'static>;
    type SerializeTupleVariant = Container<'s, 'static>;
    type SerializeMap = Container<'s, 'static>;
    type SerializeStruct = Container<'s, 'static>;
    type SerializeStructVariant = Container<'s, 'static>;

    fn serialize_bool(self, v: bool) -> Result<(), Unsupported> {
        self.push(Slot::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<(), Unsupported> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Unsupported> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Unsupported> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Unsupported> {
        self.push(Slot::Number(v.into()))
    }
    fn serialize_u8(self, v: u8) -> Result<(), Unsupported> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Unsupported> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Unsupported> {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Unsupported> {
        self.push(Slot::Number(v.into()))
    }
    fn serialize_f32(self, _v: f32) -> Result<(), Unsupported> {
        // `to_value` widens it to f64 while `to_vec` writes the f32's own shortest digits.
        unsupported("an f32")
    }
    fn serialize_f64(self, v: f64) -> Result<(), Unsupported> {
        // As `to_value` (null) and `to_vec` (`null`) do with NaN and infinities.
        self.push(Number::from_f64(v).map_or(Slot::Null, Slot::Number))
    }
    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        self.push(Slot::Str(Cow::Owned(v.to_string())))
    }
    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        self.push(Slot::Str(Cow::Owned(v.to_owned())))
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), Unsupported> {
        unsupported("a byte string")
    }
    fn serialize_none(self) -> Result<(), Unsupported> {
        self.push(Slot::Null)
    }
    fn serialize_some<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<(), Unsupported> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Unsupported> {
        self.push(Slot::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Unsupported> {
        self.push(Slot::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Unsupported> {
        self.push(Slot::Str(Cow::Borrowed(variant)))
    }
    fn serialize_newtype_struct<T: serde::Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: serde::Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        let start = self.slots.len();
        self.slots.push(Slot::Object { end: 0, len: 1 });
        self.slots.push(Slot::Str(Cow::Borrowed(variant)));
        value.serialize(SlotSerializer {
            slots: self.slots,
            in_order: self.in_order,
            duplicate_keys: self.duplicate_keys,
        })?;
        let end = u32::try_from(self.slots.len()).map_err(|_| Unsupported("size".into()))?;
        self.slots[start] = Slot::Object { end, len: 1 };
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Unsupported> {
        Ok(begin(self.flags(), false, None))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Unsupported> {
        Ok(begin(self.flags(), false, None))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Unsupported> {
        Ok(begin(self.flags(), false, None))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        Ok(begin(self.flags(), false, Some(variant)))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Unsupported> {
        Ok(begin(self.flags(), true, None))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Unsupported> {
        Ok(begin(self.flags(), true, None))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        Ok(begin(self.flags(), true, Some(variant)))
    }
}

impl serde::ser::SerializeSeq for Container<'_, '_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_element<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), Unsupported> {
        self.element(value)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close()
    }
}

impl serde::ser::SerializeTuple for Container<'_, '_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_element<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), Unsupported> {
        self.element(value)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close()
    }
}

impl serde::ser::SerializeTupleStruct for Container<'_, '_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), Unsupported> {
        self.element(value)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close()
    }
}

impl serde::ser::SerializeTupleVariant for Container<'_, '_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), Unsupported> {
        self.element(value)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close()
    }
}

impl serde::ser::SerializeMap for Container<'_, '_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_key<T: serde::Serialize + ?Sized>(&mut self, name: &T) -> Result<(), Unsupported> {
        let name = name.serialize(KeySerializer)?;
        self.key(name);
        Ok(())
    }
    fn serialize_value<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), Unsupported> {
        self.element(value)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close()
    }
}

impl serde::ser::SerializeStruct for Container<'_, '_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: serde::Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        self.key(Cow::Borrowed(name));
        self.element(value)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close()
    }
}

impl serde::ser::SerializeStructVariant for Container<'_, '_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: serde::Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        self.key(Cow::Borrowed(name));
        self.element(value)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close()
    }
}

/// Map keys: strings only (anything `to_value` would convert is left to it).
struct KeySerializer;

impl serde::Serializer for KeySerializer {
    type Ok = Cow<'static, str>;
    type Error = Unsupported;
    type SerializeSeq = serde::ser::Impossible<Cow<'static, str>, Unsupported>;
    type SerializeTuple = serde::ser::Impossible<Cow<'static, str>, Unsupported>;
    type SerializeTupleStruct = serde::ser::Impossible<Cow<'static, str>, Unsupported>;
    type SerializeTupleVariant = serde::ser::Impossible<Cow<'static, str>, Unsupported>;
    type SerializeMap = serde::ser::Impossible<Cow<'static, str>, Unsupported>;
    type SerializeStruct = serde::ser::Impossible<Cow<'static, str>, Unsupported>;
    type SerializeStructVariant = serde::ser::Impossible<Cow<'static, str>, Unsupported>;

    fn serialize_str(self, v: &str) -> Result<Cow<'static, str>, Unsupported> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn serialize_newtype_struct<T: serde::Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Cow<'static, str>, Unsupported> {
        value.serialize(self)
    }
    fn serialize_bool(self, _v: bool) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_i8(self, _v: i8) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_i16(self, _v: i16) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_i32(self, _v: i32) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_i64(self, _v: i64) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_u8(self, _v: u8) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_u16(self, _v: u16) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_u32(self, _v: u32) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_u64(self, _v: u64) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_f32(self, _v: f32) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_f64(self, _v: f64) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_char(self, _v: char) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_none(self) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_some<T: serde::Serialize + ?Sized>(
        self,
        _value: &T,
    ) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_unit(self) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
    ) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_newtype_variant<T: serde::Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<Cow<'static, str>, Unsupported> {
        unsupported("a key")
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Unsupported> {
        unsupported("a key")
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Unsupported> {
        unsupported("a key")
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Unsupported> {
        unsupported("a key")
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        unsupported("a key")
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Unsupported> {
        unsupported("a key")
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Unsupported> {
        unsupported("a key")
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        unsupported("a key")
    }
}

// ---------------------------------------------------------------------------------------------
// The tape as a jsonschema instance representation
// ---------------------------------------------------------------------------------------------

/// The tape as an instance representation of the `jsonschema` crate (`options_for::<Tape>()`).
pub(crate) struct Tape;

/// One node of a [`Document`].
#[derive(Clone, Copy)]
pub(crate) struct TapeNode<'a> {
    slots: &'a [Slot<'a>],
    at: usize,
}

impl Json for Tape {
    type Node<'a> = TapeNode<'a>;
    type PreparedKey = Box<str>;
    type StringBuffer = ();

    /// A lookup scans the members, so one members pass beats lookups on any object of ours.
    const KEYS_PER_LOOKUP: usize = 8;
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> Box<str> {
        key.into()
    }

    fn with_string_node<T>((): &mut (), string: &str, f: impl FnOnce(TapeNode<'_>) -> T) -> T {
        let slots = [Slot::Str(Cow::Borrowed(string))];
        f(TapeNode {
            slots: &slots,
            at: 0,
        })
    }
}

impl<'a> TapeNode<'a> {
    fn slot(&self) -> &'a Slot<'a> {
        &self.slots[self.at]
    }

    fn str(&self) -> Option<&'a str> {
        match self.slot() {
            Slot::Str(text) => Some(text),
            _ => None,
        }
    }
}

impl<'a> Node<'a, Tape> for TapeNode<'a> {
    type Object = TapeObject<'a>;
    type Array = TapeArray<'a>;
    type Number = &'a Number;

    fn as_object(&self) -> Option<TapeObject<'a>> {
        match self.slot() {
            Slot::Object { end, len } => Some(TapeObject {
                slots: self.slots,
                at: self.at,
                end: *end as usize,
                len: *len as usize,
            }),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<TapeArray<'a>> {
        match self.slot() {
            Slot::Array { end, len } => Some(TapeArray {
                slots: self.slots,
                at: self.at,
                end: *end as usize,
                len: *len as usize,
            }),
            _ => None,
        }
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        self.str().map(Cow::Borrowed)
    }

    fn as_number(&self) -> Option<&'a Number> {
        match self.slot() {
            Slot::Number(number) => Some(number),
            _ => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match self.slot() {
            Slot::Bool(value) => Some(*value),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.slot(), Slot::Null)
    }

    fn json_type(&self) -> JsonType {
        match self.slot() {
            Slot::Null => JsonType::Null,
            Slot::Bool(_) => JsonType::Boolean,
            Slot::Number(_) => JsonType::Number,
            Slot::Str(_) => JsonType::String,
            Slot::Array { .. } => JsonType::Array,
            Slot::Object { .. } => JsonType::Object,
        }
    }

    fn string_length_within(&self, min: u64, max: u64) -> Option<bool> {
        let text = self.str()?;
        // A code point takes one to four bytes: the byte length often decides without counting.
        let bytes = text.len() as u64;
        if bytes < min || bytes.div_ceil(4) > max {
            return Some(false);
        }
        if min <= bytes.div_ceil(4) && bytes <= max {
            return Some(true);
        }
        Some((min..=max).contains(&(text.chars().count() as u64)))
    }

    fn equals_value(&self, expected: &Value) -> bool {
        match (self.slot(), expected) {
            (Slot::Str(text), Value::String(other)) => text == other,
            (Slot::Bool(value), Value::Bool(other)) => value == other,
            (Slot::Null, Value::Null) => true,
            (Slot::Number(number), Value::Number(other)) => {
                jsonschema::json::cmp::equal_numbers(number, other)
            }
            (Slot::Array { .. } | Slot::Object { .. }, _) => {
                jsonschema::json::cmp::equal(&self.to_value(), expected)
            }
            _ => false,
        }
    }

    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(value_at(self.slots, self.at))
    }

    fn identity(&self) -> Option<NodeIdentity> {
        Some(NodeIdentity::tagged(
            self.slots.as_ptr() as usize,
            u32::try_from(self.at).unwrap_or(u32::MAX),
        ))
    }
}

/// The `Value` of the subtree at `at` (cold: errors and container constants).
fn value_at(slots: &[Slot<'_>], at: usize) -> Value {
    match &slots[at] {
        Slot::Null => Value::Null,
        Slot::Bool(value) => Value::Bool(*value),
        Slot::Number(number) => Value::Number(number.clone()),
        Slot::Str(text) => Value::String(text.to_string()),
        Slot::Array { end, .. } => {
            let mut items = Vec::new();
            let mut i = at + 1;
            while i < *end as usize {
                items.push(value_at(slots, i));
                i = skip(slots, i);
            }
            Value::Array(items)
        }
        Slot::Object { end, .. } => {
            let mut fields = Map::new();
            let mut i = at + 1;
            while i < *end as usize {
                fields.insert(key(slots, i).to_string(), value_at(slots, i + 1));
                i = skip(slots, i + 1);
            }
            Value::Object(fields)
        }
    }
}

pub(crate) struct TapeObject<'a> {
    slots: &'a [Slot<'a>],
    at: usize,
    end: usize,
    len: usize,
}

pub(crate) struct Members<'a> {
    slots: &'a [Slot<'a>],
    next: usize,
    end: usize,
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, TapeNode<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let name = key(self.slots, self.next);
        let value = TapeNode {
            slots: self.slots,
            at: self.next + 1,
        };
        self.next = skip(self.slots, self.next + 1);
        Some((name, value))
    }
}

impl<'a> Object<'a, Tape> for TapeObject<'a> {
    type Node = TapeNode<'a>;
    type MemberName = &'a str;
    type MembersIter = Members<'a>;

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, wanted: &Box<str>) -> Option<TapeNode<'a>> {
        self.members()
            .find(|(name, _)| *name == &**wanted)
            .map(|(_, value)| value)
    }

    fn members(&self) -> Members<'a> {
        Members {
            slots: self.slots,
            next: self.at + 1,
            end: self.end,
        }
    }
}

pub(crate) struct TapeArray<'a> {
    slots: &'a [Slot<'a>],
    at: usize,
    end: usize,
    len: usize,
}

pub(crate) struct Elements<'a> {
    slots: &'a [Slot<'a>],
    next: usize,
    end: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = TapeNode<'a>;

    fn next(&mut self) -> Option<TapeNode<'a>> {
        if self.next >= self.end {
            return None;
        }
        let node = TapeNode {
            slots: self.slots,
            at: self.next,
        };
        self.next = skip(self.slots, self.next);
        Some(node)
    }
}

impl<'a> Array<'a, Tape> for TapeArray<'a> {
    type Node = TapeNode<'a>;
    type ElementsIter = Elements<'a>;

    fn len(&self) -> usize {
        self.len
    }

    fn elements(&self) -> Elements<'a> {
        Elements {
            slots: self.slots,
            next: self.at + 1,
            end: self.end,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the typed message back out of the tape
// ---------------------------------------------------------------------------------------------

/// Serde's view of one node, behaving as serde_json's `Value` deserializer does on the
/// normalized value (whole floats as integers, as [`crate::integral_floats_to_integers`]).
struct TapeDeserializer<'s, 'a> {
    slots: &'s [Slot<'a>],
    at: usize,
}

impl<'de> Deserializer<'de> for TapeDeserializer<'_, 'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match &self.slots[self.at] {
            Slot::Null => visitor.visit_unit(),
            Slot::Bool(value) => visitor.visit_bool(*value),
            Slot::Number(number) => crate::codec::integral(number).deserialize_any(visitor),
            Slot::Str(Cow::Borrowed(text)) => visitor.visit_borrowed_str(text),
            Slot::Str(Cow::Owned(text)) => visitor.visit_str(text),
            Slot::Array { end, len } => {
                let mut elements = TapeSeq {
                    slots: self.slots,
                    next: self.at + 1,
                    end: *end as usize,
                    left: *len as usize,
                };
                let value = visitor.visit_seq(&mut elements)?;
                match elements.left {
                    0 => Ok(value),
                    _ => Err(de::Error::invalid_length(
                        *len as usize,
                        &"fewer elements in array",
                    )),
                }
            }
            Slot::Object { end, len } => {
                let mut members = TapeMap {
                    slots: self.slots,
                    next: self.at + 1,
                    end: *end as usize,
                    left: *len as usize,
                };
                let value = visitor.visit_map(&mut members)?;
                match members.left {
                    0 => Ok(value),
                    _ => Err(de::Error::invalid_length(
                        *len as usize,
                        &"fewer elements in map",
                    )),
                }
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.slots[self.at] {
            Slot::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match &self.slots[self.at] {
            Slot::Str(Cow::Borrowed(text)) => {
                visitor.visit_enum(de::value::BorrowedStrDeserializer::new(text))
            }
            Slot::Str(Cow::Owned(text)) => visitor.visit_enum(text.as_str().into_deserializer()),
            Slot::Object { len: 1, .. } => visitor.visit_enum(TapeEnum {
                slots: self.slots,
                at: self.at + 1,
            }),
            _ => Err(de::Error::invalid_type(
                de::Unexpected::Other("not a string or a map of one entry"),
                &"an enum",
            )),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

struct TapeSeq<'s, 'a> {
    slots: &'s [Slot<'a>],
    next: usize,
    end: usize,
    left: usize,
}

impl<'de> SeqAccess<'de> for TapeSeq<'_, 'de> {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        if self.next >= self.end {
            return Ok(None);
        }
        let at = self.next;
        self.next = skip(self.slots, at);
        self.left -= 1;
        seed.deserialize(TapeDeserializer {
            slots: self.slots,
            at,
        })
        .map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

struct TapeMap<'s, 'a> {
    slots: &'s [Slot<'a>],
    next: usize,
    end: usize,
    left: usize,
}

fn key_deserializer<'s, 'de, T: DeserializeSeed<'de>>(
    seed: T,
    name: &'s Cow<'de, str>,
) -> Result<T::Value, serde_json::Error> {
    match name {
        Cow::Borrowed(text) => seed.deserialize(de::value::BorrowedStrDeserializer::new(text)),
        Cow::Owned(text) => seed.deserialize(text.as_str().into_deserializer()),
    }
}

impl<'de> MapAccess<'de> for TapeMap<'_, 'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        if self.next >= self.end {
            return Ok(None);
        }
        key_deserializer(seed, key(self.slots, self.next)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let at = self.next + 1;
        self.next = skip(self.slots, at);
        self.left -= 1;
        seed.deserialize(TapeDeserializer {
            slots: self.slots,
            at,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

/// An enum written as a map of one entry: the key names the variant.
struct TapeEnum<'s, 'a> {
    slots: &'s [Slot<'a>],
    /// The key slot.
    at: usize,
}

impl<'s, 'de> de::EnumAccess<'de> for TapeEnum<'s, 'de> {
    type Error = serde_json::Error;
    type Variant = TapeDeserializer<'s, 'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Self::Error> {
        let variant = key_deserializer(seed, key(self.slots, self.at))?;
        Ok((
            variant,
            TapeDeserializer {
                slots: self.slots,
                at: self.at + 1,
            },
        ))
    }
}

impl<'de> de::VariantAccess<'de> for TapeDeserializer<'_, 'de> {
    type Error = serde_json::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        de::Deserialize::deserialize(self)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.slots[self.at] {
            Slot::Array { .. } => self.deserialize_any(visitor),
            _ => Err(de::Error::invalid_type(
                de::Unexpected::Other("not an array"),
                &"tuple variant",
            )),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.slots[self.at] {
            Slot::Object { .. } => self.deserialize_any(visitor),
            _ => Err(de::Error::invalid_type(
                de::Unexpected::Other("not an object"),
                &"struct variant",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tape_reads_back_as_the_value_of_the_same_bytes() {
        let text = r#"{"a":[1,-2,3.5,"x\"y",null,true,{"b":{}}],"c":"","d":[],"e":1e3}"#;
        let document = Document::parse(text.as_bytes()).unwrap();
        assert!(document.mirrors_value());
        assert_eq!(
            document.to_value(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        let round: Value = document.deserialize().unwrap();
        let mut normalized = serde_json::from_str::<Value>(text).unwrap();
        crate::integral_floats_to_integers(&mut normalized);
        assert_eq!(round, normalized);
    }

    #[test]
    fn a_repeated_key_is_reported_at_any_depth() {
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let large = format!("{{{},\"k3\":0}}", many.join(","));
        let large_ok = format!("{{{}}}", many.join(","));
        assert!(Document::parse(large_ok.as_bytes())
            .unwrap()
            .mirrors_value());
        for text in [r#"{"a":1,"a":2}"#, r#"[{"x":{"b":1,"c":2,"b":3}}]"#, &large] {
            assert!(
                !Document::parse(text.as_bytes()).unwrap().mirrors_value(),
                "{text}"
            );
        }
        assert!(Document::parse(br#"{"a":{"a":1},"b":{"a":2}}"#)
            .unwrap()
            .mirrors_value());
    }

    #[test]
    fn what_serde_json_refuses_the_tape_refuses() {
        for text in ["", "{", "[1,]", "{\"a\":1} x", "01", "\"\\ud800\"", "1e400"] {
            assert_eq!(
                Document::parse(text.as_bytes()).is_ok(),
                serde_json::from_str::<Value>(text).is_ok(),
                "{text:?}"
            );
        }
    }
}
