//! Body metering: request and response bodies counted against their caps while they stream,
//! their previews and sizes written to the API-call row when they end.

use super::*;

#[derive(Clone, Copy)]
pub(super) enum Side {
    Request,
    Response,
}

/// A body that counts its bytes, keeps a preview, enforces a size cap and keeps the API-call
/// row up to date.
pub(super) struct Metered {
    inner: WasiBody,
    seen: u64,
    cap: u64,
    preview: Vec<u8>,
    record: Arc<Mutex<ApiCallRecord>>,
    side: Side,
    started: Instant,
}

impl Metered {
    pub(super) fn new(
        inner: WasiBody,
        cap: u64,
        record: Arc<Mutex<ApiCallRecord>>,
        side: Side,
        started: Instant,
    ) -> Self {
        Self { inner, seen: 0, cap, preview: Vec::new(), record, side, started }
    }

    pub(super) fn update(&self, error: Option<String>) {
        if let Ok(mut r) = self.record.lock() {
            let preview = Some(String::from_utf8_lossy(&self.preview).into_owned()).filter(|p| !p.is_empty());
            let bytes = i64::try_from(self.seen).unwrap_or(i64::MAX);
            match self.side {
                Side::Request => {
                    r.request_bytes = bytes;
                    r.request_preview = preview;
                }
                Side::Response => {
                    r.response_bytes = bytes;
                    r.response_preview = preview;
                    r.duration_ms = elapsed_ms(self.started);
                }
            }
            if let Some(error) = error {
                r.status = ApiCallStatus::Error;
                r.error = Some(error);
            }
        }
    }
}

impl Body for Metered {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    let room = PREVIEW_BYTES.saturating_sub(this.preview.len());
                    this.preview.extend_from_slice(&data[..room.min(data.len())]);
                    if this.seen > this.cap {
                        this.update(Some(format!("response body exceeds the limit of {} bytes", this.cap)));
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(this.seen)))));
                    }
                }
                this.update(None);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.update(Some(format!("{err:?}")));
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => {
                this.update(None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

pub(super) fn elapsed_ms(since: Instant) -> i64 {
    i64::try_from(since.elapsed().as_millis()).unwrap_or(i64::MAX)
}
