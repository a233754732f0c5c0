//! placeholder
use crate::Config;
#[derive(Debug, Default, Clone)]
pub struct ImportOptions {
    pub hostname: Option<String>,
}
#[derive(Debug)]
pub struct Imported {
    pub config: Config,
}
#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct ImportError;
pub fn import_ios(_t: &str, _o: &ImportOptions) -> Result<Imported, ImportError> {
    Err(ImportError)
}
