//! A pickle reader that executes no code.
//!
//! Python's `pickle` is a small stack machine whose `GLOBAL`/`REDUCE`/`BUILD` opcodes can import
//! and call anything, which is why loading an untrusted pickle in Python runs arbitrary code. This
//! reader implements the stack machine for data only (protocols 0 to 5): `None`, bools, ints and
//! longs, floats, Python 2 `str` and Python 3 `bytes` (as [`Value::Bytes`]), `unicode`/`str` (as
//! [`Value::Str`]), tuples, lists, dicts and the memo. The only globals it accepts are the few
//! numpy needs to rebuild `float32`/`float64` arrays and scalars, and each is interpreted here,
//! never looked up or called:
//!
//! | global | why it is needed |
//! |---|---|
//! | `numpy.core.multiarray._reconstruct`, `numpy.ndarray` | every `ndarray.__reduce__` (numpy 1.x, all protocols below 5) |
//! | `numpy._core.multiarray._reconstruct` | the same under numpy 2 |
//! | `numpy.dtype` | the array's (and scalar's) dtype, with its byte order set by `BUILD` |
//! | `numpy.core.multiarray.scalar`, `numpy._core.multiarray.scalar` | numpy scalars: NeuralTalk's `perplexity` is a `numpy.float64` |
//! | `numpy.core.numeric._frombuffer`, `numpy._core.numeric._frombuffer` | arrays pickled by Python 3 with protocol 5 |
//! | `_codecs.encode` | how Python 3 writes `bytes` at protocol 2 (`encode(str, 'latin1')`) |
//!
//! `copy_reg._reconstructor` and `__builtin__.object` are not accepted: a NeuralTalk checkpoint
//! holds no instance of a Python class (only dicts, lists, numbers, strings and numpy arrays and
//! scalars), so nothing it contains is pickled through them. Any other global, and the opcodes
//! that instantiate classes (`INST`, `OBJ`, `NEWOBJ`, ...) or resolve persistent ids, are refused
//! with an error that names them.
//!
//! Hostile input yields a [`PickleError`], never a panic: every length is checked against the
//! bytes that remain before anything is allocated, the number of live objects is capped
//! ([`MAX_OBJECTS`]), so is the data materialised from shared memo entries (at most four times
//! the input), and the nesting depth of the result ([`MAX_DEPTH`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use crate::error::{Error, Result};

/// Deepest nesting of containers accepted in a result.
pub const MAX_DEPTH: usize = 100;

/// Data (strings, bytes, array elements) that reading may materialise, as a multiple of the
/// input's size: an array's bytes can exist as text, as bytes and as elements at once.
const DATA_FACTOR: usize = 4;

/// Most objects (stack entries, memo entries, marks and objects built) alive while reading.
pub const MAX_OBJECTS: usize = 1 << 22;

/// Why a pickle could not be read: the offset of the opcode at fault and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pickle byte {offset}: {message}")]
pub struct PickleError {
    /// Byte offset of the opcode being executed (or of the end of input).
    pub offset: usize,
    pub message: String,
}

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

/// UTF-8 if valid, else Latin-1 (every byte one code point).
pub fn bytes_to_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

/// Reads the pickle file at `path`.
pub fn load(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes).map_err(|e| Error::Import {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Reads one pickle from `input` (bytes after its `STOP` opcode are ignored, as Python does).
pub fn parse(input: &[u8]) -> std::result::Result<Value, PickleError> {
    let mut vm = Machine::new(input);
    let root = vm.run()?;
    let mut budget = Budget::new(input.len());
    let mut path = Vec::new();
    vm.to_value(root, 0, &mut budget, &mut path)
        .map_err(|message| PickleError {
            offset: vm.op_pos,
            message: if path.is_empty() {
                message
            } else {
                format!("at {}: {message}", path.join(""))
            },
        })
}

// ---------------------------------------------------------------------------------------------
// The machine
// ---------------------------------------------------------------------------------------------

/// Index of an object in the machine's arena. Containers hold ids, so the memo shares objects
/// the way Python does (a list memoised before its `APPENDS` is seen complete through `GET`).
type Id = usize;

/// The globals this reader interprets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Global {
    Reconstruct,
    NdArrayClass,
    Dtype,
    Scalar,
    FromBuffer,
    CodecsEncode,
}

impl Global {
    fn resolve(module: &str, name: &str) -> Option<Global> {
        Some(match (module, name) {
            ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => {
                Global::Reconstruct
            }
            ("numpy", "ndarray") => Global::NdArrayClass,
            ("numpy", "dtype") => Global::Dtype,
            ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => Global::Scalar,
            ("numpy.core.numeric" | "numpy._core.numeric", "_frombuffer") => Global::FromBuffer,
            ("_codecs", "encode") => Global::CodecsEncode,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Global::Reconstruct => "numpy.core.multiarray._reconstruct",
            Global::NdArrayClass => "numpy.ndarray",
            Global::Dtype => "numpy.dtype",
            Global::Scalar => "numpy.core.multiarray.scalar",
            Global::FromBuffer => "numpy.core.numeric._frombuffer",
            Global::CodecsEncode => "_codecs.encode",
        }
    }
}

const ALLOWED_GLOBALS: &str = "numpy.core.multiarray._reconstruct, numpy.ndarray, numpy.dtype, \
    numpy.core.multiarray.scalar, numpy.core.numeric._frombuffer (also under numpy._core) and \
    _codecs.encode";

/// A numpy dtype as pickled: its type string (`f8`, `<f4`, `i8`, ...) and the byte order its
/// state set (`<`, `>`, `=`, `|`).
#[derive(Debug, Clone)]
struct Dtype {
    typestr: String,
    byteorder: Option<char>,
}

/// An element type this reader can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    F32,
    F64,
}

impl Dtype {
    /// The kind character and item size, and the byte order (the state's, else the type
    /// string's prefix, else native).
    fn parts(&self) -> std::result::Result<(char, usize, char), String> {
        let mut chars = self.typestr.chars().peekable();
        let mut order = '=';
        if let Some(&c) = chars.peek()
            && matches!(c, '<' | '>' | '=' | '|')
        {
            order = c;
            chars.next();
        }
        let kind = chars
            .next()
            .ok_or_else(|| format!("numpy dtype {:?} is empty", self.typestr))?;
        let digits: String = chars.collect();
        let size: usize = digits
            .parse()
            .map_err(|_| format!("numpy dtype {:?} is not understood", self.typestr))?;
        let order = self.byteorder.unwrap_or(order);
        Ok((kind, size, order))
    }

    fn check_little_endian(&self, order: char) -> std::result::Result<(), String> {
        match order {
            // `=` is the writer's native order; every machine NeuralTalk or numpy users pickle
            // on (x86, ARM) is little-endian.
            '<' | '=' | '|' => Ok(()),
            '>' => Err(format!(
                "numpy dtype {:?} is big-endian; only little-endian arrays are supported \
                 (convert with arr.astype('<f8') before pickling)",
                self.typestr
            )),
            other => Err(format!(
                "numpy dtype byte order {other:?} is not understood"
            )),
        }
    }

    /// The float element type for arrays; other dtypes are refused.
    fn array_elem(&self) -> std::result::Result<Elem, String> {
        let (kind, size, order) = self.parts()?;
        let elem = match (kind, size) {
            ('f', 4) => Elem::F32,
            ('f', 8) => Elem::F64,
            _ => {
                return Err(format!(
                    "numpy arrays of dtype {:?} are not supported: only float32 ('f4') and \
                     float64 ('f8') arrays can be read",
                    self.typestr
                ));
            }
        };
        self.check_little_endian(order)?;
        Ok(elem)
    }
}

/// An object built by the machine.
#[derive(Debug)]
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    Str(String),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(Global),
    Dtype(Dtype),
    /// `_reconstruct(ndarray, (0,), 'b')` before its `BUILD`.
    ArrayStub,
    Array(NdArray),
}

