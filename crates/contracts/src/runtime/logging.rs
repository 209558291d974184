//! Structured logs on stderr, as text or JSON.

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("log format {other:?} is not `text` or `json`")),
        }
    }
}

/// Structured logs on stderr, filtered by `RUST_LOG` (default `info`): for services.
pub fn init_tracing(format: LogFormat) {
    init_tracing_at(format, "info");
}

/// Structured logs on stderr, filtered by `RUST_LOG` (default `default_filter`): command-line
/// clients pass `warn`, so that their own output is not buried in connection logs.
pub fn init_tracing_at(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Colours only on a terminal: logs redirected to a file stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
