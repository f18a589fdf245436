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
    let p =
        b"\x80\x02}q\x00(X\x01\x00\x00\x00xq\x01]q\x02(K\x01K\x02eX\x01\x00\x00\x00yq\x03h\x02u.";
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
    let mut p =
        b"\x80\x02(K\xffM\xff\xffJ\xfe\xff\xff\xff\x8a\x01\xff\x8a\x06\x00\x00\x00\x00\x00\x01G"
            .to_vec();
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
    let p = b"\x80\x04\x95\x12\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01k\x94C\x02\x00\x01\x94s.";
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
    let p = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00\xc3\xa9aX\x06\x00\x00\x00latin1\x86R.";
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
