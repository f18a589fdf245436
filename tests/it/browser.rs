//! The web app in a real browser: headless Chromium, driven through chromedriver (WebDriver, with
//! `fantoccini`), against a real `capsearch serve` with a tiny trained model.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them the test
//! fails and says how to install them, unless `CAPSEARCH_SKIP_BROWSER=1` is set. `CHROMEDRIVER`
//! and `CHROMIUM` name the programs when they are not on PATH. Screenshots go to
//! `<target dir>/test-output/browser/` (or `CAPSEARCH_TEST_OUTPUT/browser/`); the test prints
//! where.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::blocking::multipart;
use serde_json::{Value, json};

use capsearch::model::metrics::{MetricsLog, MetricsRow};

use crate::common::{CAPTIONS, png_bytes, tempdir, write};
use crate::serve::{Server, train_tiny};

/// Says something on the real stderr (the test harness captures `eprintln!`).
fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// The program `var` names, if it exists; else the first of `names` on PATH.
fn program(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// A running chromedriver; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(program: &Path) -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where screenshots go: `<target dir>/test-output/browser`.
fn output_dir() -> PathBuf {
    let base = match std::env::var_os("CAPSEARCH_TEST_OUTPUT") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .map(|target| target.join("test-output"))
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-output")),
    };
    let dir = base.join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls `check` (a script returning a boolean) until it is true, or fails after `timeout`.
async fn wait_until(client: &Client, what: &str, script: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let value = client.execute(script, vec![]).await.unwrap();
        if value == Value::Bool(true) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn search_by_uploading_a_shapes_image_in_chromium() {
    let (Some(chromedriver), Some(chromium)) = (
        program("CHROMEDRIVER", &["chromedriver"]),
        program(
            "CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        ),
    ) else {
        if std::env::var("CAPSEARCH_SKIP_BROWSER").is_ok_and(|v| v == "1") {
            say("skipped the browser test: CAPSEARCH_SKIP_BROWSER=1");
            return;
        }
        panic!(
            "the browser test needs chromium and chromedriver: install them with \
             `apt-get install chromium chromium-driver` (.ci/run does), name them with CHROMIUM \
             and CHROMEDRIVER, or set CAPSEARCH_SKIP_BROWSER=1 to skip this test"
        );
    };

    let dir = tempdir();
    let d = dir.path();
    train_tiny(d);
    // A shapes image to search with, and a few more plus the four colours in the index.
    let shapes: Vec<Vec<u8>> = (0..9)
        .map(|i| {
            capsearch::data::shapes::generate_one(11, i, 96, 1)
                .unwrap()
                .png
        })
        .collect();
    let query_image = write(&d.join("query/shape.png"), &shapes[0]);
    // A run in progress beside the trained one: 2 of 5 epochs so far.
    let live = d.join("runs/live");
    write(&live.join("config.toml"), "[loop]\nepochs = 5\n");
    let mut log = MetricsLog::open(&live.join("metrics.csv"), 0).unwrap();
    for epoch in 1..=2 {
        log.append(&MetricsRow::iteration(
            epoch,
            epoch * 10,
            3.0 / epoch as f64,
            1e-3,
            90.0,
            10.0,
        ))
        .unwrap();
        log.append(&MetricsRow::epoch(
            epoch,
            epoch * 10,
            2.5,
            10.0 * epoch as f64,
            1e-3,
            90.0,
            11.0,
        ))
        .unwrap();
    }
    let server = Server::start(
        d,
        &[
            "--image-root",
            "root",
            "--index-path",
            "index",
            "--runs",
            "runs",
        ],
    );
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut upload = multipart::Form::new();
    for (i, bytes) in shapes.iter().enumerate().skip(1) {
        upload = upload.part(
            "image",
            multipart::Part::bytes(bytes.clone()).file_name(format!("shape{i}.png")),
        );
    }
    for (name, color, _) in CAPTIONS {
        upload = upload.part(
            "image",
            multipart::Part::bytes(png_bytes(96, 96, color)).file_name(name.to_string()),
        );
    }
    let added = http
        .post(server.at("/api/images"))
        .multipart(upload)
        .send()
        .unwrap();
    assert_eq!(added.status(), 200, "{}", added.text().unwrap());

    let driver = Driver::start(&chromedriver);
    let profile = tempdir();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = output_dir();
    runtime.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_string(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--hide-scrollbars",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| panic!("chromedriver at {} refused a session: {e}", driver.url));
        // A failing check panics inside the task; the browser is closed either way.
        let outcome = tokio::spawn(drive(
            client.clone(),
            server.url.clone(),
            query_image.clone(),
            out.clone(),
            live.clone(),
        ))
        .await;
        let _ = client.close().await;
        if let Err(e) = outcome {
            match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("the browser task failed: {e}"),
            }
        }
    });
    drop(driver);
}

/// Everything the browser does; the session is closed by the caller whatever happens here.
async fn drive(client: Client, base: String, image: PathBuf, out: PathBuf, live: PathBuf) {
    let client = &client;
    client.goto(&format!("{base}/")).await.unwrap();
    let title = client.title().await.unwrap();
    assert!(title.contains("capsearch"), "{title}");
    // The page's file input (hidden behind the drop zone): WebDriver sets its file.
    let input = client.find(Locator::Css("input#file")).await.unwrap();
    input
        .send_keys(image.to_str().expect("temporary paths are UTF-8"))
        .await
        .unwrap();
    wait_until(
        client,
        "search results",
        "return document.querySelectorAll('#results .card').length > 0",
        Duration::from_secs(60),
    )
    .await;
    // Every result image has loaded (none broken), and so has the preview.
    wait_until(
        client,
        "the result images to load",
        "return [...document.querySelectorAll('#results img, #preview')]\
         .every(i => i.complete && i.naturalWidth > 0)",
        Duration::from_secs(20),
    )
    .await;
    let caption = client
        .find(Locator::Id("caption"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        CAPTIONS.iter().any(|(_, _, c)| *c == caption),
        "the page shows the caption {caption:?}, not one the model knows"
    );
    let cards = client
        .find_all(Locator::Css("#results .card"))
        .await
        .unwrap();
    assert!(!cards.is_empty());
    let first = cards[0]
        .find(Locator::Css(".cap"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(first, caption, "the best result has the same caption");
    let error = client
        .execute("return document.getElementById('err').hidden", vec![])
        .await
        .unwrap();
    assert_eq!(error, Value::Bool(true), "the page shows an error");
    let shot = out.join("search.png");
    std::fs::write(&shot, client.screenshot().await.unwrap()).unwrap();
    say(&format!(
        "browser test: {} results for {caption:?}; screenshot {}",
        cards.len(),
        shot.display()
    ));

    // The index, as /browse shows it.
    client.goto(&format!("{base}/browse")).await.unwrap();
    wait_until(
        client,
        "the browse page's images to load",
        "return document.querySelectorAll('.grid img').length === 12 && \
         [...document.querySelectorAll('.grid img')].every(i => i.complete && i.naturalWidth > 0)",
        Duration::from_secs(20),
    )
    .await;
    let shot = out.join("browse.png");
    std::fs::write(&shot, client.screenshot().await.unwrap()).unwrap();
    say(&format!("browser test: screenshot {}", shot.display()));
    let img = image::load_from_memory(&std::fs::read(&shot).unwrap()).unwrap();
    assert!(
        img.width() >= 1000,
        "screenshot {}×{}",
        img.width(),
        img.height()
    );

    // The Runs page: the finished run and the live one, whose row follows its metrics.csv.
    client.goto(&format!("{base}/runs")).await.unwrap();
    let epochs = |run: &str| {
        format!(
            "return document.querySelector('tr[data-run=\"{run}\"] [data-field=epochs]').textContent"
        )
    };
    let tiny = client.execute(&epochs("tiny"), vec![]).await.unwrap();
    assert_eq!(tiny, Value::String("150 / 150".into()));
    let now = client.execute(&epochs("live"), vec![]).await.unwrap();
    assert_eq!(now, Value::String("2 / 5".into()));
    let status = client
        .execute(
            "return document.querySelector('tr[data-run=\"live\"] [data-field=status]').textContent",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        status,
        Value::String("live · epoch 2 · iteration 20".into())
    );
    let mut log = MetricsLog::open(&live.join("metrics.csv"), 20).unwrap();
    log.append(&MetricsRow::iteration(3, 30, 0.9, 1e-3, 90.0, 20.0))
        .unwrap();
    log.append(&MetricsRow::epoch(3, 30, 2.0, 35.5, 1e-3, 90.0, 21.0))
        .unwrap();
    wait_until(
        client,
        "the live run's row to show epoch 3",
        &format!(
            "{}.trim() === '3 / 5'",
            epochs("live").replacen("return ", "return (", 1) + ")"
        ),
        Duration::from_secs(20),
    )
    .await;
    let best = client
        .execute(
            "return document.querySelector('tr[data-run=\"live\"] [data-field=best]').textContent",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(best, Value::String("35.50 (epoch 3)".into()));
    let shot = out.join("runs.png");
    std::fs::write(&shot, client.screenshot().await.unwrap()).unwrap();
    say(&format!("browser test: screenshot {}", shot.display()));
}
