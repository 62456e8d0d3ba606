//! Write coalescing for HTTP/2 connections: a socket wrapper that holds written bytes
//! until a flush, and lets the first flush of new bytes wait one scheduler round.
//!
//! Under load many requests on one connection finish in the same instant (a batch of
//! proposals is applied at once). Each finished request wakes the connection's task,
//! and tokio runs a task a request wakes right after that request's task, so without
//! this every response would leave in a `writev` of its own. Deferring the first flush
//! by one self-wake (which tokio queues behind the tasks already runnable) lets the
//! other responses of the batch join the same write: fewer syscalls per request, on
//! both ends of a connection. When a connection is idle the round costs microseconds.
//!
//! It does not change what is written or its order, never holds bytes past a flush
//! that it was polled again for, and does no reading of its own (reads pass through).
//! Real mode only.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held before a write goes to the socket without waiting for a flush.
pub const HELD_BYTES_MAX: usize = 256 * 1024;

/// A socket (or any byte stream) whose writes are coalesced as described above.
#[derive(Debug)]
pub struct CoalescingIo<T> {
    inner: T,
    held: Vec<u8>,
    /// How much of `held` the socket has taken.
    sent: usize,
    /// The current held bytes already waited one round for company.
    waited: bool,
}

impl<T> CoalescingIo<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        CoalescingIo {
            inner,
            held: Vec::new(),
            sent: 0,
            waited: false,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncWrite + Unpin> CoalescingIo<T> {
    /// Hands every held byte to the socket.
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.held.clear();
        self.sent = 0;
        self.waited = false;
        Poll::Ready(Ok(()))
    }

    fn hold(&mut self, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        if self.held.len() - self.sent >= HELD_BYTES_MAX {
            ready!(self.poll_send_held(cx))?;
        }
        let mut n = 0;
        for buf in bufs {
            self.held.extend_from_slice(buf);
            n += buf.len();
        }
        Poll::Ready(Ok(n))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CoalescingIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CoalescingIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().hold(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().hold(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.sent < this.held.len() && !this.waited {
            // Wait one round: the task is queued again behind those runnable now.
            this.waited = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_arrive_in_order_only_after_a_flush() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut io = CoalescingIo::new(a);
        io.write_all(b"hello ").await.expect("write");
        io.write_all(b"world").await.expect("write");
        let mut buf = [0u8; 16];
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), b.read(&mut buf));
        assert!(early.await.is_err(), "nothing is sent before a flush");
        io.flush().await.expect("flush");
        let n = b.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"hello world");
    }

    #[tokio::test]
    async fn a_large_write_goes_out_without_a_flush_and_shutdown_sends_the_rest() {
        let (a, mut b) = tokio::io::duplex(4 << 20);
        let mut io = CoalescingIo::new(a);
        let big = vec![7u8; HELD_BYTES_MAX + 1];
        io.write_all(&big).await.expect("write");
        io.write_all(b"tail").await.expect("write");
        io.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.expect("read");
        assert_eq!(got.len(), big.len() + 4);
        assert!(got.ends_with(b"tail"));
    }
}
