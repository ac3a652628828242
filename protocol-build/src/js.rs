//! The message table for JavaScript clients: `messages.js`, written beside the Rust from the
//! same descriptors and ids, so that a browser client can never drift from `proto/`.
//!
//! The file is a plain script (no modules, no build step), to be put before the script that
//! uses it: a small generic proto3 and frame codec ([`RUNTIME`], `proto_runtime.js`), then one
//! `PROTOCOL.define({...})` call with the table: every message of the described files by full
//! name (`world.S2C_Chat`), with its name as in the `.proto` file, its id where it has one,
//! and its fields (number, name as in the `.proto` file, scalar type or full type name, kind,
//! repeated); every enum with its values. The runtime's comment lists its functions
//! (`encodeFrame`, `decodeFrames`, `PROTOCOL.encode`, ...).
//!
//! A game's file describes its own messages only, naming the engine's types it uses in full
//! (`world.ErrorCode`): a game's page loads the engine's file, then the game's (loading the
//! runtime twice keeps one `PROTOCOL`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet};

use crate::ids::Entry;

/// The fixed part of `messages.js`: the codec that the generated table drives.
pub const RUNTIME: &str = include_str!("proto_runtime.js");

/// The file name written into `OUT_DIR`.
pub const FILE_NAME: &str = "messages.js";

/// Writes [`messages_js`] of `fds` and `entries` to `path`.
pub fn write_js(path: &Path, fds: &FileDescriptorSet, entries: &[Entry]) -> std::io::Result<()> {
    std::fs::write(path, messages_js(fds, entries))
}

/// The text of `messages.js`: the runtime, then the table of every message and enum of the
/// files of `fds`, each message with an id in `entries` given it.
///
/// A message takes the id of the entry of the same proto name (the id table makes those
/// names unique across packages); only top-level messages can have one, as in the id table.
pub fn messages_js(fds: &FileDescriptorSet, entries: &[Entry]) -> String {
    let ids: BTreeMap<&str, u32> = entries
        .iter()
        .map(|e| (e.proto_name.as_str(), e.id))
        .collect();
    let mut messages = String::new();
    let mut enums = String::new();
    for file in &fds.file {
        let package = file.package();
        for message in &file.message_type {
            write_message(&mut messages, &mut enums, package, message, Some(&ids));
        }
        for e in &file.enum_type {
            write_enum(&mut enums, package, e);
        }
    }
    let mut out = String::new();
    out.push_str("// Generated from the .proto files by protocol-build. Do not edit.\n");
    out.push_str(RUNTIME);
    if !RUNTIME.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("\nPROTOCOL.define({\n  \"messages\": {\n");
    out.push_str(messages.trim_end_matches(",\n"));
    out.push_str("\n  },\n  \"enums\": {\n");
    out.push_str(enums.trim_end_matches(",\n"));
    out.push_str("\n  }\n});\n");
    out
}

/// `package.name`, or `name` in the empty package.
fn qualify(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{scope}.{name}")
    }
}

/// A JavaScript string literal of `text` (JSON's escaping is JavaScript's).
fn js_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '<' => out.push_str("\\u003c"), // never `</script>` in the file
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                write!(out, "\\u{:04x}", c as u32).unwrap()
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes `message` (in `scope`) and its nested types; `ids` for top-level messages only.
fn write_message(
    messages: &mut String,
    enums: &mut String,
    scope: &str,
    message: &DescriptorProto,
    ids: Option<&BTreeMap<&str, u32>>,
) {
    let full = qualify(scope, message.name());
    write!(
        messages,
        "    {}: {{\"name\": {}",
        js_string(&full),
        js_string(message.name())
    )
    .unwrap();
    if let Some(id) = ids.and_then(|ids| ids.get(message.name())) {
        write!(messages, ", \"id\": {id}").unwrap();
    }
    messages.push_str(", \"fields\": [");
    for (i, field) in message.field.iter().enumerate() {
        messages.push_str(if i == 0 { "\n      " } else { ",\n      " });
        write_field(messages, field);
    }
    if !message.field.is_empty() {
        messages.push_str("\n    ");
    }
    messages.push_str("]},\n");
    for nested in &message.nested_type {
        write_message(messages, enums, &full, nested, None);
    }
    for e in &message.enum_type {
        write_enum(enums, &full, e);
    }
}

fn write_field(out: &mut String, field: &FieldDescriptorProto) {
    let (kind, type_name) = match field.r#type() {
        Type::Message | Type::Group => ("message", field.type_name().trim_start_matches('.')),
        Type::Enum => ("enum", field.type_name().trim_start_matches('.')),
        scalar => ("scalar", scalar_name(scalar)),
    };
    let repeated = field.label() == Label::Repeated;
    write!(
        out,
        "{{\"number\": {}, \"name\": {}, \"type\": {}, \"kind\": \"{kind}\", \"repeated\": {repeated}",
        field.number(),
        js_string(field.name()),
        js_string(type_name),
    )
    .unwrap();
    // Packed is proto3's default for repeated numbers; only an explicit `[packed = false]` says
    // otherwise.
    if repeated && field.options.as_ref().and_then(|o| o.packed) == Some(false) {
        out.push_str(", \"packed\": false");
    }
    // `optional` and members of a oneof have presence: sent when set, even to the default.
    if field.proto3_optional() || field.oneof_index.is_some() {
        out.push_str(", \"optional\": true");
    }
    out.push('}');
}

fn write_enum(enums: &mut String, scope: &str, e: &EnumDescriptorProto) {
    write!(
        enums,
        "    {}: {{\"name\": {}, \"values\": {{",
        js_string(&qualify(scope, e.name())),
        js_string(e.name())
    )
    .unwrap();
    for (i, value) in e.value.iter().enumerate() {
        if i > 0 {
            enums.push_str(", ");
        }
        write!(enums, "{}: {}", js_string(value.name()), value.number()).unwrap();
    }
    enums.push_str("}},\n");
}

/// The `.proto` name of a scalar type.
fn scalar_name(scalar: Type) -> &'static str {
    match scalar {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
        Type::Group | Type::Message | Type::Enum => unreachable!("not a scalar"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals_escape_quotes_controls_and_script_ends() {
        assert_eq!(js_string("S2C_Chat"), "\"S2C_Chat\"");
        assert_eq!(js_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(js_string("</script>\n"), "\"\\u003c/script>\\u000a\"");
    }

    #[test]
    fn the_runtime_defines_the_frame_functions_and_keeps_one_protocol() {
        assert!(RUNTIME.contains("function encodeFrame(name, msg)"));
        assert!(RUNTIME.contains("function decodeFrames(bytes)"));
        assert!(RUNTIME.starts_with("//"));
        assert!(
            RUNTIME.contains("var PROTOCOL = (typeof PROTOCOL === \"object\" && PROTOCOL) ||"),
            "a second copy (a game's file) keeps the first one's tables"
        );
    }
}
