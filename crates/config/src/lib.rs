//! meshgate's declarative configuration: the model (`model`), YAML loading with
//! file:line:col errors (`load`), semantic checks (`validate`) and the JSON Schema
//! (`schema`). Pure: no sockets, no runtime.

mod duration;
mod error;
mod load;
mod locate;
pub mod model;
mod schema;
mod validate;

pub use duration::Duration;
pub use error::{ConfigError, ConfigErrors};
pub use load::{load_file, parse_str, read_file, warnings};
pub use model::*;
pub use schema::json_schema;
