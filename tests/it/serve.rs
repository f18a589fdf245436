//! `capsearch serve` end to end: a tiny trained model, a real server on an ephemeral port, every
//! route and error status, base64 and multipart, 200 parallel requests, traversal attempts, CORS,
//! a search backend that is down, and graceful shutdown on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::blocking::{Client, multipart};
use serde_json::{Value, json};

use crate::common::{bin, bomb_png, png_bytes, run_in, tempdir, write};

use crate::common::{CAPTIONS, write_tiny_config};

/// Trains a model that captions four solid colours exactly (a few seconds), into `dir/runs/tiny`.
pub(crate) fn train_tiny(dir: &Path) {
    let mut csv = String::from("image,caption,split\n");
    for (name, color, caption) in CAPTIONS {
        write(
            &dir.join("data/images").join(name),
            png_bytes(16, 16, color),
        );
        write(&dir.join("data/val").join(name), png_bytes(16, 16, color));
        csv.push_str(&format!(
            "images/{name},{caption},train\nval/{name},{caption},val\n"
        ));
    }
    write(&dir.join("data/data.csv"), csv);
    write_tiny_config(&dir.join("tiny.toml"), 50);
    run_in(
        dir,
        &[
            "train",
            "--config",
            "tiny.toml",
            "--dataset",
            "data/data.csv",
            "--out",
            "runs/tiny",
            "--no-tui",
        ],
    )
    .ok();
}

/// A running `capsearch serve`; killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl Server {
    pub(crate) fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(bin())
            .args(["serve", "--model", "runs/tiny", "--addr", "127.0.0.1:0"])
            .args(extra)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting capsearch serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("capsearch serving on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim_end_matches('/')
            .to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        Server { child, url }
    }

    pub(crate) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Sends a raw request line (no URL normalisation by a client) and returns status and body.
    fn raw_get(&self, path: &str) -> (u16, String) {
        self.raw(&format!("GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n"))
    }

    /// Sends `head` (request line and headers, Host added) and reads the whole answer.
    fn raw(&self, head: &str) -> (u16, String) {
        let addr = self.url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).unwrap();
        let (line, rest) = head.split_once("\r\n").unwrap();
        write!(stream, "{line}\r\nHost: {addr}\r\n{rest}").unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        // The server may keep the connection open (e.g. waiting for a body it refused): read
        // until it closes or goes quiet.
        let mut bytes = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
        let response = String::from_utf8_lossy(&bytes).into_owned();
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {response:?}"));
        (status, response)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn form(name: &str, bytes: Vec<u8>) -> multipart::Form {
    multipart::Form::new().part(
        "image",
        multipart::Part::bytes(bytes)
            .file_name(name.to_string())
            .mime_str("application/octet-stream")
            .unwrap(),
    )
}

