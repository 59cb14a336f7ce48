//! The controller's Kubernetes clients. The one that does the work (watches, status writes,
//! Events, the Sequences of schedules) is paced, so that ten thousand Sequences created at once
//! do not send ten thousand writes to the API server at once; the leader election's has its own
//! unpaced client, so that renewing the Lease never queues behind that work.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use kube::client::ClientBuilder;
use tower_layer::Layer;
use tower_service::Service;

use crate::ecs::limits::Pace;

/// The field manager of every write the controller makes (status, schedule runs, the Lease's
/// holder): one name, so server-side apply sees one owner.
pub const FIELD_MANAGER: &str = "sequencer-controller";

/// The work client and the Lease client, from the same configuration (in cluster or KUBECONFIG).
pub async fn clients(
    per_second: u32,
    burst: u32,
) -> Result<(kube::Client, kube::Client), kube::Error> {
    let config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    let lease = kube::Client::try_from(config.clone())?;
    let pace = Pace::new(f64::from(per_second), burst);
    let work = ClientBuilder::try_from(config)?
        .with_layer(&PaceLayer(pace))
        .build();
    Ok((work, lease))
}

/// Requests wait for their turn before they go out.
#[derive(Clone)]
pub struct PaceLayer(pub Arc<Pace>);

impl<S> Layer<S> for PaceLayer {
    type Service = Paced<S>;

    fn layer(&self, inner: S) -> Paced<S> {
        Paced {
            inner,
            pace: self.0.clone(),
            turn: None,
            ready: false,
        }
    }
}

pub struct Paced<S> {
    inner: S,
    pace: Arc<Pace>,
    /// The wait for the next request's turn, while it lasts.
    turn: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The next request has had its turn.
    ready: bool,
}

impl<S, R> Service<R> for Paced<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.ready {
            let pace = self.pace.clone();
            let turn = self
                .turn
                .get_or_insert_with(|| Box::pin(async move { pace.wait().await }));
            if turn.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.turn = None;
            self.ready = true;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.ready = false;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tokio::time::Instant;

    /// Answers at once with the time it was called.
    #[derive(Clone)]
    struct Clock(Instant);

    impl Service<()> for Clock {
        type Response = f64;
        type Error = Infallible;
        type Future = std::future::Ready<Result<f64, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: ()) -> Self::Future {
            std::future::ready(Ok(self.0.elapsed().as_secs_f64()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn requests_go_out_at_the_pace_after_a_burst() {
        let mut service = PaceLayer(Pace::new(10.0, 5)).layer(Clock(Instant::now()));
        let mut times = Vec::new();
        for _ in 0..25 {
            std::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .expect("ready");
            times.push(service.call(()).await.expect("answered"));
        }
        assert!(times[..5].iter().all(|t| *t < 0.001), "{times:?}");
        assert!(
            (times[24] - 2.0).abs() < 0.01,
            "20 more at 10 a second: {times:?}"
        );
    }
}
