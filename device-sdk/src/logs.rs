//! The log subscriber the SDK installs when a log level is configured
//! ([`crate::Builder::log_level`], feature `log-subscriber`): tracing-subscriber's fmt
//! on stdout, printing text lines, or one JSON object per line with
//! [`LogFormat::Json`] (feature `json-logs`). Nothing is installed when the
//! application already installed a subscriber.

use tracing_subscriber_sdk as tracing_subscriber;

use crate::{LogFormat, LogLevel};

/// Whether this build prints JSON (feature `json-logs`).
pub(crate) const JSON_BUILT: bool = cfg!(feature = "json-logs");

/// The format printed for `requested` by a build with or without JSON, and whether
/// that is not what was asked for (JSON without `json-logs`: text).
pub(crate) fn format_in_build(requested: LogFormat, json_built: bool) -> (LogFormat, bool) {
    match requested {
        LogFormat::Json if !json_built => (LogFormat::Text, true),
        format => (format, false),
    }
}

/// Installs the subscriber at `level` in the `requested` format, unless the
/// application already installed one.
pub(crate) fn install(level: LogLevel, requested: LogFormat) {
    use tracing_subscriber::util::SubscriberInitExt;
    let (format, fell_back) = format_in_build(requested, JSON_BUILT);
    let installed = subscriber(level, format, std::io::stdout)
        .try_init()
        .is_ok();
    if installed && fell_back {
        tracing::warn!(
            "logFormat json needs the feature json-logs, which this build lacks: \
             logging text"
        );
    }
}

/// The fmt subscriber at `level`, printing `format` to `writer`.
fn subscriber<W>(
    level: LogLevel,
    format: LogFormat,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_max_level(level.as_tracing())
        .with_writer(writer);
    match format {
        #[cfg(feature = "json-logs")]
        LogFormat::Json => Box::new(builder.json().finish()),
        // `format_in_build` gives text instead.
        #[cfg(not(feature = "json-logs"))]
        LogFormat::Json => Box::new(builder.finish()),
        LogFormat::Text => Box::new(builder.finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_asked_of_a_build_without_json_logs_prints_text_and_says_so() {
        assert_eq!(
            format_in_build(LogFormat::Json, false),
            (LogFormat::Text, true)
        );
        assert_eq!(
            format_in_build(LogFormat::Json, true),
            (LogFormat::Json, false)
        );
        assert_eq!(
            format_in_build(LogFormat::Text, false),
            (LogFormat::Text, false)
        );
    }

    /// A writer whose output the test reads.
    #[derive(Debug, Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Captured {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
            String::from_utf8(bytes)
                .expect("utf-8")
                .lines()
                .map(str::to_string)
                .collect()
        }
    }

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    fn log_through(format: LogFormat) -> Vec<String> {
        let out = Captured::default();
        let subscriber = subscriber(LogLevel::Info, format, out.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(device = "weather", "connected");
            tracing::debug!("below the level");
        });
        out.lines()
    }

    #[cfg(feature = "json-logs")]
    #[test]
    fn json_logs_print_one_json_object_per_line_with_the_level_message_and_fields() {
        let lines = log_through(LogFormat::Json);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line: serde_json::Value = serde_json::from_str(&lines[0]).expect("a JSON line");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["fields"]["message"], "connected");
        assert_eq!(line["fields"]["device"], "weather");
        assert!(line["timestamp"].is_string(), "{line}");
    }

    #[test]
    fn text_logs_print_plain_lines() {
        let lines = log_through(LogFormat::Text);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            serde_json::from_str::<serde_json::Value>(&lines[0]).is_err(),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("INFO"), "{}", lines[0]);
        assert!(lines[0].contains("connected"), "{}", lines[0]);
    }
}
