//! The dashboard on ratatui's `TestBackend`: what each screen shows, keys, redraw pacing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::charts::{downsample, recent};
use super::draw::{draw, wrap_words};
use super::keys::{LossView, RECENT_MIN_POINTS, UiState};
use super::terminal::Screen;
use crate::train::report::{
    BestCheckpoint, Phase, SampleCaption, StopReason, TrainingStatus, summary_line,
};

fn status() -> TrainingStatus {
    TrainingStatus {
        run_name: "shapes-small".into(),
        epoch: 3,
        epochs: 20,
        iteration: 45,
        iterations_per_epoch: 120,
        global_iteration: 285,
        train_loss: (1..=57)
            .map(|i| (i as f64 * 5.0 / 120.0, 4.0 / (1.0 + i as f64 / 10.0)))
            .collect(),
        val_loss: vec![(1.0, 2.9), (2.0, 2.1)],
        val_bleu4: vec![(1.0, 8.5), (2.0, 17.25)],
        learning_rate: 1e-3,
        images_per_sec: 312.44,
        tokens_per_sec: 3120.0,
        elapsed: Duration::from_secs(252),
        eta: Some(Duration::from_secs(1390)),
        epoch_eta: Some(Duration::from_secs(62)),
        memory_bytes: Some(537_214_976),
        samples: vec![
            SampleCaption {
                image: "val/00017.png".into(),
                generated: "a red circle above a blue square".into(),
                reference: "a red circle above a blue square".into(),
            },
            SampleCaption {
                image: "val/00042.png".into(),
                generated: "a green triangle".into(),
                reference: "a small green triangle left of a yellow circle".into(),
            },
        ],
        best: Some(BestCheckpoint {
            epoch: 2,
            bleu4: 17.25,
            path: PathBuf::from("checkpoints/shapes-small/best"),
        }),
        phase: Phase::Training,
        time_budget: Some(Duration::from_secs(600)),
    }
}

fn buffer_text(backend: &TestBackend) -> String {
    let buffer = backend.buffer();
    let width = buffer.area.width as usize;
    let mut out = String::new();
    for row in buffer.content.chunks(width.max(1)) {
        for cell in row {
            out.push_str(cell.symbol());
        }
        out.push('\n');
    }
    out
}

fn render(status: &TrainingStatus, ui: &UiState, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| draw(f, status, ui)).unwrap();
    buffer_text(terminal.backend())
}

fn dump(text: &str) {
    if std::env::var_os("DASHBOARD_DUMP").is_some() {
        println!("{text}");
    }
}

fn press(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

#[test]
fn full_screen_shows_every_panel() {
    let text = render(&status(), &UiState::default(), 120, 40);
    // `DASHBOARD_DUMP=1 cargo test --lib dashboard -- --nocapture` prints the screens.
    dump(&text);
    for expected in [
        "capsearch",
        "shapes-small",
        "training",
        "elapsed 4m 12s",
        "budget 5m 48s left of 10m 00s",
        " Loss train 0.5970 · val 2.1000",
        "full history",
        "BLEU-4 (val) last 17.25 · best 17.25",
        "LR       1.00e-3",
        "Speed    312.4 img/s · 3.12k tok/s",
        "Memory   512.3 MiB",
        "Val ppl  8.17",
        "Best checkpoint",
        "epoch 2 · BLEU-4 17.25",
        "checkpoints/shapes-small/best",
        "val/00017.png  ✓ matches",
        "gen a green triangle",
        "ref a small green triangle left of a yellow circle",
        "Epoch 3/20",
        "it 45/120 · 38%",
        "ETA 1m 02s",
        "iteration 285",
        "ETA 23m 10s",
        "stop (asks, then saves a checkpoint)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(
        !text.contains("Stop training?"),
        "no popup before q\n{text}"
    );
    // The plots drew something (Braille dots).
    assert!(text.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c)));
}

