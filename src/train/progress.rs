//! The plain-log reporter: the dashboard's information as `tracing` lines, for runs whose stdout is
//! not a terminal (CI, `nohup`, pipes) or that pass `--no-tui`.
//!
//! It logs one line every N training iterations (by default a tenth of an epoch), one line per
//! epoch once validation is done, a line whenever the best checkpoint changes, the validation
//! samples whenever their captions change, and a summary line at the end.

use super::report::{
    Phase, SampleCaption, TrainingReporter, TrainingStatus, format_bleu, format_bytes,
    format_duration, format_eta, format_loss, format_lr, format_rate, summary_line,
};

/// Reports progress as `tracing::info!` lines. It never asks the run to stop: without a terminal
/// there is no key to press (stop such a run with a signal; `--resume` continues it).
#[derive(Debug, Default)]
pub struct LogReporter {
    /// Log an iteration line every this many iterations; `None`: a tenth of an epoch.
    every: Option<usize>,
    last_iteration_logged: Option<usize>,
    last_epoch_logged: Option<usize>,
    last_best_logged: Option<(usize, u64)>,
    last_samples_logged: Vec<SampleCaption>,
    last_phase: Phase,
}

impl LogReporter {
    /// A reporter that logs an iteration line every tenth of an epoch.
    pub fn new() -> Self {
        Self::default()
    }

    /// A reporter that logs an iteration line every `iterations` iterations (at least 1).
    pub fn every(iterations: usize) -> Self {
        Self {
            every: Some(iterations.max(1)),
            ..Self::default()
        }
    }

    fn interval(&self, status: &TrainingStatus) -> usize {
        self.every
            .unwrap_or_else(|| status.iterations_per_epoch.div_ceil(10))
            .max(1)
    }

    /// The lines this update produces, in order; [`TrainingReporter::update`] logs them.
    pub fn lines(&mut self, status: &TrainingStatus) -> Vec<String> {
        let mut lines = Vec::new();
        let phase_changed = status.phase != self.last_phase;
        if phase_changed {
            self.last_phase.clone_from(&status.phase);
            if status.phase == Phase::Stopping {
                lines.push("stopping: saving a checkpoint, then exiting".to_string());
            } else {
                tracing::debug!("phase: {}", status.phase);
            }
        }

        if status.phase == Phase::Training
            && status.global_iteration > 0
            && self
                .last_iteration_logged
                .is_none_or(|last| status.global_iteration >= last + self.interval(status))
        {
            self.last_iteration_logged = Some(status.global_iteration);
            lines.push(iteration_line(status));
        }

        // The epoch line waits for the epoch's BLEU-4, or for the loop to move past decoding.
        if let Some(epoch) = status.val_loss.last().map(|p| p.0.round() as usize)
            && self.last_epoch_logged.is_none_or(|last| epoch > last)
        {
            let bleu_in = status
                .val_bleu4
                .last()
                .is_some_and(|p| p.0.round() as usize >= epoch);
            let moved_on = !matches!(status.phase, Phase::Validating | Phase::Decoding);
            if bleu_in || moved_on {
                self.last_epoch_logged = Some(epoch);
                lines.push(epoch_line(status, epoch));
            }
        }

        if status.samples != self.last_samples_logged {
            self.last_samples_logged.clone_from(&status.samples);
            for sample in &status.samples {
                lines.push(format!(
                    "sample {}: {:?} (reference: {:?})",
                    sample.image, sample.generated, sample.reference
                ));
            }
        }

        if let Some(best) = &status.best {
            let key = (best.epoch, best.bleu4.to_bits());
            if self.last_best_logged != Some(key) {
                self.last_best_logged = Some(key);
                lines.push(format!(
                    "new best checkpoint: epoch {} · BLEU-4 {:.2} · {}",
                    best.epoch,
                    best.bleu4,
                    best.path.display()
                ));
            }
        }
        lines
    }
}

