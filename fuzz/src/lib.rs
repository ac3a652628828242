//! What the fuzz targets share: cutting a byte stream into the reads a socket could give, and
//! silencing the engine's log (a fuzzer runs millions of inputs; the log would be most of
//! the time spent).
//!
//! # Layout
//!
//! - `fuzz_targets/frame_codec.rs`: the frame decoder, any bytes in any chunks;
//! - `fuzz_targets/decode_by_id.rs`: a frame's payload decoded by its id, as the server's
//!   dispatcher and the clients do, and the cluster's batches;
//! - `fuzz_targets/ws_front.rs`: the HTTP head, the WebSocket upgrade and WebSocket frames;
//! - `fuzz_targets/tls_front.rs`: the ClientHello sniffing, the server's TLS config on
//!   arbitrary records, and the certificate's validity parser;
//! - `fuzz_targets/core.rs`: the sans-IO core of the chat world, one to three nodes, driven
//!   by arbitrary sessions, with the world's invariants checked after every tick.

use std::sync::Once;

/// Splits `data` into consecutive chunks whose lengths are `sizes` in turn (cycled): the
/// reads a peer's bytes could arrive in. A size of 0 is an empty read; sizes that are all 0
/// give the rest in one read, so that the stream always ends.
pub fn chunks<'a>(data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut empty_in_a_row = 0;
    let mut turn = 0;
    while !rest.is_empty() {
        let size = sizes
            .get(turn % sizes.len().max(1))
            .copied()
            .map_or(rest.len(), usize::from);
        turn += 1;
        let size = if size == 0 && empty_in_a_row >= sizes.len() {
            rest.len()
        } else {
            size.min(rest.len())
        };
        empty_in_a_row = if size == 0 { empty_in_a_row + 1 } else { 0 };
        let (chunk, tail) = rest.split_at(size);
        out.push(chunk);
        rest = tail;
    }
    out
}

/// Turns the engine's log (spdlog's default logger) off, once per process.
pub fn quiet() {
    static QUIET: Once = Once::new();
    QUIET.call_once(|| spdlog::default_logger().set_level_filter(spdlog::LevelFilter::Off));
}

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn chunks_cover_the_stream_in_order_whatever_the_sizes() {
        let data: Vec<u8> = (0..100).collect();
        for sizes in [&[][..], &[0], &[1], &[0, 3], &[7, 0, 0, 200]] {
            let joined: Vec<u8> = chunks(&data, sizes).concat();
            assert_eq!(joined, data, "{sizes:?}");
        }
        assert_eq!(chunks(&data, &[10]).len(), 10);
        assert!(chunks(&[], &[1]).is_empty());
    }
}
