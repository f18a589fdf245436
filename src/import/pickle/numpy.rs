//! numpy's globals, interpreted (never looked up or called): dtypes, arrays and scalars.

use super::machine::{Id, Machine, Obj, R};
use super::value::{ArrayData, NdArray};

/// The globals this reader interprets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Global {
    Reconstruct,
    NdArrayClass,
    Dtype,
    Scalar,
    FromBuffer,
    CodecsEncode,
}

impl Global {
    pub(super) fn resolve(module: &str, name: &str) -> Option<Global> {
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

    pub(super) fn name(self) -> &'static str {
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

pub(super) const ALLOWED_GLOBALS: &str = "numpy.core.multiarray._reconstruct, numpy.ndarray, numpy.dtype, \
    numpy.core.multiarray.scalar, numpy.core.numeric._frombuffer (also under numpy._core) and \
    _codecs.encode";

/// A numpy dtype as pickled: its type string (`f8`, `<f4`, `i8`, ...) and the byte order its
/// state set (`<`, `>`, `=`, `|`).
#[derive(Debug, Clone)]
pub(super) struct Dtype {
    pub(super) typestr: String,
    pub(super) byteorder: Option<char>,
}

/// An element type this reader can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Elem {
    F32,
    F64,
}

impl Dtype {
    /// The kind character and item size, and the byte order (the state's, else the type
    /// string's prefix, else native).
    pub(super) fn parts(&self) -> std::result::Result<(char, usize, char), String> {
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

    pub(super) fn check_little_endian(&self, order: char) -> std::result::Result<(), String> {
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
    pub(super) fn array_elem(&self) -> std::result::Result<Elem, String> {
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

impl Machine<'_> {
    // --- REDUCE and BUILD for the allowed globals -----------------------------------------------

    pub(super) fn reduce(&mut self, callable: Id, args: Id) -> R<Obj> {
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

    pub(super) fn shape_of(&self, id: Id) -> R<Vec<usize>> {
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

    pub(super) fn build(&mut self, obj: Id, state: Id) -> R<()> {
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

pub(super) fn array_bytes(a: &NdArray) -> usize {
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
