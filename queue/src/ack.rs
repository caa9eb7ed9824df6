//! What the worker's services hand back: each attempt's outcome, recorded by the backend
//! whatever the inner layers do, and the worker's rule for attempts that end in an error.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use apalis_core::{error::BoxDynError, task::Task};
use futures::{FutureExt, future::BoxFuture};
use tower::{Layer, Service};

use crate::{Finished, Job, Outcome, backend::Shared};

/// The worker's retry rule for an attempt that ended in an error instead of an outcome: the
/// backend records what the rule says and keeps no attempt arithmetic of its own, so every
/// retry of a kind waits the kind's backoff.
#[derive(Clone)]
pub struct FailureRule(Arc<dyn Fn(Job, String) -> BoxFuture<'static, Outcome> + Send + Sync>);

impl FailureRule {
    pub fn new(
        rule: impl Fn(Job, String) -> BoxFuture<'static, Outcome> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(rule))
    }
}

impl std::fmt::Debug for FailureRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FailureRule")
    }
}

/// Records each attempt's outcome. The backend's middleware: it wraps every service the
/// worker runs, so outcomes reach the queue whatever the inner layers do.
#[derive(Clone)]
pub struct AckLayer {
    pub(crate) shared: Arc<Shared>,
}

impl<S> Layer<S> for AckLayer {
    type Service = AckService<S>;

    fn layer(&self, inner: S) -> AckService<S> {
        AckService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AckService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Task<Job>> for AckService<S>
where
    S: Service<Task<Job>, Response = Outcome>,
    S::Error: Into<BoxDynError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<(), BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxDynError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<Job>) -> Self::Future {
        let job = task.args.clone();
        let shared = self.shared.clone();
        let fut = self.inner.call(task);
        async move {
            let outcome = match fut.await.map_err(|e| e.into().to_string()) {
                Ok(outcome) => outcome,
                // A layer's failure: the worker's rule decides, as for any failed attempt.
                Err(e) => (shared.opts.on_failure.0)(job.clone(), e).await,
            };
            shared.ended(Finished::new(&job, outcome));
            Ok(())
        }
        .boxed()
    }
}