/// "epoch 3/20 it 45/120 (38%) · loss 1.2345 · lr 1.00e-3 · 312.4 img/s · 3.12k tok/s · mem 512.3 MiB · elapsed 4m 12s · epoch ETA 1m 02s · ETA 23m 10s"
pub fn iteration_line(status: &TrainingStatus) -> String {
    let mut line = format!(
        "epoch {}/{} it {}/{} ({:.0}%) · loss {} · lr {} · {} img/s · {} tok/s",
        status.epoch,
        status.epochs,
        status.iteration,
        status.iterations_per_epoch,
        100.0 * status.epoch_fraction(),
        format_loss(status.last_train_loss()),
        format_lr(status.learning_rate),
        format_rate(status.images_per_sec),
        format_rate(status.tokens_per_sec),
    );
    if let Some(bytes) = status.memory_bytes {
        line.push_str(&format!(" · mem {}", format_bytes(bytes)));
    }
    line.push_str(&format!(
        " · elapsed {} · epoch ETA {} · ETA {}",
        format_duration(status.elapsed),
        format_eta(status.epoch_eta),
        format_eta(status.eta)
    ));
    if let Some(left) = status.budget_left() {
        line.push_str(&format!(" · budget left {}", format_duration(left)));
    }
    line
}

/// "epoch 3/20 done · train loss 1.2345 · val loss 2.1000 (ppl 8.17) · BLEU-4 17.25 (best 17.25) · elapsed 4m 12s · ETA 23m 10s"
pub fn epoch_line(status: &TrainingStatus, epoch: usize) -> String {
    let on_epoch = |points: &[(f64, f64)]| {
        points
            .iter()
            .rev()
            .find(|p| p.0.round() as usize == epoch)
            .map(|p| p.1)
    };
    let val = on_epoch(&status.val_loss);
    let bleu = on_epoch(&status.val_bleu4);
    let best = status
        .val_bleu4
        .iter()
        .map(|p| p.1)
        .filter(|b| b.is_finite())
        .fold(None, |acc: Option<f64>, b| {
            Some(acc.map_or(b, |a| a.max(b)))
        });
    let ppl = val
        .map(f64::exp)
        .filter(|p| p.is_finite())
        .map_or_else(|| "-".to_string(), |p| format!("{p:.2}"));
    format!(
        "epoch {epoch}/{} done · train loss {} · val loss {} (ppl {ppl}) · BLEU-4 {} (best {}) · elapsed {} · ETA {}",
        status.epochs,
        format_loss(status.last_train_loss()),
        format_loss(val),
        format_bleu(bleu),
        format_bleu(best),
        format_duration(status.elapsed),
        format_eta(status.eta),
    )
}

impl TrainingReporter for LogReporter {
    fn update(&mut self, status: &TrainingStatus) {
        for line in self.lines(status) {
            tracing::info!("{line}");
        }
    }

    fn stop_requested(&mut self) -> bool {
        false
    }