fn json_of(resp: reqwest::blocking::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

fn assert_error(resp: reqwest::blocking::Response, status: u16, error: &str) -> Value {
    let (got, body) = json_of(resp);
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    body
}

#[test]
fn serves_the_api_pages_and_files_safely() {
    let dir = tempdir();
    let d = dir.path();
    train_tiny(d);
    std::fs::create_dir_all(d.join("root")).unwrap();
    // things outside the image root that must never be served
    write(&d.join("secret.png"), png_bytes(4, 4, [1, 2, 3]));
    write(&d.join("secret.txt"), "TOP SECRET");
    std::os::unix::fs::symlink(d.join("secret.png"), d.join("root/escape.png")).unwrap();
    write(&d.join("root/notes.txt"), "not an image");
    write(&d.join("root/<b>x&y.png"), png_bytes(4, 4, [9, 9, 9]));

    let server = Server::start(
        d,
        &[
            "--image-root",
            "root",
            "--index-path",
            "index",
            "--runs",
            "runs",
            "--max-body",
            "100KB",
        ],
    );
    let client = Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    // health before anything is indexed; queries on the missing index have no results
    let (status, health) = json_of(client.get(server.at("/healthz")).send().unwrap());
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["backend"], "embedded");
    assert_eq!(health["documents"], 0);
    let model = health["model"].as_str().unwrap().to_string();
    assert!(!model.is_empty());
    let (status, body) = json_of(client.get(server.at("/api/query?q=red")).send().unwrap());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"], json!([]));
    let browse = client
        .get(server.at("/browse"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(browse.contains("Nothing is indexed yet"), "{browse}");

    // another process indexes a dataset image with a name and caption that need escaping
    write(
        &d.join("root/named.csv"),
        "image,caption,split\n<b>x&y.png,a <i>strange</i> & odd name,train\n",
    );
    run_in(
        &d.join("root"),
        &[
            "index",
            "--dataset",
            "named.csv",
            "--index-path",
            "../index",
        ],
    )
    .ok();

    // add the four images in one multipart request, under client names the server ignores
    let mut upload = multipart::Form::new();
    for (name, color, _) in CAPTIONS {
        upload = upload.part(
            "image",
            multipart::Part::bytes(png_bytes(16, 16, color))
                .file_name(format!("../../evil/{name}")),
        );
    }
    let (status, added) = json_of(
        client
            .post(server.at("/api/images"))
            .multipart(upload)
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{added}");
    let added = added["added"].as_array().unwrap().clone();
    assert_eq!(added.len(), 4);
    let mut stored = std::collections::HashMap::new();
    for (a, (name, _, caption)) in added.iter().zip(CAPTIONS) {
        assert_eq!(a["caption"], caption, "{a}");
        let path = a["path"].as_str().unwrap();
        assert!(
            path.starts_with("uploads/upload-") && path.ends_with(".png"),
            "{path}"
        );
        assert!(d.join("root").join(path).is_file(), "{path} not stored");
        stored.insert(name, path.to_string());
    }
    assert!(!d.join("evil").exists() && !d.join("root/evil").exists());
    let (_, health) = json_of(client.get(server.at("/healthz")).send().unwrap());
    assert_eq!(health["documents"], 5, "{health}");

    // caption: multipart, base64, data: URL
    let red = png_bytes(16, 16, CAPTIONS[0].1);
    let (status, body) = json_of(
        client
            .post(server.at("/api/caption"))
            .multipart(form("r.png", red.clone()))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["caption"], "a red square on the left");
    assert_eq!(body["model"], model.as_str());
    assert!(body["logprob"].as_f64().unwrap() <= 0.0);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&red);
    for image in [b64.clone(), format!("data:image/png;base64,{b64}")] {
        let (status, body) = json_of(
            client
                .post(server.at("/api/caption"))
                .json(&json!({ "image_base64": image }))
                .send()
                .unwrap(),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["caption"], "a red square on the left");
    }

    // search by image: the same image comes first, and its URL serves its bytes
    let blue = png_bytes(16, 16, CAPTIONS[2].1);
    let (status, body) = json_of(
        client
            .post(server.at("/api/search?size=2"))
            .multipart(form("b.png", blue.clone()))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["caption"], "two blue triangles at the top");
    let results = body["results"].as_array().unwrap();
    assert!(!results.is_empty() && results.len() <= 2, "{body}");
    assert_eq!(results[0]["path"], stored["blue.png"].as_str(), "{body}");
    assert_eq!(results[0]["caption"], "two blue triangles at the top");
    assert!(results[0]["score"].as_f64().unwrap() > 0.0);
    let url = results[0]["url"].as_str().unwrap();
    let image = client.get(server.at(url)).send().unwrap();
    assert_eq!(image.status(), 200);
    assert_eq!(image.headers()["content-type"], "image/png");
    assert_eq!(image.bytes().unwrap().to_vec(), blue);
    // JSON search with paging in the body
    let (status, body) = json_of(
        client
            .post(server.at("/api/search"))
            .json(&json!({ "image_base64": base64::engine::general_purpose::STANDARD.encode(&blue), "size": 1, "offset": 0 }))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 1, "{body}");

    // text query and paging
    let (status, body) = json_of(
        client
            .get(server.at("/api/query?q=green%20circle&size=1"))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["path"], stored["green.png"].as_str());
    assert_eq!(body["results"].as_array().unwrap().len(), 1);
    let (_, page2) = json_of(
        client
            .get(server.at("/api/query?q=a%20circle%20square%20wall&size=2&offset=2"))
            .send()
            .unwrap(),
    );
    assert!(page2["results"].as_array().unwrap().len() <= 2, "{page2}");

    // every error status, always as JSON {error, detail}
    let post_json = |path: &str, v: Value| client.post(server.at(path)).json(&v).send().unwrap();
    assert_error(
        post_json("/api/caption", json!({"image_base64": "not base64 !!!"})),
        400,
        "bad_base64",
    );
    assert_error(
        post_json("/api/caption", json!({"nothing": 1})),
        400,
        "bad_request",
    );
    let mut truncated = red.clone();
    truncated.truncate(40);
    assert_error(
        client
            .post(server.at("/api/caption"))
            .multipart(form("t.png", truncated))
            .send()
            .unwrap(),
        400,
        "bad_image",
    );
    // a text file named .png: the bytes decide
    assert_error(
        client
            .post(server.at("/api/caption"))
            .multipart(form("fake.png", b"hello, I am text".to_vec()))
            .send()
            .unwrap(),
        415,
        "unsupported_media_type",
    );
    assert_error(
        client
            .post(server.at("/api/caption"))
            .header("content-type", "text/plain")
            .body("hi")
            .send()
            .unwrap(),
        415,
        "unsupported_media_type",
    );
    // over --max-body (100 KB), as multipart and as JSON: refused from the declared length,
    // before the body is read (so the test sends only the head)
    for content_type in ["multipart/form-data; boundary=XyZ", "application/json"] {
        for path in ["/api/caption", "/api/images"] {
            let (status, response) = server.raw(&format!(
                "POST {path} HTTP/1.1\r\nContent-Type: {content_type}\r\nContent-Length: 300000\r\nConnection: close\r\n\r\n"
            ));
            assert_eq!(status, 413, "{path} {content_type}: {response}");
            assert!(response.contains("\"error\":\"too_large\""), "{response}");
        }
    }
    // a decompression bomb: tiny body, too many pixels
    assert_error(
        client
            .post(server.at("/api/caption"))
            .multipart(form("bomb.png", bomb_png(50_000, 50_000)))
            .send()
            .unwrap(),
        413,
        "too_large",
    );
    assert_error(
        client.get(server.at("/api/query?q=")).send().unwrap(),
        400,
        "bad_request",
    );
    assert_error(
        client
            .get(server.at("/api/query?q=red&size=0"))
            .send()
            .unwrap(),
        400,
        "bad_request",
    );
    assert_error(
        client
            .get(server.at("/api/query?q=red&size=x"))
            .send()
            .unwrap(),
        400,
        "bad_request",
    );
    assert_error(
        client.get(server.at("/nope")).send().unwrap(),
        404,
        "not_found",
    );

    // traversal: raw request lines, so no client normalises them first
    for path in [
        "/images/../secret.png",
        "/images/../../etc/passwd",
        "/images/%2e%2e/secret.png",
        "/images/%2E%2E%2Fsecret.txt",
        "/images/..%2fsecret.png",
        "/images/..%5csecret.png",
        "/images/%252e%252e/secret.png",
        "/images//etc/passwd",
        "/images/%2fetc%2fpasswd",
        "/images/escape.png",
        "/images/notes.txt",
        "/images/upload-%00.png",
        "/runs/../secret.txt",
        "/runs/%2e%2e/secret.txt",
    ] {
        let (status, response) = server.raw_get(path);
        assert!(
            matches!(status, 400 | 404),
            "{path} answered {status}: {response}"
        );
        assert!(!response.contains("TOP SECRET"), "{path}");
        assert!(!response.contains("not an image\r"), "{path}");
    }
    let (status, _) = server.raw_get(&format!("/images/{}", stored["red.png"]));
    assert_eq!(status, 200);

    // OpenAPI document lists every API route
    let (status, spec) = json_of(client.get(server.at("/api/openapi.json")).send().unwrap());
    assert_eq!(status, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for route in [
        "/api/caption",
        "/api/search",
        "/api/query",
        "/api/images",
        "/images/{path}",
        "/healthz",
        "/api/runs",
        "/reports/{path}",
    ] {
        assert!(spec["paths"].get(route).is_some(), "{route} undocumented");
    }

    // pages: HTML, with names escaped
    for page in ["/", "/browse", "/upload", "/runs"] {
        let resp = client.get(server.at(page)).send().unwrap();
        assert_eq!(resp.status(), 200, "{page}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{page}"
        );
        let html = resp.text().unwrap();
        assert!(html.contains("capsearch"), "{page}");
        assert!(!html.contains("<b>x&y.png"), "{page} does not escape");
    }
    let browse = client
        .get(server.at("/browse"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    // /browse lists the index (by path), not the files under the image root
    assert!(browse.contains("5 images in the index"), "{browse}");
    assert!(browse.contains("&lt;b&gt;x&amp;y.png"), "{browse}");
    assert!(
        browse.contains("a &lt;i&gt;strange&lt;/i&gt; &amp; odd name"),
        "{browse}"
    );
    assert!(!browse.contains("<i>strange"), "{browse}");
    for (name, _, caption) in CAPTIONS {
        assert!(browse.contains(&stored[name]), "{name}: {browse}");
        assert!(browse.contains(caption), "{caption}: {browse}");
    }
    assert!(!browse.contains("notes.txt") && !browse.contains("escape.png"));
    assert!(browse.contains("page 1 of 1"), "{browse}");
    let far = client
        .get(server.at("/browse?page=7"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(far.contains("There is no page 7"), "{far}");
    let runs = client
        .get(server.at("/runs"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        runs.contains("tiny") && runs.contains("/runs/tiny/metrics.csv"),
        "{runs}"
    );
    let metrics = client
        .get(server.at("/runs/tiny/metrics.csv"))
        .send()
        .unwrap();
    assert_eq!(metrics.status(), 200);
    // CORS is off by default
    let resp = client
        .get(server.at("/healthz"))
        .header("origin", "http://evil.test")
        .send()
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    // 200 parallel searches: each answered 200 with the right caption, or 503 with Retry-After
    let colours: Vec<Vec<u8>> = CAPTIONS.iter().map(|c| png_bytes(16, 16, c.1)).collect();
    let started = Instant::now();
    let answers: Vec<(u16, Value, bool, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..200)
            .map(|i| {
                let client = client.clone();
                let url = server.at("/api/search?size=3");
                let bytes = colours[i % 4].clone();
                scope.spawn(move || {
                    let resp = if i % 2 == 0 {
                        client.post(url).multipart(form("p.png", bytes)).send()
                    } else {
                        client
                            .post(url)
                            .json(&json!({"image_base64": base64::engine::general_purpose::STANDARD.encode(&bytes)}))
                            .send()
                    }
                    .unwrap();
                    let retry = resp.headers().get("retry-after").is_some();
                    let (status, body) = json_of(resp);
                    (status, body, retry, i % 4)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();
    let mut ok = 0;
    for (status, body, retry, colour) in &answers {
        match status {
            200 => {
                ok += 1;
                assert_eq!(body["caption"], CAPTIONS[*colour].2, "{body}");
            }
            503 => {
                assert!(*retry, "503 without Retry-After: {body}");
                assert_eq!(body["error"], "busy", "{body}");
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(ok > 0, "no request succeeded");
    let (_, health) = json_of(client.get(server.at("/healthz")).send().unwrap());
    eprintln!(
        "200 parallel searches: {ok} OK, {} busy, {:.2?}; worker: {health}",
        200 - ok,
        elapsed
    );
    assert!(
        health["largest_batch"].as_u64().unwrap() > 1,
        "concurrent requests were never batched: {health}"
    );

    // graceful shutdown on SIGTERM: exits 0
    let mut server = server;
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(code) = server.child.try_wait().unwrap() {
            assert!(code.success(), "exit status {code:?}");
            break;
        }
        assert!(Instant::now() < deadline, "server ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cors_when_configured_and_503_when_the_backend_is_down() {
    let dir = tempdir();
    let d = dir.path();
    train_tiny(d);
    let server = Server::start(
        d,
        &[
            "--image-root",
            "root",
            "--backend",
            "elasticsearch",
            "--es-url",
            "http://127.0.0.1:9",
            "--cors-origin",
            "http://app.test",
        ],
    );
    let client = Client::new();
    let preflight = client
        .request(reqwest::Method::OPTIONS, server.at("/api/search"))
        .header("origin", "http://app.test")
        .header("access-control-request-method", "POST")
        .send()
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://app.test"
    );
    let other = client
        .get(server.at("/healthz"))
        .header("origin", "http://evil.test")
        .send()
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let (status, health) = json_of(other);
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["documents"], Value::Null);
    assert_error(
        client.get(server.at("/api/query?q=red")).send().unwrap(),
        503,
        "search_unavailable",
    );
    assert_error(
        client
            .post(server.at("/api/search"))
            .multipart(form("r.png", png_bytes(16, 16, CAPTIONS[0].1)))
            .send()
            .unwrap(),
        503,
        "search_unavailable",
    );
    // captioning does not need the backend
    let (status, body) = json_of(
        client
            .post(server.at("/api/caption"))
            .multipart(form("r.png", png_bytes(16, 16, CAPTIONS[0].1)))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
}

/// Uploads have a folder of their own, named in `serve --help`; one outside the image root is
/// refused before anything starts.
#[test]
fn uploads_go_to_their_own_folder() {
    let help = run_in(Path::new("."), &["serve", "--help"]).ok();
    assert!(
        help.stdout.contains("--upload-dir") && help.stdout.contains("[default: uploads]"),
        "{}",
        help.stdout
    );
    let dir = tempdir();
    for bad in ["../elsewhere", "/tmp/uploads"] {
        run_in(
            dir.path(),
            &["serve", "--model", "missing", "--upload-dir", bad],
        )
        .fails_with(&["--upload-dir", "relative to the image root"]);
    }
}

/// The Runs page counts epochs (not the lines of metrics.csv, which has iteration rows too), shows
/// the best validation BLEU-4, the wall time and the curves, and links the run's evaluation report
/// (written by `capsearch eval` to reports/NAME), which the server then serves.
#[test]
fn the_runs_page_counts_epochs_and_links_the_eval_report() {
    let dir = tempdir();
    let d = dir.path();
    train_tiny(d);
    let metrics = std::fs::read_to_string(d.join("runs/tiny/metrics.csv")).unwrap();
    let epoch_rows = metrics.lines().filter(|l| l.ends_with(",epoch")).count();
    assert_eq!(epoch_rows, 150, "{metrics}");
    assert!(
        metrics.lines().count() - 1 > epoch_rows,
        "iteration rows too"
    );
    run_in(
        d,
        &[
            "eval",
            "--model",
            "runs/tiny",
            "--dataset",
            "data/data.csv",
            "--split",
            "val",
        ],
    )
    .ok();
    assert!(d.join("reports/tiny/index.html").is_file());

    let server = Server::start(d, &["--runs", "runs", "--reports", "reports"]);
    let client = Client::new();
    let page = client
        .get(server.at("/runs"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        page.contains("<td data-field=\"epochs\">150 / 150</td>"),
        "{page}"
    );
    assert!(!page.contains("Epochs logged"), "{page}");
    assert!(page.contains("100.00 (epoch "), "best BLEU-4: {page}");
    assert!(
        page.contains("<svg") && page.contains("<polyline"),
        "{page}"
    );
    assert!(!page.contains("report.md"), "{page}");
    assert!(page.contains("href=\"/reports/tiny/index.html\""), "{page}");
    assert!(page.contains("/runs/tiny/metrics.csv"), "{page}");
    assert!(page.contains("finished"), "how the run ended: {page}");
    let report = client
        .get(server.at("/reports/tiny/index.html"))
        .send()
        .unwrap();
    assert_eq!(report.status(), 200);
    assert!(report.text().unwrap().contains("BLEU-4"));
    for path in [
        "/reports/../runs/tiny/model.json",
        "/reports/%2e%2e/runs/tiny/model.json",
    ] {
        assert_eq!(server.raw_get(path).0, 404, "{path}");
    }

    let (status, json) = json_of(client.get(server.at("/api/runs")).send().unwrap());
    assert_eq!(status, 200);
    let run = &json["runs"][0];
    assert_eq!(run["dir"], "tiny", "{json}");
    assert_eq!(run["epochs_done"], 150, "{json}");
    assert_eq!(run["planned_epochs"], 150, "{json}");
    assert_eq!(run["live"], false, "{json}");
    assert!(run["best_bleu4"].as_f64().unwrap() > 99.99, "{json}");
    assert!(run["wall_s"].as_f64().unwrap() > 0.0, "{json}");
}
