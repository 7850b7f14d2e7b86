//! The one place YAML is read or written, so the YAML library can change without touching
//! anything else.

/// Render a JSON-like document as YAML.
pub fn to_string(doc: &serde_json::Value) -> Result<String, String> {
    serde_yaml::to_string(doc).map_err(|e| e.to_string())
}