#[test]
fn q_opens_the_popup_and_y_confirms() {
    let mut ui = UiState::default();
    assert!(ui.handle_key(press(KeyCode::Char('q'))));
    assert!(ui.confirm_stop && !ui.stop_requested);
    let text = render(&status(), &ui, 100, 30);
    dump(&text);
    assert!(
        text.contains("Stop training? A checkpoint is saved first."),
        "{text}"
    );
    assert!(text.contains("[y] stop    [n] keep training"), "{text}");

    assert!(
        !ui.handle_key(press(KeyCode::Char('x'))),
        "other keys do nothing"
    );
    assert!(ui.confirm_stop);
    assert!(ui.handle_key(press(KeyCode::Char('y'))));
    assert!(ui.stop_requested && !ui.confirm_stop);
    let text = render(&status(), &ui, 100, 30);
    assert!(!text.contains("[y] stop"), "{text}");
    assert!(text.contains("STOP REQUESTED"), "{text}");
    // Once requested, keys change nothing.
    assert!(!ui.handle_key(press(KeyCode::Char('q'))));
    assert!(!ui.confirm_stop);
}

#[test]
fn n_and_esc_cancel_and_ctrl_c_twice_confirms() {
    let mut ui = UiState::default();
    ui.handle_key(press(KeyCode::Esc));
    assert!(ui.confirm_stop);
    ui.handle_key(press(KeyCode::Char('n')));
    assert!(!ui.confirm_stop && !ui.stop_requested);

    ui.handle_key(press(KeyCode::Char('q')));
    ui.handle_key(press(KeyCode::Esc));
    assert!(!ui.confirm_stop && !ui.stop_requested);

    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    ui.handle_key(ctrl_c);
    assert!(ui.confirm_stop);
    ui.handle_key(ctrl_c);
    assert!(ui.stop_requested);
}

#[test]
fn key_releases_are_ignored() {
    let mut ui = UiState::default();
    let mut release = press(KeyCode::Char('q'));
    release.kind = KeyEventKind::Release;
    assert!(!ui.handle_key(release));
    assert!(!ui.confirm_stop);
}

#[test]
fn arrows_switch_the_loss_view() {
    let mut ui = UiState::default();
    ui.handle_key(press(KeyCode::Down));
    assert_eq!(ui.loss_view, LossView::Recent);
    let text = render(&status(), &ui, 80, 24);
    dump(&text);
    assert!(text.contains("last epoch"), "{text}");
    // The recent view starts at the last epoch's points, so the x axis starts above 0.
    ui.handle_key(press(KeyCode::Up));
    assert_eq!(ui.loss_view, LossView::Full);
}

#[test]
fn empty_status_draws_placeholders() {
    let text = render(&TrainingStatus::default(), &UiState::default(), 80, 24);
    dump(&text);
    assert!(
        text.contains("waiting for the first logged iteration"),
        "{text}"
    );
    assert!(text.contains("BLEU-4 appears after the first"), "{text}");
    assert!(text.contains("none yet"), "{text}");
    assert!(
        text.contains("captions of fixed validation images"),
        "{text}"
    );
    assert!(text.contains("starting"), "{text}");
}

#[test]
fn single_points_and_nan_losses_do_not_break_the_plots() {
    let mut s = status();
    s.train_loss = vec![(0.1, 3.0)];
    s.val_loss = vec![(1.0, f64::NAN)];
    s.val_bleu4 = vec![(1.0, 0.0)];
    let text = render(&s, &UiState::default(), 120, 40);
    assert!(text.contains("val NaN"), "{text}");
    s.train_loss = vec![(0.1, f64::INFINITY), (0.2, f64::NAN)];
    s.val_loss.clear();
    let text = render(&s, &UiState::default(), 120, 40);
    assert!(
        text.contains("waiting for the first logged iteration"),
        "{text}"
    );
}

#[test]
fn tiny_terminals_do_not_panic() {
    let mut ui = UiState {
        confirm_stop: true,
        messages: vec!["a log line".into()],
        ..UiState::default()
    };
    for status in [status(), TrainingStatus::default()] {
        for width in 0..=70 {
            for height in 0..=22 {
                render(&status, &ui, width, height);
            }
        }
        ui.confirm_stop = false;
    }
    let text = render(&status(), &UiState::default(), 40, 10);
    dump(&text);
    assert!(text.contains("epoch 3/20 it 45/120"), "{text}");
    assert!(text.contains("best: epoch 2"), "{text}");
}

