//! How a model's failure reaches a script: as a `BebError` of kind `Model`. (The conversion
//! lives here, above both `lm` and `error`, so the base error type knows no domain errors.)

use crate::error::{BebError, ErrorKind};
use crate::lm::ModelError;

impl From<ModelError> for BebError {
    fn from(error: ModelError) -> BebError {
        BebError::new(ErrorKind::Model, error.to_string())
    }
}
