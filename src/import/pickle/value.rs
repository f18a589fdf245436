//! The values a pickle yields: Python's data types and numpy arrays.

use std::borrow::Cow;
use std::fmt;

use super::bytes_to_text;

/// A value read from a pickle.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Python 2 `str` (raw bytes, whatever the encoding), Python 3 `bytes` and `bytearray`.
    Bytes(Vec<u8>),
    /// Python 2 `unicode`, Python 3 `str`.
    Str(String),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// Entries in insertion order; a repeated key keeps its first position and its last value, as
    /// a Python dict does.
    Dict(Vec<(Value, Value)>),
    Array(NdArray),
}

/// A numpy array, its elements in C (row-major) order whatever order it was pickled in.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    pub shape: Vec<usize>,
    pub data: ArrayData,
}

/// The elements of an [`NdArray`].
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl NdArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            ArrayData::F32(v) => v.len(),
            ArrayData::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `"float32"` or `"float64"`.
    pub fn dtype_name(&self) -> &'static str {
        match &self.data {
            ArrayData::F32(_) => "float32",
            ArrayData::F64(_) => "float64",
        }
    }

    /// The elements as `f32`, row-major (float64 elements are rounded to nearest).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            ArrayData::F32(v) => v.clone(),
            ArrayData::F64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The elements as `f64`, row-major.
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            ArrayData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::F64(v) => v.clone(),
        }
    }
}

impl Value {
    /// A short description of the value's type for error messages, e.g. `dict`, `float64[4, 8]`.
    pub fn type_name(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::Str(_) => "str".into(),
            Value::List(_) => "list".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::Dict(_) => "dict".into(),
            Value::Array(a) => format!("{}{:?}", a.dtype_name(), a.shape),
        }
    }

    /// The value as text: a `str`, or a Python 2 `str` (bytes) decoded as UTF-8, or as Latin-1
    /// when it is not valid UTF-8 (what Python 3 does with `encoding='latin1'`).
    pub fn as_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Value::Str(s) => Some(Cow::Borrowed(s)),
            Value::Bytes(b) => Some(bytes_to_text(b)),
            _ => None,
        }
    }

    /// An `int` (or `bool`) as `i64`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// A number (`float`, `int` or `bool`) as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
    }

    /// The entries of a dict.
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Looks up `key` in a dict whose keys are text (`str` or Python 2 `str`).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?.iter().find_map(|(k, v)| {
            let matches = match k {
                Value::Str(s) => s == key,
                Value::Bytes(b) => b.as_slice() == key.as_bytes(),
                _ => false,
            };
            matches.then_some(v)
        })
    }

    /// Converts to JSON: text-keyed dicts become objects, tuples and lists arrays, bytes text (as
    /// [`Value::as_text`]), non-finite floats the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.
    /// `None` for arrays and for dicts with non-text keys.
    pub fn to_json(&self) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        Some(match self {
            Value::None => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => J::Number(n),
                None if f.is_nan() => J::String("NaN".into()),
                None if *f > 0.0 => J::String("Infinity".into()),
                None => J::String("-Infinity".into()),
            },
            Value::Bytes(_) | Value::Str(_) => J::String(self.as_text()?.into_owned()),
            Value::List(items) | Value::Tuple(items) => {
                J::Array(items.iter().map(Value::to_json).collect::<Option<_>>()?)
            }
            Value::Dict(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    map.insert(k.as_text()?.into_owned(), v.to_json()?);
                }
                J::Object(map)
            }
            Value::Array(_) => return None,
        })
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => f.write_str("None"),
            Value::Bool(b) => write!(f, "{}", if *b { "True" } else { "False" }),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bytes(_) | Value::Str(_) => match self.as_text() {
                Some(t) => write!(f, "{t:?}"),
                None => f.write_str("?"),
            },
            other => f.write_str(&other.type_name()),
        }
    }
}
