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
//!
//! | file | holds |
//! |---|---|
//! | `value.rs` | what a pickle yields: [`Value`], [`NdArray`] |
//! | `machine.rs` | the stack machine: opcodes, stack, marks, memo |
//! | `numpy.rs` | the allowed numpy globals, interpreted: dtypes, arrays, scalars |
//! | `py2.rs` | Python 2 literals of protocol 0 |
//! | `materialise.rs` | the machine's objects as a [`Value`], within the budgets |
//! | `tests.rs`, `fuzz.rs` | unit tests, and the property test on mutated fixtures |

mod machine;
mod materialise;
mod numpy;
mod py2;
mod value;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

pub use py2::{decode_py2_string_literal, decode_raw_unicode_escape};
pub use value::{ArrayData, NdArray, Value};

use std::borrow::Cow;
use std::path::Path;

use crate::error::{Error, Result};
use machine::{Budget, Machine};

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
