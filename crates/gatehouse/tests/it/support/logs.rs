//! Every app's log lines, captured as JSON so tests can check what an operator would see.

use std::sync::{Arc, Mutex, OnceLock};

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_buffer() -> &'static LogBuffer {
    static BUFFER: OnceLock<LogBuffer> = OnceLock::new();
    BUFFER.get_or_init(LogBuffer::default)
}

/// Installs the process-wide subscriber that captures every app's JSON log lines (the app's own
/// `telemetry::init` then finds one installed and leaves it).
pub(super) fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let buffer = log_buffer().clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter("info")
            .with_writer(move || buffer.clone())
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// Every captured log line, parsed.
pub(crate) fn captured_logs() -> Vec<serde_json::Value> {
    let bytes = log_buffer().0.lock().unwrap().clone();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The raw captured log text.
pub(crate) fn captured_log_text() -> String {
    String::from_utf8_lossy(&log_buffer().0.lock().unwrap()).into_owned()
}

/// The `request finished` line of the request with this ID.
pub(crate) fn request_log(request_id: &str) -> serde_json::Value {
    captured_logs()
        .into_iter()
        .find(|l| l["message"] == "request finished" && l["span"]["request_id"] == request_id)
        .unwrap_or_else(|| panic!("no log line for request {request_id}"))
}

/// Where the captured log ends now: pass it to [`captured_log_text_since`] to see only what was
/// logged after (an earlier app may have had the same port, and its lines stay in the buffer).
pub(crate) fn log_mark() -> usize {
    log_buffer().0.lock().unwrap().len()
}

/// The raw captured log text logged after `mark` (from [`log_mark`]).
pub(crate) fn captured_log_text_since(mark: usize) -> String {
    let bytes = log_buffer().0.lock().unwrap();
    String::from_utf8_lossy(&bytes[mark.min(bytes.len())..]).into_owned()
}
