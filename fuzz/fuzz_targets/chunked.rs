//! Bytes from the client → the chunked body decoder. The invariants are
//! checked by `gunicornd::fuzzing::decode_chunked` (so that the regression
//! tests there replay a crash through the very same checks).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gunicornd::fuzzing::decode_chunked(data);
});