impl Obj {
    fn kind(&self) -> &'static str {
        match self {
            Obj::None => "None",
            Obj::Bool(_) => "bool",
            Obj::Int(_) => "int",
            Obj::Float(_) => "float",
            Obj::Bytes(_) => "bytes",
            Obj::Str(_) => "str",
            Obj::List(_) => "list",
            Obj::Tuple(_) => "tuple",
            Obj::Dict(_) => "dict",
            Obj::Global(_) => "global",
            Obj::Dtype(_) => "numpy.dtype",
            Obj::ArrayStub => "numpy.ndarray (without state)",
            Obj::Array(_) => "numpy.ndarray",
        }
    }
}

/// Limits on what the result may materialise (shared memo entries are copied once per use).
struct Budget {
    nodes: usize,
    bytes: usize,
}

impl Budget {
    fn new(input_len: usize) -> Self {
        Budget {
            nodes: input_len.saturating_add(16),
            bytes: input_len.saturating_mul(DATA_FACTOR).saturating_add(4096),
        }
    }

    fn charge(&mut self, nodes: usize, bytes: usize) -> std::result::Result<(), String> {
        if nodes > self.nodes || bytes > self.bytes {
            return Err(
                "the pickle expands to far more data than it holds (shared references \
                 used over and over); refusing to materialise it"
                    .into(),
            );
        }
        self.nodes -= nodes;
        self.bytes -= bytes;
        Ok(())
    }
}

struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed.
    op_pos: usize,
    arena: Vec<Obj>,
    stack: Vec<Id>,
    /// Stack lengths at each `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
    /// Bytes of array and string data the arena may still hold.
    data_budget: usize,
}

type R<T> = std::result::Result<T, PickleError>;

impl<'a> Machine<'a> {
    fn new(input: &'a [u8]) -> Self {
        Machine {
            input,
            pos: 0,
            op_pos: 0,
            arena: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            data_budget: input.len().saturating_mul(DATA_FACTOR).saturating_add(4096),
        }
    }

    fn err<T>(&self, message: impl Into<String>) -> R<T> {
        Err(PickleError {
            offset: self.op_pos,
            message: message.into(),
        })
    }

