//! The first bytes of a connection → the PROXY protocol parser. The
//! invariants are checked by `gunicornd::fuzzing::parse_proxy`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gunicornd::fuzzing::parse_proxy(data);
});
