//! `/runs`: the training runs under `--runs`, each with its best validation BLEU-4, epochs, wall
//! time, loss and BLEU-4 curves (inline SVG), and links to its evaluation reports (found under
//! `--runs` and `--reports`). `/api/runs` gives the same as JSON; the page polls it every few
//! seconds while a run is live, and updates that run's row in place.

use std::path::Path;
use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use axum::response::Html;
use serde::Serialize;

use super::pages::layout;
use super::{AppState, encode_path};
use crate::eval::report::html_escape as esc;
use crate::train::overview::{RunOverview, find_reports, find_runs};

/// How often the page asks for news while a run is live, in milliseconds.
const POLL_MS: u32 = 3000;

/// One run as the page and `/api/runs` show it.
#[derive(Debug, Clone, Serialize)]
pub struct RunEntry {
    /// Folder, relative to `--runs`.
    pub dir: String,
    #[serde(flatten)]
    pub overview: RunOverview,
    /// The run's files and reports: (label, URL).
    pub links: Vec<(String, String)>,
    /// Set when the run's files could not be read.
    pub error: Option<String>,
    /// The curves as inline SVG.
    pub loss_svg: String,
    pub bleu_svg: String,
}

/// `GET /api/runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunsJson {
    pub runs: Vec<RunEntry>,
}

/// Lists the runs under `runs`, linking the reports under `runs` and `reports`.
pub fn list_runs(runs: &Path, reports: Option<&Path>, now: SystemTime) -> Vec<RunEntry> {
    let mut report_links: Vec<(String, crate::train::overview::ReportLink)> = find_reports(runs)
        .into_iter()
        .map(|r| ("/runs".to_string(), r))
        .collect();
    if let Some(reports) = reports {
        report_links.extend(
            find_reports(reports)
                .into_iter()
                .map(|r| ("/reports".to_string(), r)),
        );
    }
    find_runs(runs)
        .into_iter()
        .map(|(dir, run)| {
            let (overview, error) = match RunOverview::read(&run, now) {
                Ok(o) => (o, None),
                Err(e) => (RunOverview::default(), Some(e.to_string())),
            };
            let mut links = Vec::new();
            for (prefix, report) in &report_links {
                if report.is_of(&run) {
                    links.push((
                        format!("report {}", report.dir),
                        format!("{prefix}/{}/index.html", encode_path(&report.dir)),
                    ));
                }
            }
            for file in [run.metrics(), run.config()] {
                if file.is_file()
                    && let Some(name) = file.file_name().and_then(|n| n.to_str())
                {
                    links.push((
                        name.to_string(),
                        format!("/runs/{}", encode_path(&format!("{dir}/{name}"))),
                    ));
                }
            }
            let loss_svg = svg_chart(
                "loss",
                &[
                    (&overview.train_loss, "#3659e3", false),
                    (&overview.val_loss, "#e67300", true),
                ],
            );
            let bleu_svg = svg_chart("BLEU-4", &[(&overview.val_bleu4, "#2c9c2c", true)]);
            RunEntry {
                dir,
                overview,
                links,
                error,
                loss_svg,
                bleu_svg,
            }
        })
        .collect()
}

async fn entries(state: &AppState) -> Option<Vec<RunEntry>> {
    let runs = state.runs.clone()?;
    let reports = state.reports.clone();
    Some(
        tokio::task::spawn_blocking(move || {
            list_runs(&runs, reports.as_deref(), SystemTime::now())
        })
        .await
        .unwrap_or_default(),
    )
}

/// `GET /api/runs`: every run, as on the page (empty without `--runs`).
pub async fn runs_json(State(state): State<AppState>) -> Json<RunsJson> {
    Json(RunsJson {
        runs: entries(&state).await.unwrap_or_default(),
    })
}

