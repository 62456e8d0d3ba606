//! Running a connection's request futures on the connection's own task (real mode).
//!
//! hyper hands every HTTP/2 request's future (the service call and the response body's
//! transfer) to an executor. A tokio task per request costs a spawn, a task list entry
//! and, for every response, two task wake-ups (the request's task, then the
//! connection's, which writes the frames). [`ConnExecutor`] instead queues them for the
//! connection task, which [`Driven`] polls together with the connection: one task per
//! connection, whose requests still run concurrently (a `FuturesUnordered`).
//!
//! It does not spawn, and does not change what any request does: the same futures run,
//! only on another task. Their wake-ups reach the connection task.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

/// A request's future, boxed.
type RequestFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// hyper's executor for one connection: queues each future for [`Driven`].
#[derive(Clone, Default)]
pub struct ConnExecutor {
    queued: Arc<Mutex<Vec<RequestFuture>>>,
}

impl ConnExecutor {
    /// Moves the queued futures into `running`; whether there were any.
    fn drain_into(&self, running: &mut FuturesUnordered<RequestFuture>) -> bool {
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        let any = !queued.is_empty();
        for future in queued.drain(..) {
            running.push(future);
        }
        any
    }
}

impl<F> hyper::rt::Executor<F> for ConnExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        self.queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::pin(future));
    }
}

/// A connection and the request futures it queued on its [`ConnExecutor`], polled as one
/// future that completes with the connection. Requests still running then are finished
/// by [`Driven::finish`].
pub struct Driven<C> {
    connection: Pin<Box<C>>,
    executor: ConnExecutor,
    running: FuturesUnordered<RequestFuture>,
}

impl<C: Future> Driven<C> {
    /// Drives `connection`, whose requests go to `executor`.
    pub fn new(connection: C, executor: ConnExecutor) -> Self {
        Driven {
            connection: Box::pin(connection),
            executor,
            running: FuturesUnordered::new(),
        }
    }

    /// The connection (for a graceful shutdown).
    pub fn connection(&mut self) -> Pin<&mut C> {
        self.connection.as_mut()
    }

    /// Polls the running requests until none is ready.
    fn poll_running(&mut self, cx: &mut Context<'_>) {
        loop {
            self.executor.drain_into(&mut self.running);
            match self.running.poll_next_unpin(cx) {
                Poll::Ready(Some(())) => {}
                Poll::Ready(None) | Poll::Pending => {
                    // A request polled last may have queued another (it does not today:
                    // only the connection queues); poll again rather than lose it.
                    if self.executor.drain_into(&mut self.running) {
                        continue;
                    }
                    return;
                }
            }
        }
    }

    /// Runs the requests still in flight to their end (after the connection ended).
    pub async fn finish(mut self) {
        std::future::poll_fn(|cx| {
            self.poll_running(cx);
            if self.running.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

impl<C: Future> Future for Driven<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.get_mut();
        let done = this.connection.as_mut().poll(cx);
        // Requests the connection just queued, and those woken since the last poll.
        this.poll_running(cx);
        done
    }
}

impl<C> Unpin for Driven<C> {}

#[cfg(test)]
mod tests {
    use super::*;

    use hyper::rt::Executor as _;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn queued_requests_run_with_the_connection_and_after_it_ends() {
        let executor = ConnExecutor::default();
        let ran = Arc::new(AtomicUsize::new(0));
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let queue = executor.clone();
        let counter = Arc::clone(&ran);
        // The "connection" queues one quick request and one that waits, then ends.
        let connection = async move {
            let quick = Arc::clone(&counter);
            queue.execute(async move {
                quick.fetch_add(1, Ordering::SeqCst);
            });
            let slow = Arc::clone(&counter);
            queue.execute(async move {
                let _ = release_rx.await;
                slow.fetch_add(10, Ordering::SeqCst);
            });
            tokio::task::yield_now().await;
            7
        };
        let mut driven = Driven::new(connection, executor);
        assert_eq!((&mut driven).await, 7);
        assert_eq!(ran.load(Ordering::SeqCst), 1, "the quick one ran");
        release_tx.send(()).expect("the slow request waits");
        driven.finish().await;
        assert_eq!(
            ran.load(Ordering::SeqCst),
            11,
            "the slow one finished after"
        );
    }
}