    // --- input -----------------------------------------------------------------------------

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let remaining = self.input.len() - self.pos;
        if n > remaining {
            return self.err(format!(
                "truncated: the opcode needs {n} more bytes but only {remaining} remain"
            ));
        }
        let s = &self.input[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn take_len(&mut self, n: u64) -> R<&'a [u8]> {
        match usize::try_from(n) {
            Ok(n) => self.take(n),
            Err(_) => self.err(format!("length {n} is larger than the input")),
        }
    }

    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> R<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// A text argument: the bytes up to the next `\n` (excluded).
    fn line(&mut self) -> R<&'a [u8]> {
        let rest = &self.input[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                Ok(&rest[..i])
            }
            None => self.err("truncated: a text argument has no terminating newline"),
        }
    }

    fn ascii_line(&mut self) -> R<&'a str> {
        let line = self.line()?;
        match std::str::from_utf8(line) {
            Ok(s) => Ok(s.trim_end_matches('\r')),
            Err(_) => self.err("a text argument is not valid text"),
        }
    }

    // --- objects and the stack -----------------------------------------------------------------

    fn new_obj(&mut self, obj: Obj) -> R<Id> {
        let data = match &obj {
            Obj::Bytes(b) => b.len(),
            Obj::Str(s) => s.len(),
            Obj::Array(a) => array_bytes(a),
            _ => 0,
        };
        if data > self.data_budget {
            return self.err(
                "the pickle builds far more data than it holds (shared references used over \
                 and over); refusing to materialise it",
            );
        }
        self.data_budget -= data;
        self.arena.push(obj);
        Ok(self.arena.len() - 1)
    }

    fn push_new(&mut self, obj: Obj) -> R<()> {
        let id = self.new_obj(obj)?;
        self.stack.push(id);
        Ok(())
    }

    /// Length of the stack below which the current mark forbids popping.
    fn base(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> R<Id> {
        if self.stack.len() <= self.base() {
            return self.err("stack underflow: the opcode needs a value that is not there");
        }
        match self.stack.pop() {
            Some(id) => Ok(id),
            None => self.err("stack underflow"),
        }
    }

    fn top(&self) -> R<Id> {
        if self.stack.len() <= self.base() {
            return self.err("stack underflow: the opcode needs a value that is not there");
        }
        match self.stack.last() {
            Some(&id) => Ok(id),
            None => self.err("stack underflow"),
        }
    }

    fn pop_mark(&mut self) -> R<Vec<Id>> {
        match self.marks.pop() {
            Some(at) if at <= self.stack.len() => Ok(self.stack.split_off(at)),
            _ => self.err("the opcode needs a MARK that is not there"),
        }
    }

    fn memo_get(&mut self, key: u64) -> R<()> {
        match self.memo.get(&key) {
            Some(&id) => {
                self.stack.push(id);
                Ok(())
            }
            None => self.err(format!("memo entry {key} is read before it is written")),
        }
    }

    fn memo_put(&mut self, key: u64) -> R<()> {
        let id = self.top()?;
        self.memo.insert(key, id);
        Ok(())
    }

    fn check_limits(&self) -> R<()> {
        let live = self.stack.len() + self.arena.len() + self.marks.len() + self.memo.len();
        if live > MAX_OBJECTS {
            return self.err(format!(
                "more than {MAX_OBJECTS} objects; this is not a model checkpoint"
            ));
        }
        Ok(())
    }

    fn text_of(&self, id: Id) -> Option<&str> {
        match &self.arena[id] {
            Obj::Str(s) => Some(s),
            Obj::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    fn int_of(&self, id: Id) -> Option<i64> {
        match self.arena[id] {
            Obj::Int(i) => Some(i),
            Obj::Bool(b) => Some(i64::from(b)),
            _ => None,
        }
    }

    fn tuple_of(&self, id: Id) -> Option<&[Id]> {
        match &self.arena[id] {
            Obj::Tuple(items) => Some(items),
            _ => None,
        }
    }

    // --- the loop --------------------------------------------------------------------------

    fn run(&mut self) -> R<Id> {
        loop {
            self.op_pos = self.pos;
            if self.pos >= self.input.len() {
                return self.err("truncated: the pickle ends without a STOP opcode");
            }
            let op = self.u8()?;
            match op {
                b'.' => return self.pop(), // STOP
                0x80 => {
                    // PROTO
                    let v = self.u8()?;
                    if v > 5 {
                        return self.err(format!("pickle protocol {v} is not supported (0 to 5)"));
                    }
                }
                0x95 => {
                    // FRAME: a read-ahead hint; the bytes follow as ordinary opcodes.
                    self.array::<8>()?;
                }
                b'(' => self.marks.push(self.stack.len()), // MARK
                b'0' => {
                    // POP: with nothing above the mark, Python 3 drops the mark itself.
                    if self.stack.len() > self.base() {
                        self.pop()?;
                    } else {
                        self.pop_mark()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?; // POP_MARK
                }
                b'2' => {
                    let id = self.top()?; // DUP
                    self.stack.push(id);
                }

                // Scalars
                b'N' => self.push_new(Obj::None)?,
                0x88 => self.push_new(Obj::Bool(true))?,
                0x89 => self.push_new(Obj::Bool(false))?,
                b'I' => {
                    let text = self.ascii_line()?;
                    let obj = match text {
                        "00" => Obj::Bool(false),
                        "01" => Obj::Bool(true),
                        t => Obj::Int(self.parse_int(t)?),
                    };
                    self.push_new(obj)?;
                }
                b'L' => {
                    let text = self.ascii_line()?;
                    let t = text.strip_suffix('L').unwrap_or(text);
                    let i = self.parse_int(t)?;
                    self.push_new(Obj::Int(i))?;
                }
                b'J' => {
                    let i = i32::from_le_bytes(self.array()?);
                    self.push_new(Obj::Int(i64::from(i)))?;
                }
                b'K' => {
                    let i = self.u8()?;
                    self.push_new(Obj::Int(i64::from(i)))?;
                }
                b'M' => {
                    let i = u16::from_le_bytes(self.array()?);
                    self.push_new(Obj::Int(i64::from(i)))?;
                }
                0x8a => {
                    // LONG1
                    let n = self.u8()?;
                    let bytes = self.take(usize::from(n))?;
                    let i = self.long_bytes(bytes)?;
                    self.push_new(Obj::Int(i))?;
                }
                0x8b => {
                    // LONG4
                    let n = i32::from_le_bytes(self.array()?);
                    if n < 0 {
                        return self.err("LONG4 with a negative length");
                    }
                    let bytes = self.take_len(n as u64)?;
                    let i = self.long_bytes(bytes)?;
                    self.push_new(Obj::Int(i))?;
                }
                b'F' => {
                    let text = self.ascii_line()?;
                    let f: f64 = match text.trim().parse() {
                        Ok(f) => f,
                        Err(_) => return self.err(format!("FLOAT {text:?} is not a number")),
                    };
                    self.push_new(Obj::Float(f))?;
                }
                b'G' => {
                    let f = f64::from_be_bytes(self.array()?);
                    self.push_new(Obj::Float(f))?;
                }

                // Strings
                b'S' => {
                    let line = self.line()?;
                    let bytes = match decode_py2_string_literal(line) {
                        Ok(b) => b,
                        Err(e) => return self.err(format!("STRING: {e}")),
                    };
                    self.push_new(Obj::Bytes(bytes))?;
                }
                b'T' => {
                    let n = i32::from_le_bytes(self.array()?);
                    if n < 0 {
                        return self.err("BINSTRING with a negative length");
                    }
                    let b = self.take_len(n as u64)?.to_vec();
                    self.push_new(Obj::Bytes(b))?;
                }
                b'U' => {
                    let n = self.u8()?;
                    let b = self.take(usize::from(n))?.to_vec();
                    self.push_new(Obj::Bytes(b))?;
                }
                b'V' => {
                    let line = self.line()?;
                    let s = match decode_raw_unicode_escape(line) {
                        Ok(s) => s,
                        Err(e) => return self.err(format!("UNICODE: {e}")),
                    };
                    self.push_new(Obj::Str(s))?;
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.array()?);
                    let b = self.take_len(u64::from(n))?;
                    self.push_utf8(b)?;
                }
                0x8c => {
                    let n = self.u8()?;
                    let b = self.take(usize::from(n))?;
                    self.push_utf8(b)?;
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.array()?);
                    let b = self.take_len(n)?;
                    self.push_utf8(b)?;
                }
                b'B' => {
                    let n = u32::from_le_bytes(self.array()?);
                    let b = self.take_len(u64::from(n))?.to_vec();
                    self.push_new(Obj::Bytes(b))?;
                }
                b'C' => {
                    let n = self.u8()?;
                    let b = self.take(usize::from(n))?.to_vec();
                    self.push_new(Obj::Bytes(b))?;
                }
                0x8e | 0x96 => {
                    // BINBYTES8, BYTEARRAY8
                    let n = u64::from_le_bytes(self.array()?);
                    let b = self.take_len(n)?.to_vec();
                    self.push_new(Obj::Bytes(b))?;
                }
                0x98 => {
                    // READONLY_BUFFER: only marks the buffer on top read-only.
                    self.top()?;
                }
                0x97 => {
                    return self.err(
                        "NEXT_BUFFER: the pickle refers to out-of-band buffers, which a file \
                         cannot supply; pickle it with protocol 4 or without a buffer_callback",
                    );
                }

                // Containers
                b')' => self.push_new(Obj::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_new(Obj::Tuple(items))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < self.base() + n {
                        return self.err("stack underflow: TUPLE1/2/3 without enough values");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push_new(Obj::Tuple(items))?;
                }
                b']' => self.push_new(Obj::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push_new(Obj::List(items))?;
                }
                b'a' => {
                    let item = self.pop()?;
                    let list = self.top()?;
                    self.extend_list(list, std::iter::once(item))?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.extend_list(list, items)?;
                }
                b'}' => self.push_new(Obj::Dict(Vec::new()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.push_new(Obj::Dict(pairs))?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let dict = self.top()?;
                    self.extend_dict(dict, vec![(key, value)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    let dict = self.top()?;
                    self.extend_dict(dict, pairs)?;
                }

                // Memo
                b'g' => {
                    let key = self.memo_key_line()?;
                    self.memo_get(key)?;
                }
                b'h' => {
                    let key = self.u8()?;
                    self.memo_get(u64::from(key))?;
                }
                b'j' => {
                    let key = u32::from_le_bytes(self.array()?);
                    self.memo_get(u64::from(key))?;
                }
                b'p' => {
                    let key = self.memo_key_line()?;
                    self.memo_put(key)?;
                }
                b'q' => {
                    let key = self.u8()?;
                    self.memo_put(u64::from(key))?;
                }
                b'r' => {
                    let key = u32::from_le_bytes(self.array()?);
                    self.memo_put(u64::from(key))?;
                }
                0x94 => {
                    let key = self.memo.len() as u64; // MEMOIZE
                    self.memo_put(key)?;
                }

                // Globals and calls
                b'c' => {
                    let module = self.ascii_line()?;
                    let name = self.ascii_line()?;
                    let g = self.global(module, name)?;
                    self.push_new(Obj::Global(g))?;
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Obj::Str(module), Obj::Str(name)) =
                        (&self.arena[module], &self.arena[name])
                    else {
                        return self.err("STACK_GLOBAL needs two str values");
                    };
                    let (module, name) = (module.clone(), name.clone());
                    let g = self.global(&module, &name)?;
                    self.push_new(Obj::Global(g))?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let obj = self.reduce(callable, args)?;
                    self.push_new(obj)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.top()?;
                    self.build(obj, state)?;
                }

                // Refused
                b'i' => {
                    let module = self.ascii_line()?.to_string();
                    let name = self.ascii_line()?;
                    return self.err(format!(
                        "INST {module}.{name}: this reader does not create instances of Python \
                         classes"
                    ));
                }
                b'o' | 0x81 | 0x92 => {
                    let name = match op {
                        b'o' => "OBJ",
                        0x81 => "NEWOBJ",
                        _ => "NEWOBJ_EX",
                    };
                    return self.err(format!(
                        "{name}: this reader does not create instances of Python classes"
                    ));
                }
                b'P' | b'Q' => {
                    return self.err(
                        "persistent ids (PERSID/BINPERSID) are not supported: this is not a \
                         plain pickle (a torch checkpoint? use the .pth weight import)",
                    );
                }
                0x82..=0x84 => {
                    return self.err("extension registry codes (EXT1/2/4) are not supported");
                }
                0x8f..=0x91 => {
                    return self.err("sets (EMPTY_SET/ADDITEMS/FROZENSET) are not supported");
                }
                other => {
                    return self.err(format!(
                        "invalid opcode 0x{other:02x}: the file is not a pickle or is corrupt"
                    ));
                }
            }
            self.check_limits()?;
        }
    }

    fn parse_int(&self, text: &str) -> R<i64> {
        match text.trim().parse::<i64>() {
            Ok(i) => Ok(i),
            Err(_) => self.err(format!(
                "integer {:?} is not an integer or does not fit in 64 bits",
                truncate(text)
            )),
        }
    }

    /// A little-endian two's-complement integer (LONG1/LONG4), which must fit in an `i64`.
    fn long_bytes(&self, bytes: &[u8]) -> R<i64> {
        let Some(&last) = bytes.last() else {
            return Ok(0);
        };
        let fill = if last & 0x80 != 0 { 0xff } else { 0 };
        if bytes.len() > 8 {
            // Allowed only when the extra bytes are sign extension.
            let sign_ok =
                bytes[8..].iter().all(|&b| b == fill) && ((bytes[7] & 0x80 != 0) == (fill == 0xff));
            if !sign_ok {
                return self.err("integer does not fit in 64 bits");
            }
        }
        let mut buf = [fill; 8];
        let n = bytes.len().min(8);
        buf[..n].copy_from_slice(&bytes[..n]);
        Ok(i64::from_le_bytes(buf))
    }

    fn memo_key_line(&mut self) -> R<u64> {
        let text = self.ascii_line()?;
        match text.trim().parse::<u64>() {
            Ok(k) => Ok(k),
            Err(_) => self.err(format!("memo key {:?} is not a number", truncate(text))),
        }
    }

    fn push_utf8(&mut self, bytes: &[u8]) -> R<()> {
        match std::str::from_utf8(bytes) {
            Ok(s) => self.push_new(Obj::Str(s.to_string())),
            Err(_) => self.err("a unicode string is not valid UTF-8"),
        }
    }

    fn pairs(&self, items: Vec<Id>) -> R<Vec<(Id, Id)>> {
        if !items.len().is_multiple_of(2) {
            return self.err("a dict needs key/value pairs but got an odd number of values");
        }
        Ok(items.chunks_exact(2).map(|p| (p[0], p[1])).collect())
    }

    fn extend_list(&mut self, list: Id, items: impl IntoIterator<Item = Id>) -> R<()> {
        match &mut self.arena[list] {
            Obj::List(v) => {
                v.extend(items);
                Ok(())
            }
            other => {
                let kind = other.kind();
                self.err(format!("APPEND to a {kind}, not a list"))
            }
        }
    }

    fn extend_dict(&mut self, dict: Id, pairs: Vec<(Id, Id)>) -> R<()> {
        match &mut self.arena[dict] {
            Obj::Dict(v) => {
                v.extend(pairs);
                Ok(())
            }
            other => {
                let kind = other.kind();
                self.err(format!("SETITEM on a {kind}, not a dict"))
            }
        }
    }

    fn global(&self, module: &str, name: &str) -> R<Global> {
        match Global::resolve(module, name) {
            Some(g) => Ok(g),
            None => self.err(format!(
                "global '{}.{}' is not allowed: this reader executes no code and only accepts \
                 {ALLOWED_GLOBALS}",
                truncate(module),
                truncate(name)
            )),
        }
    }

    // --- REDUCE and BUILD for the allowed globals -----------------------------------------------

    fn reduce(&mut self, callable: Id, args: Id) -> R<Obj> {
        let Obj::Global(g) = self.arena[callable] else {
            let kind = self.arena[callable].kind();
            return self.err(format!("REDUCE calls a {kind}, which is not callable here"));
        };
        let Some(args) = self.tuple_of(args).map(<[Id]>::to_vec) else {
            return self.err(format!("REDUCE of {} without an argument tuple", g.name()));
        };
        match g {
            Global::Reconstruct => {
                // _reconstruct(numpy.ndarray, (0,), b'b'): an empty array that BUILD fills.
                match args.first().map(|&a| &self.arena[a]) {
                    Some(Obj::Global(Global::NdArrayClass)) => Ok(Obj::ArrayStub),
                    _ => self.err("numpy _reconstruct must be called with numpy.ndarray"),
                }
            }
            Global::Dtype => {
                let Some(typestr) = args.first().and_then(|&a| self.text_of(a)) else {
                    return self.err("numpy.dtype must be called with a type string");
                };
                Ok(Obj::Dtype(Dtype {
                    typestr: typestr.to_string(),
                    byteorder: None,
                }))
            }
            Global::Scalar => {
                let (Some(&dtype), Some(&data)) = (args.first(), args.get(1)) else {
                    return self.err("numpy scalar needs a dtype and its bytes");
                };
                let (Obj::Dtype(dtype), Obj::Bytes(data)) = (&self.arena[dtype], &self.arena[data])
                else {
                    return self.err("numpy scalar needs a dtype and its bytes");
                };
                match scalar(dtype, data) {
                    Ok(obj) => Ok(obj),
                    Err(e) => self.err(e),
                }
            }
            Global::FromBuffer => {
                // _frombuffer(buffer, dtype, shape, order)
                let [buf, dtype, shape, order] = args[..] else {
                    return self.err("numpy _frombuffer needs (buffer, dtype, shape, order)");
                };
                let fortran = match self.text_of(order) {
                    Some("C") => false,
                    Some("F") => true,
                    _ => return self.err("numpy _frombuffer order must be 'C' or 'F'"),
                };
                let shape = self.shape_of(shape)?;
                let (Obj::Bytes(data), Obj::Dtype(dtype)) = (&self.arena[buf], &self.arena[dtype])
                else {
                    return self.err("numpy _frombuffer needs bytes and a dtype");
                };
                match make_array(shape, dtype, fortran, data) {
                    Ok(a) => Ok(Obj::Array(a)),
                    Err(e) => self.err(e),
                }
            }
            Global::CodecsEncode => {
                // _codecs.encode(text, 'latin1'): Python 3's protocol-2 form of bytes.
                let text = args.first().and_then(|&a| match &self.arena[a] {
                    Obj::Str(s) => Some(s.as_str()),
                    _ => None,
                });
                let encoding = args.get(1).and_then(|&a| self.text_of(a));
                match (text, encoding) {
                    (Some(text), Some("latin1" | "latin-1" | "iso-8859-1")) => {
                        let mut out = Vec::with_capacity(text.len());
                        for c in text.chars() {
                            match u8::try_from(u32::from(c)) {
                                Ok(b) => out.push(b),
                                Err(_) => {
                                    return self
                                        .err("_codecs.encode: a character is outside Latin-1");
                                }
                            }
                        }
                        Ok(Obj::Bytes(out))
                    }
                    _ => self.err("_codecs.encode is only accepted as encode(str, 'latin1')"),
                }
            }
            Global::NdArrayClass => {
                self.err("numpy.ndarray may only appear as the argument of _reconstruct")
            }
        }
    }

    fn shape_of(&self, id: Id) -> R<Vec<usize>> {
        let Some(items) = self.tuple_of(id) else {
            return self.err("a numpy shape must be a tuple of ints");
        };
        items
            .iter()
            .map(|&d| match self.int_of(d).map(usize::try_from) {
                Some(Ok(d)) => Ok(d),
                _ => self.err("a numpy shape must be a tuple of non-negative ints"),
            })
            .collect()
    }

    fn build(&mut self, obj: Id, state: Id) -> R<()> {
        match &self.arena[obj] {
            Obj::ArrayStub => {
                let Some(state) = self.tuple_of(state).map(<[Id]>::to_vec) else {
                    return self.err("numpy array state must be a tuple");
                };
                // (version, shape, dtype, is_fortran, data), or the old form without version.
                let fields = match state.len() {
                    5 => &state[1..],
                    4 => &state[..],
                    n => {
                        return self.err(format!(
                            "numpy array state has {n} fields, expected 5 (version, shape, \
                             dtype, is_fortran, data)"
                        ));
                    }
                };
                let shape = self.shape_of(fields[0])?;
                let Some(fortran) = self.int_of(fields[2]) else {
                    return self.err("numpy array state: is_fortran must be a bool");
                };
                let Obj::Dtype(dtype) = &self.arena[fields[1]] else {
                    return self.err("numpy array state: the second field must be a numpy.dtype");
                };
                let data = match &self.arena[fields[3]] {
                    Obj::Bytes(b) => b,
                    Obj::List(_) => {
                        return self.err(
                            "numpy arrays of Python objects (dtype 'O') are not supported: only \
                             float32 and float64 arrays can be read",
                        );
                    }
                    other => {
                        let kind = other.kind();
                        return self.err(format!("numpy array data is a {kind}, not bytes"));
                    }
                };
                let array = match make_array(shape, dtype, fortran != 0, data) {
                    Ok(a) => a,
                    Err(e) => return self.err(e),
                };
                let n = array_bytes(&array);
                if n > self.data_budget {
                    return self.err(
                        "the pickle builds far more data than it holds (shared references \
                         used over and over); refusing to materialise it",
                    );
                }
                self.data_budget -= n;
                self.arena[obj] = Obj::Array(array);
                Ok(())
            }
            Obj::Dtype(_) => {
                // (version, byteorder, subarray, names, fields, elsize, alignment, flags[, meta])
                let order = self
                    .tuple_of(state)
                    .and_then(|s| s.get(1).copied())
                    .and_then(|o| self.text_of(o))
                    .and_then(|o| {
                        let mut cs = o.chars();
                        match (cs.next(), cs.next()) {
                            (Some(c), None) => Some(c),
                            _ => None,
                        }
                    });
                let Some(order) = order else {
                    return self.err("numpy dtype state must be a tuple with a byte order");
                };
                if let Obj::Dtype(d) = &mut self.arena[obj] {
                    d.byteorder = Some(order);
                }
                Ok(())
            }
            other => {
                let kind = other.kind();
                self.err(format!("BUILD on a {kind} is not supported"))
            }
        }
    }

    // --- the result ------------------------------------------------------------------------------

    fn to_value(
        &self,
        id: Id,
        depth: usize,
        budget: &mut Budget,
        path: &mut Vec<String>,
    ) -> std::result::Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "containers nested deeper than {MAX_DEPTH} levels (or a container that holds \
                 itself)"
            ));
        }
        Ok(match &self.arena[id] {
            Obj::None => {
                budget.charge(1, 0)?;
                Value::None
            }
            Obj::Bool(b) => {
                budget.charge(1, 0)?;
                Value::Bool(*b)
            }
            Obj::Int(i) => {
                budget.charge(1, 0)?;
                Value::Int(*i)
            }
            Obj::Float(f) => {
                budget.charge(1, 0)?;
                Value::Float(*f)
            }
            Obj::Bytes(b) => {
                budget.charge(1, b.len())?;
                Value::Bytes(b.clone())
            }
            Obj::Str(s) => {
                budget.charge(1, s.len())?;
                Value::Str(s.clone())
            }
            Obj::Array(a) => {
                budget.charge(1, array_bytes(a))?;
                Value::Array(a.clone())
            }
            Obj::List(items) | Obj::Tuple(items) => {
                budget.charge(1, 0)?;
                let mut out = Vec::with_capacity(items.len());
                for (i, &item) in items.iter().enumerate() {
                    path.push(format!("[{i}]"));
                    out.push(self.to_value(item, depth + 1, budget, path)?);
                    path.pop();
                }
                if matches!(self.arena[id], Obj::List(_)) {
                    Value::List(out)
                } else {
                    Value::Tuple(out)
                }
            }
            Obj::Dict(pairs) => {
                budget.charge(1, 0)?;
                let mut out: Vec<(Value, Value)> = Vec::with_capacity(pairs.len());
                let mut index: HashMap<Key, usize> = HashMap::with_capacity(pairs.len());
                for &(k, v) in pairs {
                    let key = self.to_value(k, depth + 1, budget, path)?;
                    path.push(format!("[{}]", describe_key(&key)));
                    let hashed = Key::of(&key)?;
                    let value = self.to_value(v, depth + 1, budget, path)?;
                    path.pop();
                    match index.get(&hashed) {
                        Some(&i) => out[i].1 = value,
                        None => {
                            index.insert(hashed, out.len());
                            out.push((key, value));
                        }
                    }
                }
                Value::Dict(out)
            }
            Obj::Global(g) => {
                return Err(format!(
                    "the result holds the global {} itself, which is not data",
                    g.name()
                ));
            }
            Obj::Dtype(d) => {
                return Err(format!(
                    "the result holds a numpy dtype ({:?}) on its own, which is not supported",
                    d.typestr
                ));
            }
            Obj::ArrayStub => {
                return Err("a numpy array was never given its state (BUILD missing)".into());
            }
        })
    }
}

