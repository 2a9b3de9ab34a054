//! The JSON Schema of the config document, generated from the model's types.

/// JSON Schema (draft 2020-12) of [`crate::Config`], pretty-printed.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(crate::Config);
    serde_json::to_string_pretty(&schema).expect("a schema always serializes")
}