#[test]
fn captions_wrap_by_words() {
    assert_eq!(
        wrap_words("a small green triangle left of a yellow circle", 20),
        vec!["a small green", "triangle left of a", "yellow circle"]
    );
    assert_eq!(wrap_words("", 10), vec![""]);
    assert_eq!(wrap_words("abcdefghijkl x", 5), vec!["abcde", "x"]);
    let mut s = status();
    s.samples[1].reference = "a small green triangle left of a yellow circle ".repeat(3);
    let text = render(&s, &UiState::default(), 80, 30);
    dump(&text);
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("   ref a small green triangle"))
        .expect("reference shown");
    // The continuation lines start under the caption, not under the label.
    let column = lines[at]
        .split("   ref a small")
        .next()
        .map_or(0, |head| head.chars().count());
    let continued: String = lines[at + 1].chars().skip(column).collect();
    assert!(
        continued.starts_with("       ") && continued.trim_start().starts_with(char::is_alphabetic),
        "{text}"
    );
}

#[test]
fn long_histories_are_averaged_down() {
    let points: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, (i % 2) as f64)).collect();
    let down = downsample(&points, 100);
    assert_eq!(down.len(), 100);
    for (_, y) in &down {
        assert!((y - 0.5).abs() < 1e-9, "alternating 0/1 averages to 0.5");
    }
    assert_eq!(downsample(&points[..50], 100).len(), 50);
    let tail = recent(&points);
    assert_eq!(tail.len(), RECENT_MIN_POINTS);
}

#[test]
fn the_log_line_shows_when_there_is_one() {
    let ui = UiState {
        messages: vec!["WARN capsearch: feature cache is stale".into()],
        ..UiState::default()
    };
    let text = render(&status(), &ui, 120, 40);
    assert!(
        text.contains(" log  WARN capsearch: feature cache is stale"),
        "{text}"
    );
}

#[test]
fn screen_redraws_at_most_ten_times_a_second_unless_something_changed() {
    let mut screen = Screen::new(Terminal::new(TestBackend::new(100, 30)).unwrap());
    let t0 = Instant::now();
    let s = status();
    assert!(screen.update(&s, [], false, t0).unwrap(), "first frame");
    let soon = t0 + Duration::from_millis(20);
    assert!(!screen.update(&s, [], false, soon).unwrap(), "too soon");
    assert!(
        screen
            .update(&s, [press(KeyCode::Char('q'))], false, soon)
            .unwrap(),
        "a key that opens the popup redraws at once"
    );
    assert!(buffer_text(screen.terminal.backend()).contains("Stop training?"));
    let mut validating = s.clone();
    validating.phase = Phase::Validating;
    assert!(
        screen.update(&validating, [], false, soon).unwrap(),
        "phase change"
    );
    assert!(
        screen
            .update(&validating, [], false, t0 + Duration::from_millis(200))
            .unwrap(),
        "interval passed"
    );
    assert!(
        screen
            .update(&validating, [press(KeyCode::Char('y'))], false, soon)
            .unwrap()
    );
    assert!(screen.ui.stop_requested);
}

#[test]
fn summary_line_names_the_outcome_and_the_best_checkpoint() {
    let mut s = status();
    s.phase = Phase::Ended(StopReason::Finished);
    assert_eq!(
        summary_line(&s, false),
        "run shapes-small finished: epoch 3/20 after 4m 12s · train loss 0.5970 · \
         val loss 2.1000 · BLEU-4 17.25 · best epoch 2 (BLEU-4 17.25) at \
         checkpoints/shapes-small/best"
    );
    assert!(summary_line(&s, true).starts_with("run shapes-small stopped by user: "));
    let empty = summary_line(&TrainingStatus::default(), false);
    assert!(empty.contains("no best checkpoint yet"), "{empty}");
}