/// A dict key, hashed as Python would compare it (`True == 1 == 1.0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    None,
    Int(i64),
    Float(u64),
    Bytes(Vec<u8>),
    Str(String),
    Tuple(Vec<Key>),
}

impl Key {
    fn of(v: &Value) -> std::result::Result<Key, String> {
        Ok(match v {
            Value::None => Key::None,
            Value::Bool(b) => Key::Int(i64::from(*b)),
            Value::Int(i) => Key::Int(*i),
            Value::Float(f) => {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    Key::Int(*f as i64)
                } else {
                    Key::Float(f.to_bits())
                }
            }
            Value::Bytes(b) => Key::Bytes(b.clone()),
            Value::Str(s) => Key::Str(s.clone()),
            Value::Tuple(items) => Key::Tuple(items.iter().map(Key::of).collect::<Result<_, _>>()?),
            other => return Err(format!("a {} cannot be a dict key", other.type_name())),
        })
    }
}

fn describe_key(key: &Value) -> String {
    match key {
        Value::Str(_) | Value::Bytes(_) => match key.as_text() {
            Some(t) => format!("{:?}", truncate(&t)),
            None => key.type_name(),
        },
        Value::Int(i) => i.to_string(),
        other => other.type_name(),
    }
}

fn truncate(s: &str) -> Cow<'_, str> {
    if s.chars().count() <= 80 {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("{}...", s.chars().take(80).collect::<String>()))
    }
}

