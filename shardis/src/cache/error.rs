//! [`LoadError`]: the error of the read-through calls, which hands the loader's error back.

use std::fmt;
use std::sync::Arc;

use crate::error::Error;

/// Why [`get_or_load`](super::Cache::get_or_load) or
/// [`get_many_or_load`](super::Cache::get_many_or_load) failed.
///
/// Cache trouble (a shard down or slow, an undecodable value) never fails these calls: they
/// load instead. What remains is the loader's own error, shared as an `Arc` because every
/// caller that waited for the same load receives it, and the few cache errors a load cannot
/// route around.
///
/// ```
/// use shardis::cache::LoadError;
/// #[derive(Debug)]
/// struct DbDown;
/// impl std::fmt::Display for DbDown {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("db down") }
/// }
/// impl std::error::Error for DbDown {}
///
/// fn status(e: &LoadError<DbDown>) -> u16 {
///     match e.loader_error() {
///         Some(DbDown) => 503,
///         None => 500,
///     }
/// }
/// # let _ = status;
/// ```
#[non_exhaustive]
pub enum LoadError<E> {
    /// The loader failed (and no stale value could be served in its place). Every caller that
    /// waited for this load gets the same error.
    Loader(Arc<E>),
    /// The cache refused the call or the loaded value: an invalid key (too long), a value
    /// that cannot be encoded with the codec, or a reply that is not a cached value.
    Cache(Error),
}

impl<E> LoadError<E> {
    /// The loader's error, if the loader failed.
    pub fn loader_error(&self) -> Option<&E> {
        match self {
            LoadError::Loader(e) => Some(e),
            _ => None,
        }
    }

    /// The loader's error, shared with the other callers that waited for the same load
    /// (`Arc::try_unwrap` gives the owned error when nobody else holds it).
    pub fn into_loader_error(self) -> Option<Arc<E>> {
        match self {
            LoadError::Loader(e) => Some(e),
            _ => None,
        }
    }

    /// The cache's error, if the cache refused the call.
    pub fn cache_error(&self) -> Option<&Error> {
        match self {
            LoadError::Cache(e) => Some(e),
            _ => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for LoadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Loader(e) => write!(f, "the loader failed: {e}"),
            LoadError::Cache(e) => write!(f, "cache: {e}"),
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for LoadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Loader(e) => f.debug_tuple("Loader").field(e).finish(),
            LoadError::Cache(e) => f.debug_tuple("Cache").field(e).finish(),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for LoadError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Loader(e) => Some(&**e),
            LoadError::Cache(e) => Some(e),
        }
    }
}

impl<E> From<Error> for LoadError<E> {
    fn from(e: Error) -> Self {
        LoadError::Cache(e)
    }
}
