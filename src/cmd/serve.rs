//! `ordeal serve`: browse the run store over HTTP: the index, each run's report, raw files, and
//! two runs side by side (`/compare?a=RUN&b=RUN`, RUN a run directory relative to the store).

use crate::cli::ServeArgs;
use crate::exit::{BadInput, Outcome};
use anyhow::Context as _;
use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use ordeal_reports::html::Compared;
use ordeal_reports::results::Results;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Serves the store until Ctrl-C.
pub fn serve(args: ServeArgs) -> anyhow::Result<Outcome> {
    let root =
        std::fs::canonicalize(&args.store).map_err(|e| BadInput(format!("--store {}: {e}", args.store.display())))?;
    ordeal_reports::html::write_index(&root).context("writing the index")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .map_err(|e| BadInput(format!("--addr {}: {e}", args.addr)))?;
        let addr = listener.local_addr()?;
        say!("serving {} at http://{addr}/ (Ctrl-C to stop)", root.display());
        let app = Router::new()
            .route("/", get(index))
            .route("/compare", get(compare))
            .route("/{*path}", get(file))
            .with_state(Arc::new(root));
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(Outcome::Valid)
    })
}

async fn index(State(root): State<Arc<PathBuf>>) -> Response {
    // Regenerated on every visit, so that runs that finished since show up.
    match ordeal_reports::html::write_index(&root) {
        Ok(()) => send(&root.join(ordeal_reports::store::INDEX)),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Why a request is refused: its status and message.
type Refusal = (StatusCode, String);

/// `path` (from a URL) inside the store, or why it is refused.
fn resolve(root: &Path, path: &str) -> Result<PathBuf, Refusal> {
    if path.split('/').any(|c| c == "..") {
        return Err((StatusCode::BAD_REQUEST, "no .. in paths".into()));
    }
    match std::fs::canonicalize(root.join(path.trim_start_matches('/'))) {
        Ok(full) if full.starts_with(root) => Ok(full),
        _ => Err((StatusCode::NOT_FOUND, format!("{path}: not found"))),
    }
}

/// The two runs of `/compare`.
#[derive(serde::Deserialize)]
struct CompareQuery {
    a: String,
    b: String,
}

async fn compare(State(root): State<Arc<PathBuf>>, Query(q): Query<CompareQuery>) -> Response {
    let load = |path: &str| -> Result<Results, Refusal> {
        let dir = resolve(&root, path)?;
        ordeal_reports::store::read_json(&dir.join(ordeal_reports::store::RESULTS))
            .map_err(|e| (StatusCode::NOT_FOUND, format!("{path} is not an analysed run: {e}")))
    };
    let (a, b) = match (load(&q.a), load(&q.b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let (pa, pb) = (q.a.trim_matches('/'), q.b.trim_matches('/'));
    let page = ordeal_reports::html::compare(&Compared { path: pa, results: &a }, &Compared { path: pb, results: &b });
    Html(page).into_response()
}

async fn file(State(root): State<Arc<PathBuf>>, UrlPath(path): UrlPath<String>) -> Response {
    let full = match resolve(&root, &path) {
        Ok(full) => full,
        Err(refused) => return refused.into_response(),
    };
    if full.is_dir() {
        return listing(&path, &full);
    }
    send(&full)
}

fn send(path: &Path) -> Response {
    let kind = match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        _ => "text/plain; charset=utf-8",
    };
    match std::fs::read(path) {
        Ok(body) => ([(header::CONTENT_TYPE, kind)], body).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, e.to_string()).into_response(),
    }
}

fn listing(url: &str, dir: &Path) -> Response {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned() + if e.path().is_dir() { "/" } else { "" })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    Html(ordeal_reports::html::listing(url, &names)).into_response()
}
