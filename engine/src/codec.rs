//! The bytes of a recording at their simplest ([`crate::record`]): LEB128 varints and
//! length-prefixed strings and payloads, and how a module writes and reads its DB answers
//! ([`AnswerCodec`], registered with [`crate::world::Setup::record_answers`]). It uses nothing
//! of the engine, so that the world and the modules can name it.

use std::any::Any;

use bytes::Bytes;

/// Writes a module's DB answer; false when it is not the module's type.
pub type AnswerEncode = fn(&(dyn Any + Send), &mut Vec<u8>) -> bool;

/// Reads a module's DB answer written by its [`AnswerEncode`].
pub type AnswerDecode = fn(&mut Reader) -> Result<Box<dyn Any + Send>, String>;

/// How one module's DB answers are recorded.
#[derive(Clone, Copy)]
pub struct AnswerCodec {
    /// The module's name, as its answers carry it.
    pub module: &'static str,
    /// Writes an answer.
    pub encode: AnswerEncode,
    /// Reads one back.
    pub decode: AnswerDecode,
}

/// Appends `value` as a LEB128 varint (protobuf's).
pub fn put_var(out: &mut Vec<u8>, value: u64) {
    prost::encoding::encode_varint(value, out);
}

/// Appends `bytes`, length first.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_var(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends `text`, length first.
pub fn put_str(out: &mut Vec<u8>, text: &str) {
    put_bytes(out, text.as_bytes());
}

/// Reads what the `put_*` functions wrote, from a record's bytes (payloads are views of
/// them, not copies).
#[derive(Debug)]
pub struct Reader {
    bytes: Bytes,
    at: usize,
}

impl Reader {
    /// A reader of `bytes` from the start.
    pub fn new(bytes: Bytes) -> Reader {
        Reader { bytes, at: 0 }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.at >= self.bytes.len()
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, String> {
        let byte = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| format!("the record ends at byte {}", self.at))?;
        self.at += 1;
        Ok(byte)
    }

    /// A varint.
    pub fn var(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("a varint longer than 64 bits at byte {}", self.at))
    }

    /// Eight bytes, little-endian.
    pub fn u64(&mut self) -> Result<u64, String> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes[..].try_into().unwrap_or_default()))
    }

    /// A length-prefixed payload, as a view of the record.
    pub fn bytes(&mut self) -> Result<Bytes, String> {
        let len = self.var()?;
        let len = usize::try_from(len).map_err(|_| format!("a length of {len}"))?;
        self.take(len)
    }

    /// A length-prefixed string.
    pub fn string(&mut self) -> Result<String, String> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a string that is not UTF-8".to_string())
    }

    /// The next `len` bytes, as a view of the record.
    pub fn take(&mut self, len: usize) -> Result<Bytes, String> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "{len} bytes wanted at byte {} of a record of {}",
                    self.at,
                    self.bytes.len()
                )
            })?;
        let taken = self.bytes.slice(self.at..end);
        self.at = end;
        Ok(taken)
    }
}