/// Builds an array from raw little-endian bytes in C or Fortran order.
fn make_array(
    shape: Vec<usize>,
    dtype: &Dtype,
    fortran: bool,
    data: &[u8],
) -> std::result::Result<NdArray, String> {
    let elem = dtype.array_elem()?;
    let itemsize = match elem {
        Elem::F32 => 4,
        Elem::F64 => 8,
    };
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|n| n.checked_mul(itemsize).is_some())
        .ok_or_else(|| format!("numpy array shape {shape:?} is impossibly large"))?;
    if count * itemsize != data.len() {
        return Err(format!(
            "numpy array of shape {shape:?} and dtype {:?} needs {} bytes but its data has {}",
            dtype.typestr,
            count * itemsize,
            data.len()
        ));
    }
    let order = if fortran && shape.len() > 1 && count > 0 {
        Some(fortran_to_c_order(&shape))
    } else {
        None
    };
    let data = match elem {
        Elem::F32 => {
            let raw: Vec<f32> = data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            ArrayData::F32(match order {
                Some(order) => order.iter().map(|&i| raw[i]).collect(),
                None => raw,
            })
        }
        Elem::F64 => {
            let raw: Vec<f64> = data
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    f64::from_le_bytes(b)
                })
                .collect();
            ArrayData::F64(match order {
                Some(order) => order.iter().map(|&i| raw[i]).collect(),
                None => raw,
            })
        }
    };
    Ok(NdArray { shape, data })
}

