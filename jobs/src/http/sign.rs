//! The signature every webhook request carries, so a receiver can tell ferry sent it and
//! reject replays: `x-ferry-signature: sha256=HEX`, HEX the lowercase hex HMAC-SHA256 under
//! the secret of `UNIX_SECONDS.BODY`, where `UNIX_SECONDS` is `x-ferry-timestamp`.

use std::fmt::Write;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header value `sha256=HEX` for `body` sent at `timestamp`. The key is the secret's
/// bytes as they are (not hex-decoded), as the README's Node and Python snippets use it.
///
/// ```
/// // The same value Python's `hmac.new(secret, b"1700000000." + body, hashlib.sha256)` gives.
/// let sig = ferry_jobs::http::signature(b"whsec-0123456789abcdef", 1_700_000_000, br#"{"order":42}"#);
/// assert_eq!(sig, "sha256=400b3f12522b8d68e4035a8fd16d344499c6c3e2b9852b8dfbf320224dd0c6f3");
/// ```
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let mut header = String::with_capacity(7 + 64);
    header.push_str("sha256=");
    for byte in mac.finalize().into_bytes() {
        let _ = write!(header, "{byte:02x}");
    }
    header
}
