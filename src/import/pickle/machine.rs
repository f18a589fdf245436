//! The stack machine: reading opcodes, the stack, the marks and the memo.

use std::collections::HashMap;

use super::materialise::truncate;
use super::numpy::{ALLOWED_GLOBALS, Dtype, Global, array_bytes};
use super::py2::{decode_py2_string_literal, decode_raw_unicode_escape};
use super::value::NdArray;
use super::{DATA_FACTOR, MAX_OBJECTS, PickleError};

/// Index of an object in the machine's arena. Containers hold ids, so the memo shares objects
/// the way Python does (a list memoised before its `APPENDS` is seen complete through `GET`).
pub(super) type Id = usize;

/// An object built by the machine.
#[derive(Debug)]
pub(super) enum Obj {
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
    pub(super) fn kind(&self) -> &'static str {
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
pub(super) struct Budget {
    pub(super) nodes: usize,
    pub(super) bytes: usize,
}

impl Budget {
    pub(super) fn new(input_len: usize) -> Self {
        Budget {
            nodes: input_len.saturating_add(16),
            bytes: input_len.saturating_mul(DATA_FACTOR).saturating_add(4096),
        }
    }

    pub(super) fn charge(&mut self, nodes: usize, bytes: usize) -> std::result::Result<(), String> {
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

pub(super) struct Machine<'a> {
    pub(super) input: &'a [u8],
    pub(super) pos: usize,
    /// Offset of the opcode being executed.
    pub(super) op_pos: usize,
    pub(super) arena: Vec<Obj>,
    pub(super) stack: Vec<Id>,
    /// Stack lengths at each `MARK`.
    pub(super) marks: Vec<usize>,
    pub(super) memo: HashMap<u64, Id>,
    /// Bytes of array and string data the arena may still hold.
    pub(super) data_budget: usize,
}

pub(super) type R<T> = std::result::Result<T, PickleError>;

impl<'a> Machine<'a> {
    pub(super) fn new(input: &'a [u8]) -> Self {
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

    pub(super) fn err<T>(&self, message: impl Into<String>) -> R<T> {
        Err(PickleError {
            offset: self.op_pos,
            message: message.into(),
        })
    }

    // --- input -----------------------------------------------------------------------------

    pub(super) fn take(&mut self, n: usize) -> R<&'a [u8]> {
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

    pub(super) fn take_len(&mut self, n: u64) -> R<&'a [u8]> {
        match usize::try_from(n) {
            Ok(n) => self.take(n),
            Err(_) => self.err(format!("length {n} is larger than the input")),
        }
    }

    pub(super) fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn array<const N: usize>(&mut self) -> R<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// A text argument: the bytes up to the next `\n` (excluded).
    pub(super) fn line(&mut self) -> R<&'a [u8]> {
        let rest = &self.input[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                Ok(&rest[..i])
            }
            None => self.err("truncated: a text argument has no terminating newline"),
        }
    }

    pub(super) fn ascii_line(&mut self) -> R<&'a str> {
        let line = self.line()?;
        match std::str::from_utf8(line) {
            Ok(s) => Ok(s.trim_end_matches('\r')),
            Err(_) => self.err("a text argument is not valid text"),
        }
    }

    // --- objects and the stack -----------------------------------------------------------------

    pub(super) fn new_obj(&mut self, obj: Obj) -> R<Id> {
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

    pub(super) fn push_new(&mut self, obj: Obj) -> R<()> {
        let id = self.new_obj(obj)?;
        self.stack.push(id);
        Ok(())
    }

    /// Length of the stack below which the current mark forbids popping.
    pub(super) fn base(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    pub(super) fn pop(&mut self) -> R<Id> {
        if self.stack.len() <= self.base() {
            return self.err("stack underflow: the opcode needs a value that is not there");
        }
        match self.stack.pop() {
            Some(id) => Ok(id),
            None => self.err("stack underflow"),
        }
    }

    pub(super) fn top(&self) -> R<Id> {
        if self.stack.len() <= self.base() {
            return self.err("stack underflow: the opcode needs a value that is not there");
        }
        match self.stack.last() {
            Some(&id) => Ok(id),
            None => self.err("stack underflow"),
        }
    }

    pub(super) fn pop_mark(&mut self) -> R<Vec<Id>> {
        match self.marks.pop() {
            Some(at) if at <= self.stack.len() => Ok(self.stack.split_off(at)),
            _ => self.err("the opcode needs a MARK that is not there"),
        }
    }

    pub(super) fn memo_get(&mut self, key: u64) -> R<()> {
        match self.memo.get(&key) {
            Some(&id) => {
                self.stack.push(id);
                Ok(())
            }
            None => self.err(format!("memo entry {key} is read before it is written")),
        }
    }

    pub(super) fn memo_put(&mut self, key: u64) -> R<()> {
        let id = self.top()?;
        self.memo.insert(key, id);
        Ok(())
    }

    pub(super) fn check_limits(&self) -> R<()> {
        let live = self.stack.len() + self.arena.len() + self.marks.len() + self.memo.len();
        if live > MAX_OBJECTS {
            return self.err(format!(
                "more than {MAX_OBJECTS} objects; this is not a model checkpoint"
            ));
        }
        Ok(())
    }

    pub(super) fn text_of(&self, id: Id) -> Option<&str> {
        match &self.arena[id] {
            Obj::Str(s) => Some(s),
            Obj::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub(super) fn int_of(&self, id: Id) -> Option<i64> {
        match self.arena[id] {
            Obj::Int(i) => Some(i),
            Obj::Bool(b) => Some(i64::from(b)),
            _ => None,
        }
    }

    pub(super) fn tuple_of(&self, id: Id) -> Option<&[Id]> {
        match &self.arena[id] {
            Obj::Tuple(items) => Some(items),
            _ => None,
        }
    }

    // --- the loop --------------------------------------------------------------------------

    pub(super) fn run(&mut self) -> R<Id> {
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

    pub(super) fn parse_int(&self, text: &str) -> R<i64> {
        match text.trim().parse::<i64>() {
            Ok(i) => Ok(i),
            Err(_) => self.err(format!(
                "integer {:?} is not an integer or does not fit in 64 bits",
                truncate(text)
            )),
        }
    }

    /// A little-endian two's-complement integer (LONG1/LONG4), which must fit in an `i64`.
    pub(super) fn long_bytes(&self, bytes: &[u8]) -> R<i64> {
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

    pub(super) fn memo_key_line(&mut self) -> R<u64> {
        let text = self.ascii_line()?;
        match text.trim().parse::<u64>() {
            Ok(k) => Ok(k),
            Err(_) => self.err(format!("memo key {:?} is not a number", truncate(text))),
        }
    }

    pub(super) fn push_utf8(&mut self, bytes: &[u8]) -> R<()> {
        match std::str::from_utf8(bytes) {
            Ok(s) => self.push_new(Obj::Str(s.to_string())),
            Err(_) => self.err("a unicode string is not valid UTF-8"),
        }
    }

    pub(super) fn pairs(&self, items: Vec<Id>) -> R<Vec<(Id, Id)>> {
        if !items.len().is_multiple_of(2) {
            return self.err("a dict needs key/value pairs but got an odd number of values");
        }
        Ok(items.chunks_exact(2).map(|p| (p[0], p[1])).collect())
    }

    pub(super) fn extend_list(&mut self, list: Id, items: impl IntoIterator<Item = Id>) -> R<()> {
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

    pub(super) fn extend_dict(&mut self, dict: Id, pairs: Vec<(Id, Id)>) -> R<()> {
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

    pub(super) fn global(&self, module: &str, name: &str) -> R<Global> {
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
}
