//! Bytes from the client → the request head parser. The invariants are
//! checked by `gunicornd::fuzzing::parse_head` (so that the regression
//! tests there replay a crash through the very same checks).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gunicornd::fuzzing::parse_head(data);
});
