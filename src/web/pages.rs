//! Server-rendered pages with a little inline JavaScript; no build step. Everything that comes
//! from data (captions, paths, names) is HTML-escaped on the server, or set with `textContent` in
//! the browser.

use axum::extract::{Query, State};
use axum::response::Html;
use serde::Deserialize;

use super::AppState;
use crate::eval::report::html_escape as esc;
use crate::search::{Hit, SearchBackend};

const CSS: &str = r#"
:root{--bg:#f6f7f9;--card:#fff;--ink:#1d2330;--muted:#667085;--line:#e4e7ec;--accent:#3659e3;--accent-soft:#eef2ff}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--ink)}
header{background:var(--card);border-bottom:1px solid var(--line);padding:0 24px;display:flex;align-items:center;gap:28px;height:56px}
header .brand{font-weight:700;font-size:18px;color:var(--ink);text-decoration:none;letter-spacing:-.02em}
header .brand span{color:var(--accent)}
nav a{color:var(--muted);text-decoration:none;margin-right:18px;font-weight:500}
nav a.on,nav a:hover{color:var(--accent)}
main{max-width:1120px;margin:0 auto;padding:28px 24px 60px}
h1{font-size:22px;margin:0 0 6px;letter-spacing:-.01em}
p.lead{color:var(--muted);margin:0 0 22px}
.panel{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:20px}
.drop{display:block;border:2px dashed #c7cde0;border-radius:14px;background:var(--card);padding:34px;text-align:center;cursor:pointer;transition:.15s}
.drop.over{border-color:var(--accent);background:var(--accent-soft)}
.drop strong{color:var(--accent)}
.drop small{display:block;color:var(--muted);margin-top:6px}
.row{display:flex;gap:22px;align-items:flex-start;margin-top:22px}
.query{flex:0 0 300px}
.query img{width:100%;border-radius:10px;border:1px solid var(--line);background:#fafafa}
.caption{font-size:18px;font-weight:600;margin:12px 0 2px}
.meta{color:var(--muted);font-size:13px}
form.text{display:flex;gap:10px;margin:18px 0 0}
input[type=text]{flex:1;padding:10px 14px;border:1px solid var(--line);border-radius:10px;font:inherit;background:var(--card)}
button{padding:10px 18px;border:0;border-radius:10px;background:var(--accent);color:#fff;font:inherit;font-weight:600;cursor:pointer}
button:disabled{opacity:.5}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:16px;flex:1}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;overflow:hidden;display:flex;flex-direction:column}
.card img{width:100%;aspect-ratio:1;object-fit:cover;background:#eef0f4;display:block}
.card .body{padding:10px 12px}
.card .cap{font-size:14px;margin:0 0 4px}
.card .path{font-size:12px;color:var(--muted);word-break:break-all}
.score{display:inline-block;background:var(--accent-soft);color:var(--accent);border-radius:999px;padding:1px 8px;font-size:12px;font-weight:600}
.empty{color:var(--muted);padding:30px;text-align:center}
.noimg{aspect-ratio:1;display:flex;align-items:center;justify-content:center;background:#eef0f4;color:var(--muted);font-size:12px;padding:12px;text-align:center}
.error{background:#fff1f0;border:1px solid #ffccc7;color:#a8071a;border-radius:10px;padding:10px 14px;margin-top:16px}
.pager{display:flex;gap:12px;align-items:center;margin-top:22px}
.pager a{color:var(--accent);text-decoration:none;font-weight:600}
table{border-collapse:collapse;width:100%;background:var(--card);border:1px solid var(--line);border-radius:12px;overflow:hidden}
th,td{text-align:left;padding:10px 14px;border-bottom:1px solid var(--line)}
th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);background:#fafbfc}
td a{color:var(--accent)}
progress{width:100%;height:10px}
ul.files{list-style:none;padding:0;margin:16px 0 0}
ul.files li{padding:8px 0;border-bottom:1px solid var(--line)}
table.runs td{vertical-align:top}
table.runs td[data-field]{white-space:nowrap}
table.runs svg.curve{display:block}
tr.live td:first-child{box-shadow:inset 3px 0 0 #12b76a}
tr.live [data-field=status]{color:#067647;font-weight:600}
"#;

pub(super) fn layout(title: &str, active: &str, body: &str) -> Html<String> {
    let link = |href: &str, label: &str| {
        let class = if href == active { " class=\"on\"" } else { "" };
        format!("<a href=\"{href}\"{class}>{label}</a>")
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{title} · capsearch</title><style>{CSS}</style></head><body>\
<header><a class=\"brand\" href=\"/\">cap<span>search</span></a><nav>{}{}{}{}</nav></header>\
<main>{body}</main></body></html>",
        link("/", "Search"),
        link("/browse", "Browse"),
        link("/upload", "Upload"),
        link("/runs", "Runs"),
        title = esc(title),
    ))
}

/// Shared browser code: renders results with DOM calls (text via textContent, never innerHTML).
const RESULTS_JS: &str = r#"
function card(r){
  const c=document.createElement('div');c.className='card';
  const img=document.createElement('img');img.loading='lazy';img.alt=r.caption;
  if(r.url){img.src=r.url}
  c.appendChild(img);
  const b=document.createElement('div');b.className='body';
  const p=document.createElement('p');p.className='cap';p.textContent=r.caption;b.appendChild(p);
  if(r.score!==undefined){const s=document.createElement('span');s.className='score';s.textContent=r.score.toFixed(r.visual_score!==undefined?4:2);b.appendChild(s)}
  if(r.caption_score!==undefined||r.visual_score!==undefined){const m=document.createElement('div');m.className='path';
    m.textContent='caption '+(r.caption_score!==undefined?r.caption_score.toFixed(2):'–')+' · visual '+(r.visual_score!==undefined?r.visual_score.toFixed(3):'–');b.appendChild(m)}
  const d=document.createElement('div');d.className='path';d.textContent=r.path;b.appendChild(d);
  c.appendChild(b);return c;
}
function showResults(el,results){
  el.replaceChildren();
  if(!results.length){const e=document.createElement('div');e.className='empty';e.textContent='No matching images yet. Add some on the Upload page.';el.appendChild(e);return}
  results.forEach(r=>el.appendChild(card(r)));
}
async function answer(resp){
  let j;try{j=await resp.json()}catch(e){throw new Error('HTTP '+resp.status)}
  if(!resp.ok)throw new Error(j.detail||j.error||('HTTP '+resp.status));
  return j;
}
function showError(el,msg){el.textContent=msg;el.hidden=!msg}
"#;

/// `/`: search by image (drop, pick, paste) or by words.
pub async fn home(
    State(state): State<AppState>,
    query: Result<Query<HomeQuery>, axum::extract::rejection::QueryRejection>,
) -> Html<String> {
    let model = esc(&state.captioner.info.id);
    // `/?q=words` renders a text search on the server (a link can be shared).
    let q = query
        .ok()
        .and_then(|q| q.0.q)
        .filter(|q| !q.trim().is_empty() && q.len() <= 1000);
    let (cards, error) = match &q {
        Some(text) => match super::api::run_query(&state, text.clone(), 24, 0).await {
            Ok(results) if results.is_empty() => (
                "<div class=\"empty\">No matching images yet. Add some on the Upload page.</div>".to_string(),
                String::new(),
            ),
            Ok(results) => (
                results
                    .iter()
                    .map(|r| {
                        let img = r
                            .url
                            .as_ref()
                            .map(|u| format!("<img loading=\"lazy\" src=\"{}\" alt=\"{}\">", esc(u), esc(&r.caption)))
                            .unwrap_or_else(|| "<img alt=\"\">".into());
                        format!(
                            "<div class=\"card\">{img}<div class=\"body\"><p class=\"cap\">{}</p><span class=\"score\">{:.2}</span><div class=\"path\">{}</div></div></div>",
                            esc(&r.caption),
                            r.score,
                            esc(&r.path)
                        )
                    })
                    .collect(),
                String::new(),
            ),
            Err(e) => (String::new(), esc(&e.detail)),
        },
        None => (String::new(), String::new()),
    };
    let q_value = esc(q.as_deref().unwrap_or(""));
    let err_hidden = if error.is_empty() { " hidden" } else { "" };
    let body = format!(
        r#"<h1>Find images by what is in them</h1>
<p class="lead">Drop an image: model <b>{model}</b> captions and embeds it, then the index finds images with similar captions (caption), similar embeddings (visual), or both fused (hybrid).</p>
<p class="modes">Search by image: <label><input type="radio" name="mode" value="" checked> default</label> <label><input type="radio" name="mode" value="hybrid"> hybrid</label> <label><input type="radio" name="mode" value="caption"> caption</label> <label><input type="radio" name="mode" value="visual"> visual</label></p>
<label class="drop" id="drop"><input type="file" id="file" accept="image/*" hidden>
<strong>Drop an image here</strong>, pick a file, or paste with Ctrl+V<small>PNG, JPEG, GIF, BMP or WebP</small></label>
<form class="text" id="text" action="/"><input type="text" id="q" name="q" value="{q_value}" placeholder="…or search by words, e.g. a red square" autocomplete="off"><button>Search</button></form>
<div class="error" id="err"{err_hidden}>{error}</div>
<div class="row"><div class="query" id="query" hidden><img id="preview" alt="your image"><div class="caption" id="caption"></div><div class="meta" id="meta"></div></div>
<div class="grid" id="results">{cards}</div></div>
<script>{RESULTS_JS}
const drop=document.getElementById('drop'),file=document.getElementById('file'),err=document.getElementById('err'),res=document.getElementById('results');
async function byImage(f){{
  showError(err,'');
  const q=document.getElementById('query');q.hidden=false;
  document.getElementById('preview').src=URL.createObjectURL(f);
  document.getElementById('caption').textContent='Captioning…';document.getElementById('meta').textContent='';
  const fd=new FormData();fd.append('image',f);
  const mode=(document.querySelector('input[name=mode]:checked')||{{}}).value;if(mode)fd.append('mode',mode);
  try{{const j=await answer(await fetch('/api/search?size=24',{{method:'POST',body:fd}}));
    document.getElementById('caption').textContent=j.caption;
    document.getElementById('meta').textContent='log-prob '+j.logprob.toFixed(2)+' · '+j.model+' · '+j.mode+' search';
    showResults(res,j.results);
  }}catch(e){{document.getElementById('caption').textContent='';showError(err,e.message)}}
}}
drop.addEventListener('dragover',e=>{{e.preventDefault();drop.classList.add('over')}});
drop.addEventListener('dragleave',()=>drop.classList.remove('over'));
drop.addEventListener('drop',e=>{{e.preventDefault();drop.classList.remove('over');if(e.dataTransfer.files[0])byImage(e.dataTransfer.files[0])}});
file.addEventListener('change',()=>{{if(file.files[0])byImage(file.files[0])}});
document.addEventListener('paste',e=>{{for(const it of e.clipboardData.items){{if(it.type.startsWith('image/')){{byImage(it.getAsFile());break}}}}}});
document.getElementById('text').addEventListener('submit',async e=>{{
  e.preventDefault();showError(err,'');document.getElementById('query').hidden=true;
  const q=document.getElementById('q').value.trim();if(!q)return;
  try{{const j=await answer(await fetch('/api/query?size=24&q='+encodeURIComponent(q)));showResults(res,j.results)}}catch(e){{showError(err,e.message)}}
}});
</script>"#
    );
    layout("Search", "/", &body)
}

#[derive(Deserialize)]
pub struct HomeQuery {
    q: Option<String>,
}

#[derive(Deserialize)]
pub struct BrowseQuery {
    page: Option<usize>,
}

const BROWSE_PAGE: usize = 24;

/// `/browse`: a paged grid of everything indexed, by path.
pub async fn browse(
    State(state): State<AppState>,
    query: Result<Query<BrowseQuery>, axum::extract::rejection::QueryRejection>,
) -> Html<String> {
    let page = query
        .ok()
        .and_then(|q| q.page)
        .unwrap_or(1)
        .clamp(1, 1_000_000);
    let offset = (page - 1) * BROWSE_PAGE;
    let backend = state.backend.clone();
    let listed = tokio::task::spawn_blocking(move || list_page(backend.as_ref(), offset))
        .await
        .unwrap_or_else(|e| Err(format!("the listing task failed: {e}")));
    let mut body = String::from("<h1>Browse</h1>");
    let (total, hits) = match listed {
        Ok(found) => found,
        Err(e) => {
            body.push_str(&format!(
                "<p class=\"lead\">Everything in the index, by path.</p><div class=\"error\">The index cannot be listed: {}</div>",
                esc(&e)
            ));
            return layout("Browse", "/browse", &body);
        }
    };
    let total = total as usize;
    let pages = total.div_ceil(BROWSE_PAGE).max(1);
    let model = esc(&state.captioner.info.id);
    body.push_str(&format!(
        "<p class=\"lead\">{total} {} in the index, by path. Search captions them with <b>{model}</b>.</p>",
        if total == 1 { "image" } else { "images" }
    ));
    if total == 0 {
        body.push_str("<div class=\"panel empty\">Nothing is indexed yet. <a href=\"/upload\">Upload images</a> to caption and index them, or run <code>capsearch index</code>.</div>");
        return layout("Browse", "/browse", &body);
    }
    if hits.is_empty() {
        body.push_str(&format!(
            "<div class=\"panel empty\">There is no page {page}. <a href=\"/browse\">Back to the first page</a>.</div>"
        ));
        return layout("Browse", "/browse", &body);
    }
    body.push_str("<div class=\"grid\">");
    for hit in &hits {
        let image = match super::image_url(&state.image_root, &hit.path) {
            Some(url) => format!(
                "<a href=\"{u}\"><img loading=\"lazy\" src=\"{u}\" alt=\"{c}\"></a>",
                u = esc(&url),
                c = esc(&hit.caption)
            ),
            None => "<div class=\"noimg\">not under the image root</div>".to_string(),
        };
        body.push_str(&format!(
            "<div class=\"card\">{image}<div class=\"body\"><p class=\"cap\">{}</p><div class=\"path\">{}</div></div></div>",
            esc(&hit.caption),
            esc(&hit.path)
        ));
    }
    body.push_str("</div><div class=\"pager\">");
    if page > 1 {
        body.push_str(&format!(
            "<a href=\"/browse?page={}\">← Previous</a>",
            page - 1
        ));
    }
    body.push_str(&format!(
        "<span class=\"meta\">page {page} of {pages}</span>"
    ));
    if page < pages {
        body.push_str(&format!("<a href=\"/browse?page={}\">Next →</a>", page + 1));
    }
    body.push_str("</div>");
    layout("Browse", "/browse", &body)
}

/// The number of documents and one page of them. A missing index is an empty one.
fn list_page(backend: &dyn SearchBackend, offset: usize) -> Result<(u64, Vec<Hit>), String> {
    let listed = backend
        .count()
        .and_then(|total| backend.list(BROWSE_PAGE, offset).map(|hits| (total, hits)));
    listed.or_else(|e| match backend.health() {
        Ok(h) if !h.index_exists => Ok((0, Vec::new())),
        _ => Err(e.to_string()),
    })
}

/// `/upload`: add images to the index, with a progress bar.
pub async fn upload(State(state): State<AppState>) -> Html<String> {
    let body = format!(
        r#"<h1>Upload</h1>
<p class="lead">Each image is captioned by <b>{model}</b>, stored on the server under a name of its own, and indexed.</p>
<label class="drop" id="drop"><input type="file" id="file" accept="image/*" multiple hidden>
<strong>Drop images here</strong> or pick files<small>up to {limit} per upload</small></label>
<div class="panel" id="progress" hidden style="margin-top:18px"><progress id="bar" max="100" value="0"></progress><div class="meta" id="status"></div></div>
<div class="error" id="err" hidden></div>
<div class="grid" id="results" style="margin-top:22px"></div>
<script>{RESULTS_JS}
const drop=document.getElementById('drop'),file=document.getElementById('file'),err=document.getElementById('err');
function send(files){{
  showError(err,'');if(!files.length)return;
  const fd=new FormData();for(const f of files)fd.append('image',f);
  const bar=document.getElementById('bar'),status=document.getElementById('status');
  document.getElementById('progress').hidden=false;bar.value=0;status.textContent='Uploading '+files.length+' image(s)…';
  const x=new XMLHttpRequest();x.open('POST','/api/images');
  x.upload.onprogress=e=>{{if(e.lengthComputable){{bar.value=100*e.loaded/e.total;if(e.loaded===e.total)status.textContent='Captioning and indexing…'}}}};
  x.onload=()=>{{let j={{}};try{{j=JSON.parse(x.responseText)}}catch(e){{}}
    if(x.status!==200){{status.textContent='';showError(err,j.detail||('HTTP '+x.status));return}}
    bar.value=100;status.textContent='Added '+j.added.length+' image(s).';
    const el=document.getElementById('results');j.added.forEach(a=>el.prepend(card(a)));
  }};
  x.onerror=()=>showError(err,'The upload failed: is the server running?');
  x.send(fd);
}}
drop.addEventListener('dragover',e=>{{e.preventDefault();drop.classList.add('over')}});
drop.addEventListener('dragleave',()=>drop.classList.remove('over'));
drop.addEventListener('drop',e=>{{e.preventDefault();drop.classList.remove('over');send(e.dataTransfer.files)}});
file.addEventListener('change',()=>send(file.files));
</script>"#,
        model = esc(&state.captioner.info.id),
        limit = esc(&indicatif::HumanBytes(state.max_body as u64).to_string()),
    );
    layout("Upload", "/upload", &body)
}
