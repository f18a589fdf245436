//! The library's one error type. Every variant names what is at fault (file, line, field)
//! and, where it can, what would fix it. The CLI maps every `Error` to exit code 2.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in capsearch's library code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    // The cause is part of the message (not a `#[source]`), so `{:#}` chains do not print it twice.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// A file's content is malformed. `location` is e.g. "line 3, column 7" or "entry 12".
    #[error("{}{}: {message}", path.display(), location.as_deref().map(|l| format!(" ({l})")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        location: Option<String>,
        message: String,
    },

    /// The dataset format could not be recognised, or `--format` names an unknown one.
    #[error("{}: {message}", path.display())]
    UnknownFormat { path: PathBuf, message: String },

    /// A dataset that loaded but cannot be used (empty, no training split, ...).
    #[error("dataset {}: {message}", path.display())]
    Dataset { path: PathBuf, message: String },

    /// An image path that would leave the image root (`..`, absolute paths, symlinks pointing out).
    #[error("{}: image path {path:?} escapes the image root {}; use paths relative to the root", source_file.display(), root.display())]
    PathEscapesRoot {
        source_file: PathBuf,
        path: String,
        root: PathBuf,
    },

    /// An image that cannot be decoded or is refused (corrupt, truncated, too many pixels, not an image).
    #[error("{}: {message}", path.display())]
    Image { path: PathBuf, message: String },

    /// A configuration value that is missing or out of range.
    #[error("config {field}: {message}")]
    Config { field: String, message: String },

    /// A checkpoint or model artifact that is missing or inconsistent.
    #[error("model {}: {message}", path.display())]
    Model { path: PathBuf, message: String },

    /// A pickle or weight file that cannot be imported.
    #[error("{}: {message}", path.display())]
    Import { path: PathBuf, message: String },

    /// The search backend failed (not reachable, index missing, mapping conflict, ...).
    #[error("search backend: {0}")]
    Search(String),

    /// Invalid input that belongs to no file (a bad flag value, a malformed request body).
    #[error("{0}")]
    Invalid(String),

    /// A value could not be serialised into the file it was meant for.
    // As with `Io`, the cause is part of the message rather than a `#[source]`.
    #[error("{}: cannot write it as JSON: {error}", path.display())]
    Serialize {
        path: PathBuf,
        error: serde_json::Error,
    },

    /// Training produced a loss that is not a finite number.
    #[error(
        "training diverged at epoch {epoch}, iteration {iteration}: loss is {loss}; lower optim.lr or set optim.grad_clip"
    )]
    Diverged {
        epoch: usize,
        iteration: usize,
        loss: f64,
    },

    /// The tensor backend could not hand over a tensor's values (`what` names the tensor).
    #[error("{what}: {error}")]
    Backend {
        what: String,
        error: burn::tensor::DataError,
    },

    /// A command-line option (or its environment variable) whose value cannot be used as given.
    #[error("{option}: {message}")]
    Option { option: String, message: String },

    /// A search document that cannot be indexed (empty path, no caption, no source).
    #[error("search document {path:?}: {message}")]
    Document { path: String, message: String },

    /// A background thread that could not be started, or stopped before it answered.
    #[error("the {name} thread: {message}")]
    Thread { name: String, message: String },

    /// A broken invariant inside capsearch: a bug, not a problem with the input.
    #[error("internal error (a bug in capsearch, please report it): {0}")]
    Internal(String),

    /// An evaluation report that cannot be written, drawn or read back.
    #[error("report {}: {message}", path.display())]
    Report { path: PathBuf, message: String },
}

impl Error {
    /// Shorthand for an [`Error::Io`] on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }

    /// Shorthand for an [`Error::Parse`].
    pub fn parse(
        path: impl Into<PathBuf>,
        location: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Parse {
            path: path.into(),
            location,
            message: message.into(),
        }
    }

    /// Shorthand for an [`Error::Serialize`] of the file at `path`.
    pub fn serialize(path: impl Into<PathBuf>, error: serde_json::Error) -> Self {
        Error::Serialize {
            path: path.into(),
            error,
        }
    }

    /// Shorthand for an [`Error::Option`].
    pub fn option(option: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Option {
            option: option.into(),
            message: message.into(),
        }
    }
}