fn array_bytes(a: &NdArray) -> usize {
    match &a.data {
        ArrayData::F32(v) => v.len() * 4,
        ArrayData::F64(v) => v.len() * 8,
    }
}

/// For each element in C order, its index in Fortran (column-major) order.
fn fortran_to_c_order(shape: &[usize]) -> Vec<usize> {
    let count: usize = shape.iter().product();
    // Fortran strides: the first axis varies fastest.
    let mut strides = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        strides[k] = strides[k - 1] * shape[k - 1];
    }
    let mut out = Vec::with_capacity(count);
    let mut idx = vec![0usize; shape.len()];
    let mut offset = 0usize;
    for _ in 0..count {
        out.push(offset);
        // Increment the C-order multi-index (last axis fastest).
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            offset += strides[k];
            if idx[k] < shape[k] {
                break;
            }
            offset -= strides[k] * shape[k];
            idx[k] = 0;
        }
    }
    out
}

/// A numpy scalar from its dtype and raw bytes: floats and integers.
fn scalar(dtype: &Dtype, data: &[u8]) -> std::result::Result<Obj, String> {
    let (kind, size, order) = dtype.parts()?;
    dtype.check_little_endian(order)?;
    if data.len() != size {
        return Err(format!(
            "numpy scalar of dtype {:?} has {} bytes, expected {size}",
            dtype.typestr,
            data.len()
        ));
    }
    let mut buf = [0u8; 8];
    Ok(match (kind, size) {
        ('f', 4) => Obj::Float(f64::from(f32::from_le_bytes([
            data[0], data[1], data[2], data[3],
        ]))),
        ('f', 8) => {
            buf.copy_from_slice(data);
            Obj::Float(f64::from_le_bytes(buf))
        }
        ('i', 1 | 2 | 4 | 8) => {
            let fill = if data[size - 1] & 0x80 != 0 { 0xff } else { 0 };
            buf = [fill; 8];
            buf[..size].copy_from_slice(data);
            Obj::Int(i64::from_le_bytes(buf))
        }
        ('u', 1 | 2 | 4 | 8) => {
            buf[..size].copy_from_slice(data);
            match i64::try_from(u64::from_le_bytes(buf)) {
                Ok(i) => Obj::Int(i),
                Err(_) => return Err("numpy uint64 scalar does not fit in 64-bit signed".into()),
            }
        }
        ('b', 1) => Obj::Bool(data[0] != 0),
        _ => {
            return Err(format!(
                "numpy scalars of dtype {:?} are not supported (floats, ints and bools are)",
                dtype.typestr
            ));
        }
    })
}