/// `GET /runs`.
pub async fn runs_page(State(state): State<AppState>) -> Html<String> {
    let Some(rows) = entries(&state).await else {
        return layout(
            "Runs",
            "/runs",
            "<h1>Training runs</h1><div class=\"panel empty\">Start the server with <code>--runs checkpoints</code> to list training runs here.</div>",
        );
    };
    let mut body = String::from(
        "<h1>Training runs</h1><p class=\"lead\">How the models were trained, with their evaluation reports.</p>",
    );
    if rows.is_empty() {
        body.push_str(
            "<div class=\"panel empty\">No runs found (a run is a folder with a model.json or a metrics.csv).</div>",
        );
        return layout("Runs", "/runs", &body);
    }
    if state.reports.is_none() {
        body.push_str("<p class=\"meta\">Reports written by <code>capsearch eval</code> outside the runs folder are linked when the server is started with <code>--reports reports</code>.</p>");
    }
    body.push_str(
        "<table class=\"runs\"><tr><th>Run</th><th>Best val BLEU-4</th><th>Epochs</th><th>Wall time</th><th>Loss</th><th>BLEU-4</th><th>Reports and files</th></tr>",
    );
    let any_live = rows.iter().any(|r| r.overview.live);
    for run in &rows {
        body.push_str(&row_html(run));
    }
    body.push_str("</table>");
    if any_live {
        body.push_str(&format!(
            r#"<script>
const poll=async()=>{{
  try{{
    const j=await (await fetch('/api/runs')).json();let live=false;
    for(const r of j.runs){{
      const row=[...document.querySelectorAll('tr[data-run]')].find(t=>t.dataset.run===r.dir);
      if(!row)continue;live=live||r.live;
      const set=(f,v)=>{{const el=row.querySelector('[data-field="'+f+'"]');if(el)el.textContent=v}};
      set('status',statusText(r));set('best',bestText(r));set('epochs',epochsText(r));set('wall',wallText(r.wall_s));
      row.querySelector('[data-field="loss"]').innerHTML=r.loss_svg;
      row.querySelector('[data-field="bleu"]').innerHTML=r.bleu_svg;
      row.classList.toggle('live',r.live);
    }}
    if(live)setTimeout(poll,{POLL_MS});
  }}catch(e){{setTimeout(poll,{POLL_MS})}}
}};
const statusText=r=>r.live?('live · '+latestText(r)):(r.ended||'');
const latestText=r=>r.latest?('epoch '+r.latest.epoch+(r.latest.iteration!=null?' · iteration '+r.latest.iteration:'')):'starting';
const bestText=r=>r.best_bleu4==null?'–':(r.best_bleu4.toFixed(2)+' (epoch '+r.best_epoch+')');
const epochsText=r=>r.epochs_done+(r.planned_epochs!=null?' / '+r.planned_epochs:'');
const wallText=s=>{{if(s==null)return '–';s=Math.floor(s);return s<60?s+'s':s<3600?Math.floor(s/60)+'m '+String(s%60).padStart(2,'0')+'s':Math.floor(s/3600)+'h '+String(Math.floor(s/60)%60).padStart(2,'0')+'m'}};
setTimeout(poll,{POLL_MS});
</script>"#
        ));
    }
    layout("Runs", "/runs", &body)
}

/// "epoch 3 · iteration 45" (iterations counted from the start of the run).
fn latest_text(o: &RunOverview) -> String {
    match &o.latest {
        Some(row) => match row.iteration {
            Some(it) => format!("epoch {} · iteration {}", row.epoch, it),
            None => format!("epoch {}", row.epoch),
        },
        None => "starting".into(),
    }
}

fn row_html(run: &RunEntry) -> String {
    let o = &run.overview;
    let status = if o.live {
        format!("live · {}", latest_text(o))
    } else {
        o.ended.clone().unwrap_or_default()
    };
    let best = match (o.best_bleu4, o.best_epoch) {
        (Some(b), Some(e)) => format!("{b:.2} (epoch {e})"),
        _ => "–".into(),
    };
    let epochs = match o.planned_epochs {
        Some(p) => format!("{} / {p}", o.epochs_done),
        None => o.epochs_done.to_string(),
    };
    let wall = o
        .wall_s
        .map(|s| crate::util::format_duration(std::time::Duration::from_secs_f64(s.max(0.0))))
        .unwrap_or_else(|| "–".into());
    let links: Vec<String> = run
        .links
        .iter()
        .map(|(label, url)| format!("<a href=\"{}\">{}</a>", esc(url), esc(label)))
        .collect();
    let error = run
        .error
        .as_ref()
        .map(|e| format!("<div class=\"error\">{}</div>", esc(e)))
        .unwrap_or_default();
    format!(
        "<tr data-run=\"{dir}\"{class}><td><strong>{dir}</strong><div class=\"meta\">{name}</div>\
<div class=\"meta\" data-field=\"status\">{status}</div>{error}</td>\
<td data-field=\"best\">{best}</td><td data-field=\"epochs\">{epochs}</td><td data-field=\"wall\">{wall}</td>\
<td data-field=\"loss\">{loss}</td><td data-field=\"bleu\">{bleu}</td><td>{links}</td></tr>",
        dir = esc(&run.dir),
        class = if o.live { " class=\"live\"" } else { "" },
        name = esc(&o.name),
        status = esc(&status),
        loss = run.loss_svg,
        bleu = run.bleu_svg,
        links = links.join("<br>"),
    )
}

/// One line of a chart: its points, colour, and whether each point gets a marker.
pub type Series<'a> = (&'a Vec<(f64, f64)>, &'a str, bool);

