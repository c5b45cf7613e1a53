//! A lingering close for the CA's connections.
//!
//! When the server answers before it has read the whole request (a body over the limit,
//! refused on its `Content-Length`), closing the socket with unread bytes in its receive
//! buffer makes the kernel send a reset, and a reset can destroy the answer in the
//! client's receive buffer before the client reads it: the client sees the connection
//! cut instead of its `413`. So when a connection ends, its socket first says it is done
//! writing (FIN), then reads and discards what the client still sends, for a short,
//! bounded time, and only then closes.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Longest a closed connection keeps reading what the client still sends.
pub const LINGER_TIME: Duration = Duration::from_secs(2);
/// Most bytes read and discarded while lingering.
pub const LINGER_BYTES: usize = 16 << 20;
/// Most connections lingering at once; past it a connection closes at once (a flood of
/// closing connections cannot hold the CA's sockets and tasks).
pub const MAX_LINGERING: usize = 1024;

/// Connections lingering now.
static LINGERING: AtomicUsize = AtomicUsize::new(0);

/// A slot among the [`MAX_LINGERING`]; freed when dropped.
struct Slot;

impl Slot {
    fn take() -> Option<Self> {
        if LINGERING.fetch_add(1, Ordering::AcqRel) < MAX_LINGERING {
            Some(Slot)
        } else {
            LINGERING.fetch_sub(1, Ordering::AcqRel);
            None
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        LINGERING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A TCP stream that lingers when dropped (see the module's doc).
#[derive(Debug)]
pub struct Lingering {
    stream: Option<TcpStream>,
}

impl Lingering {
    /// Wraps an accepted connection.
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream: Some(stream),
        }
    }

    fn stream(&mut self) -> &mut TcpStream {
        self.stream
            .as_mut()
            .expect("the stream is taken only when dropped")
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(mut stream) = self.stream.take() else {
            return;
        };
        // Outside a runtime (shutting down), or with too many lingering already, the
        // socket just closes.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(slot) = Slot::take() else {
            return;
        };
        runtime.spawn(async move {
            let _slot = slot;
            let _ = stream.shutdown().await;
            let mut buf = [0u8; 8192];
            let mut discarded = 0usize;
            let _ = tokio::time::timeout(LINGER_TIME, async {
                while discarded < LINGER_BYTES {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => discarded += n,
                    }
                }
            })
            .await;
        });
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().stream()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().stream()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().stream()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().stream()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().stream()).poll_shutdown(cx)
    }
}