/// Decodes a protocol-0 `STRING` argument: a Python 2 quoted literal (`'...'` or `"..."`), with
/// the escapes of Python 2's `string_escape` codec. The result is raw bytes.
pub fn decode_py2_string_literal(line: &[u8]) -> std::result::Result<Vec<u8>, String> {
    // Python 2 strips trailing whitespace and control characters (e.g. a `\r`) first.
    let mut end = line.len();
    while end > 0 && line[end - 1] <= b' ' {
        end -= 1;
    }
    let line = &line[..end];
    let quoted =
        line.len() >= 2 && (line[0] == b'\'' || line[0] == b'"') && line[line.len() - 1] == line[0];
    if !quoted {
        return Err("the argument must be a quoted string".into());
    }
    let body = &line[1..line.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = body.get(i) else {
            return Err("trailing \\ in string".into());
        };
        i += 1;
        match e {
            b'\n' => {} // line continuation
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8); // Python stores it in a char
            }
            b'x' => {
                let hex = body
                    .get(i..i + 2)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) if body[i..i + 2].iter().all(u8::is_ascii_hexdigit) => {
                        out.push(b);
                        i += 2;
                    }
                    _ => return Err("invalid \\x escape".into()),
                }
            }
            other => {
                // Unknown escapes are kept as they are.
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// Decodes a protocol-0 `UNICODE` argument: Python's `raw-unicode-escape`, Latin-1 bytes with
/// `\uXXXX` and `\UXXXXXXXX` escapes (interpreted only after an odd number of backslashes).
pub fn decode_raw_unicode_escape(line: &[u8]) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        i += 1;
        if c != b'\\' || i >= line.len() {
            out.push(char::from(c));
            continue;
        }
        let digits = match line[i] {
            b'u' => 4,
            b'U' => 8,
            other => {
                out.push('\\');
                out.push(char::from(other));
                i += 1;
                continue;
            }
        };
        let hex = line
            .get(i + 1..i + 1 + digits)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok());
        let Some(code) = hex else {
            return Err("truncated \\uXXXX escape".into());
        };
        let Some(ch) = char::from_u32(code) else {
            return Err(format!(
                "\\u escape {code:#x} is not a Unicode scalar value"
            ));
        };
        out.push(ch);
        i += 1 + digits;
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(bytes: &[u8]) -> Value {
        parse(bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(bytes: &[u8]) -> PickleError {
        match parse(bytes) {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e,
        }
    }

    fn s(text: &str) -> Value {
        Value::Str(text.into())
    }

    fn b(bytes: &[u8]) -> Value {
        Value::Bytes(bytes.to_vec())
    }

    /// Little-endian f64 bytes as a Python 2 repr'd STRING literal (what cPickle writes).
    fn py2_repr(bytes: &[u8]) -> Vec<u8> {
        let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
            b'"'
        } else {
            b'\''
        };
        let mut out = vec![quote];
        for &c in bytes {
            match c {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\'' if quote == b'\'' => out.extend_from_slice(b"\\'"),
                0x20..=0x7e => out.push(c),
                _ => out.extend_from_slice(format!("\\x{c:02x}").as_bytes()),
            }
        }
        out.push(quote);
        out
    }

    #[test]
    fn protocol0_scalars_and_containers() {
        // {'a': [1, 2L, 1.5, None, True, False], u'caf\xe9': (S, -3)} as Python 2 writes it.
        let p = b"(dp0\nS'a'\np1\n(lp2\nI1\naL2L\naF1.5\naNaI01\naI00\nasVcaf\xe9\np3\n(S'x\\'y'\nI-3\ntp4\ns.";
        let v = ok(p);
        assert_eq!(
            v,
            Value::Dict(vec![
                (
                    b(b"a"),
                    Value::List(vec![
                        Value::Int(1),
                        Value::Int(2),
                        Value::Float(1.5),
                        Value::None,
                        Value::Bool(true),
                        Value::Bool(false),
                    ])
                ),
                (s("café"), Value::Tuple(vec![b(b"x'y"), Value::Int(-3)])),
            ])
        );
        assert_eq!(v.get("a").map(Value::type_name).as_deref(), Some("list"));
        assert!(v.get("café").is_some());
    }

    #[test]
    fn memo_shares_objects_like_python() {
        // l = []; d = {'x': l, 'y': l}; l is filled after being memoised.
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00xq\x01]q\x02(K\x01K\x02eX\x01\x00\x00\x00yq\x03h\x02u.";
        let v = ok(p);
        let list = Value::List(vec![Value::Int(1), Value::Int(2)]);
        assert_eq!(v.get("x"), Some(&list));
        assert_eq!(v.get("y"), Some(&list));
        // inner is memoised (p1) before its APPEND; GET afterwards sees [7].
        let p = b"(lp0\n(lp1\nI7\naag1\na.";
        assert_eq!(
            ok(p),
            Value::List(vec![
                Value::List(vec![Value::Int(7)]),
                Value::List(vec![Value::Int(7)])
            ])
        );
    }

    #[test]
    fn binary_opcodes() {
        // PROTO 2; (K 255, M 65535, J -2, LONG1 -1, LONG1 2^40, BINFLOAT 0.25, U, T, NEWTRUE)
        let mut p = b"\x80\x02(K\xffM\xff\xffJ\xfe\xff\xff\xff\x8a\x01\xff\x8a\x06\x00\x00\x00\x00\x00\x01G".to_vec();
        p.extend_from_slice(&0.25f64.to_be_bytes());
        p.extend_from_slice(b"U\x02hiT\x03\x00\x00\x00abc\x88\x89Nt.");
        assert_eq!(
            ok(&p),
            Value::Tuple(vec![
                Value::Int(255),
                Value::Int(65535),
                Value::Int(-2),
                Value::Int(-1),
                Value::Int(1 << 40),
                Value::Float(0.25),
                b(b"hi"),
                b(b"abc"),
                Value::Bool(true),
                Value::Bool(false),
                Value::None,
            ])
        );
        // LONG1 wider than 8 bytes is fine when the extra bytes are sign extension only.
        assert_eq!(
            ok(b"\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\xff."),
            Value::Int(-1)
        );
        assert!(
            err(b"\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.")
                .message
                .contains("64 bits")
        );
    }

    #[test]
    fn protocol4_frames_memoize_stack_global() {
        // pickle.dumps({'k': b'\x00\x01'}, 4)
        let p =
            b"\x80\x04\x95\x12\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01k\x94C\x02\x00\x01\x94s.";
        assert_eq!(ok(p), Value::Dict(vec![(s("k"), b(&[0, 1]))]));
        // MEMOIZE then BINGET of the same object.
        let p = b"\x80\x04\x8c\x03abc\x94h\x00\x86.";
        assert_eq!(ok(p), Value::Tuple(vec![s("abc"), s("abc")]));
    }

    #[test]
    fn dict_repeated_key_keeps_last_value() {
        let p = b"(dI1\nI10\nsF1.0\nI20\ns.";
        assert_eq!(ok(p), Value::Dict(vec![(Value::Int(1), Value::Int(20))]));
    }

    #[test]
    fn string_literal_escapes() {
        let d = |l: &[u8]| decode_py2_string_literal(l);
        assert_eq!(d(b"'a\\'b'").unwrap(), b"a'b");
        assert_eq!(d(b"\"it's\"").unwrap(), b"it's");
        assert_eq!(
            d(b"'\\x00\\xff\\\\\\n\\t\\r'").unwrap(),
            b"\x00\xff\\\n\t\r"
        );
        assert_eq!(d(b"'\\101\\0\\7777'").unwrap(), b"A\x00\xff7");
        assert_eq!(d(b"'\\q\\a\\b\\f\\v'").unwrap(), b"\\q\x07\x08\x0c\x0b");
        assert_eq!(d(b"'ok'\r").unwrap(), b"ok");
        assert!(d(b"'abc").is_err());
        assert!(d(b"abc").is_err());
        assert!(d(b"'").is_err());
        assert!(d(b"'\\'").is_err());
        assert!(d(b"'\\x4'").is_err());
        assert!(d(b"'\\x+f'").is_err());
    }

    #[test]
    fn raw_unicode_escape() {
        let d = |l: &[u8]| decode_raw_unicode_escape(l);
        assert_eq!(d(b"caf\xe9").unwrap(), "café");
        assert_eq!(d(b"\\u65e5\\U0001f600\\u005c\\u000a").unwrap(), "日😀\\\n");
        assert_eq!(d(b"a\\b\\").unwrap(), "a\\b\\");
        assert_eq!(d(b"\\\\u0041").unwrap(), "\\\\u0041");
        assert_eq!(d(b"\\\\\\u0041").unwrap(), "\\\\A");
        assert!(d(b"\\u12").is_err());
        assert!(d(b"\\ud800").is_err());
        assert!(d(b"\\U00110000").is_err());
    }

    fn ndarray_p0(shape: &str, typestr: &str, order: &str, fortran: bool, data: &[u8]) -> Vec<u8> {
        let mut p = format!(
            "cnumpy.core.multiarray\n_reconstruct\np1\n(cnumpy\nndarray\np2\n(I0\ntS'b'\ntRp3\n\
             (I1\n{shape}cnumpy\ndtype\np4\n(S'{typestr}'\nI0\nI1\ntRp5\n(I3\nS'{order}'\nNNNI-1\nI-1\nI0\ntbI0{}\nS",
            u8::from(fortran)
        )
        .into_bytes();
        p.extend_from_slice(&py2_repr(data));
        p.extend_from_slice(b"\ntb.");
        p
    }

    fn f64_bytes(v: &[f64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn numpy_arrays_c_and_fortran() {
        let vals = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let c = ok(&ndarray_p0(
            "(I2\nI3\nt",
            "f8",
            "<",
            false,
            &f64_bytes(&vals),
        ));
        let Value::Array(c) = c else { panic!() };
        assert_eq!(c.shape, vec![2, 3]);
        assert_eq!(c.to_f64(), vals);
        // The same matrix in column-major order: columns (0,3), (1,4), (2,5).
        let f = ok(&ndarray_p0(
            "(I2\nI3\nt",
            "f8",
            "<",
            true,
            &f64_bytes(&[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]),
        ));
        assert_eq!(f, Value::Array(c.clone()));
        // 3-D Fortran: element (i, j, k) at i + 2j + 4k.
        let shape = [2usize, 2, 3];
        let fdata: Vec<f64> = (0..12)
            .map(|n| {
                let (i, j, k) = (n % 2, (n / 2) % 2, n / 4);
                (100 * i + 10 * j + k) as f64
            })
            .collect();
        let Value::Array(a) = ok(&ndarray_p0(
            "(I2\nI2\nI3\nt",
            "f8",
            "<",
            true,
            &f64_bytes(&fdata),
        )) else {
            panic!()
        };
        let expected: Vec<f64> = (0..12)
            .map(|n| {
                let (i, j, k) = (n / 6, (n / 3) % 2, n % 3);
                (100 * i + 10 * j + k) as f64
            })
            .collect();
        assert_eq!(a.shape, shape);
        assert_eq!(a.to_f64(), expected);
        // float32
        let f32s: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let Value::Array(a) = ok(&ndarray_p0("(I2\nt", "f4", "<", false, &f32s)) else {
            panic!()
        };
        assert_eq!(a.data, ArrayData::F32(vec![1.5, -2.0]));
        assert_eq!(a.dtype_name(), "float32");
    }

    #[test]
    fn numpy_refusals() {
        let e = err(&ndarray_p0("(I1\nt", "f8", ">", false, &[0; 8]));
        assert!(e.message.contains("big-endian"), "{e}");
        let e = err(&ndarray_p0("(I1\nt", "i8", "<", false, &[0; 8]));
        assert!(
            e.message.contains("'i8'") || e.message.contains("\"i8\""),
            "{e}"
        );
        assert!(e.message.contains("float32"), "{e}");
        let e = err(&ndarray_p0("(I2\nt", "f8", "<", false, &[0; 8]));
        assert!(e.message.contains("needs 16 bytes"), "{e}");
        let e = err(&ndarray_p0(
            "(I4294967296\nI4294967296\nt",
            "f8",
            "<",
            false,
            &[0; 8],
        ));
        assert!(e.message.contains("large"), "{e}");
    }

    #[test]
    fn numpy_scalar() {
        let p = b"\x80\x02cnumpy.core.multiarray\nscalar\ncnumpy\ndtype\nU\x02f8K\x00K\x01\x87R(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbU\x08\x00\x00\x00\x00\x00\x00\x04@\x86R.";
        assert_eq!(ok(p), Value::Float(2.5));
    }

    #[test]
    fn codecs_encode_gives_latin1_bytes() {
        let p =
            b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00\xc3\xa9aX\x06\x00\x00\x00latin1\x86R.";
        assert_eq!(ok(p), b(&[0xe9, b'a']));
        let p = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00utf-8\x86R.";
        assert!(err(p).message.contains("latin1"));
    }

    #[test]
    fn refuses_other_globals_by_name() {
        let e = err(b"cos\nsystem\n(S'echo hi'\ntR.");
        assert!(e.message.contains("'os.system' is not allowed"), "{e}");
        assert_eq!(e.offset, 0);
        let e = err(b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.");
        assert!(e.message.contains("'builtins.eval'"), "{e}");
        let e = err(b"ccopy_reg\n_reconstructor\n.");
        assert!(e.message.contains("copy_reg._reconstructor"), "{e}");
        let e = err(b"(ios\nsystem\n.");
        assert!(e.message.contains("INST os.system"), "{e}");
        assert!(err(b"\x80\x02N)\x81.").message.contains("NEWOBJ"));
        assert!(err(b"P1\n.").message.contains("persistent"));
        assert!(err(b"\x80\x05\x97.").message.contains("out-of-band"));
        // An allowed global called in a way numpy never does.
        assert!(err(b"cnumpy\nndarray\n)R.").message.contains("ndarray"));
        assert!(
            err(b"cnumpy.core.multiarray\n_reconstruct\n(I0\ntR.")
                .message
                .contains("ndarray")
        );
    }

    #[test]
    fn hostile_inputs_are_errors() {
        // Truncated everywhere.
        assert!(err(b"").message.contains("STOP"));
        assert!(err(b"(lp0\nI1\na").message.contains("STOP"));
        assert!(err(b"I12").message.contains("newline"));
        // Length fields far beyond the input: refused before any allocation.
        assert!(err(b"T\xff\xff\xff\x7fabc.").message.contains("truncated"));
        assert!(
            err(b"\x8e\xff\xff\xff\xff\xff\xff\xff\xffabc.")
                .message
                .contains("truncated")
        );
        assert!(err(b"X\xff\xff\xff\xffabc.").message.contains("truncated"));
        assert!(err(b"T\xff\xff\xff\xff.").message.contains("negative"));
        // Garbage and misuse.
        assert!(err(b"\xff").message.contains("invalid opcode"));
        assert!(err(b"a.").message.contains("underflow"));
        assert!(err(b"t.").message.contains("MARK"));
        assert!(err(b"NNa.").message.contains("not a list"));
        assert!(err(b"g5\n.").message.contains("memo"));
        assert!(err(b"\x80\x06N.").message.contains("protocol 6"));
        assert!(err(b"](NNu.").message.contains("not a dict"));
        assert!(err(b"}]Ns.").message.contains("list cannot be a dict key"));
    }

    #[test]
    fn deep_and_cyclic_structures_are_refused() {
        // 100 000 nested lists: l0.append(l1), l1.append(l2), ...
        let n = 100_000;
        let mut p = vec![b']'; n];
        p.extend(std::iter::repeat_n(b'a', n - 1));
        p.push(b'.');
        assert!(err(&p).message.contains("nested deeper"));
        // A list that contains itself.
        let e = err(b"]q\x00h\x00a.");
        assert!(
            e.message.contains("nested deeper") || e.message.contains("expands"),
            "{e}"
        );
        // Exponential sharing: x0 = 'aaaa...'; x(k+1) = (xk, xk), 60 levels.
        let mut p = b"\x80\x02U\xff".to_vec();
        p.extend(std::iter::repeat_n(b'a', 255));
        for _ in 0..60 {
            p.extend_from_slice(b"q\x00h\x00\x86");
        }
        p.push(b'.');
        assert!(err(&p).message.contains("expands"));
        // Amplification through numpy: one 4 KiB data string rebuilt into many arrays.
        let data = f64_bytes(&[1.0; 512]);
        let arrays = |n: usize| {
            let mut p = b"cnumpy.core.multiarray\n_reconstruct\np1\n0cnumpy\nndarray\np2\n0\
                cnumpy\ndtype\n(S'f8'\nI0\nI1\ntRp5\n(I3\nS'<'\nNNNI-1\nI-1\nI0\ntb0S"
                .to_vec();
            p.extend_from_slice(&py2_repr(&data));
            p.extend_from_slice(b"\np6\n0(");
            for _ in 0..n {
                p.extend_from_slice(b"g1\n(g2\n(I0\ntS'b'\ntR(I1\n(I512\ntg5\nI00\ng6\ntb");
            }
            p.extend_from_slice(b"l.");
            p
        };
        let Value::List(three) = ok(&arrays(3)) else {
            panic!()
        };
        assert_eq!(three.len(), 3);
        assert!(matches!(&three[2], Value::Array(a) if a.to_f64() == vec![1.0; 512]));
        let e = err(&arrays(10_000));
        assert!(e.message.contains("far more data"), "{e}");
    }
}

/// Property test: random, truncated and mutated pickles never panic and never allocate beyond
/// the limits (the real fixtures are the seeds). `CAPSEARCH_FUZZ_ITERS` raises the count.
#[cfg(test)]
mod fuzz {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn seeds() -> Vec<Vec<u8>> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/neuraltalk");
        let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "p"))
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        out.sort();
        assert!(out.len() >= 12, "fixtures missing");
        out
    }

    fn mutate(rng: &mut ChaCha8Rng, seed: &[u8]) -> Vec<u8> {
        let mut p = seed.to_vec();
        match rng.random_range(0..6u8) {
            0 => p.truncate(rng.random_range(0..=p.len())),
            1 => {
                for _ in 0..rng.random_range(1..8) {
                    let i = rng.random_range(0..p.len());
                    p[i] ^= 1 << rng.random_range(0..8);
                }
            }
            2 => {
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..p.len());
                    p[i] = rng.random();
                }
            }
            3 => {
                // A large length field where a length may be.
                let i = rng.random_range(0..p.len());
                let big: [u8; 8] = [0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff];
                let n = rng.random_range(1..=8).min(p.len() - i);
                p[i..i + n].copy_from_slice(&big[..n]);
            }
            4 => {
                // Splice a chunk of the pickle elsewhere (duplicated opcodes, memo refs).
                let a = rng.random_range(0..p.len());
                let b = rng.random_range(a..=p.len().min(a + 64));
                let chunk = p[a..b].to_vec();
                let at = rng.random_range(0..=p.len());
                p.splice(at..at, chunk);
            }
            _ => {
                let n = rng.random_range(0..256);
                p = (0..n).map(|_| rng.random()).collect();
            }
        }
        p
    }

    #[test]
    fn mutated_pickles_give_errors_not_panics() {
        let iters: usize = std::env::var("CAPSEARCH_FUZZ_ITERS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3000);
        let seeds = seeds();
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
        let (mut oks, mut errs) = (0usize, 0usize);
        for _ in 0..iters {
            let seed = &seeds[rng.random_range(0..seeds.len())];
            let p = mutate(&mut rng, seed);
            match parse(&p) {
                Ok(_) => oks += 1,
                Err(e) => {
                    assert!(e.offset <= p.len());
                    errs += 1;
                }
            }
        }
        // Mutations must mostly be caught; the rest parsed into something harmless.
        assert!(errs > iters / 2, "{oks} ok, {errs} errors");
        // Every truncation of a real pickle is an error.
        for seed in seeds.iter().take(2) {
            for cut in (0..seed.len()).step_by(7) {
                assert!(parse(&seed[..cut]).is_err(), "prefix of {cut} bytes parsed");
            }
        }
    }
}