/// A small line chart. Only numbers go into the SVG.
pub fn svg_chart(label: &str, series: &[Series]) -> String {
    const W: f64 = 160.0;
    const H: f64 = 56.0;
    const PAD: f64 = 4.0;
    let points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(p, _, _)| p.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if points.is_empty() {
        return "<span class=\"meta\">–</span>".into();
    }
    let range = |v: Vec<f64>| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if hi > lo {
            (lo, hi)
        } else {
            (lo - 0.5, lo + 0.5)
        }
    };
    let (x0, x1) = range(points.iter().map(|p| p.0).collect());
    let (y0, y1) = range(points.iter().map(|p| p.1).collect());
    let sx = |x: f64| PAD + (x - x0) / (x1 - x0) * (W - 2.0 * PAD);
    let sy = |y: f64| H - PAD - (y - y0) / (y1 - y0) * (H - 2.0 * PAD);
    let mut svg = format!(
        "<svg class=\"curve\" role=\"img\" aria-label=\"{label}\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\">\
<rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"#fafbfc\" stroke=\"#e4e7ec\"/>",
        label = esc(label)
    );
    for (pts, color, markers) in series {
        let pts: Vec<(f64, f64)> = pts
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        if pts.is_empty() {
            continue;
        }
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
            path.join(" ")
        ));
        if *markers && pts.len() <= 60 {
            for &(x, y) in &pts {
                svg.push_str(&format!(
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.8\" fill=\"{color}\"/>",
                    sx(x),
                    sy(y)
                ));
            }
        }
    }
    svg.push_str(&format!(
        "<text x=\"{:.0}\" y=\"11\" font-size=\"9\" text-anchor=\"end\" fill=\"#667085\">{}</text>\
<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"9\" text-anchor=\"end\" fill=\"#667085\">{}</text></svg>",
        W - PAD,
        short(y1),
        W - PAD,
        H - PAD - 1.0,
        short(y0)
    ));
    svg
}

fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::metrics::{MetricsLog, MetricsRow};
    use crate::model::run_dir::RunDir;

    fn write_run(root: &Path, name: &str, epochs: usize) -> RunDir {
        let run = RunDir::new(root.join(name));
        std::fs::create_dir_all(run.root()).unwrap();
        std::fs::write(run.config(), format!("[loop]\nepochs = {epochs}\n")).unwrap();
        let mut log = MetricsLog::open(&run.metrics(), 0).unwrap();
        let mut it = 0;
        for epoch in 1..=epochs {
            for _ in 0..13 {
                it += 1;
                log.append(&MetricsRow::iteration(
                    epoch,
                    it,
                    4.0 / it as f64,
                    1e-3,
                    9.0,
                    it as f64,
                ))
                .unwrap();
            }
            log.append(&MetricsRow::epoch(
                epoch,
                it,
                1.5,
                epoch as f64,
                1e-3,
                9.0,
                it as f64,
            ))
            .unwrap();
        }
        run
    }

    /// The defect: "Epochs logged 420" for a 30-epoch run (it counted lines, iteration rows too).
    #[test]
    fn a_thirty_epoch_run_shows_thirty_epochs_and_its_best() {
        let dir = tempfile::tempdir().unwrap();
        let run = write_run(dir.path(), "shapes", 30);
        run.save_state(&crate::model::run_dir::ResumeState {
            ended: Some("finished".into()),
            ..Default::default()
        })
        .unwrap();
        let rows = list_runs(dir.path(), None, SystemTime::now());
        assert_eq!(rows.len(), 1);
        let html = row_html(&rows[0]);
        assert!(
            html.contains("<td data-field=\"epochs\">30 / 30</td>"),
            "{html}"
        );
        assert!(!html.contains("420"), "{html}");
        assert!(html.contains("30.00 (epoch 30)"), "{html}");
        assert!(html.contains("6m 30s"), "wall time: {html}");
        assert!(
            html.contains("<svg") && html.contains("<polyline"),
            "{html}"
        );
        assert!(html.contains("/runs/shapes/metrics.csv"), "{html}");
        assert!(!rows[0].overview.live);
    }

    #[test]
    fn charts_hold_only_numbers_and_survive_odd_data() {
        assert!(svg_chart("loss", &[(&vec![], "#000", true)]).contains('–'));
        let one = svg_chart("x", &[(&vec![(1.0, 2.0)], "#000", true)]);
        assert!(one.contains("<circle") && !one.contains("NaN"), "{one}");
        let odd = svg_chart(
            "x",
            &[(
                &vec![(0.0, f64::NAN), (1.0, 1.0), (2.0, 3.0)],
                "#000",
                false,
            )],
        );
        assert!(!odd.contains("NaN") && odd.contains("<polyline"), "{odd}");
    }
}
