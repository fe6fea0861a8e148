//! Printing results and errors in the chosen format.

use std::io::Write;

use serde_json::{json, Value};

use crate::Format;

/// Prints a JSON document on stdout.
pub fn json(value: &Value) {
    println!("{value}");
}

/// Prints an error: a line on stderr, and in JSON mode an `error` object on stdout.
pub fn error(format: Format, e: &crate::error::Error) {
    eprintln!("error: {e}");
    if format == Format::Json {
        json(&json!({
            "error": {
                "kind": e.kind().as_str(),
                "shard": e.shard(),
                "endpoint": e.endpoint(),
                "outcome_unknown": e.is_outcome_unknown(),
                "message": e.to_string(),
            }
        }));
    }
}

/// Writes raw bytes and a newline on stdout.
pub fn raw_line(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.write_all(b"\n");
}

/// A byte string for JSON: the text if it is UTF-8, else null (the caller adds a hex field).
pub fn text_or_null(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => Value::Null,
    }
}

/// Lower-case hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Adds `field` (text or null) and, when the bytes are not UTF-8, `field_hex`.
pub fn bytes_field(obj: &mut serde_json::Map<String, Value>, field: &str, bytes: &[u8]) {
    let text = text_or_null(bytes);
    if text.is_null() {
        obj.insert(format!("{field}_hex"), Value::String(hex(bytes)));
    }
    obj.insert(field.to_owned(), text);
}
