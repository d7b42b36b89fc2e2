use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::record::labels;

/// Names an async task for lock profiles: acquisitions and releases by
/// profiled async locks while `future` is polled carry the label
/// `task name = name`.
///
/// tokio has no API to read a task's name (its `task::Builder::name` is
/// unstable and only feeds tracing), so the name is given here:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handle = tokio::spawn(lockprof::with_task_name("ingest", async {
///     // profiled lock acquisitions here are labelled `task name: ingest`
/// }));
/// # handle.await.unwrap();
/// # }
/// ```
///
/// Costs one thread-local write before and after each poll.
pub fn with_task_name<F: Future>(name: impl Into<Arc<str>>, future: F) -> NamedTask<F> {
    NamedTask {
        name: name.into(),
        future,
    }
}

pin_project_lite::pin_project! {
    /// A future named with [`with_task_name`].
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct NamedTask<F> {
        name: Arc<str>,
        #[pin]
        future: F,
    }
}

impl<F> NamedTask<F> {
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<F: Future> Future for NamedTask<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let future = this.future;
        labels::with_current_name(this.name, || future.poll(cx))
    }
}
