//! A plain-HTTP proxy on 127.0.0.1 in front of the test kube-apiserver that delivers every watch
//! event `lag` late and everything else at once: the controller's cache then stays behind its own
//! writes, as an informer's does behind a loaded API server. Requests reach the real server with
//! the test's credentials, so the controller's kubeconfig needs none.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use futures::StreamExt;
use tokio::time::Instant;

pub struct LaggingProxy {
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl LaggingProxy {
    pub async fn start(client: kube::Client, lag: Duration) -> LaggingProxy {
        Self::start_for(client, lag, None).await
    }

    /// A proxy that delays only the watches of `resource` (a plural, e.g. `scheduledsequences`):
    /// two watches lagging differently, as two streams of a loaded API server may.
    pub async fn start_for(
        client: kube::Client,
        lag: Duration,
        resource: Option<&'static str>,
    ) -> LaggingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let app = axum::Router::new().fallback(move |request: Request| {
            let client = client.clone();
            async move { forward(client, request, lag, resource).await }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = write_kubeconfig(dir.path(), &format!("http://{address}"));
        LaggingProxy {
            kubeconfig,
            _dir: dir,
        }
    }
}

async fn forward(
    client: kube::Client,
    request: Request,
    lag: Duration,
    resource: Option<&str>,
) -> Response {
    let watch = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"))
        && resource.is_none_or(|r| request.uri().path().ends_with(&format!("/{r}")));
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let mut upstream = http::Request::builder()
        .method(parts.method)
        .uri(parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    for (name, value) in &parts.headers {
        if name != http::header::HOST {
            upstream = upstream.header(name, value);
        }
    }
    let upstream = upstream
        .body(kube::client::Body::from(bytes.to_vec()))
        .expect("a request");
    let response = match client.send(upstream).await {
        Ok(response) => response,
        Err(e) => {
            return Response::builder()
                .status(502)
                .body(Body::from(e.to_string()))
                .expect("a response");
        }
    };
    let (parts, body) = response.into_parts();
    let body = Body::new(body);
    let body = if watch { delayed(body, lag) } else { body };
    Response::from_parts(parts, body)
}

/// The body's chunks, each released `lag` after it arrived (not `lag` after the previous one:
/// the lag stays constant however many events come).
fn delayed(body: Body, lag: Duration) -> Body {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut chunks = body.into_data_stream();
        while let Some(chunk) = chunks.next().await {
            if tx.send((Instant::now() + lag, chunk)).is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let (due, chunk) = rx.recv().await?;
        tokio::time::sleep_until(due).await;
        Some((chunk, rx))
    });
    Body::from_stream(stream)
}

fn write_kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: lagging\n  cluster:\n    server: {server}\n\
         users:\n- name: anyone\n  user: {{}}\ncontexts:\n- name: lagging\n  context:\n    cluster: lagging\n    user: anyone\n    namespace: default\n\
         current-context: lagging\n"
    );
    std::fs::write(&path, text).expect("write the proxy's kubeconfig");
    path
}
