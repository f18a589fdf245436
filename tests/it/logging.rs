//! Log lines: plain text when stderr is a file or a pipe, coloured only on a terminal.

use crate::common::*;

/// `-v` logs the dataset being loaded; stderr is a pipe here, so no ANSI escape may appear.
#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempdir();
    let csv = write(
        &dir.path().join("data.csv"),
        "image,caption\na.png,a red square\n",
    );
    png(&dir.path().join("a.png"));
    for no_color in [None, Some("1")] {
        let mut cmd = std::process::Command::new(bin());
        cmd.args(["-v", "dataset", "check", s(&csv), "--threshold", "1"])
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("loading dataset"), "{stderr}");
        assert!(
            !stderr.contains('\u{1b}'),
            "ANSI codes in a piped log: {stderr:?}"
        );
    }
}
