//! Running a baseline script and reading its JSON.
//!
//! A script prints one JSON object on its last stdout line. When its dependencies are missing it
//! prints `{"skipped": "why"}` and exits 0; any other failure is reported as a skip with the
//! script's last stderr line, so a broken baseline never stops the benchmark.

use std::process::Command;

use serde_json::Value;

/// The JSON a baseline printed, or why there is none.
pub type BaselineResult = std::result::Result<Value, String>;

/// Writes `script` to a temporary file, and each of `modules` (file name, text) beside it where
/// the script can import it, and runs `python script args...`.
pub fn run_script(
    python: &str,
    file_name: &str,
    script: &str,
    modules: &[(&str, &str)],
    args: &[String],
) -> BaselineResult {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temporary folder: {e}"))?;
    for (name, text) in modules {
        let path = dir.path().join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let path = dir.path().join(file_name);
    std::fs::write(&path, script).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tracing::info!(script = file_name, "running baseline");
    let out = Command::new(python)
        .arg(&path)
        .args(args)
        .output()
        .map_err(|e| format!("{python} could not be started ({e})"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        return Err(format!(
            "{file_name} failed ({}): {}",
            out.status,
            last.unwrap_or("no error output")
        ));
    }
    parse_output(&stdout).map_err(|e| format!("{file_name}: {e}"))
}

/// The last non-empty stdout line as a JSON object; `{"skipped": why}` becomes `Err(why)`.
pub fn parse_output(stdout: &str) -> BaselineResult {
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| "printed nothing".to_string())?;
    let value: Value =
        serde_json::from_str(line).map_err(|e| format!("its output is not JSON ({e}): {line}"))?;
    if let Some(why) = value.get("skipped").and_then(Value::as_str) {
        return Err(why.to_string());
    }
    if !value.is_object() {
        return Err(format!("expected a JSON object, got {line}"));
    }
    Ok(value)
}

/// The number array at `key` (samples), or why it is missing.
pub fn samples(value: &BaselineResult, key: &str) -> std::result::Result<Vec<f64>, String> {
    let v = value.as_ref().map_err(Clone::clone)?;
    let arr = v
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("the baseline's output has no `{key}` list"))?;
    Ok(arr.iter().filter_map(Value::as_f64).collect())
}

/// One result from several runs of the same script: every number list concatenated in run order,
/// other values from the first run. A skipped run is left out; all of them skipped, the first
/// reason.
pub fn merge_rounds(rounds: Vec<BaselineResult>) -> BaselineResult {
    let mut merged: Option<serde_json::Map<String, Value>> = None;
    let mut first_skip = None;
    for round in rounds {
        let object = match round {
            Ok(Value::Object(object)) => object,
            Ok(other) => {
                first_skip.get_or_insert(format!("expected a JSON object, got {other}"));
                continue;
            }
            Err(why) => {
                first_skip.get_or_insert(why);
                continue;
            }
        };
        let Some(into) = merged.as_mut() else {
            merged = Some(object);
            continue;
        };
        for (key, value) in object {
            match (into.get_mut(&key), value) {
                (Some(Value::Array(list)), Value::Array(more)) => list.extend(more),
                (None, value) => {
                    into.insert(key, value);
                }
                _ => {}
            }
        }
    }
    merged
        .map(Value::Object)
        .ok_or_else(|| first_skip.unwrap_or_else(|| "no run".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_json_line_and_skips() {
        let v = parse_output("warming up\n{\"greedy_ms\": [1.0, 2.0]}\n");
        assert_eq!(samples(&v, "greedy_ms").unwrap(), [1.0, 2.0]);
        assert!(samples(&v, "beam_ms").unwrap_err().contains("beam_ms"));
        let s = parse_output("{\"skipped\": \"torch is not installed\"}");
        assert_eq!(s.unwrap_err(), "torch is not installed");
        assert!(parse_output("").is_err());
        assert!(parse_output("Traceback").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn rounds_concatenate_their_samples_and_skips_drop_out() {
        let round = |s: &str| parse_output(s);
        let merged = merge_rounds(vec![
            round(r#"{"torch": "2.15", "ips": [1.0, 2.0]}"#),
            Err("killed".into()),
            round(r#"{"torch": "2.16", "ips": [3.0], "more": [4.0]}"#),
        ]);
        assert_eq!(samples(&merged, "ips").unwrap(), [1.0, 2.0, 3.0]);
        assert_eq!(samples(&merged, "more").unwrap(), [4.0]);
        assert_eq!(merged.unwrap()["torch"], "2.15");
        let skipped = merge_rounds(vec![Err("no torch".into()), Err("later".into())]);
        assert_eq!(skipped.unwrap_err(), "no torch");
        assert_eq!(merge_rounds(vec![]).unwrap_err(), "no run");
    }

    #[test]
    fn a_missing_interpreter_is_a_skip_reason() {
        let r = run_script("/nonexistent/python3", "x.py", "print(1)", &[], &[]);
        assert!(r.unwrap_err().contains("could not be started"));
    }
}
