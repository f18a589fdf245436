//! Turning the machine's arena into a [`Value`] tree, within the depth and data budgets.

use std::borrow::Cow;
use std::collections::HashMap;

use super::MAX_DEPTH;
use super::machine::{Budget, Id, Machine, Obj};
use super::numpy::array_bytes;
use super::value::Value;

impl Machine<'_> {
    // --- the result ------------------------------------------------------------------------------

    pub(super) fn to_value(
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

pub(super) fn truncate(s: &str) -> Cow<'_, str> {
    if s.chars().count() <= 80 {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("{}...", s.chars().take(80).collect::<String>()))
    }
}