    fn finish(&mut self, status: &TrainingStatus) {
        // An epoch whose line was still waiting for its BLEU-4.
        if let Some(epoch) = status.val_loss.last().map(|p| p.0.round() as usize)
            && self.last_epoch_logged.is_none_or(|last| epoch > last)
        {
            self.last_epoch_logged = Some(epoch);
            tracing::info!("{}", epoch_line(status, epoch));
        }
        tracing::info!("{}", summary_line(status, false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::report::{BestCheckpoint, StopReason};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn status() -> TrainingStatus {
        TrainingStatus {
            run_name: "shapes".into(),
            epoch: 1,
            epochs: 2,
            iteration: 0,
            iterations_per_epoch: 100,
            learning_rate: 1e-3,
            images_per_sec: 312.44,
            tokens_per_sec: 3120.0,
            elapsed: Duration::from_secs(252),
            eta: Some(Duration::from_secs(1390)),
            epoch_eta: Some(Duration::from_secs(62)),
            memory_bytes: Some(537_214_976),
            phase: Phase::Training,
            ..TrainingStatus::default()
        }
    }

    fn step(s: &mut TrainingStatus, iteration: usize) {
        s.iteration = iteration;
        s.global_iteration = (s.epoch - 1) * s.iterations_per_epoch + iteration;
        let x = (s.epoch - 1) as f64 + iteration as f64 / 100.0;
        s.train_loss.push((x, 3.0 - x));
    }

    #[test]
    fn iteration_line_format() {
        let mut s = status();
        step(&mut s, 45);
        s.time_budget = Some(Duration::from_secs(600));
        assert_eq!(
            iteration_line(&s),
            "epoch 1/2 it 45/100 (45%) · loss 2.5500 · lr 1.00e-3 · 312.4 img/s · 3.12k tok/s \
             · mem 512.3 MiB · elapsed 4m 12s · epoch ETA 1m 02s · ETA 23m 10s · budget left 5m 48s"
        );
    }

    #[test]
    fn logs_every_tenth_of_an_epoch_then_each_epoch_once() {
        let mut reporter = LogReporter::new();
        let mut s = status();
        let mut iteration_lines = 0;
        for it in 1..=100 {
            step(&mut s, it);
            if it % 5 == 0 {
                let lines = reporter.lines(&s);
                iteration_lines += lines.len();
                assert!(lines.iter().all(|l| l.starts_with("epoch 1/2 it ")));
            }
        }
        // Updates every 5 iterations, a line every 10: iterations 5, 15, 25, ..., 95.
        assert_eq!(iteration_lines, 10);

        s.phase = Phase::Validating;
        s.val_loss.push((1.0, 2.1));
        assert!(reporter.lines(&s).is_empty(), "waits for BLEU-4");
        s.phase = Phase::Decoding;
        s.val_bleu4.push((1.0, 17.25));
        s.samples = vec![SampleCaption {
            image: "val/1.png".into(),
            generated: "a red circle".into(),
            reference: "a red circle".into(),
        }];
        let lines = reporter.lines(&s);
        assert_eq!(
            lines,
            vec![
                "epoch 1/2 done · train loss 2.0000 · val loss 2.1000 (ppl 8.17) · BLEU-4 17.25 \
                 (best 17.25) · elapsed 4m 12s · ETA 23m 10s",
                "sample val/1.png: \"a red circle\" (reference: \"a red circle\")",
            ]
        );
        s.phase = Phase::Saving;
        s.best = Some(BestCheckpoint {
            epoch: 1,
            bleu4: 17.25,
            path: "runs/shapes/best".into(),
        });
        assert_eq!(
            reporter.lines(&s),
            vec!["new best checkpoint: epoch 1 · BLEU-4 17.25 · runs/shapes/best"]
        );
        assert!(reporter.lines(&s).is_empty(), "nothing new, nothing logged");

        s.phase = Phase::Stopping;
        assert_eq!(
            reporter.lines(&s),
            vec!["stopping: saving a checkpoint, then exiting"]
        );
    }

    #[test]
    fn epoch_line_without_bleu_once_the_loop_moves_on() {
        let mut reporter = LogReporter::every(1000);
        let mut s = status();
        step(&mut s, 100);
        s.phase = Phase::Validating;
        s.val_loss.push((1.0, 2.1));
        assert!(reporter.lines(&s).is_empty());
        s.phase = Phase::Saving;
        let lines = reporter.lines(&s);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("BLEU-4 - (best -)"), "{}", lines[0]);
    }

    /// A `MakeWriter` into a shared buffer, to read what `tracing` printed.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn update_and_finish_log_through_tracing() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let mut reporter = LogReporter::every(10);
            let mut s = status();
            step(&mut s, 10);
            reporter.update(&s);
            s.val_loss.push((1.0, 2.1));
            s.phase = Phase::Ended(StopReason::Finished);
            assert!(!reporter.stop_requested());
            reporter.finish(&s);
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with(" INFO epoch 1/2 it 10/100 (10%) · loss 2.9000"),
            "{text}"
        );
        assert!(
            lines[1].starts_with(" INFO epoch 1/2 done · train loss 2.9000"),
            "{text}"
        );
        assert!(
            lines[2].starts_with(" INFO run shapes finished: epoch 1/2 after 4m 12s"),
            "{text}"
        );
    }
}
