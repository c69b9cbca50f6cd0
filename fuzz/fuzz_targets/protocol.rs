//! Any bytes as a request line: decoded or refused, never a panic; what decodes re-encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pm3::protocol::Envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = serde_json::from_slice::<Envelope>(data) {
        let bytes = serde_json::to_vec(&env).expect("a decoded request encodes");
        let again: Envelope = serde_json::from_slice(&bytes).expect("an encoded request decodes");
        assert_eq!(format!("{:?}", again.req), format!("{:?}", env.req));
    }
});
